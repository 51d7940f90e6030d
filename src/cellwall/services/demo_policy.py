"""The demo's policy stage: write the estate's policy, load and activate it, replay the
lake against it, and explain one blocked and one allowed conversation."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from cellwall.demo.policy_docs import demo_policy_yaml
from cellwall.evidence.dns import scan_dns
from cellwall.policy.explain import explain
from cellwall.services.policy import active_policy, load_policy_dir
from cellwall.services.replay import ReplayQuery, run_replay, workloads_for
from cellwall.workspace import Workspace

__all__ = ["demo_policy_stage"]


def _examples(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """A would-be-blocked edge of the replay and an allowed tier-to-tier edge."""
    out = []
    blocked = doc["top_would_be_blocked"]["workload"]
    if blocked:
        e = blocked[0]
        out.append((e["client"].removeprefix("ip:"), e["server"].removeprefix("ip:"), e["service"]))
    return out


def demo_policy_stage(ws: Workspace, out: Path, today: datetime) -> dict[str, Any]:
    """Run the policy stage into ``out`` (policy/, replay/) and return its summary."""
    policy_dir = out / "policy"
    policy_dir.mkdir(parents=True, exist_ok=True)
    for name, text in demo_policy_yaml().items():
        (policy_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (policy_dir / name).write_text(text)
    loaded = load_policy_dir(ws, [policy_dir], today=today.date(), actor="demo", activate=True)
    replay_dir = out / "replay"
    replay_dir.mkdir(parents=True, exist_ok=True)
    parquet = replay_dir / "conversations.parquet"
    doc = run_replay(ws, ReplayQuery(parquet_out=parquet))
    (replay_dir / "replay.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    policy = active_policy(ws)
    workloads = workloads_for(ws, None)
    explained = []
    if policy is not None:
        for src, dst, svc in _examples(doc):
            e = explain(policy, workloads, src, dst, svc, today, dns=scan_dns(ws.lake))
            explained.append(str(e))
    (replay_dir / "explain.txt").write_text("\n\n".join(explained) + "\n")
    return {
        "policy": str(policy_dir),
        "version": loaded.get("version"),
        "errors": loaded.get("errors"),
        "warnings": loaded.get("warnings"),
        "replay": str(replay_dir / "replay.json"),
        "verdicts": doc["verdicts"],
        "would_block": doc["would_block"],
        "escaped": doc["escaped"],
        "parquet": str(parquet),
    }
