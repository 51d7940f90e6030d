"""`cellwall policy ...`: output, JSON, exit codes, the acting person and the audit log."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from cellwall.cli import app

runner = CliRunner()
CONTRACTS = Path(__file__).parents[1] / "policy" / "fixtures" / "contracts"
INVENTORY = """\
apiVersion: cellwall/v1
kind: LabelConvention
spec: {required: [app, role, env], values: {env: [prod, staging, dev]}}
---
apiVersion: cellwall/v1
kind: Workload
metadata: {name: pay-web-1}
spec: {addresses: [10.1.0.1], labels: {app: payments, role: web, env: prod}}
---
apiVersion: cellwall/v1
kind: Workload
metadata: {name: pay-api-1}
spec: {addresses: [10.1.0.2], labels: {app: payments, role: api, env: prod}}
---
apiVersion: cellwall/v1
kind: Workload
metadata: {name: pay-db-1}
spec: {addresses: [10.1.0.3], labels: {app: payments, role: db, env: prod, data: pci}}
"""


def cw(home: Path, *args: str, user: str | None = None) -> tuple[int, str]:
    env = {"CELLWALL_USER": user} if user else {}
    r = runner.invoke(app, [*args, "--home", str(home)], env=env)
    return r.exit_code, r.stdout


def with_inventory(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    inv = tmp_path / "inventory.yaml"
    inv.write_text(INVENTORY)
    assert cw(home, "inventory", "load", str(inv))[0] == 0
    return home


def copy_contracts(tmp_path: Path, name: str = "policy") -> Path:
    target = tmp_path / name
    shutil.copytree(CONTRACTS, target)
    return target


def test_check_prints_each_finding_and_exits_2_on_errors(tmp_path: Path) -> None:
    home = with_inventory(tmp_path)
    pol = copy_contracts(tmp_path)
    code, out = cw(home, "policy", "check", str(pol))
    assert code == 0
    assert f"{pol}/policy.yaml:28:13: warning selector-no-match: `from` of rule" in out
    assert out.rstrip().endswith("0 errors, 5 warnings")
    text = (
        (pol / "policy.yaml").read_text().replace("services: [tcp/8443]", "services: [tcp/84430]")
    )
    (pol / "policy.yaml").write_text(text)
    code, out = cw(home, "policy", "check", str(pol))
    assert code == 2
    assert (
        f"{pol}/policy.yaml:22:18: error bad-port: port 84430 is above 65535 "
        "(hint: write tcp/443 or tcp/8000-8999; ports are 0-65535)"
    ) in out
    code, out = cw(home, "policy", "check", str(pol), "--json")
    doc = json.loads(out)
    assert code == 2 and doc["errors"] == 1 and doc["policies"] == 1
    (bad,) = [d for d in doc["diagnostics"] if d["severity"] == "error"]
    assert bad | {"message": ""} == {
        "file": f"{pol}/policy.yaml",
        "line": 22,
        "col": 18,
        "code": "bad-port",
        "message": "",
        "hint": "write tcp/443 or tcp/8000-8999; ports are 0-65535",
        "severity": "error",
    }
    assert cw(home, "policy", "list")[1].rstrip().endswith("0 versions")


def test_review_dates_are_judged_against_now(tmp_path: Path) -> None:
    pol = copy_contracts(tmp_path)
    code, out = cw(tmp_path / "home", "policy", "check", str(pol), "--now", "2027-05-02T00:00:00Z")
    assert code == 0
    assert f"{pol}/policy.yaml:18:18: warning review-overdue" in out
    code, out = cw(tmp_path / "home", "policy", "check", str(pol), "--now", "2027-05-01T00:00:00Z")
    assert "review-overdue" not in out


def test_load_activate_list_show(tmp_path: Path) -> None:
    home = with_inventory(tmp_path)
    pol = copy_contracts(tmp_path)
    code, out = cw(home, "policy", "load", str(pol), "--as", "alice")
    assert code == 0 and out.rstrip().endswith("new version 1")
    code, out = cw(home, "policy", "load", str(pol), "--activate", user="bob")
    assert code == 0 and out.rstrip().endswith("unchanged: same as version 1 (active)")
    code, out = cw(home, "policy", "list", "--json")
    (v1,) = json.loads(out)
    assert (v1["version"], v1["actor"], v1["active"], v1["rules"]) == (1, "alice", True, 7)
    code, out = cw(home, "policy", "show")
    assert code == 0
    assert "version 1 (active): loaded" in out and "by alice" in out
    assert (
        "payments/reporting-reads-db: allow {app=reporting, role=etl} (from outside scope) -> "
        "{role=db} on tcp/5432"
    ) in out
    code, out = cw(home, "policy", "show", "v1", "--files")
    assert out == (
        "# --- invariants.yaml\n"
        + (pol / "invariants.yaml").read_text()
        + "# --- policy.yaml\n"
        + (pol / "policy.yaml").read_text()
    )
    code, out = cw(home, "audit", "--json")
    assert [(e["actor"], e["action"], e["outcome"]) for e in json.loads(out)][:3] == [
        ("bob", "policy.activate", "ok"),
        ("bob", "policy.load", "unchanged"),
        ("alice", "policy.load", "ok"),
    ]


def test_a_load_with_errors_stores_nothing(tmp_path: Path) -> None:
    home = with_inventory(tmp_path)
    pol = copy_contracts(tmp_path)
    text = (pol / "policy.yaml").read_text().replace("env: prod}", "env: prd}", 1)
    (pol / "policy.yaml").write_text(text)
    code, out = cw(home, "policy", "load", str(pol), "--activate", "--json")
    doc = json.loads(out)
    assert code == 2
    assert (doc["version"], doc["activated"], doc["errors"]) == (None, False, 1)
    (d,) = [d for d in doc["diagnostics"] if d["severity"] == "error"]
    assert (d["line"], d["col"], d["code"], d["hint"]) == (
        10,
        31,
        "unknown-label-value",
        "did you mean `prod`?",
    )
    assert json.loads(cw(home, "policy", "list", "--json")[1]) == []
    audit = json.loads(cw(home, "audit", "--json", "--action", "policy.load")[1])
    assert audit[0]["outcome"] == "rejected"


def test_activate_and_show_need_a_version(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for args in (("policy", "activate"), ("policy", "show"), ("policy", "activate", "3")):
        code, _ = cw(home, *args)
        assert code == 2
    r = runner.invoke(app, ["policy", "activate", "three", "--home", str(home)])
    assert r.exit_code == 2 and "'three' is not a policy version" in r.stderr


def test_diff_between_versions_and_directories(tmp_path: Path) -> None:
    home = with_inventory(tmp_path)
    old = copy_contracts(tmp_path, "old")
    new = copy_contracts(tmp_path, "new")
    text = (new / "policy.yaml").read_text()
    text = text.replace("services: [tcp/8443]", "services: [tcp/8444]")
    text = text.replace("    - id: api-to-db\n", "    - id: api-to-database\n")
    (new / "policy.yaml").write_text(text)
    assert cw(home, "policy", "load", str(old))[0] == 0
    assert cw(home, "policy", "load", str(new), "--activate")[0] == 0
    code, out = cw(home, "policy", "diff", "1", "active", "--no-semantic")
    assert code == 0
    assert out.startswith("written differences from v1 to v2:\n")
    assert "rules: 1 added, 1 removed, 1 changed" in out
    assert "  + api-to-database: policy=payments;" in out
    assert "  - api-to-db: policy=payments;" in out
    assert "  ~ web-to-api\n      services: tcp/8443 -> tcp/8444" in out
    assert "  ~ payments\n      rules: web-from-internet, web-to-api, api-to-db," in out
    code, out = cw(home, "policy", "diff", str(old), "v2", "--json")
    doc = json.loads(out)
    assert code == 0 and (doc["a"], doc["b"]) == (str(old), "v2")
    assert doc["written"]["rules"]["changed"] == [
        {"name": "web-to-api", "changes": {"services": {"before": "tcp/8443", "after": "tcp/8444"}}}
    ]
    changes = doc["semantic"]["class_changes"]
    assert any(
        c["service"] == "tcp/8444" and (c["before"], c["after"]) == ("not-allowed", "allowed")
        for c in changes
    ), changes
    code, out = cw(home, "policy", "diff", "1", "1", "--no-semantic")
    assert out.rstrip().endswith("no written differences")


def test_diff_refuses_what_is_neither_a_directory_nor_a_version(tmp_path: Path) -> None:
    r = runner.invoke(app, ["policy", "diff", "nope", "1", "--home", str(tmp_path / "h")])
    assert r.exit_code == 2 and "neither a policy directory nor a version" in r.stderr
