"""Test mode over a real lake: `run_replay` against hand-written VPC files and a demo estate.

Two workspaces, each built once per module:

- a *mini* lake written here line by line (VPC v2 records from two exporters, replies,
  REJECTs, three apps in the three modes), whose every number is worked out by hand below;
- a small *demo* estate (generated, ingested, its inventory loaded, the demo policy written),
  whose numbers are checked against the reference evaluator (``tests/policy/reference.py``)
  and the generator's ground truth (``truth.json``, ``truth/attacks.csv``).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from cellwall.demo import DemoConfig, generate
from cellwall.demo.policy_docs import demo_policy_yaml
from cellwall.errors import EmptyWindowError
from cellwall.model.inventory import Workload
from cellwall.model.policy import PolicySet
from cellwall.services.ingest import ingest_paths
from cellwall.services.inventory import load_inventory
from cellwall.services.replay import (
    ReplayQuery,
    policy_for,
    run_replay,
    window_conversations,
    workloads_for,
)
from cellwall.workspace import Workspace
from tests.policy.reference import reference_judge

# ---------------------------------------------------------------------------------------------
# The mini lake

D1 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
D2 = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
WEB, API, DB = "10.9.0.1", "10.9.0.2", "10.9.0.3"
VIS1, VIS2, SEL = "10.9.1.1", "10.9.1.2", "10.9.2.1"
VPC_HEADER = (
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes "
    "start end action log-status"
)
MINI_INVENTORY = "---\n".join(
    "apiVersion: cellwall/v1\nkind: Workload\n"
    f"metadata: {{name: {name}}}\nspec: {{addresses: [{ip}], labels: {labels}}}\n"
    for name, ip, labels in [
        ("web-1", WEB, "{app: shop, role: web, env: prod}"),
        ("api-1", API, "{app: shop, role: api, env: prod}"),
        ("db-1", DB, "{app: shop, role: db, env: prod}"),
        ("vis-1", VIS1, "{app: logs, role: agent, env: prod}"),
        ("vis-2", VIS2, "{app: logs, role: store, env: prod}"),
        ("sel-1", SEL, "{app: cache, role: kv, env: prod}"),
    ]
)
MINI_POLICY = """\
apiVersion: cellwall/v1
kind: Policy
metadata: {name: shop, owner: team-shop}
spec:
  scope: {app: shop}
  mode: full
  rules:
    - {id: web-to-api, from: {role: web}, to: {role: api}, services: [tcp/8443]}
---
apiVersion: cellwall/v1
kind: Policy
metadata: {name: logs, owner: team-logs}
spec: {scope: {app: logs}, mode: visibility}
---
apiVersion: cellwall/v1
kind: Policy
metadata: {name: cache, owner: team-cache}
spec: {scope: {app: cache}, mode: selective}
---
apiVersion: cellwall/v1
kind: Policy
metadata: {name: global, owner: security}
spec:
  rules:
    - {id: deny-rdp, action: deny, from: {any: true}, to: {any: true}, services: [tcp/3389]}
"""


def _vpc(eni: str, src: str, dst: str, sport: int, dport: int, at: datetime, action: str) -> str:
    t = int(at.timestamp())
    return f"2 111122223333 {eni} {src} {dst} {sport} {dport} 6 3 300 {t} {t + 5} {action} OK"


def _pair(eni: str, client: str, server: str, cport: int, sport: int, at: datetime) -> list[str]:
    """A request and its reply, as a VPC exporter writes them (no flags, no direction)."""
    return [
        _vpc(eni, client, server, cport, sport, at, "ACCEPT"),
        _vpc(eni, server, client, sport, cport, at, "ACCEPT"),
    ]


def _secs(at: datetime, s: int) -> datetime:
    return datetime.fromtimestamp(at.timestamp() + s, UTC)


def mini_flow_lines() -> list[str]:
    """Eight conversations in sixteen records (expected verdicts in the comments)."""
    return [
        VPC_HEADER,
        # 1. allowed by web-to-api; seen by the client's ENI and again by the server's ENI
        *_pair("eni-web", WEB, API, 40001, 8443, D1),
        *_pair("eni-api", WEB, API, 40001, 8443, _secs(D1, 1)),
        # 2. allowed by web-to-api, the next day
        *_pair("eni-web", WEB, API, 40002, 8443, D2),
        # 3. not-allowed, the exporter accepted it (escaped); shop is full: blocked
        *_pair("eni-web", WEB, DB, 40003, 5432, _secs(D1, 60)),
        # 4. denied by deny-rdp, the exporter rejected it; blocked
        _vpc("eni-web", WEB, DB, 40004, 3389, _secs(D1, 120), "REJECT"),
        # 5. not-allowed, visibility to visibility: escaped, not blocked
        *_pair("eni-vis", VIS1, VIS2, 40005, 9999, _secs(D1, 180)),
        # 6. not-allowed, visibility to full: escaped, blocked by the server
        *_pair("eni-vis", VIS1, API, 40006, 9999, _secs(D1, 240)),
        # 7. not-allowed, visibility to selective: escaped, not blocked
        *_pair("eni-vis", VIS1, SEL, 40007, 9999, _secs(D1, 300)),
        # 8. denied by deny-rdp, visibility to selective: blocked by the server
        _vpc("eni-vis", VIS1, SEL, 40008, 3389, _secs(D1, 360), "REJECT"),
    ]


@dataclass
class Mini:
    ws: Workspace
    policy: Path
    parquet: Path
    doc: dict[str, Any]


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> Mini:
    root = tmp_path_factory.mktemp("replay-mini")
    flows = root / "flows.log"
    flows.write_text("\n".join(mini_flow_lines()) + "\n")
    (root / "inventory.yaml").write_text(MINI_INVENTORY)
    policy = root / "policy"
    policy.mkdir()
    (policy / "policy.yaml").write_text(MINI_POLICY)
    ws = Workspace.resolve(root / "home")
    ingested = ingest_paths(ws, [flows], fmt="vpc").to_dict()
    assert ingested["stored"] == 16 and ingested["duplicate"] == 0
    assert load_inventory(ws, [root / "inventory.yaml"])["errors"] == 0
    parquet = root / "conversations.parquet"
    doc = run_replay(ws, ReplayQuery(policy_dir=policy, parquet_out=parquet))
    return Mini(ws, policy, parquet, doc)


def _rows(path: Path) -> list[dict[str, Any]]:
    return pq.read_table(path).to_pylist()  # type: ignore[no-any-return]


def test_mini_verdicts_escaped_and_exporter_are_counted_in_conversations(mini: Mini) -> None:
    doc = mini.doc
    assert doc["verdicts"] == {"allowed": 2, "denied": 2, "not-allowed": 4}
    assert doc["unverified"] == 0
    assert doc["would_block"] == 4
    # escaped: the exporter accepted it (3, 5, 6, 7) and the policy would not allow it
    assert doc["escaped"] == 4
    assert doc["exporter_vs_policy"] == [
        {"exporter": "ACCEPT", "verdict": "allowed", "conversations": 2},
        {"exporter": "ACCEPT", "verdict": "not-allowed", "conversations": 4},
        {"exporter": "REJECT", "verdict": "denied", "conversations": 2},
    ]
    assert doc["policy"] == {"source": str(mini.policy), "policies": 4, "rules": 2}


def test_a_reply_and_a_second_exporter_do_not_make_more_conversations(mini: Mini) -> None:
    rows = _rows(mini.parquet)
    assert len(rows) == 8
    assert len({r["conversation_id"] for r in rows}) == 8
    # no reply became a conversation of its own, served from the client's ephemeral port
    assert all(r["server_port"] in (8443, 5432, 3389, 9999) for r in rows)
    assert all(r["client_port"] >= 40001 for r in rows)
    (first,) = [r for r in rows if r["client_port"] == 40001]
    assert (first["client_ip"], first["server_ip"], first["service"]) == (WEB, API, "tcp/8443")
    assert first["records"] == 4  # request and reply, from eni-web and from eni-api
    assert (first["verdict"], first["rule_id"]) == ("allowed", "web-to-api")
    assert first["client_workload"] == "web-1" and first["server_workload"] == "api-1"


def test_modes_decide_what_is_blocked_not_the_verdict(mini: Mini) -> None:
    by_port = {r["client_port"]: r for r in _rows(mini.parquet)}
    expect = {
        40001: ("allowed", False),
        40002: ("allowed", False),
        40003: ("not-allowed", True),  # full (shop) to full
        40004: ("denied", True),
        40005: ("not-allowed", False),  # visibility to visibility
        40006: ("not-allowed", True),  # visibility to full: the server blocks it
        40007: ("not-allowed", False),  # visibility to selective: nobody blocks not-allowed
        40008: ("denied", True),  # visibility to selective: the server blocks denied
    }
    assert {p: (r["verdict"], r["blocked"]) for p, r in by_port.items()} == expect
    assert mini.doc["would_block_by_workload"] == {
        "db-1": 2,
        "vis-1": 2,
        "web-1": 2,
        "api-1": 1,
        "sel-1": 1,
    }


def test_top_would_be_blocked_edges_at_workload_and_label_level(mini: Mini) -> None:
    top = mini.doc["top_would_be_blocked"]
    edges = {(e["client"], e["server"], e["service"]): e["conversations"] for e in top["workload"]}
    assert edges == {
        ("web-1", "db-1", "tcp/5432"): 1,
        ("web-1", "db-1", "tcp/3389"): 1,
        ("vis-1", "api-1", "tcp/9999"): 1,
        ("vis-1", "sel-1", "tcp/3389"): 1,
    }
    labels = {(e["client"], e["server"], e["service"]) for e in top["label"]}
    assert ("app=shop,env=prod,role=web", "app=shop,env=prod,role=db", "tcp/5432") in labels
    assert ("app=logs,env=prod,role=agent", "app=logs,env=prod,role=store", "tcp/9999") not in (
        labels
    )


def test_rule_hits_per_day_and_last_hit(mini: Mini) -> None:
    assert mini.doc["rule_hits"] == {
        "web-to-api": {
            "conversations": 2,
            "days": {"2026-11-02": 1, "2026-11-03": 1},
            "last_hit": "2026-11-03T09:00:00Z",
        },
        "deny-rdp": {
            "conversations": 2,
            "days": {"2026-11-02": 2},
            "last_hit": "2026-11-02T10:06:00Z",
        },
    }


def test_since_limits_the_window_and_an_empty_window_names_the_newest_flow(mini: Mini) -> None:
    day2 = run_replay(mini.ws, ReplayQuery(policy_dir=mini.policy, since=D2))
    assert day2["verdicts"] == {"allowed": 1, "denied": 0, "not-allowed": 0}
    assert day2["window"]["since"] == D2.isoformat()
    with pytest.raises(EmptyWindowError) as info:
        run_replay(mini.ws, ReplayQuery(policy_dir=mini.policy, since=_secs(D2, 3600)))
    assert info.value.exit_code == 2
    assert "2026-11-03T09:00:00" in str(info.value)


def test_replaying_part_of_a_day_keeps_the_whole_days_recorded_hits(tmp_path: Path) -> None:
    """Replay of the active policy records rule hits per day in the workspace (a day recorded
    again replaces the old count, so the same window twice counts once). A later replay of
    part of a day must not shrink what a replay of the whole day recorded: the lake still
    holds both deny-rdp conversations of 2 November (at 10:02 and 10:06)."""
    from cellwall.services.policy import load_policy_dir
    from cellwall.state.rule_hits import RuleHits

    (tmp_path / "flows.log").write_text("\n".join(mini_flow_lines()) + "\n")
    (tmp_path / "inventory.yaml").write_text(MINI_INVENTORY)
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "policy.yaml").write_text(MINI_POLICY)
    ws = Workspace.resolve(tmp_path / "home")
    ingest_paths(ws, [tmp_path / "flows.log"], fmt="vpc")
    load_inventory(ws, [tmp_path / "inventory.yaml"])
    loaded = load_policy_dir(ws, [tmp_path / "policy"], today=D1.date(), activate=True)
    version = loaded["version"]
    whole = run_replay(ws, ReplayQuery())
    assert whole["policy"]["hits_recorded"] is True
    hits = RuleHits(ws.engine).summary(version)
    assert (hits["deny-rdp"].conversations, hits["web-to-api"].conversations) == (2, 2)
    part = run_replay(ws, ReplayQuery(since=_secs(D1, 200)))  # 10:03:20 on 2 November
    assert part["rule_hits"]["deny-rdp"]["days"] == {"2026-11-02": 1}
    hits = RuleHits(ws.engine).summary(version)
    assert hits["deny-rdp"].conversations == 2
    assert hits["deny-rdp"].last_hit == _secs(D1, 360)
    assert hits["web-to-api"].conversations == 2


# ---------------------------------------------------------------------------------------------
# Zeek: ICMP types, and an exporter that reports no action

ZEEK_COLUMNS = [
    ("ts", "time"),
    ("uid", "string"),
    ("id.orig_h", "addr"),
    ("id.orig_p", "port"),
    ("id.resp_h", "addr"),
    ("id.resp_p", "port"),
    ("proto", "enum"),
    ("duration", "interval"),
    ("orig_bytes", "count"),
    ("resp_bytes", "count"),
    ("history", "string"),
    ("orig_pkts", "count"),
    ("orig_ip_bytes", "count"),
    ("resp_pkts", "count"),
    ("resp_ip_bytes", "count"),
]
ZEEK_POLICY = """\
apiVersion: cellwall/v1
kind: Policy
metadata: {name: pings, owner: security}
spec:
  rules:
    - {id: web-pings-api, from: {role: web}, to: {role: api}, services: [icmp/8]}
    - {id: web-dns-api, from: {role: web}, to: {role: api}, services: [udp/53]}
"""


def zeek_conn_log() -> str:
    """A ping (echo request 8, answered by 0), a timestamp request (13 → 14) and a DNS query,
    web-1 → api-1 on 2 November."""
    t = int(D1.timestamp())
    rows = [
        [f"{t}.000000", "C1", WEB, "8", API, "0", "icmp", "1.0", "56", "56", "-"],
        [f"{t + 60}.000000", "C2", WEB, "13", API, "14", "icmp", "1.0", "56", "56", "-"],
        [f"{t + 120}.000000", "C3", WEB, "51000", API, "53", "udp", "0.1", "40", "80", "Dd"],
    ]
    head = ["#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)",
            "#unset_field\t-", "#path\tconn", "#open\t2026-11-02-00-00-00",
            "#fields\t" + "\t".join(f for f, _ in ZEEK_COLUMNS),
            "#types\t" + "\t".join(t for _, t in ZEEK_COLUMNS)]  # fmt: skip
    body = ["\t".join([*r, "1", "84", "1", "84"]) for r in rows]
    return "\n".join([*head, *body, "#close\t2026-11-02-23-59-59"]) + "\n"


def _zeek_workspace(root: Path, *, with_vpc: bool) -> tuple[Workspace, Path]:
    (root / "conn.log").write_text(zeek_conn_log())
    (root / "inventory.yaml").write_text(MINI_INVENTORY)
    policy = root / "policy"
    policy.mkdir()
    (policy / "policy.yaml").write_text(ZEEK_POLICY)
    ws = Workspace.resolve(root / "home")
    assert ingest_paths(ws, [root / "conn.log"], fmt="zeek").to_dict()["stored"] == 3
    if with_vpc:
        (root / "flows.log").write_text("\n".join(mini_flow_lines()) + "\n")
        assert ingest_paths(ws, [root / "flows.log"], fmt="vpc").to_dict()["stored"] == 16
    assert load_inventory(ws, [root / "inventory.yaml"])["errors"] == 0
    return ws, policy


def test_zeek_icmp_is_judged_by_the_type_the_client_sent(tmp_path: Path) -> None:
    ws, policy = _zeek_workspace(tmp_path, with_vpc=False)
    parquet = tmp_path / "out.parquet"
    doc = run_replay(ws, ReplayQuery(policy_dir=policy, parquet_out=parquet))
    assert doc["verdicts"] == {"allowed": 2, "denied": 0, "not-allowed": 1}
    got = {(r["service"], r["client_port"]): (r["verdict"], r["rule_id"]) for r in _rows(parquet)}
    assert got == {
        ("icmp", 8): ("allowed", "web-pings-api"),
        ("icmp", 13): ("not-allowed", None),
        ("udp/53", 51000): ("allowed", "web-dns-api"),
    }
    assert doc["escaped"] == 0  # Zeek observes; it accepts nothing


def test_a_lake_of_vpc_and_zeek_reports_zeek_as_exporter_unknown(tmp_path: Path) -> None:
    """Zeek records carry no action: their conversations are the exporter `unknown`
    (replay.py's own label), beside VPC's ACCEPT and REJECT, in one document."""
    ws, policy = _zeek_workspace(tmp_path, with_vpc=True)
    doc = run_replay(ws, ReplayQuery(policy_dir=policy))
    assert sum(doc["verdicts"].values()) == 8 + 3
    pairs = {(e["exporter"], e["verdict"]): e["conversations"] for e in doc["exporter_vs_policy"]}
    assert pairs[("unknown", "allowed")] == 2
    assert pairs[("unknown", "not-allowed")] == 1
    assert sum(n for (ex, _), n in pairs.items() if ex in ("ACCEPT", "REJECT")) == 8


# ---------------------------------------------------------------------------------------------
# A small demo estate

START = datetime(2026, 11, 2, tzinfo=UTC)
DEMO = DemoConfig(seed=11, start=START, days=2, flows=6000, fmt="vpc")


@dataclass
class Demo:
    ws: Workspace
    root: Path
    policy: Path
    truth: dict[str, Any]
    doc: dict[str, Any]
    parquet: Path
    ps: PolicySet
    workloads: list[Workload]
    reference: list[tuple[dict[str, Any], tuple[str, str | None, bool, bool]]]


def build_demo(root: Path) -> tuple[Workspace, Path, dict[str, Any]]:
    """Generate, ingest, load the inventory, write the demo policy: (ws, policy dir, truth)."""
    result = generate(root / "estate", DEMO)
    ws = Workspace.resolve(root / "home")
    ingest_paths(ws, result.flow_files, fmt="vpc")
    docs = result.documents
    loaded = load_inventory(
        ws, [docs["inventory"]], source="demo-inventory", conventions=docs["conventions"]
    )
    assert loaded["errors"] == 0
    load_inventory(ws, [docs["conventions"]], source="demo-conventions")
    policy = root / "policy"
    for name, text in demo_policy_yaml().items():
        (policy / name).parent.mkdir(parents=True, exist_ok=True)
        (policy / name).write_text(text)
    return ws, policy, json.loads(docs["truth"].read_text())


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    root = tmp_path_factory.mktemp("replay-demo")
    ws, policy, truth = build_demo(root)
    parquet = root / "conversations.parquet"
    doc = run_replay(ws, ReplayQuery(policy_dir=policy, parquet_out=parquet))
    ps = policy_for(ws, policy)
    workloads = workloads_for(ws, None)
    # the reference evaluator, one conversation at a time
    reference = []
    for row in window_conversations(ws, None, None).to_pyarrow().to_pylist():
        row.setdefault("icmp_code", None)
        reference.append((row, reference_judge(row, ps, workloads)))
    return Demo(ws, root, policy, truth, doc, parquet, ps, workloads, reference)


def test_demo_verdicts_equal_the_reference_and_the_truths_conversations(demo: Demo) -> None:
    doc = demo.doc
    # the generator wrote this many conversations (each a request and a reply record)
    assert sum(doc["verdicts"].values()) == demo.truth["counts"]["conversations"]
    expect = Counter(v for _, (v, _, _, _) in demo.reference)
    assert doc["verdicts"] == {v: expect[v] for v in ("allowed", "denied", "not-allowed")}
    assert doc["would_block"] == sum(1 for _, (_, _, _, b) in demo.reference if b)
    assert doc["unverified"] == 0
    assert min(doc["verdicts"].values()) > 0, "a demo that exercises every verdict"


def test_demo_rule_hits_per_day_and_last_hit_equal_the_reference(demo: Demo) -> None:
    days: Counter[tuple[str, str]] = Counter()
    last: dict[str, datetime] = {}
    for row, (_, rule, _, _) in demo.reference:
        if rule is None:
            continue
        days[rule, row["start"].date().isoformat()] += 1
        last[rule] = max(last.get(rule, row["start"]), row["start"])
    hits = demo.doc["rule_hits"]
    assert set(hits) == set(last)
    for rule, entry in hits.items():
        got = {(rule, d): n for d, n in entry["days"].items()}
        assert got == {k: n for k, n in days.items() if k[0] == rule}, rule
        assert entry["conversations"] == sum(got.values())
        assert entry["last_hit"] == last[rule].isoformat().replace("+00:00", "Z"), rule
    # a rule that fires every day of the estate
    assert set(hits["dns"]["days"]) == {date(2026, 11, 2).isoformat(), "2026-11-03"}


def test_demo_escaped_is_exporter_accept_without_allow(demo: Demo) -> None:
    escaped = sum(
        1
        for row, (verdict, _, _, _) in demo.reference
        if row["exporter_rejects"] == 0 and row["exporter_accepts"] > 0 and verdict != "allowed"
    )
    assert demo.doc["escaped"] == escaped > 0
    pairs = {
        (e["exporter"], e["verdict"]): e["conversations"] for e in demo.doc["exporter_vs_policy"]
    }
    assert sum(pairs.values()) == len(demo.reference)
    assert demo.doc["escaped"] == pairs.get(("ACCEPT", "denied"), 0) + pairs.get(
        ("ACCEPT", "not-allowed"), 0
    )


def _attacks(root: Path) -> list[dict[str, str]]:
    with (root / "estate" / "truth" / "attacks.csv").open() as f:
        return list(csv.DictReader(f))


def test_demo_top_would_be_blocked_holds_the_exfiltration(demo: Demo) -> None:
    (drop,) = [x for x in demo.truth["external"] if x["name"] == "exfil-drop"]
    assert not drop["in_policy"]
    exfil = [a for a in _attacks(demo.root) if a["attack_id"] == "exfil"]
    assert exfil and {(a["dst_ip"], a["dst_port"]) for a in exfil} == {(drop["ips"][0], "443")}
    foothold = demo.truth["attacks"]["foothold"]
    top = demo.doc["top_would_be_blocked"]["workload"]
    edge = {"client": foothold, "server": f"ip:{drop['ips'][0]}", "service": "tcp/443"}
    assert edge | {"conversations": len(exfil)} in top
    # the SSH brute force from the foothold to the databases is there too, at least as often
    lateral = Counter(a["dst_ip"] for a in _attacks(demo.root) if a["attack_id"] == "lateral")
    ssh = {(e["server"]): e["conversations"] for e in top if e["service"] == "tcp/22"}
    owners = {x["ip"]: w["name"] for w in demo.truth["workloads"] for x in w["addresses"]}
    for ip, n in lateral.items():
        if n > 5:
            assert ssh[owners[ip]] >= n


def test_demo_parquet_has_one_row_per_conversation_with_its_verdict(demo: Demo) -> None:
    t = pq.read_table(demo.parquet)
    assert t.num_rows == sum(demo.doc["verdicts"].values())
    assert len(set(t["conversation_id"].to_pylist())) == t.num_rows
    for name in ("verdict", "rule_id", "unverified", "blocked", "client_workload", "service"):
        assert name in t.column_names
    rows = {r["conversation_id"]: r for r in t.to_pylist()}
    for row, (verdict, rule, unverified, blocked) in demo.reference:
        got = rows[row["conversation_id"]]
        assert (got["verdict"], got["rule_id"], got["unverified"], got["blocked"]) == (
            verdict,
            rule,
            unverified,
            blocked,
        ), row["conversation_id"]
