"""The map use case: the lake over a window → conversations → edges, grouped and filtered."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from cellwall.discover.coded import FlowSource, LakeFlows
from cellwall.discover.edges import MapResult, build_map, edges_table, parse_group_by
from cellwall.discover.external import evidence_names, load_iplists
from cellwall.discover.fast import FastPathUnavailable, fast_edges
from cellwall.discover.orient import DEFAULT_GAP_SECONDS, conversations
from cellwall.engine import connect
from cellwall.errors import EmptyWindowError
from cellwall.evidence.dns import addresses
from cellwall.inventory import InventoryStore
from cellwall.lake.layout import LakeLayout
from cellwall.lake.scan import FlowFilter, flows, newest_start
from cellwall.model.inventory import Workload
from cellwall.workspace import Workspace

__all__ = [
    "MapQuery",
    "build_dependency_map",
    "hygiene_report",
    "label_findings",
    "map_from_table",
]


@dataclass(frozen=True, slots=True)
class MapQuery:
    since: datetime | None = None
    until: datetime | None = None
    group_by: str = "role"
    labels: Mapping[str, str] = field(default_factory=dict)  # either end matches all
    services: Sequence[str] = ()
    iplist_files: Sequence[Path] = ()
    gap_seconds: int = DEFAULT_GAP_SECONDS
    engine: str = "duckdb"  # or spark: the Ibis expressions on PySpark


def map_from_table(
    t: Any,
    workloads: Sequence[Workload],
    query: MapQuery,
    *,
    dns_names: Mapping[str, str] | None = None,
    dns_lake: Path | None = None,
    flows_by_chunk: FlowSource | None = None,
) -> MapResult:
    """The map of an Ibis flow table ``t`` (lake schema) with these workloads.

    External addresses without an IP list are named by ``dns_names``; else by the flows'
    own ``dns_name`` column (the name a destination had in the window; the greatest when it
    had several), then by the DNS evidence of the lake ``dns_lake`` at the flows' times.
    ``flows_by_chunk``, the same records, selects the fast path (it reads them itself).
    """
    grouping = parse_group_by(query.group_by)
    iplists = load_iplists(list(query.iplist_files)) if query.iplist_files else None
    if dns_names is None and "dns_name" in t.columns:
        named = t.filter(t.dns_name.notnull())
        pairs = named.group_by("dst_ip").aggregate(name=named.dns_name.max()).to_pyarrow()
        dns_names = dict(zip(pairs["dst_ip"].to_pylist(), pairs["name"].to_pylist(), strict=True))
    if dns_lake is not None:
        dns_names = {**_evidence_names(t, dns_lake), **(dns_names or {})}
    only = None
    if query.labels:
        only = [
            w.name for w in workloads if all(w.labels.get(k) == v for k, v in query.labels.items())
        ]
    services = list(query.services) or None
    if flows_by_chunk is not None:  # the fast path, on DuckDB (cellwall.discover.fast)
        try:
            fast, _ = fast_edges(flows_by_chunk, workloads, grouping, iplists=iplists,
                                 dns_names=dns_names, services=services, only_workloads=only,
                                 gap_seconds=query.gap_seconds)  # fmt: skip
            return build_map(fast, workloads, grouping)
        except FastPathUnavailable:
            pass
    ends = t.select(ip=t.src_ip).union(t.select(ip=t.dst_ip), distinct=True)
    addresses = ends.ip.to_pyarrow().to_pylist()
    e = edges_table(
        conversations(t, gap_seconds=query.gap_seconds),
        addresses,
        workloads,
        grouping,
        iplists=iplists,
        dns_names=dns_names,
        services=services,
        only_workloads=only,
    )
    return build_map(e.to_pyarrow(), workloads, grouping)


def _evidence_names(t: Any, lake_dir: Path) -> dict[str, str]:
    """DNS evidence names for the flow ends of ``t`` that the evidence holds at all.

    Only flows to or from an address that some answer named are looked at, counted per
    distinct (address, start), so the lookup stays small next to the lake.
    """
    import ibis

    named = addresses(lake_dir)
    if len(named) == 0:
        return {}
    known = ibis.memtable(pa.table({"ip": named}))
    ends = t.select(ip=t.dst_ip, ts=t.start).union(
        t.select(ip=t.src_ip, ts=t.start), distinct=False
    )
    ends = ends.join(known, "ip", how="semi")
    pairs = ends.group_by(["ip", "ts"]).aggregate(n=ends.count()).to_pyarrow()
    return evidence_names(lake_dir, pairs)


def build_dependency_map(ws: Workspace, query: MapQuery) -> MapResult:
    """The map of the workspace's lake over the query's window, with the loaded inventory."""
    layout = LakeLayout(ws.lake)
    con = connect(query.engine)
    t = flows(con, layout, FlowFilter(since=query.since, until=query.until))
    if (query.since or query.until) and int(t.count().to_pyarrow().as_py()) == 0:
        newest = newest_start(con, layout)
        raise EmptyWindowError(
            "no flows in that window",
            hint=f"the newest flow starts at {newest.isoformat() if newest else 'never'}",
        )
    workloads = InventoryStore(ws.engine).current()
    chunks = LakeFlows(layout, query.since, query.until) if query.engine == "duckdb" else None
    return map_from_table(t, workloads, query, dns_lake=layout.root, flows_by_chunk=chunks)


def label_findings(ws: Workspace, query: MapQuery) -> list[dict[str, Any]]:
    """Label hygiene over the query's window (:mod:`cellwall.discover.hygiene`)."""
    return hygiene_report(ws, query)["findings"]  # type: ignore[no-any-return]


def hygiene_report(ws: Workspace, query: MapQuery) -> dict[str, Any]:
    """``findings`` (behaviour unlike the labelled class, :mod:`cellwall.discover.hygiene`)
    and ``rule_findings`` (behaviour that the labels rule out, :mod:`.label_rules`), both
    from the workload-level map of the query's window."""
    from dataclasses import replace

    from cellwall.discover.hygiene import label_hygiene
    from cellwall.discover.label_rules import public_iplists, rule_findings

    result = build_dependency_map(ws, replace(query, group_by="workload"))
    workloads = InventoryStore(ws.engine).current()
    iplists = load_iplists(list(query.iplist_files)) if query.iplist_files else None
    rules = rule_findings(result.edges, workloads, public_lists=public_iplists(iplists))
    return {
        "findings": [f.to_dict() for f in label_hygiene(result.edges, workloads)],
        "rule_findings": [f.to_dict() for f in rules],
    }
