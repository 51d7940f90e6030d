"""The analyses on the real demo estate: the demo's analysis stage, and each `cellwall
analyze` command against its workspace (text, --json, and the exit codes)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cellwall.cli import app
from cellwall.services.demo import demo_config, run_demo

runner = CliRunner()
FAILING = """\
apiVersion: cellwall/v1
kind: Invariant
metadata: {name: audit}
spec:
  - {id: api-never-cde, forbid: {from: {app: payments, role: api}, to: {data: pci}}}
  - {id: only-payments-to-cde, only: {from: {app: payments}, to: {data: pci},
     services: [tcp/5432]}}
  - {id: no-internet-path-to-cde,
     forbid_path: {from: {iplist: internet}, to: {data: pci}, max_hops: 3}}
"""


@dataclass
class Run:
    out: Path
    home: str
    summary: dict[str, Any]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("demo-analysis") / "out"
    config = demo_config(
        seed=11, days=2, flows=6000, fmt="vpc", start=datetime(2026, 11, 2, tzinfo=UTC)
    )
    summary = run_demo(out, config)
    return Run(out, summary["workspace"], summary)


def _cli(run: Run, *args: str) -> Any:
    return runner.invoke(app, ["analyze", *args, "--home", run.home])


def test_the_demo_stage_proves_the_demo_invariants_and_shrinks_the_blast_radius(run: Run) -> None:
    a = run.summary["analysis"]
    assert a["invariants"] == 4 and a["failed"] == []
    assert a["blast"]["active"] < a["blast"]["observed"] <= a["blast"]["flat"] == 171
    assert a["sentence"].startswith("a compromised pay-web-1 reaches 171 workloads on a flat")
    for name in ("invariants.json", "blast-radius.json", "lint.json"):
        assert json.loads((Path(a["dir"]) / name).read_text())
    saved = json.loads((run.out / "summary.json").read_text())
    assert saved["analysis"] == a


def test_a_failing_invariant_exits_1_with_counterexamples(run: Run, tmp_path: Path) -> None:
    file = tmp_path / "audit.yaml"
    file.write_text(FAILING)
    res = _cli(run, "invariants", "--invariants", str(file), "--json")
    assert res.exit_code == 1, res.output
    doc = json.loads(res.output)
    by_id = {r["id"]: r for r in doc["results"]}
    hop = by_id["api-never-cde"]["counterexample"]["hops"][0]
    assert hop["client"].startswith("pay-api") and hop["server"].startswith("pay-db")
    assert (hop["service"], hop["verdict"], hop["rule"]) == ("tcp/5432", "allowed", "pay-api-to-db")
    assert by_id["api-never-cde"]["evidence"]["status"] in ("contradicted", "consistent")
    path = by_id["no-internet-path-to-cde"]["counterexample"]["hops"]
    assert 2 <= len(path) <= 3 and path[-1]["server"].startswith("pay-db")
    text = _cli(run, "invariants", "--invariants", str(file))
    assert text.exit_code == 1 and "FAIL api-never-cde" in text.output
    own = _cli(run, "invariants", "--no-evidence")
    assert own.exit_code == 0 and "4 hold, 0 fail" in own.output


def test_reach_matrix_blast_exposure_and_lint(run: Run) -> None:
    res = _cli(run, "reach", "pay-web-1", "app=payments,role=api", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["reachable"] and doc["example"]["rule"] == "pay-web-to-api"
    assert doc["pairs"][0]["services"] == ["tcp/8443"]
    res = _cli(run, "reach", "iplist:internet", "{data: pci}", "--json")
    assert json.loads(res.output)["reachable"] is False
    res = _cli(run, "matrix", "--json")
    matrix = json.loads(res.output)
    assert matrix["edges"] and matrix["workload_pairs"] > 0
    res = _cli(run, "blast-radius", "pay-web-1", "--hops", "2", "--json")
    blast = {s["scenario"]: s["reached"] for s in json.loads(res.output)["scenarios"]}
    assert blast["active"] < blast["flat"]
    res = _cli(run, "exposure", "--top", "3", "--json")
    rows = json.loads(res.output)["rows"]
    assert len(rows) == 3 and rows[0]["score"] >= rows[-1]["score"]
    res = _cli(run, "lint")
    assert res.exit_code == 0 and "matches-nothing" in res.output
    assert _cli(run, "lint", "--fail-on", "error").exit_code == 1
    bad = _cli(run, "reach", "nothing-here", "any")
    assert bad.exit_code == 2
