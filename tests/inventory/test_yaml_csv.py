"""cellwall Workload YAML and CSV: the CONTRACTS examples, equivalence, and diagnostics."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from cellwall.errors import Diagnostic
from cellwall.inventory.loader import LoadResult, load_inventory_file, load_inventory_text
from cellwall.model.inventory import AddressLease, Workload
from cellwall.model.labels import Labels

CONTRACT_YAML = """\
apiVersion: cellwall/v1
kind: Workload
metadata: {name: pay-db-1, owner: team-payments}
spec:
  addresses:
    - 10.1.3.3                                  # valid for all time
    - {ip: 10.1.9.7, from: 2026-11-01T00:00:00Z, until: 2026-11-03T12:00:00Z}
  labels: {app: payments, role: db, env: prod, loc: eu-west-1, data: pci}
"""
CONTRACT_CSV = (  # CONTRACTS.md, verbatim
    "name,addresses,owner,app,role,env,loc,data\n"
    "pay-db-1,10.1.3.3 10.1.9.7@2026-11-01T00:00:00Z..2026-11-03T12:00:00Z,"
    "team-payments,payments,db,prod,eu-west-1,pci\n"
)
EXPECTED = Workload.of(
    "pay-db-1",
    owner="team-payments",
    labels={"app": "payments", "role": "db", "env": "prod", "loc": "eu-west-1", "data": "pci"},
    addresses=[
        "10.1.3.3",
        AddressLease(
            "10.1.9.7", datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 3, 12, tzinfo=UTC)
        ),
    ],
)


def codes(r: LoadResult) -> list[tuple[str, int | None, str]]:
    return [(d.code, d.line, d.severity) for d in r.diagnostics]


def test_contract_yaml_and_csv_mean_the_same(tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text(CONTRACT_YAML)
    (tmp_path / "w.csv").write_text(CONTRACT_CSV)
    y = load_inventory_file(tmp_path / "w.yaml")
    c = load_inventory_file(tmp_path / "w.csv")
    assert y.diagnostics == [] and c.diagnostics == []
    assert y.workloads == c.workloads == [EXPECTED]
    assert y.workloads[0].source.file.endswith("w.yaml") and y.workloads[0].source.line == 1
    assert c.workloads[0].source.line == 2


def test_yaml_label_values_keep_their_text_and_null_means_absent() -> None:
    text = CONTRACT_YAML.replace("data: pci}", "data: pci, tier: 1, ok: yes, gone: ~, none: ''}")
    r = load_inventory_text(text, "w.yaml")
    assert r.diagnostics == []
    assert r.workloads[0].labels["tier"] == "1"
    assert r.workloads[0].labels["ok"] == "yes"
    assert "gone" not in r.workloads[0].labels and "none" not in r.workloads[0].labels


def test_open_intervals_and_naive_times() -> None:
    text = "name,addresses,owner\nw,10.0.0.1@2026-11-01T00:00:00..  10.0.0.2@..2026-11-02,\n"
    r = load_inventory_text(text, "w.csv")
    assert r.diagnostics == []
    (w,) = r.workloads
    assert w.owner is None
    assert w.addresses == (
        AddressLease("10.0.0.1", datetime(2026, 11, 1, tzinfo=UTC), None),
        AddressLease("10.0.0.2", None, datetime(2026, 11, 2, tzinfo=UTC)),
    )


BAD_YAML = """\
apiVersion: cellwall/v1
kind: Workload
metadata: {name: good-1}
spec: {addresses: [10.0.0.1], labels: {app: a}}
---
apiVersion: cellwall/v1
kind: Workload
metadata: {name: bad-1, ownr: x}
spec:
  addresses:
    - 10.0.0.300
    - {ip: 10.0.0.4, from: 2026-11-03T00:00:00Z, until: 2026-11-01T00:00:00Z}
    - 10.0.0.0/24
  labels: {"bad key": v, app: [x]}
---
apiVersion: cellwall/v1
kind: Workload
metadata: {name: bad-2
---
apiVersion: cellwall/v1
kind: Workload
metadata: {name: good-2}
"""


def test_bad_yaml_workloads_are_reported_at_their_lines_and_the_good_ones_load() -> None:
    r = load_inventory_text(BAD_YAML, "inv.yaml")
    assert [w.name for w in r.workloads] == ["good-1", "good-2"]
    assert codes(r) == [
        ("unknown-field", 8, "warning"),
        ("bad-label", 14, "error"),
        ("bad-type", 14, "error"),
        ("bad-address", 11, "error"),
        ("bad-address", 12, "error"),
        ("bad-address", 13, "error"),
        ("yaml-syntax", 19, "error"),
    ]
    first = r.diagnostics[0]
    assert (first.file, first.col) == ("inv.yaml", 25)
    assert "did you mean `owner`" in first.hint
    assert r.diagnostics[1].col == 12  # the key "bad key"
    assert "10.0.0.300" in r.diagnostics[3].message
    assert "empty" in r.diagnostics[4].message
    assert "network" in r.diagnostics[5].message


def test_workload_document_shape_errors() -> None:
    text = (
        "apiVersion: cellwall/v1\nkind: Workload\nspec: {}\n---\n"
        "apiVersion: cellwall/v1\nkind: Workload\nmetadata: {owner: x}\n---\n"
        "apiVersion: cellwall/v1\nkind: Workload\nmetadata: {name: w}\nspec: {addresses: x}\n"
    )
    r = load_inventory_text(text, "w.yaml")
    assert r.workloads == []
    assert codes(r) == [
        ("missing-field", 1, "error"),
        ("missing-field", 7, "error"),
        ("bad-type", 12, "error"),
    ]
    assert "metadata.name" in r.diagnostics[1].message


def test_csv_errors_name_line_and_column_and_good_rows_load() -> None:
    text = (
        "name,addresses,owner,app,env\n"
        "ok-1,10.0.0.1,team,web,prod\n"
        "bad-1,10.0.0.1 nope,team,web,prod\n"
        ",10.0.0.3,team,web,prod\n"
        "short,10.0.0.4\n"
        '"quoted, name",10.0.0.5,team,"a b",prod\n'
        f"bad-2,10.0.0.6,team,web,{'x' * 300}\n"
        "ok-2,,,,\n"
    )
    r = load_inventory_text(text, "w.csv")
    assert [w.name for w in r.workloads] == ["ok-1", "quoted, name", "ok-2"]
    assert r.workloads[1].labels == Labels.of(app="a b", env="prod")
    assert [(d.code, d.line, d.col) for d in r.errors] == [
        ("bad-address", 3, 7),
        ("bad-name", 4, 1),
        ("csv-row", 5, 1),
        ("bad-label", 7, 25),
    ]
    assert "nope" in r.errors[0].message


def test_csv_padded_cells_are_trimmed() -> None:
    r = load_inventory_text("name,addresses,owner,env\nx , 10.0.0.1 , t , prod \n", "w.csv")
    assert r.diagnostics == []
    assert r.workloads == [
        Workload.of("x", owner="t", labels={"env": "prod"}, addresses=["10.0.0.1"])
    ]


def test_csv_header_errors_stop_the_file() -> None:
    r = load_inventory_text("name,owner,addresses\nx,t,10.0.0.1\n", "w.csv", fmt="csv")
    assert r.workloads == [] and codes(r) == [("csv-header", 1, "error")]
    r = load_inventory_text("name,addresses,owner,app,bad key,app\nx,,,a,b,c\n", "w.csv")
    assert r.workloads == []
    assert [(d.code, d.col) for d in r.errors] == [("csv-header", 26), ("csv-header", 34)]


def test_csv_with_bom_and_crlf() -> None:
    r = load_inventory_text("\ufeffname,addresses,owner\r\nw,10.0.0.1,\r\n", "w.csv")
    assert r.diagnostics == [] and r.workloads == [Workload.of("w", addresses=["10.0.0.1"])]


names = st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
values = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,10}[A-Za-z0-9]", fullmatch=True)
label_keys = st.sampled_from(
    ["app", "role", "env", "loc", "data", "tier", "app.kubernetes.io/name"]
)
times = st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)).map(
    lambda t: t.replace(microsecond=0)
)
ips = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)


@st.composite
def leases(draw: st.DrawFn) -> AddressLease:
    start, until = draw(st.one_of(st.none(), times)), draw(st.one_of(st.none(), times))
    if start is not None and until is not None and start >= until:
        start, until = (until, start) if until < start else (start, None)
    return AddressLease(draw(ips), start, until)


workloads = st.builds(
    lambda name, owner, labels, addrs: Workload.of(
        name, owner=owner, labels=labels, addresses=addrs
    ),
    names,
    st.one_of(st.none(), names),
    st.dictionaries(label_keys, values, max_size=5),
    st.lists(leases(), max_size=4),
)


def _iso(t: datetime | None) -> str:
    return "" if t is None else t.isoformat().replace("+00:00", "Z")


def to_yaml(ws: list[Workload]) -> str:
    docs = []
    for w in ws:
        addrs = ", ".join(
            f'{{ip: "{a.ip}", from: {_iso(a.start) or "null"}, until: {_iso(a.until) or "null"}}}'
            for a in w.addresses
        )
        labels = ", ".join(f'"{k}": "{v}"' for k, v in w.labels.items())
        owner = f", owner: {w.owner}" if w.owner else ""
        docs.append(
            f"apiVersion: cellwall/v1\nkind: Workload\nmetadata: {{name: {w.name}{owner}}}\n"
            f"spec:\n  addresses: [{addrs}]\n  labels: {{{labels}}}\n"
        )
    return "---\n".join(docs)


def to_csv(ws: list[Workload], keys: list[str]) -> str:
    rows = ["name,addresses,owner" + "".join("," + k for k in keys)]
    for w in ws:
        addrs = " ".join(str(a) for a in w.addresses)
        rows.append(",".join([w.name, addrs, w.owner or "", *(w.labels.get(k, "") for k in keys)]))
    return "\n".join(rows) + "\n"


@settings(max_examples=150, deadline=None)
@given(st.lists(workloads, max_size=5, unique_by=lambda w: w.name))
def test_yaml_and_csv_renderings_of_any_workloads_load_the_same(ws: list[Workload]) -> None:
    keys = sorted({k for w in ws for k in w.labels})
    y = load_inventory_text(to_yaml(ws), "w.yaml")
    c = load_inventory_text(to_csv(ws, keys), "w.csv")
    assert [d for d in y.diagnostics if d.code != "overlapping-lease"] == [] or not ws
    assert [d for d in c.diagnostics if d.code != "overlapping-lease"] == [] or not ws
    assert y.workloads == ws
    assert c.workloads == ws


def test_diagnostics_print_with_location() -> None:
    r = load_inventory_text("name,addresses,owner\n,10.0.0.1,\n", "w.csv")
    (d,) = r.diagnostics
    assert isinstance(d, Diagnostic)
    assert str(d).startswith("w.csv:2:1: error bad-name:")
