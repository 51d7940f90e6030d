"""The demo's policy stage (`run_demo` → `demo_policy_stage`): the policy loads and is active,
the replay it writes is the replay of the lake, the ground truth's intended dependencies are
never denied, and the explanations it writes agree with the replay."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from cellwall.services.demo import demo_config, run_demo
from cellwall.services.policy import active_policy
from cellwall.services.replay import ReplayQuery, run_replay
from cellwall.workspace import Workspace


@dataclass
class Run:
    out: Path
    summary: dict[str, Any]
    ws: Workspace
    truth: dict[str, Any]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("demo-policy") / "out"
    config = demo_config(
        seed=11, days=2, flows=6000, fmt="vpc", start=datetime(2026, 11, 2, tzinfo=UTC)
    )
    summary = run_demo(out, config)
    truth = json.loads(Path(summary["truth"]).read_text())
    return Run(out, summary, Workspace.resolve(summary["workspace"]), truth)


def test_the_stage_loads_and_activates_the_demo_policy(run: Run) -> None:
    stage = run.summary["policy"]
    assert (stage["version"], stage["errors"], stage["warnings"]) == (1, 0, 0)
    assert Path(stage["policy"]) == run.out / "policy"
    assert (run.out / "policy" / "global.yaml").exists()
    ps = active_policy(run.ws)
    assert ps is not None and "global" in {p.name for p in ps.policies}
    saved = json.loads((run.out / "summary.json").read_text())
    assert saved["policy"] == stage


def test_the_stage_replay_is_the_replay_of_the_lake(run: Run) -> None:
    stage = run.summary["policy"]
    written = json.loads(Path(stage["replay"]).read_text())
    assert sum(written["verdicts"].values()) == run.truth["counts"]["conversations"]
    assert stage["verdicts"] == written["verdicts"]
    assert (stage["would_block"], stage["escaped"]) == (written["would_block"], written["escaped"])
    again = run_replay(run.ws, ReplayQuery())  # the active policy, the whole lake
    assert "parquet" not in again and written.pop("parquet") == stage["parquet"]
    assert json.loads(json.dumps(again, default=str)) == written
    assert again["policy"]["source"] == "active"
    assert pq.read_table(stage["parquet"]).num_rows == sum(written["verdicts"].values())


def _end(e: dict[str, Any]) -> str:
    return e.get("workload") or "iplist:" + e["iplist"]


def test_intended_dependencies_are_never_denied(run: Run) -> None:
    """Every conversation of a ground-truth edge is allowed, except where the inventory
    mislabels one of its ends (the demo plants mislabels); none is ever denied."""
    truth = run.truth
    external = {ip: x["name"] for x in truth["external"] for ip in x["ips"]}
    mislabelled = {m["workload"] for m in truth["mislabels"]}
    intended = {(_end(e["client"]), _end(e["server"]), e["service"]) for e in truth["edges"]}
    seen: Counter[str] = Counter()
    for r in pq.read_table(run.summary["policy"]["parquet"]).to_pylist():
        client = r["client_workload"] or "iplist:" + external.get(r["client_ip"], "?")
        server = r["server_workload"] or "iplist:" + external.get(r["server_ip"], "?")
        if (client, server, r["service"]) not in intended:
            continue
        seen[r["verdict"]] += 1
        assert r["verdict"] != "denied", (client, server, r["service"], r["rule_id"])
        if r["verdict"] != "allowed":
            assert {client, server} & mislabelled, (client, server, r["service"])
    edge_conversations = sum(e["conversations"] for e in truth["edges"])
    assert sum(seen.values()) >= edge_conversations  # attacks that ride an edge come on top
    assert seen["allowed"] > 0.95 * sum(seen.values())


def test_attacks_are_not_allowed_where_they_leave_the_intended_edges(run: Run) -> None:
    """The exfiltration to a drop that no policy names, and the SSH brute force from the
    foothold, are would-be-blocked in the written replay."""
    written = json.loads(Path(run.summary["policy"]["replay"]).read_text())
    top = written["top_would_be_blocked"]["workload"]
    foothold = run.truth["attacks"]["foothold"]
    (drop,) = [x for x in run.truth["external"] if x["name"] == "exfil-drop"]
    assert top[0] == {
        "client": foothold,
        "server": f"ip:{drop['ips'][0]}",
        "service": "tcp/443",
        "conversations": next(
            s["conversations"] for s in run.truth["attacks"]["stages"] if s["id"] == "exfil"
        ),
    }
    assert any(e["client"] == foothold and e["service"] == "tcp/22" for e in top)


def _explanations(run: Run) -> list[str]:
    text = (run.out / "replay" / "explain.txt").read_text().strip()
    return [block for block in text.split("\n\n") if block.strip()]


def test_the_blocked_explanation_agrees_with_the_replay(run: Run) -> None:
    written = json.loads(Path(run.summary["policy"]["replay"]).read_text())
    top = written["top_would_be_blocked"]["workload"][0]
    first = _explanations(run)[0].splitlines()
    client = top["client"].removeprefix("ip:")
    server = top["server"].removeprefix("ip:")
    assert client in first[0] and server in first[0] and f" on {top['service']} " in first[0]
    assert first[1].startswith("verdict: not-allowed") or first[1].startswith("verdict: denied")
    assert first[1].endswith("enforcement would block it")


def test_the_stage_explains_a_blocked_and_an_allowed_conversation(run: Run) -> None:
    """services/demo_policy.py: "explain one blocked and one allowed conversation"."""
    verdicts = [
        next(line for line in block.splitlines() if line.startswith("verdict: "))
        for block in _explanations(run)
    ]
    assert len(verdicts) == 2, verdicts
    assert any(v.startswith("verdict: allowed by ") for v in verdicts), verdicts
    assert any(v.endswith("enforcement would block it") for v in verdicts), verdicts
