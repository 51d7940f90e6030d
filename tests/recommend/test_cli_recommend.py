"""`cellwall recommend` and `cellwall review` on the demo estate, end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from cellwall.cli import app
from tests.recommend.quality import Estate

runner = CliRunner()
LEARN = "2026-11-02T00:00:00Z..2026-12-02T00:00:00Z"
NOW = ["--now", "2026-12-09T00:00:00Z"]
NEVER_HIT = """\
apiVersion: cellwall/v1
kind: Policy
metadata: {name: zz-extra, owner: security}
spec:
  rules:
    - id: never-hit
      from: {app: orders, role: web}
      to: {app: orders, role: db}
      services: [tcp/1]
"""


def cw(estate: Estate, *args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, [*args, "--home", str(estate.ws.home)], env={"CELLWALL_USER": "sec"})
    return r.exit_code, r.stdout, r.stderr


def test_recommend_writes_policy_yaml_with_evidence(estate: Estate, tmp_path: Path) -> None:
    out = tmp_path / "rec"
    code, stdout, _ = cw(estate, "recommend", "--window", LEARN, "--out", str(out), "--json")
    assert code == 0, stdout
    doc = json.loads(stdout)
    assert doc["rules"] > 20 and doc["coverage"] > 0.95 and "fan-out-scan" in doc["excluded"]
    assert (out / "shared-services.yaml").exists() and (out / "report.json").exists()
    code, stdout, _ = cw(estate, "policy", "check", str(out), "--json")
    assert code == 0 and json.loads(stdout)["errors"] == 0
    again = tmp_path / "again"
    cw(estate, "recommend", "--window", LEARN, "--out", str(again))
    for p in out.glob("*.yaml"):
        assert p.read_text() == (again / p.name).read_text()


def test_recommend_to_stdout_and_empty_windows(estate: Estate) -> None:
    code, stdout, _ = cw(estate, "recommend", "--window", LEARN, "--granularity", "app")
    assert code == 0 and stdout.count("kind: Policy") >= 5
    code, _, stderr = cw(estate, "recommend", "--window", "1d", "--now", "2030-01-01T00:00:00Z")
    assert code == 2 and "newest flow" in stderr
    code, _, stderr = cw(estate, "recommend", "--granularity", "host")
    assert code == 2


def test_short_windows_warn_about_weekly_jobs(estate: Estate) -> None:
    code, stdout, _ = cw(estate, "recommend", "--window", "5d", "--now", "2026-12-02T00:00:00Z",
                         "--json")  # fmt: skip
    assert code == 0
    warnings = json.loads(stdout)["warnings"]
    assert any("every 7 days" in w for w in warnings), warnings


def test_compare_two_windows(estate: Estate) -> None:
    code, stdout, _ = cw(estate, "recommend", "--compare", "2026-11-02..2026-11-09",
                         "2026-11-09..2026-12-02", "--json")  # fmt: skip
    assert code == 0
    doc = json.loads(stdout)
    assert doc["rules"]["a"] > 0 and doc["rules"]["b"] >= doc["rules"]["a"] - 5
    assert "only_in_a" in doc and "services_changed" in doc


def test_incremental_adds_tightens_and_removes(estate: Estate, tmp_path: Path) -> None:
    base = tmp_path / "base"
    cw(estate, "recommend", "--window", LEARN, "--out", str(base))
    active = tmp_path / "active"
    shutil.copytree(base, active)
    (active / "app-reporting.yaml").unlink()
    (active / "report.json").unlink()
    pay = (active / "app-payments.yaml").read_text()
    (active / "app-payments.yaml").write_text(pay.replace("services: [tcp/8443]",
                                                          "services: [tcp]", 1))  # fmt: skip
    (active / "zz-extra.yaml").write_text(NEVER_HIT)
    code, stdout, _ = cw(estate, "policy", "load", str(active), "--activate")
    assert code == 0, stdout
    code, stdout, _ = cw(estate, "recommend", "--incremental", "--window", LEARN,
                         "--idle-days", "30", *NOW, "--json")  # fmt: skip
    assert code == 0, stdout
    doc = json.loads(stdout)
    assert doc["uncovered"] > 0 and doc["rules"] > 0
    assert any(t["services"] == ["tcp"] and t["proposed"] == ["tcp/8443"] for t in doc["tighten"])
    assert {"policy": "zz-extra", "rule": "never-hit", "last_hit": None,
            "reason": "never hit"} in doc["remove"]  # fmt: skip


def test_review_cli_submits_approves_and_exports(estate: Estate, tmp_path: Path) -> None:
    out = tmp_path / "rec"
    cw(estate, "recommend", "--window", LEARN, "--out", str(out))
    bindings = tmp_path / "bind"
    bindings.mkdir()
    (bindings / "b.yaml").write_text(
        "apiVersion: cellwall/v1\nkind: RoleBinding\nmetadata: {name: sec}\n"
        "spec: {role: security-architect, subjects: [sec]}\n"
    )
    assert cw(estate, "review", "import", str(bindings))[0] == 0
    code, stdout, _ = cw(estate, "review", "import", str(out), "--json")
    assert code == 0 and json.loads(stdout)["added"] > 20
    code, stdout, _ = cw(estate, "review", "list", "--json", "--state", "draft")
    rows = json.loads(stdout)
    assert rows and all(r["evidence"]["conversations"] > 0 for r in rows)
    first = rows[0]["rule"]
    assert cw(estate, "review", "submit", first)[0] == 0
    code, stdout, _ = cw(estate, "review", "approve", first, "--note", "ok", "--json")
    assert code == 0 and json.loads(stdout)[0]["state"] == "approved"
    code, _, stderr = cw(estate, "review", "approve", first)
    assert code == 2 and "needs proposed" in stderr
    export = tmp_path / "export"
    assert cw(estate, "review", "export", str(export))[0] == 0
    assert '"state": "approved"' in "".join(p.read_text() for p in export.glob("*.yaml"))
