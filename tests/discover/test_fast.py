"""The map's fast path equals its Ibis twin (orient.conversations + edges.edges_table)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from cellwall.discover.coded import LakeFlows, TableFlows
from cellwall.discover.edges import edges_table, parse_group_by
from cellwall.discover.external import load_iplists
from cellwall.discover.fast import fast_conversations, fast_edges, listening
from cellwall.discover.orient import conversations
from cellwall.engine import connect
from cellwall.inventory import InventoryStore
from cellwall.lake.layout import LakeLayout
from cellwall.lake.scan import flows
from cellwall.model.inventory import AddressLease, Workload
from tests.discover.conftest import table
from tests.discover.test_orient import vpc_pair

MIDNIGHT = 14 * 3600  # seconds from conftest.T0 (10:00) to the next UTC midnight


def rows(t: pa.Table) -> list[dict[str, Any]]:
    return sorted(t.to_pylist(), key=lambda r: sorted((k, str(v)) for k, v in r.items()))


def twin_conversations(t: Any) -> list[dict[str, Any]]:
    return rows(conversations(t).to_pyarrow())


def same_conversations(*recs: dict[str, Any]) -> list[dict[str, Any]]:
    """The fast path in day chunks and in 100-second chunks (carries at every boundary)
    gives the twin's conversations."""
    t = table(*recs)
    twin = twin_conversations(t)
    for chunk_us in (86_400_000_000, 100_000_000):
        assert rows(fast_conversations(TableFlows(t.to_pyarrow(), chunk_us))) == twin
    return twin


def test_gap_rule_and_two_exporters() -> None:
    recs = vpc_pair(41234, exporter="e1") + vpc_pair(41234, t=1, exporter="e2")
    recs += vpc_pair(41234, t=200) + vpc_pair(50000, t=5) + vpc_pair(41234, t=260)
    got = same_conversations(*recs)
    assert [c["records"] for c in sorted(got, key=lambda c: (c["start"], c["records"]))] == [
        4,
        2,
        4,
    ]


def test_conversations_across_midnight() -> None:
    m = MIDNIGHT
    recs = vpc_pair(41000, t=m - 30) + vpc_pair(41000, t=m + 30)  # one conversation
    recs += [  # a long record that ends after midnight, and one within the gap of its end
        {"src_ip": "10.0.0.2", "src_port": 42000, "dst_ip": "10.0.0.9", "dst_port": 5432,
         "t": m - 600, "d": 900},
        {"src_ip": "10.0.0.2", "src_port": 42000, "dst_ip": "10.0.0.9", "dst_port": 5432,
         "t": m + 350},
    ]  # fmt: skip
    recs += vpc_pair(43000, t=m - 500) + vpc_pair(43000, t=m + 100)  # two: 600 s apart
    recs += vpc_pair(44000, t=m - 10, exporter="e1") + vpc_pair(44000, t=m + 5, exporter="e2")
    recs += vpc_pair(45000, t=m - 60)  # open at midnight, nothing follows
    # one conversation that spans two midnights: a record every 100 s for 25 hours
    recs += [r for i in range(900) for r in vpc_pair(46000, t=m - 3600 + 100 * i)]
    got = same_conversations(*recs)
    by_port = {c["client_ip"] + str(c["start"]): c["records"] for c in got}
    assert len(got) == 7, by_port
    assert sorted(by_port.values()) == [2, 2, 2, 2, 4, 4, 1800]


def test_evidence_kinds() -> None:
    recs = [
        {"src_ip": "10.0.0.5", "src_port": 50000, "dst_ip": "10.0.0.6", "dst_port": 40000,
         "src_initiated": True, "rev_bytes": 10, "rev_packets": 1},
        {"src_ip": "10.0.0.7", "src_port": 22, "dst_ip": "10.0.0.8", "dst_port": 40000,
         "tcp_flags": 2, "t": 1},
        {"src_ip": "10.0.0.7", "src_port": 60000, "dst_ip": "10.0.0.8", "dst_port": 139,
         "action": "REJECT", "t": 5},
        {"src_ip": "10.0.0.2", "src_port": 443, "dst_ip": "10.0.0.3", "dst_port": 51000, "t": 7},
        {"src_ip": "10.0.0.6", "dst_ip": "10.0.0.7", "proto": 17, "src_port": 123,
         "dst_port": 123, "t": 2},
        {"src_ip": "10.0.0.1", "dst_ip": "10.0.0.2", "proto": 1, "src_port": 8, "dst_port": 0},
        {"src_ip": "10.0.0.2", "dst_ip": "10.0.0.1", "proto": 1, "src_port": 0, "dst_port": 0},
        {"src_ip": "10.0.0.4", "dst_ip": "10.0.0.5", "proto": 47},
    ]  # fmt: skip
    recs += [{"src_ip": "10.0.0.1", "src_port": 2000 + i, "dst_ip": "10.0.0.9",
              "dst_port": 40000, "t": i * 10} for i in range(3)]  # fmt: skip
    got = same_conversations(*recs)
    assert {c["orientation_evidence"] for c in got} == {"initiator", "syn", "listening", "port"}


def test_listening_pass_marks_dead_and_answering_endpoints() -> None:
    recs = [{"src_ip": "10.0.0.1", "src_port": 2000 + i, "dst_ip": "10.0.0.9",
             "dst_port": 40000, "t": i} for i in range(3)]  # fmt: skip
    recs += [
        {"src_ip": "10.0.0.3", "src_port": 3000, "dst_ip": "10.0.0.9", "dst_port": p, "t": 5}
        for p in (80, 5000, 6000)
    ]  # a scanner's reused port: never listening
    recs += [{"src_ip": "10.0.0.4", "src_port": 1500, "dst_ip": "10.0.0.5", "dst_port": 9,
              "src_initiated": True}]  # fmt: skip
    got = listening(TableFlows(table(*recs).to_pyarrow()))
    ip = {a: i for i, a in enumerate(got.addresses)}
    found = {(got.addresses[e >> 25], e & 0x1FFFF) for e in got.endpoints.tolist()}
    assert found == {("10.0.0.9", 40001), ("10.0.0.5", 10)}
    assert list(ip) == sorted(ip)


def _demo_tables(out: Path) -> tuple[Any, LakeFlows, list[Workload]]:
    from cellwall.workspace import Workspace

    ws = Workspace.resolve(out / "home")
    layout = LakeLayout(ws.lake)
    # small chunks (hours), so that conversations are carried from one to the next
    chunks = LakeFlows(layout, chunk_records=1000)
    assert len(chunks.chunks()) > 2 * len(list(layout.flows.glob("day=*")))
    return flows(connect(), layout), chunks, InventoryStore(ws.engine).current()


@pytest.mark.parametrize("demo", ["demo_vpc", "demo_zeek"])
def test_demo_conversations_and_edges(demo: str, request: pytest.FixtureRequest) -> None:
    out: Path = request.getfixturevalue(demo)
    t, days, workloads = _demo_tables(out)
    assert rows(fast_conversations(days)) == twin_conversations(t)
    iplists = load_iplists([out / "estate/truth/policy-app.yaml"])
    for group_by in ("workload", "role"):
        fast, addresses = fast_edges(days, workloads, parse_group_by(group_by), iplists=iplists)
        twin = edges_table(conversations(t), addresses, workloads, parse_group_by(group_by),
                           iplists=iplists)  # fmt: skip
        assert fast.to_pylist() == twin.to_pyarrow().to_pylist()


def test_demo_filters(demo_vpc: Path) -> None:
    t, days, workloads = _demo_tables(demo_vpc)
    keep = [w.name for w in workloads if w.labels.get("app") == "payments"]
    kw: dict[str, Any] = {"services": ["tcp/5432", "udp/53"], "only_workloads": keep}
    fast, addresses = fast_edges(days, workloads, parse_group_by("workload"), **kw)
    twin = edges_table(conversations(t), addresses, workloads, parse_group_by("workload"), **kw)
    got = fast.to_pylist()
    assert got and got == twin.to_pyarrow().to_pylist()


def test_window_and_owners_that_change() -> None:
    m = MIDNIGHT
    recs = vpc_pair(41000, t=m - 30) + vpc_pair(41001, t=m + 7200) + vpc_pair(41002, t=m + 9000)
    arrow = table(*recs).to_pyarrow()
    t0 = min(arrow["start"].to_pylist())

    switch = t0 + timedelta(hours=1)  # after midnight, before the later two conversations
    labels = {"app": "a", "env": "prod"}
    w = [
        Workload.of("api", labels={**labels, "role": "api"}, addresses=["10.0.0.1"]),
        Workload.of("db-old", labels={**labels, "role": "db"},
                    addresses=[AddressLease("10.0.0.9", until=switch)]),
        Workload.of("db-new", labels={**labels, "role": "db"},
                    addresses=[AddressLease("10.0.0.9", start=switch)]),
    ]  # fmt: skip
    fast, addresses = fast_edges(TableFlows(arrow), w, parse_group_by("workload"))
    twin = edges_table(conversations(table(*recs)), addresses, w, parse_group_by("workload"))
    got = fast.to_pylist()
    assert got == twin.to_pyarrow().to_pylist()
    assert {(e["server"], e["conversations"]) for e in got} == {("db-old", 1), ("db-new", 2)}
