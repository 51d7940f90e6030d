"""The inventory and demo commands: output, JSON and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cellwall.cli import app

runner = CliRunner()

WORKLOADS = """\
apiVersion: cellwall/v1
kind: Workload
metadata: {name: pay-db-1, owner: team-payments}
spec:
  addresses:
    - 10.1.3.3
    - {ip: 10.1.9.7, from: 2026-11-01T00:00:00Z, until: 2026-11-03T12:00:00Z}
  labels: {app: payments, role: db, env: production, loc: eu-west-1, data: pci}
---
apiVersion: cellwall/v1
kind: Workload
metadata: {name: pay-api-1, owner: team-payments}
spec:
  addresses: [10.1.9.7]
  labels: {app: payments, role: api, env: prod}
"""
CONVENTION = """\
apiVersion: cellwall/v1
kind: LabelConvention
spec:
  required: [app, role, env]
  values: {env: [prod, staging, dev]}
"""


def test_load_check_list_who(tmp_path: Path) -> None:
    home = ["--home", str(tmp_path / "home")]
    inv = tmp_path / "inv.yaml"
    inv.write_text(WORKLOADS)
    conv = tmp_path / "conv.yaml"
    conv.write_text(CONVENTION)
    res = runner.invoke(app, ["inventory", "load", str(inv), str(conv), *home, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["workloads_total"] == 2
    res = runner.invoke(app, ["inventory", "check", *home, "--json"])
    assert res.exit_code == 1
    findings = json.loads(res.stdout)["findings"]
    assert [(f["code"], f["file"]) for f in findings] == [("convention-value", str(inv))]
    assert "production" in findings[0]["message"] and findings[0]["line"] == 1
    res = runner.invoke(app, ["inventory", "list", *home, "-l", "role=api", "--json"])
    assert [w["name"] for w in json.loads(res.stdout)] == ["pay-api-1"]
    # IP reuse: 10.1.9.7 belongs to pay-db-1 inside its lease and to pay-api-1 otherwise.
    res = runner.invoke(
        app, ["inventory", "who", "10.1.9.7", "--at", "2026-11-02T00:00:00Z", *home, "--json"]
    )
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    # Overlapping claims: the lease that started last wins (docs/inventory.md).
    assert rows[0]["workload"] == "pay-db-1"
    res_after = runner.invoke(
        app,
        [
            "inventory",
            "who",
            "10.1.9.7",
            "8.8.8.8",
            "--at",
            "2026-11-04T00:00:00Z",
            *home,
            "--json",
        ],
    )
    after = json.loads(res_after.stdout)
    assert after[0]["workload"] == "pay-api-1"
    assert after[1] == {**after[1], "workload": None, "class": "internet"}


def test_reloading_a_source_replaces_only_it(tmp_path: Path) -> None:
    home = ["--home", str(tmp_path / "home")]
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text(
        "name,addresses,owner,app,role,env\nweb-1,10.0.0.1,t,shop,web,prod\n"
        "web-2,10.0.0.2,t,shop,web,prod\n"
    )
    b.write_text("name,addresses,owner,app,role,env\ndb-1,10.0.1.1,t,shop,db,prod\n")
    assert runner.invoke(app, ["inventory", "load", str(a), str(b), *home]).exit_code == 0
    a.write_text("name,addresses,owner,app,role,env\nweb-3,10.0.0.3,t,shop,web,prod\n")
    assert runner.invoke(app, ["inventory", "load", str(a), *home]).exit_code == 0
    res = runner.invoke(app, ["inventory", "list", *home, "--json"])
    assert sorted(w["name"] for w in json.loads(res.stdout)) == ["db-1", "web-3"]


def test_bad_inventory_keeps_the_good_and_exits_2(tmp_path: Path) -> None:
    home = ["--home", str(tmp_path / "home")]
    f = tmp_path / "inv.csv"
    f.write_text("name,addresses,owner,app\nok-1,10.0.0.1,t,shop\nbad-1,10.0.0.999,t,shop\n")
    res = runner.invoke(app, ["inventory", "load", str(f), *home, "--json"])
    assert res.exit_code == 2
    doc = json.loads(res.stdout)
    assert doc["errors"] >= 1 and doc["workloads_total"] == 1
    bad = next(d for d in doc["diagnostics"] if d["severity"] == "error")
    assert bad["file"] == str(f) and bad["line"] == 3


def test_demo_generate_json(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "demo",
            "generate",
            "--out",
            str(tmp_path / "e"),
            "--flows",
            "3000",
            "--days",
            "1",
            "--format",
            "zeek",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["records"] > 0 and doc["workloads"] >= 6 * 3
    assert Path(doc["documents"]["truth"]).exists()
    res = runner.invoke(app, ["demo", "generate", "--out", str(tmp_path / "e"), "--days", "0"])
    assert res.exit_code == 2 and "days" in res.stderr
