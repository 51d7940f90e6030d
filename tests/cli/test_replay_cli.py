"""`cellwall replay`, `cellwall explain` and `cellwall policy diff` on a small demo workspace:
output, the CONTRACTS.md JSON shape, windows, exit codes."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cellwall.cli import app
from cellwall.demo import DemoConfig, generate
from cellwall.demo.policy_docs import demo_policy_yaml
from cellwall.services.ingest import ingest_paths
from cellwall.services.inventory import load_inventory
from cellwall.workspace import Workspace

runner = CliRunner()
START = datetime(2026, 11, 2, tzinfo=UTC)
DEMO = DemoConfig(seed=11, start=START, days=2, flows=6000, fmt="vpc")
AT = "2026-11-03T12:00:00Z"  # inside the estate's two days


@dataclass
class Demo:
    root: Path
    home: Path
    policy: Path
    truth: dict[str, Any]
    newest: datetime
    doc: dict[str, Any]  # `replay --policy P --json` over the whole lake


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    root = tmp_path_factory.mktemp("replay-cli")
    result = generate(root / "estate", DEMO)
    ws = Workspace.resolve(root / "home")
    ingest_paths(ws, result.flow_files, fmt="vpc")
    docs = result.documents
    load_inventory(
        ws, [docs["inventory"]], source="demo-inventory", conventions=docs["conventions"]
    )
    load_inventory(ws, [docs["conventions"]], source="demo-conventions")
    policy = root / "policy"
    for name, text in demo_policy_yaml().items():
        (policy / name).parent.mkdir(parents=True, exist_ok=True)
        (policy / name).write_text(text)
    lake = ds.dataset(str(ws.lake / "flows"), format="parquet", partitioning="hive")
    newest = pc.max(lake.to_table(columns=["start"])["start"]).as_py()
    truth = json.loads(docs["truth"].read_text())
    r = runner.invoke(app, ["replay", "--policy", str(policy), "--json", "--home", str(ws.home)])
    assert r.exit_code == 0, r.output
    return Demo(root, root / "home", policy, truth, newest, json.loads(r.stdout))


def cw(demo: Demo, *args: str) -> Any:
    return runner.invoke(app, [*args, "--home", str(demo.home)])


def replay_json(demo: Demo, *args: str) -> dict[str, Any]:
    r = cw(demo, "replay", "--policy", str(demo.policy), "--json", *args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)  # one document, nothing else on stdout


def test_replay_json_has_the_contract_shape(demo: Demo) -> None:
    doc = demo.doc
    verdicts = doc["verdicts"]
    assert list(verdicts) == ["allowed", "denied", "not-allowed"]
    assert all(isinstance(n, int) and n > 0 for n in verdicts.values())
    assert sum(verdicts.values()) == demo.truth["counts"]["conversations"]
    for key in ("would_block", "escaped", "unverified", "rule_hits", "exporter_vs_policy"):
        assert key in doc
    assert set(doc["top_would_be_blocked"]) == {"workload", "label"}
    assert len(doc["top_would_be_blocked"]["workload"]) == 20  # --top defaults to 20
    assert doc["window"] == {"since": None, "until": None}
    assert len(replay_json(demo, "--top", "3")["top_would_be_blocked"]["workload"]) == 3


def test_replay_text_output(demo: Demo) -> None:
    doc = demo.doc
    r = cw(demo, "replay", "--policy", str(demo.policy))
    assert r.exit_code == 0, r.output
    total = sum(doc["verdicts"].values())
    assert f"{total} conversations judged" in r.stdout
    assert f"not-allowed (would be blocked)   {doc['verdicts']['not-allowed']}" in r.stdout
    assert f"escaped (exporter accepted)      {doc['escaped']}" in r.stdout
    top = doc["top_would_be_blocked"]["workload"][0]
    assert f"{top['client']} → {top['server']} {top['service']}" in r.stdout


def test_replay_since_an_empty_window_exits_2_naming_the_newest_flow(demo: Demo) -> None:
    r = cw(demo, "replay", "--policy", str(demo.policy), "--since", "2027-01-01T00:00:00Z")
    assert r.exit_code == 2
    assert r.stdout == ""
    assert "no flows in that window" in r.stderr
    assert demo.newest.isoformat() in r.stderr.replace("\n", "")
    r = cw(demo, "replay", "--policy", str(demo.policy), "--json", "--since", "2027-01-01")
    assert r.exit_code == 2 and r.stdout == ""


def test_replay_since_a_relative_span(demo: Demo) -> None:
    day = replay_json(demo, "--since", "1d", "--now", "2026-11-04T00:00:00Z")
    assert 0 < sum(day["verdicts"].values()) < sum(demo.doc["verdicts"].values())
    assert day["window"]["since"].startswith("2026-11-03T00:00:00")
    for rule, entry in day["rule_hits"].items():
        assert set(entry["days"]) == {"2026-11-03"}, rule


def test_replay_parquet_writes_one_row_per_conversation(demo: Demo, tmp_path: Path) -> None:
    out = tmp_path / "judged.parquet"
    doc = replay_json(demo, "--parquet", str(out))
    assert doc["parquet"] == str(out)
    t = pq.read_table(out)
    assert t.num_rows == sum(doc["verdicts"].values())
    counts = {v["values"]: v["counts"] for v in t["verdict"].value_counts().to_pylist()}
    assert counts == {k: n for k, n in doc["verdicts"].items() if n}
    ruled = t.filter(pc.is_valid(t["rule_id"]))
    assert ruled.num_rows == counts["allowed"] + counts["denied"]


def test_replay_uses_the_active_policy_without_policy(demo: Demo, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(demo.home, home)
    other = Demo(demo.root, home, demo.policy, demo.truth, demo.newest, demo.doc)
    r = cw(other, "replay", "--json")
    assert r.exit_code == 2 and "no policy is active" in r.stderr
    r = cw(other, "policy", "load", str(demo.policy), "--activate", "--now", AT)
    assert r.exit_code == 0, r.output
    r = cw(other, "replay", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["policy"]["source"] == "active"
    assert doc["verdicts"] == demo.doc["verdicts"]


def explain(demo: Demo, *args: str) -> Any:
    return cw(demo, "explain", *args, "--policy", str(demo.policy), "--at", AT)


def test_explain_text(demo: Demo) -> None:
    r = explain(demo, "pay-api-1", "pay-db-1", "tcp/5432")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].startswith("workload:pay-api-1 (") and " on tcp/5432 at 2026-11-03" in lines[0]
    assert lines[1] == "verdict: allowed by pay-api-to-db"
    assert lines[2] == "  1. pay-api-to-db [payments, allow] decides: from, to and service match"
    r = explain(demo, "app=payments,role=web,env=dev", "pay-db-1", "tcp/445")
    assert r.exit_code == 0, r.output
    assert "verdict: denied by dev-never-prod; enforcement would block it" in r.stdout
    assert "  1. dev-never-prod [global, override-deny] decides" in r.stdout
    assert "  2. deny-smb [global, deny] does not decide" in r.stdout
    assert "dev-never-prod comes first" in r.stdout


def test_explain_json(demo: Demo) -> None:
    foothold = demo.truth["attacks"]["foothold"]
    r = explain(demo, foothold, "pay-db-1", "tcp/22", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert (doc["verdict"], doc["rule"], doc["blocked"], doc["matches"]) == (
        "not-allowed",
        None,
        True,
        [],
    )
    (attacker,) = [x for x in demo.truth["external"] if x["name"] == "attacker"]
    r = explain(demo, attacker["ips"][0], foothold, "tcp/443", "--json")
    doc = json.loads(r.stdout)
    assert doc["client"] == attacker["ips"][0]
    assert (doc["verdict"], doc["rule"]) == ("allowed", "ord-web-from-internet")
    assert [m["decides"] for m in doc["matches"]] == [True]


def test_explain_bad_input_exits_2(demo: Demo) -> None:
    r = explain(demo, "no-such-host", "pay-db-1", "tcp/5432")
    assert r.exit_code == 2 and "is not an IP address, a workload or labels" in r.stderr
    r = explain(demo, "pay-api-1", "pay-db-1", "udp/70000")
    assert r.exit_code == 2 and "above 65535" in r.stderr
    r = cw(demo, "explain", "pay-api-1", "pay-db-1", "tcp/5432", "--at", "yesterday-ish")
    assert r.exit_code == 2 and "--at" in r.stderr


def _edited_policy(demo: Demo, dest: Path, edits: Sequence[tuple[str, str, str]]) -> Path:
    shutil.copytree(demo.policy, dest)
    for name, old, new in edits:
        text = (dest / name).read_text()
        assert old in text
        (dest / name).write_text(text.replace(old, new))
    return dest


TINY_INVENTORY = "---\n".join(
    "apiVersion: cellwall/v1\nkind: Workload\n"
    f"metadata: {{name: {name}}}\n"
    f"spec: {{addresses: [{ip}], labels: {{app: shop, role: {role}}}}}\n"
    for name, ip, role in [
        ("web-1", "10.9.0.1", "web"),
        ("api-1", "10.9.0.2", "api"),
        ("cache-1", "10.9.0.5", "cache"),
    ]
)
TINY_POLICY = """\
apiVersion: cellwall/v1
kind: Policy
metadata: {{name: shop, owner: team-shop}}
spec:
  scope: {{app: shop}}
  rules:
    - {{id: web-to-api, from: {{role: web}}, to: {{role: api}}, services: [{api}]}}
{cache}"""
CACHE_RULE = (
    "    - {id: web-to-cache, from: {role: web}, to: {role: cache}, services: [tcp/6379]}\n"
)


def test_policy_diff_prints_the_semantic_part(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (tmp_path / "inventory.yaml").write_text(TINY_INVENTORY)
    r = runner.invoke(
        app, ["inventory", "load", str(tmp_path / "inventory.yaml"), "--home", str(home)]
    )
    assert r.exit_code == 0, r.output
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "p.yaml").write_text(TINY_POLICY.format(api="tcp/8443", cache=CACHE_RULE))
    (b / "p.yaml").write_text(TINY_POLICY.format(api="tcp/8443-8450", cache=""))
    r = runner.invoke(app, ["policy", "diff", str(a), str(b), "--home", str(home)])
    assert r.exit_code == 0, r.output
    written, semantic = r.stdout.split(f"what changes for traffic from {a} to {b}:\n")
    assert "- web-to-cache" in written and "services: tcp/8443 -> tcp/8443-8450" in written
    lines = semantic.splitlines()
    assert lines[0].startswith("2 class-level change(s) over ")
    assert lines[1:] == [
        "  app=shop,role=web → app=shop,role=api tcp/8444-8450: not-allowed → allowed",
        "  app=shop,role=web → app=shop,role=cache tcp/6379: allowed → not-allowed",
    ]
    r = runner.invoke(app, ["policy", "diff", str(a), str(b), "--home", str(home), "--json"])
    sem = json.loads(r.stdout)["semantic"]
    assert (sem["became_allowed"], sem["became_blocked"]) == (1, 1)
    r = runner.invoke(app, ["policy", "diff", str(a), str(b), "--home", str(home), "--no-semantic"])
    assert r.exit_code == 0 and "what changes for traffic" not in r.stdout


DNS_RULE = (
    "global.yaml",
    "    - id: dns\n      from: {any: true}\n      to: {app: infra, role: dns}\n"
    "      services: [udp/53, tcp/53]\n      same: [env]\n",
    "",
)


def test_policy_diff_reports_observed_conversations_that_change(demo: Demo, tmp_path: Path) -> None:
    """Issue 5, item 7: the semantic diff also gives the observed flows whose verdict changes.
    Removing the `dns` rule changes the verdict of every DNS conversation in the lake."""
    dns_hits = demo.doc["rule_hits"]["dns"]["conversations"]
    b = _edited_policy(demo, tmp_path / "b", [DNS_RULE])
    r = cw(demo, "policy", "diff", str(demo.policy), str(b), "--json")
    assert r.exit_code == 0, r.output
    sem = json.loads(r.stdout)["semantic"]
    assert sem["class_changes"]
    observed = {(o["before"], o["after"]): o["conversations"] for o in sem["observed_changes"]}
    assert dns_hits > 0
    assert observed == {("allowed", "not-allowed"): dns_hits}
