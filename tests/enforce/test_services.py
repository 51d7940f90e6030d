"""The enforcement use cases through the command line, and the demo's step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cellwall.cli import app
from cellwall.services.enforce import demo_enforce
from cellwall.state.audit import AuditLog
from cellwall.workspace import Workspace
from tests.enforce.estate import POLICY, WORKLOADS

runner = CliRunner()


def _workspace(tmp_path: Path) -> Workspace:
    home = tmp_path / "home"
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "estate.yaml").write_text(POLICY)
    rows = ["name,addresses,owner,app,role"]
    rows += [
        f"{w.name},{' '.join(w.ips())},,{w.labels.get('app')},{w.labels.get('role')}"
        for w in WORKLOADS
    ]
    (tmp_path / "inventory.csv").write_text("\n".join(rows) + "\n")
    for args in (
        ["inventory", "load", str(tmp_path / "inventory.csv")],
        ["policy", "load", str(tmp_path / "policy"), "--activate"],
    ):
        r = runner.invoke(app, [*args, "--home", str(home)])
        assert r.exit_code == 0, r.output
    return Workspace.resolve(home)


def test_bundle_commands_sign_verify_and_exit_1_on_rejection(tmp_path: Path) -> None:
    keys, bundle = tmp_path / "keys", tmp_path / "bundle"
    assert runner.invoke(app, ["bundle", "keygen", "--out", str(keys)]).exit_code == 0
    bundle.mkdir()
    (bundle / "web-1.nft").write_text("table inet cellwall {}\n")
    sign = ["bundle", "sign", str(bundle), "--key", str(keys / "bundle.key"), "--serial", "4"]
    bare = ["--home", str(tmp_path / "bare")]
    r = runner.invoke(app, [*sign, *bare])
    assert r.exit_code == 2 and "management tier" in r.output  # no policy: refused
    r = runner.invoke(app, [*sign, "--valid", "2h", "--json", "--no-management", *bare])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["hosts"] == 1 and json.loads(r.stdout)["management"] is False
    verify = ["bundle", "verify", str(bundle), "--key", str(keys / "bundle.pub")]
    assert runner.invoke(app, verify).exit_code == 0
    (bundle / "web-1.nft").write_text("flush ruleset\n")
    r = runner.invoke(app, verify)
    assert r.exit_code == 1 and "tampered" in r.output


@pytest.mark.usefixtures("lab_lock")
def test_demo_enforce_signs_verifies_and_runs_a_lab_sample(tmp_path: Path) -> None:
    doc = demo_enforce(_workspace(tmp_path), tmp_path / "out", lab_sample=2)
    assert doc["verified"] is True and doc["hosts"] == len(WORKLOADS)
    assert doc["lab"]["disagreements"] == [] and doc["lab"]["classes"] == 2
    manifest = json.loads((tmp_path / "out" / "bundle" / "manifest.json").read_text())
    assert manifest["management"]["control_services"] == ["tcp/7443"]


def test_bundle_sign_takes_the_management_tier_from_the_active_policy(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    keys, bundle = tmp_path / "keys", tmp_path / "bundle"
    assert runner.invoke(app, ["bundle", "keygen", "--out", str(keys)]).exit_code == 0
    bundle.mkdir()
    (bundle / "web-1.nft").write_text("table inet cellwall {}\n")
    sign = ["bundle", "sign", str(bundle), "--key", str(keys / "bundle.key"), "--serial", "1"]
    r = runner.invoke(app, [*sign, "--home", str(ws.home), "--json"])
    assert r.exit_code == 0, r.output
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["management"]["control_services"] == ["tcp/7443"]
    assert manifest["management"]["admin_networks"]
    (signed,) = AuditLog(ws.engine).entries(action="bundle.sign")
    assert signed.details["serial"] == 1 and signed.target == str(bundle)
