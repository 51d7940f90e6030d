"""Identity resolution: owners over time, IP reuse, classification, labels; vs an oracle."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import ibis
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellwall.inventory.classify import PRIVATE, IPClassifier
from cellwall.inventory.identity import Resolver, build_segments, lease_conflicts, owners_ibis
from cellwall.model.inventory import AddressLease, Workload

TS = pa.timestamp("us", tz="UTC")
T = datetime(2026, 11, 1, 12, tzinfo=UTC)
US = timedelta(microseconds=1)


def ts(*values: datetime) -> pa.Array:
    return pa.array(list(values), TS)


def test_ip_reuse_a_flow_at_the_boundary_belongs_to_the_new_owner() -> None:
    a = Workload.of("a", addresses=[AddressLease("10.0.0.5", None, T)])
    b = Workload.of("b", addresses=[AddressLease("10.0.0.5", T, None)])
    r = Resolver([a, b])
    got = r.owners(pa.array(["10.0.0.5"] * 3), ts(T - US, T, T + timedelta(days=900)))
    assert got.to_pylist() == ["a", "b", "b"]


def test_gap_between_leases_is_unmanaged() -> None:
    a = Workload.of(
        "a", addresses=[AddressLease("10.0.0.5", T - timedelta(hours=2), T - timedelta(hours=1))]
    )
    b = Workload.of("b", addresses=[AddressLease("10.0.0.5", T, T + timedelta(hours=1))])
    res = Resolver([a, b]).resolve(
        pa.array(["10.0.0.5"] * 4),
        ts(
            T - timedelta(hours=3),
            T - timedelta(minutes=90),
            T - timedelta(minutes=30),
            T + timedelta(hours=1),
        ),
    )
    assert res["owner"].to_pylist() == [None, "a", None, None]
    assert res["address_class"].to_pylist() == [
        "unmanaged-private",
        None,
        "unmanaged-private",
        "unmanaged-private",
    ]


def test_overlap_latest_start_wins_then_earliest_end() -> None:
    old = Workload.of("old", addresses=["10.0.0.7"])
    new = Workload.of("new", addresses=[AddressLease("10.0.0.7", T)])
    job = Workload.of("job", addresses=[AddressLease("10.0.0.7", T, T + timedelta(minutes=5))])
    r = Resolver([old, new, job])
    got = r.owners(pa.array(["10.0.0.7"] * 3), ts(T - US, T, T + timedelta(minutes=5)))
    assert got.to_pylist() == ["old", "job", "new"]
    (d,) = lease_conflicts([old, new, job])
    assert d.code == "overlapping-lease" and "10.0.0.7" in d.message
    assert "`job`" in d.message and "`new`" in d.message and "`old`" in d.message


def test_segments_are_disjoint_and_merged() -> None:
    w = Workload.of(
        "w",
        addresses=[AddressLease("10.0.0.1", None, T), AddressLease("10.0.0.1", T - timedelta(1))],
    )
    seg = build_segments([w])
    assert seg.num_rows == 1 and seg["owner"].to_pylist() == ["w"]


def test_nulls_and_unknown_addresses() -> None:
    r = Resolver([Workload.of("a", addresses=["10.0.0.1"])])
    res = r.resolve(pa.array(["10.0.0.1", None, "nonsense", "8.8.8.8"]), ts(T, T, T, T))
    assert res["owner"].to_pylist() == ["a", None, None, None]
    assert res["address_class"].to_pylist() == [None, None, None, "internet"]
    empty = Resolver([]).owners(pa.array(["10.0.0.1"]), ts(T))
    assert empty.to_pylist() == [None]


def test_classification_rules() -> None:
    c = IPClassifier(
        {
            "internet": (
                ["0.0.0.0/0", "::/0"],
                ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"],
            ),
            "corp-vpn": (["10.8.0.0/16"], ["10.8.99.0/24"]),
            "office": (["10.8.0.0/16"], []),
            "saas": (["203.0.113.0/24", "2001:db8::/32"], []),
        }
    )
    ips = [
        "10.8.1.1",  # corp-vpn and office tie on /16: the first given wins
        "10.8.99.1",  # excepted from corp-vpn, still in office
        "10.1.1.1",  # private; the internet list excepts it
        "203.0.113.9",  # /24 beats internet's /0
        "2001:db8::1",
        "8.8.8.8",
        "fe80::1",  # the given internet list does not except link-local: lists come first
        "::ffff:192.168.1.1",  # IPv4-mapped: classified as its IPv4
    ]
    assert c.classify(pa.array(ips)).to_pylist() == [
        "corp-vpn", "office", "unmanaged-private", "saas", "saas", "internet", "internet",
        "unmanaged-private",
    ]  # fmt: skip


def test_built_in_classes() -> None:
    ips = pa.chunked_array(
        [
            ["8.8.8.8", "192.0.2.1", "127.0.0.1", "100.64.0.1", "224.0.0.251"],
            ["fd00::1", "2606:4700::1", "fe80::1", "::1", "172.31.255.255", "172.32.0.0"],
        ]
    )
    assert IPClassifier().classify(ips).to_pylist() == [
        "internet", "internet", "unmanaged-private", "unmanaged-private", "unmanaged-private",
        "unmanaged-private", "internet", "unmanaged-private", "unmanaged-private",
        "unmanaged-private", "internet",
    ]  # fmt: skip


def test_bad_ip_list_is_refused() -> None:
    with pytest.raises(ValueError, match="corp: 'x' is not a CIDR"):
        IPClassifier({"corp": (["x"], [])})


def test_labels_join_and_identify() -> None:
    ws = [
        Workload.of(
            "api", labels={"app": "shop", "role": "api", "env": "prod"}, addresses=["10.0.0.1"]
        ),
        Workload.of(
            "db", labels={"app": "shop", "role": "db", "data": "pci"}, addresses=["10.0.0.2"]
        ),
    ]
    r = Resolver(ws)
    lbl = r.labels(pa.array(["db", None, "api", "ghost"]), ["role", "data"], "dst_")
    assert lbl.column_names == ["dst_role", "dst_data"]
    assert lbl["dst_role"].to_pylist() == ["db", None, "api", None]
    assert lbl["dst_data"].to_pylist() == ["pci", None, None, None]
    assert r.label_keys() == ["app", "data", "env", "role"]
    flows = pa.table(
        {
            "start": ts(T, T),
            "src_ip": ["10.0.0.1", "8.8.8.8"],
            "dst_ip": ["10.0.0.2", "10.0.0.1"],
        }
    )
    out = r.identify(flows, keys=["role", "env"])
    assert out.column_names[:3] == ["start", "src_ip", "dst_ip"]
    assert out["src_workload"].to_pylist() == ["api", None]
    assert out["src_class"].to_pylist() == [None, "internet"]
    assert out["dst_workload"].to_pylist() == ["db", "api"]
    assert out["dst_role"].to_pylist() == ["db", "api"]
    assert out["src_env"].to_pylist() == ["prod", None]


def test_times_in_other_units_are_accepted() -> None:
    r = Resolver([Workload.of("b", addresses=[AddressLease("10.0.0.5", T)])])
    ns = pa.array([T - US, T], pa.timestamp("ns", tz="UTC"))
    assert r.owners(pa.array(["10.0.0.5", "10.0.0.5"]), ns).to_pylist() == [None, "b"]
    with pytest.raises(TypeError):
        r.owners(pa.array(["10.0.0.5"]), pa.array([1]))


# --- the oracle ------------------------------------------------------------------------

POOL = ["10.0.0.1", "10.0.0.2", "fd00::1", "192.168.7.7"]
BASE = datetime(2026, 1, 1, tzinfo=UTC)
moments = st.integers(0, 40).map(lambda h: BASE + timedelta(hours=h))


def oracle(workloads: list[Workload], ip: str, at: datetime) -> str | None:
    """A plain reading of the rules: among leases covering (ip, at), the latest start wins,
    then the earliest end, then the smaller name."""
    low, high = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
    best: tuple[datetime, datetime, str] | None = None
    for w in workloads:
        for a in w.addresses:
            if a.ip == ip and a.covers(at):
                key = (a.start or low, a.until or high, w.name)
                if best is None or (-_t(key[0]), _t(key[1]), key[2]) < (
                    -_t(best[0]),
                    _t(best[1]),
                    best[2],
                ):
                    best = key
    return best[2] if best else None


def _t(d: datetime) -> float:
    return d.timestamp()


@st.composite
def lease(draw: st.DrawFn) -> AddressLease:
    ip = draw(st.sampled_from(POOL))
    start, until = draw(st.one_of(st.none(), moments)), draw(st.one_of(st.none(), moments))
    if start is not None and until is not None and start >= until:
        start, until = until, (start if start > until else None)
    return AddressLease(ip, start, until)


inventories = st.lists(
    st.builds(
        lambda i, leases: Workload.of(f"w{i}", addresses=leases),
        st.integers(0, 9),
        st.lists(lease(), max_size=3),
    ),
    max_size=6,
    unique_by=lambda w: w.name,
)
queries = st.lists(st.tuples(st.sampled_from([*POOL, "8.8.8.8"]), moments), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(inventories, queries)
def test_resolution_matches_the_oracle(
    workloads: list[Workload], qs: list[tuple[str, datetime]]
) -> None:
    r = Resolver(workloads)
    got = r.owners(pa.array([ip for ip, _ in qs]), ts(*(t for _, t in qs))).to_pylist()
    assert got == [oracle(workloads, ip, t) for ip, t in qs]


@settings(max_examples=40, deadline=None)
@given(inventories, queries)
def test_ibis_twin_equals_duckdb(workloads: list[Workload], qs: list[tuple[str, datetime]]) -> None:
    r = Resolver(workloads)
    ips, times = pa.array([ip for ip, _ in qs]), ts(*(t for _, t in qs))
    fast = r.owners(ips, times).to_pylist()
    con = ibis.duckdb.connect()
    flows = ibis.memtable(
        pa.table({"rid": list(range(len(qs))), "ip": ips, "ts": times.cast(pa.int64())})
    )
    segs = ibis.memtable(r.segments)
    out = con.to_pyarrow(owners_ibis(flows, segs).order_by("rid"))
    assert out["owner"].to_pylist() == fast
    assert out["rid"].to_pylist() == list(range(len(qs)))


def classify_oracle(lists: dict[str, tuple[list[str], list[str]]], text: str) -> str:
    """Lists in order, the longest matching prefix wins (first on a tie); then the built-ins."""
    addr = ipaddress.ip_address(text)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    best: tuple[int, str] | None = None
    for name, (cidrs, excepts) in lists.items():
        nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
        hits = [n.prefixlen for n in nets if n.version == addr.version and addr in n]
        out = any(
            n.version == addr.version and addr in n
            for n in (ipaddress.ip_network(e, strict=False) for e in excepts)
        )
        if hits and not out and (best is None or max(hits) > best[0]):
            best = (max(hits), name)
    if best:
        return best[1]
    private = [ipaddress.ip_network(p) for p in PRIVATE]
    return (
        "unmanaged-private"
        if any(addr.version == n.version and addr in n for n in private)
        else "internet"
    )


nets4 = st.builds(lambda a, p: f"{a}/{p}", st.ip_addresses(v=4), st.integers(0, 32))
nets6 = st.builds(lambda a, p: f"{a}/{p}", st.ip_addresses(v=6), st.integers(0, 128))
near = st.sampled_from(
    ["10.1.2.3", "10.1.200.9", "192.168.1.1", "fd00::5", "8.8.8.8", "::ffff:10.1.2.3"]
)
addrs = st.one_of(near, st.ip_addresses().map(str))
ip_lists = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d"]),
    st.tuples(
        st.lists(
            st.one_of(nets4, nets6, st.sampled_from(["10.0.0.0/8", "10.1.0.0/16", "fc00::/7"])),
            max_size=3,
        ),
        st.lists(st.one_of(nets4, st.sampled_from(["10.1.2.0/24", "10.1.0.0/16"])), max_size=2),
    ),
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(ip_lists, st.lists(addrs, min_size=1, max_size=20))
def test_classification_matches_the_oracle(
    lists: dict[str, tuple[list[str], list[str]]], ips: list[str]
) -> None:
    got = IPClassifier(lists).classify(pa.array(ips)).to_pylist()
    assert got == [classify_oracle(lists, ip) for ip in ips]
