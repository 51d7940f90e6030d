"""The map of the demo estate against its ground truth (VPC v2 and Zeek input)."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from cellwall.discover.edges import MapResult, parse_group_by
from cellwall.errors import UsageError
from cellwall.services.map import MapQuery, build_dependency_map
from cellwall.workspace import Workspace

Key = tuple[str, str, str]


def demo_map(out: Path, group_by: str = "workload", **kw: object) -> MapResult:
    ws = Workspace.resolve(out / "home")
    lists = [out / "estate/truth/policy-app.yaml"]
    return build_dependency_map(ws, MapQuery(group_by=group_by, iplist_files=lists, **kw))  # type: ignore[arg-type]


def expected(out: Path) -> tuple[dict[Key, int], int]:
    """Truth edges with their conversations (plus the attacks riding them), and the number of
    attack conversations that ride no intended edge."""
    rides: Counter[str] = Counter()
    loose = 0
    with (out / "estate/truth/attacks.csv").open() as f:
        for r in csv.DictReader(f):
            if r["rides_edge"]:
                rides[r["rides_edge"]] += 1
            else:
                loose += 1
    edges: dict[Key, int] = {}
    with (out / "estate/truth/edges.csv").open() as f:
        for r in csv.DictReader(f):
            if int(r["conversations"]):
                n = int(r["conversations"]) + rides[r["edge"]]
                edges[(r["client"], r["server"], r["service"])] = n
    return edges, loose


@pytest.mark.parametrize("demo", ["demo_vpc", "demo_zeek"])
def test_map_matches_truth(demo: str, request: pytest.FixtureRequest) -> None:
    out: Path = request.getfixturevalue(demo)
    m = demo_map(out)
    got = {(e.client, e.server, e.service): e.conversations for e in m.edges}
    truth, loose = expected(out)
    # every intended dependency is there, oriented right, with every conversation of it
    exact = [k for k, n in truth.items() if got.get(k) == n]
    assert len(exact) / len(truth) >= 0.995, [
        (k, n, got.get(k)) for k, n in truth.items() if got.get(k) != n
    ][:5]
    assert all(k in got for k in truth)
    # nothing that is not in the flows: the other edges hold exactly the loose attack traffic
    extra = sum(n for k, n in got.items() if k not in truth)
    assert abs(extra - loose) <= 0.005 * loose
    assert all(k[0] == "ord-web-1" or "ord-web-1" in k[1] or k[0].startswith("cidr:")
               or k[1].startswith("cidr:") or k[0] == "iplist:internet"
               for k in got if k not in truth)  # fmt: skip


def test_edge_measures_and_days(demo_vpc: Path) -> None:
    m = demo_map(demo_vpc)
    e = next(
        e
        for e in m.edges
        if (e.client, e.server, e.service) == ("pay-web-1", "pay-api-1", "tcp/8443")
    )
    assert e.records == 2 * e.conversations  # VPC: request and reply, one conversation
    assert e.bytes > 0 and e.packets >= e.records
    assert e.first_seen <= e.last_seen
    assert 1 <= e.days <= 7


def test_groupings_keep_the_conversations(demo_vpc: Path) -> None:
    totals = {g: sum(e.conversations for e in demo_map(demo_vpc, g).edges)
              for g in ("workload", "class", "role", "app,env")}  # fmt: skip
    assert len(set(totals.values())) == 1
    role = demo_map(demo_vpc, "role")
    names = {n for e in role.edges for n in (e.client, e.server)}
    assert "app=payments,role=api,env=prod" in names
    assert "iplist:internet" in names


def test_unmanaged_and_cidr_ends(demo_vpc: Path) -> None:
    ws = Workspace.resolve(demo_vpc / "home")
    m = build_dependency_map(ws, MapQuery(group_by="role"))  # no IP lists
    nas = {u["ip"]: u for u in m.unmanaged}["10.3.0.20"]
    assert any("app=infra,role=backup" in s and "tcp/2049" in s for s in nas["served_to"])
    assert any(u["ip"].startswith("10.250.0.") and u["calls"] for u in m.unmanaged)
    assert any(n.startswith("cidr:") and n.endswith("/24") for n in m.nodes)


def test_filters(demo_vpc: Path) -> None:
    m = demo_map(demo_vpc, "workload", services=("tcp/5432",), labels={"app": "payments"})
    assert m.edges and {e.service for e in m.edges} == {"tcp/5432"}
    assert all("pay-" in e.client or "pay-" in e.server for e in m.edges)


def test_group_by_parsing() -> None:
    assert parse_group_by("role").keys == ("app", "role", "env")
    assert parse_group_by("app").keys == ("app", "env")
    assert parse_group_by(" data , env ").keys == ("data", "env")
    with pytest.raises(UsageError):
        parse_group_by(" , ")


def test_orient_and_conversations_agree(demo_vpc: Path) -> None:
    """The per-record pass and the fast conversation pass give the same conversations."""
    from cellwall.discover.orient import conversations, orient
    from cellwall.engine import connect
    from cellwall.lake.layout import LakeLayout
    from cellwall.lake.scan import flows

    t = flows(connect(), LakeLayout(Workspace.resolve(demo_vpc / "home").lake))
    o = orient(t)
    per_record = o.group_by("conversation_id").aggregate(
        client_ip=o.client_ip.min(), server_ip=o.server_ip.min(), service=o.service.min(),
        evidence=o.orientation_evidence.min(), records=o.count(),
    )  # fmt: skip
    c = conversations(t)
    key = ["client_ip", "server_ip", "service"]
    a = per_record.group_by([*key, "evidence"]).aggregate(
        n=per_record.count(), r=per_record.records.sum()
    )
    b = c.group_by([*key, c.orientation_evidence.name("evidence")]).aggregate(
        n=c.count(), r=c.records.sum()
    )
    rows_a = sorted(a.to_pyarrow().to_pylist(), key=str)
    rows_b = sorted(b.to_pyarrow().to_pylist(), key=str)
    assert rows_a == rows_b
