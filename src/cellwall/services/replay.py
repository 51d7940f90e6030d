"""The judging use cases: replay a policy over the lake, and explain one conversation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cellwall.engine import connect
from cellwall.errors import EmptyWindowError, UsageError
from cellwall.evidence.dns import scan_dns
from cellwall.inventory import InventoryStore
from cellwall.lake.layout import LakeLayout
from cellwall.lake.scan import FlowFilter, flows, newest_start
from cellwall.model.inventory import Workload
from cellwall.model.policy import PolicySet
from cellwall.workspace import Workspace

__all__ = ["ReplayQuery", "policy_for", "run_replay", "window_conversations", "workloads_for"]


@dataclass(frozen=True, slots=True)
class ReplayQuery:
    policy_dir: Path | None = None
    inventory: Path | None = None
    since: datetime | None = None
    until: datetime | None = None
    parquet_out: Path | None = None
    top: int = 20


def policy_for(ws: Workspace, policy_dir: Path | None) -> PolicySet:
    """The policy in ``policy_dir`` (refused when it has errors), else the active one."""
    from cellwall.services.policy import active_policy, read_policy_dir

    if policy_dir is not None:
        return read_policy_dir(ws, policy_dir)
    found = active_policy(ws)
    if found is None:
        raise UsageError(
            "no policy is active in this workspace",
            hint="give --policy DIR, or run `cellwall policy load DIR --activate`",
        )
    return found


def workloads_for(ws: Workspace, inventory: Path | None) -> list[Workload]:
    """The workloads of ``inventory`` (refused when it has errors), else the loaded ones."""
    if inventory is None:
        return InventoryStore(ws.engine).current()
    from cellwall.inventory.loader import load_inventory_files

    result = load_inventory_files([inventory])
    result.raise_for_errors()
    return list(result.workloads)


def window_conversations(ws: Workspace, since: datetime | None, until: datetime | None) -> Any:
    """The conversations of the lake's window, as an Ibis expression (exit 2 when empty)."""
    from cellwall.policy.replay import conversation_facts

    layout = LakeLayout(ws.lake)
    con = connect()
    t = flows(con, layout, FlowFilter(since=since, until=until))
    if int(t.count().to_pyarrow().as_py()) == 0:
        newest = newest_start(con, layout)
        raise EmptyWindowError(
            "no flows in that window",
            hint=f"the newest flow starts at {newest.isoformat() if newest else 'never'}",
        )
    return conversation_facts(t)


def run_replay(ws: Workspace, q: ReplayQuery) -> dict[str, Any]:
    """Test mode over the lake: the ``cellwall replay`` JSON document."""
    from cellwall.policy.replay import replay

    policy = policy_for(ws, q.policy_dir)
    version = _active_version(ws) if q.policy_dir is None else None
    workloads = workloads_for(ws, q.inventory)
    conv = window_conversations(ws, q.since, q.until)
    dns = scan_dns(ws.lake)
    result = replay(conv, policy, workloads, dns=dns, parquet_out=q.parquet_out, top=q.top)
    doc = result.to_dict()
    doc["window"] = {
        "since": q.since.isoformat() if q.since else None,
        "until": q.until.isoformat() if q.until else None,
    }
    doc["policy"] = {
        "source": str(q.policy_dir) if q.policy_dir else "active",
        "policies": len(policy.policies),
        "rules": sum(len(p.rules) for p in policy.policies),
    }
    if q.parquet_out is not None:
        doc["parquet"] = str(q.parquet_out)
    if version is not None:
        from cellwall.state.rule_hits import RuleHits

        with ws.writer_lock(timeout=30):
            RuleHits(ws.engine).record(version, result.hits, result.last_hit)
        doc["policy"]["version"] = version
        doc["policy"]["hits_recorded"] = True
    return doc


def _active_version(ws: Workspace) -> int | None:
    from cellwall.policy.store import PolicyStore

    info = PolicyStore(ws.engine).active()
    return None if info is None else info.version
