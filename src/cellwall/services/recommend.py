"""The recommendation use cases: propose rules for a window, compare two windows, and the
incremental mode against the active policy (docs/recommend.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from cellwall.errors import UsageError
from cellwall.inventory import InventoryStore
from cellwall.model.inventory import Workload
from cellwall.recommend import Proposal, RecommendConfig, propose, write_proposal
from cellwall.recommend.compare import ProposalDiff, compare_proposals
from cellwall.recommend.seasonality import periodic_edges, seasonality_warnings
from cellwall.workspace import Workspace

__all__ = [
    "EDGE_COLUMNS",
    "RecommendQuery",
    "compare_windows",
    "demo_recommend",
    "recommend",
    "recommend_incremental",
    "window_edges",
]

EDGE_COLUMNS = (
    "client",
    "server",
    "service",
    "conversations",
    "bytes",
    "first_seen",
    "last_seen",
    "days",
)
_TS = pa.timestamp("us", tz="UTC")
_SCHEMA = pa.schema(
    [
        ("client", pa.string()),
        ("server", pa.string()),
        ("service", pa.string()),
        ("conversations", pa.int64()),
        ("bytes", pa.int64()),
        ("first_seen", _TS),
        ("last_seen", _TS),
        ("days", pa.int64()),
    ]
)


@dataclass(frozen=True, slots=True)
class RecommendQuery:
    since: datetime | None = None
    until: datetime | None = None
    granularity: str = "role"
    out_dir: Path | None = None
    iplist_files: Sequence[Path] = ()
    idle_days: int = 30
    settings: dict[str, Any] = field(default_factory=dict)  # RecommendConfig overrides


def window_edges(
    ws: Workspace, since: datetime | None, until: datetime | None, iplist_files: Sequence[Path]
) -> pa.Table:
    """The map of the window at workload granularity, as an Arrow table (EmptyWindowError
    when the window holds no flows)."""
    from cellwall.services.map import MapQuery, build_dependency_map

    query = MapQuery(since=since, until=until, group_by="workload", iplist_files=iplist_files)
    result = build_dependency_map(ws, query)
    rows = {c: [getattr(e, c) for e in result.edges] for c in EDGE_COLUMNS}
    return pa.table(rows, schema=_SCHEMA)


def _window_days(edges: pa.Table, since: datetime | None, until: datetime | None) -> float:
    if since is not None and until is not None:
        return (until - since).total_seconds() / 86400.0
    if edges.num_rows == 0:
        return 1.0
    first = since or min(edges["first_seen"].to_pylist())
    last = until or max(edges["last_seen"].to_pylist())
    return max(1.0, (last - first).total_seconds() / 86400.0)


def _config(q: RecommendQuery, window_days: float) -> RecommendConfig:
    try:
        return RecommendConfig(granularity=q.granularity, window_days=window_days, **q.settings)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc), hint="granularity is workload, role or app") from None


def _iplists(files: Sequence[Path]) -> dict[str, tuple[list[str], list[str]]]:
    from cellwall.discover.external import load_iplists

    return {k: (list(v[0]), list(v[1])) for k, v in load_iplists(list(files)).items()}


def _history_warnings(ws: Workspace, q: RecommendQuery, edges: pa.Table, days: float) -> list[str]:
    """Seasonality: periodic edges of the window, or of the four weeks before its end when
    the window is shorter (and the lake holds them)."""
    from cellwall.errors import EmptyWindowError

    found = periodic_edges(edges)
    if days < 28 and q.until is not None:
        try:
            history = window_edges(ws, q.until - timedelta(days=28), q.until, q.iplist_files)
            found = periodic_edges(history)
        except EmptyWindowError:
            pass
    return seasonality_warnings(found, days)


def _header(q: RecommendQuery, proposal: Proposal) -> list[str]:
    since = q.since.isoformat() if q.since else "the first flow"
    until = q.until.isoformat() if q.until else "the last flow"
    return [
        f"Proposed by `cellwall recommend` at {proposal.granularity} granularity from the "
        f"traffic of {since} .. {until}.",
        "Evidence is in the comments above each rule; review before loading.",
    ]


def _propose(
    ws: Workspace, q: RecommendQuery, workloads: list[Workload] | None = None
) -> tuple[Proposal, pa.Table, float]:
    edges = window_edges(ws, q.since, q.until, q.iplist_files)
    days = _window_days(edges, q.since, q.until)
    wl = workloads if workloads is not None else InventoryStore(ws.engine).current()
    proposal = propose(edges, wl, _config(q, days), iplists=_iplists(q.iplist_files))
    return proposal, edges, days


def recommend(ws: Workspace, q: RecommendQuery) -> dict[str, Any]:
    """Propose rules for the window; write them to ``q.out_dir`` when given."""
    proposal, edges, days = _propose(ws, q)
    warnings = _history_warnings(ws, q, edges, days)
    proposal = replace(proposal, warnings=(*proposal.warnings, *warnings))
    doc: dict[str, Any] = {"window_days": round(days, 3), **proposal.summary()}
    if q.out_dir is not None:
        written = write_proposal(proposal, q.out_dir, _header(q, proposal))
        doc["files"] = [str(p) for p in written]
    doc["proposal"] = proposal
    return doc


def compare_windows(
    ws: Workspace,
    a: tuple[datetime | None, datetime | None],
    b: tuple[datetime | None, datetime | None],
    q: RecommendQuery,
) -> ProposalDiff:
    """The proposals of windows A and B, and what changes from A to B."""
    workloads = InventoryStore(ws.engine).current()
    pa_, _, _ = _propose(ws, replace(q, since=a[0], until=a[1]), workloads)
    pb, _, _ = _propose(ws, replace(q, since=b[0], until=b[1]), workloads)

    def name(w: tuple[datetime | None, datetime | None]) -> str:
        return f"{w[0].isoformat() if w[0] else '-'}..{w[1].isoformat() if w[1] else '-'}"

    return compare_proposals(pa_, pb, name(a), name(b))


def _uncovered_edges(conv: pa.Table, verdicts: pa.Table, workloads: list[Workload]) -> pa.Table:
    """The workload-level edges of the conversations that the policy does not allow."""
    import ibis
    import pyarrow.compute as pc

    from cellwall.discover.edges import Grouping, edges_table

    left = conv.filter(pc.not_equal(verdicts["verdict"], "allowed"))
    left = left.append_column("packets", pa.array([0] * left.num_rows, pa.int64()))
    if left.num_rows == 0:
        return _SCHEMA.empty_table()
    cols = ["client_ip", "server_ip", "service", "start", "end", "records", "bytes", "packets"]
    table = ibis.memtable(left.select(cols))
    addresses = sorted(set(left["client_ip"].to_pylist()) | set(left["server_ip"].to_pylist()))
    e = edges_table(table, addresses, workloads, Grouping("workload")).to_pyarrow()
    return e.select(list(EDGE_COLUMNS)).cast(_SCHEMA)


def recommend_incremental(ws: Workspace, q: RecommendQuery, now: datetime) -> dict[str, Any]:
    """Against the active policy: rules for uncovered traffic, tightenings and removals."""
    from cellwall.policy.judge import judge
    from cellwall.policy.store import PolicyStore
    from cellwall.recommend.incremental import idle_rules, rule_usage, tightenings
    from cellwall.services.policy import active_policy
    from cellwall.services.replay import window_conversations
    from cellwall.state.rule_hits import RuleHits

    policy = active_policy(ws)
    info = PolicyStore(ws.engine).active()
    if policy is None or info is None:
        raise UsageError("no policy is active", hint="run `cellwall policy activate` first")
    workloads = InventoryStore(ws.engine).current()
    conv = window_conversations(ws, q.since, q.until).to_pyarrow()
    verdicts = judge(conv, policy, workloads)
    edges = _uncovered_edges(conv, verdicts, workloads)
    days = _window_days(edges, q.since, q.until)
    proposal = propose(edges, workloads, _config(q, days), iplists=_iplists(q.iplist_files))
    usage = rule_usage(verdicts, conv)
    recorded = {k: v.last_hit for k, v in RuleHits(ws.engine).summary(info.version).items()}
    cut = now - timedelta(days=q.idle_days)
    doc: dict[str, Any] = {
        "window_days": round(days, 3),
        "active_version": info.version,
        "judged": conv.num_rows,
        "uncovered": int(sum(edges["conversations"].to_pylist())),
        **proposal.summary(),
        "tighten": [t.to_dict() for t in tightenings(policy, usage, proposal_dense(q))],
        "remove": [r.to_dict() for r in idle_rules(policy, usage, recorded, cut, q.idle_days)],
    }
    if q.out_dir is not None:
        written = write_proposal(proposal, q.out_dir, _header(q, proposal))
        doc["files"] = [str(p) for p in written]
    doc["proposal"] = proposal
    return doc


def proposal_dense(q: RecommendQuery) -> int:
    return int(q.settings.get("dense_ports", RecommendConfig().dense_ports))


def demo_recommend(ws: Workspace, out_dir: Path) -> tuple[dict[str, Any], Proposal]:
    """The demo's recommendation stage: role granularity over the whole lake, into
    ``out_dir``; returns the summary (rules, coverage, exclusions) for ``summary.json`` and
    the proposal, which the demo's review stage submits."""
    doc = recommend(ws, RecommendQuery(out_dir=out_dir))
    proposal = doc.pop("proposal")
    doc["out"] = str(out_dir)
    return doc, proposal
