"""The dependency map: conversations aggregated into edges between nodes.

A node is a workload, a label class (the exact label combination), or a projection onto
chosen label keys; ends that no workload owns become external nodes (:mod:`.external`).
Everything per conversation is an Ibis expression; only the few thousand distinct
addresses and the workloads (hundreds) are prepared in Python, as small tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import ibis
import pyarrow as pa

from cellwall.discover.external import classify_external
from cellwall.errors import UsageError
from cellwall.inventory.classify import IPListSpec
from cellwall.inventory.identity import MAX_US, MIN_US, build_segments
from cellwall.model.inventory import Workload

__all__ = ["Edge", "Grouping", "MapResult", "Node", "build_map", "edges_table", "parse_group_by"]

_FLOOR = datetime(1900, 1, 1, tzinfo=UTC)
_CEIL = datetime(2200, 1, 1, tzinfo=UTC)
_TS = pa.timestamp("us", tz="UTC")
_NAMED = {"role": ("app", "role", "env"), "app": ("app", "env")}


@dataclass(frozen=True, slots=True)
class Grouping:
    """``workload``, ``class`` (every label), or a projection onto ``keys``."""

    name: str
    keys: tuple[str, ...] = ()

    def node(self, w: Workload) -> str:
        if self.name == "workload":
            return w.name
        keys = sorted(w.labels) if self.name == "class" else self.keys
        parts = [f"{k}={w.labels[k]}" for k in keys if k in w.labels]
        return ",".join(parts) if parts else f"unlabelled:{w.name}"

    def labels(self, w: Workload) -> dict[str, str]:
        if self.name in ("workload", "class"):
            return dict(w.labels.items())
        return {k: w.labels[k] for k in self.keys if k in w.labels}


def parse_group_by(text: str) -> Grouping:
    """``workload``, ``class``, ``role`` (app, role, env), ``app`` (app, env) or ``k1,k2``."""
    text = text.strip()
    if text in ("workload", "class"):
        return Grouping(text)
    if text in _NAMED:
        return Grouping(text, _NAMED[text])
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    if not keys:
        raise UsageError(f"--group-by {text!r}: use workload, class, role, app or label keys")
    return Grouping(",".join(keys), keys)


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    kind: str  # workload | class | iplist | dns | unmanaged | cidr
    labels: Mapping[str, str] = field(default_factory=dict)
    workloads: int = 0


@dataclass(frozen=True, slots=True)
class Edge:
    client: str
    server: str
    service: str
    conversations: int
    records: int
    bytes: int
    packets: int
    first_seen: datetime
    last_seen: datetime
    days: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "server": self.server,
            "service": self.service,
            "conversations": self.conversations,
            "records": self.records,
            "bytes": self.bytes,
            "packets": self.packets,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "days": self.days,
        }


@dataclass(frozen=True, slots=True)
class MapResult:
    grouping: str
    nodes: dict[str, Node]
    edges: list[Edge]
    unmanaged: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        nodes = [
            {"id": n.name, "kind": n.kind, "labels": dict(n.labels), "workloads": n.workloads}
            for n in sorted(self.nodes.values(), key=lambda n: n.name)
        ]
        return {
            "group_by": self.grouping,
            "nodes": nodes,
            "edges": [e.to_dict() for e in self.edges],
            "unmanaged": self.unmanaged,
            "totals": {
                "nodes": len(nodes),
                "edges": len(self.edges),
                "conversations": sum(e.conversations for e in self.edges),
            },
        }


def _segments_table(workloads: Sequence[Workload]) -> pa.Table:
    seg = build_segments(workloads)
    floor = int((_FLOOR - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1_000_000)
    ceil = int((_CEIL - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1_000_000)
    start = [floor if s <= MIN_US else s for s in seg["start"].to_pylist()]
    until = [ceil if u >= MAX_US else u for u in seg["until"].to_pylist()]
    return pa.table(
        {
            "ip": seg["ip"],
            "s_from": pa.array(start, pa.int64()).cast(_TS),
            "s_until": pa.array(until, pa.int64()).cast(_TS),
            "owner": seg["owner"],
        }
    )


def _owned(c: Any, seg: Any, side: str) -> Any:
    s = seg.rename(
        {f"{side}_seg_ip": "ip", f"{side}_owner": "owner", "f_": "s_from", "u_": "s_until"}
    )
    ip = c[f"{side}_ip"]
    j = c.left_join(s, [ip == s[f"{side}_seg_ip"], c.start >= s.f_, c.start < s.u_])
    return j.drop(f"{side}_seg_ip", "f_", "u_")


def edges_table(
    conv: Any,
    addresses: Sequence[str],
    workloads: Sequence[Workload],
    grouping: Grouping,
    *,
    iplists: Mapping[str, IPListSpec] | None = None,
    dns_names: Mapping[str, str] | None = None,
    services: Iterable[str] | None = None,
    only_workloads: Iterable[str] | None = None,
) -> Any:
    """An Ibis table of edges: ``client``, ``server``, ``service`` and the measures.

    ``conv`` is :func:`cellwall.discover.orient.conversations`; ``addresses`` are the distinct
    addresses in it (for the external classification). ``only_workloads`` keeps the edges
    with a workload of that set at either end.
    """
    seg = ibis.memtable(_segments_table(workloads))
    wl = ibis.memtable(
        pa.table(
            {
                "w_name": [w.name for w in workloads],
                "w_node": [grouping.node(w) for w in workloads],
            },
            schema=pa.schema([("w_name", pa.string()), ("w_node", pa.string())]),
        )
    )
    ext = ibis.memtable(classify_external(sorted(set(addresses)), iplists, dns_names))
    if services is not None:
        conv = conv.filter(conv.service.isin(list(services)))
    c = _owned(_owned(conv, seg, "client"), seg, "server")
    if only_workloads is not None:
        keep = list(only_workloads)
        c = c.filter(c.client_owner.isin(keep) | c.server_owner.isin(keep))
    for side in ("client", "server"):
        w = wl.rename({f"{side}_wn": "w_name", f"{side}_wnode": "w_node"})
        e = ext.rename({f"{side}_eip": "ip", f"{side}_enode": "node"}).drop("kind")
        c = c.left_join(w, c[f"{side}_owner"] == w[f"{side}_wn"]).drop(f"{side}_wn")
        c = c.left_join(e, c[f"{side}_ip"] == e[f"{side}_eip"]).drop(f"{side}_eip")
    c = c.mutate(
        client=c.client_wnode.fill_null(c.client_enode).fill_null("unmanaged:" + c.client_ip),
        server=c.server_wnode.fill_null(c.server_enode).fill_null("unmanaged:" + c.server_ip),
    )
    return (
        c.group_by(["client", "server", "service"])
        .aggregate(
            conversations=c.count(),
            records=c.records.sum(),
            bytes=c.bytes.sum(),
            packets=c.packets.sum(),
            first_seen=c.start.min(),
            last_seen=c.end.max(),
            days=c.start.date().nunique(),
        )
        .order_by(["client", "server", "service"])
    )


def _kind(node: str) -> str:
    prefix = node.split(":", 1)[0]
    return prefix if prefix in ("iplist", "dns", "unmanaged", "cidr") else "workload"


def build_map(edges: pa.Table, workloads: Sequence[Workload], grouping: Grouping) -> MapResult:
    """The edges (from :func:`edges_table`, as Arrow) with their nodes and the unmanaged ends."""
    by_node: dict[str, list[Workload]] = {}
    for w in workloads:
        by_node.setdefault(grouping.node(w), []).append(w)
    for col in ("first_seen", "last_seen"):  # Spark hands back UTC times without a zone
        i = edges.schema.get_field_index(col)
        if i >= 0 and edges.schema.field(i).type != _TS:
            edges = edges.set_column(i, col, edges[col].cast(_TS))
    rows = edges.to_pylist()
    out = [Edge(**{k: r[k] for k in Edge.__slots__}) for r in rows]
    nodes: dict[str, Node] = {}
    kind_of_group = "workload" if grouping.name == "workload" else "class"
    for e in out:
        for name in (e.client, e.server):
            if name in nodes:
                continue
            members = by_node.get(name)
            if members:
                common = dict(grouping.labels(members[0]).items())
                for m in members[1:]:
                    common = {k: v for k, v in common.items() if grouping.labels(m).get(k) == v}
                nodes[name] = Node(name, kind_of_group, common, len(members))
            else:
                nodes[name] = Node(name, _kind(name))
    return MapResult(grouping.name, nodes, out, _unmanaged(out))


def _unmanaged(edges: Sequence[Edge]) -> list[dict[str, Any]]:
    """Each unmanaged internal address with its peers, as client and as server."""
    found: dict[str, dict[str, set[str]]] = {}
    for e in edges:
        if e.client.startswith("unmanaged:"):
            found.setdefault(e.client, {"calls": set(), "serves": set()})["calls"].add(
                f"{e.server} {e.service}"
            )
        if e.server.startswith("unmanaged:"):
            found.setdefault(e.server, {"calls": set(), "serves": set()})["serves"].add(
                f"{e.client} {e.service}"
            )
    return [
        {
            "ip": name.split(":", 1)[1],
            "node": name,
            "calls": sorted(v["calls"]),
            "served_to": sorted(v["serves"]),
        }
        for name, v in sorted(found.items())
    ]
