"""Roles scope the commands that change enforcement: once someone is bound, only a
security architect or an admin activates a policy, and refusals are audited."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cellwall.cli import app
from cellwall.review import PermissionDeniedError
from cellwall.services.policy import activate_policy, load_policy_dir
from cellwall.state.audit import AuditLog
from cellwall.workspace import Workspace

runner = CliRunner()

POLICY = """\
apiVersion: cellwall/v1
kind: Policy
metadata: {{name: shop, owner: team-shop}}
spec:
  rules:
    - id: web-to-api
      from: {{role: web}}
      to: {{role: api}}
      services: [tcp/{port}]
---
apiVersion: cellwall/v1
kind: RoleBinding
metadata: {{name: architects}}
spec: {{role: security-architect, subjects: [sam]}}
---
apiVersion: cellwall/v1
kind: RoleBinding
metadata: {{name: shop-owners}}
spec: {{role: app-owner, subjects: [alice], apps: [shop]}}
---
apiVersion: cellwall/v1
kind: RoleBinding
metadata: {{name: auditors}}
spec: {{role: auditor, subjects: [audrey]}}
"""


def _dir(tmp_path: Path, port: int) -> Path:
    d = tmp_path / f"policy-{port}"
    d.mkdir()
    (d / "shop.yaml").write_text(POLICY.format(port=port))
    return d


@pytest.fixture
def bound(tmp_path: Path) -> Workspace:
    ws = Workspace.resolve(tmp_path / "home")
    # Nobody is bound yet: setting up the workspace is allowed to anyone.
    doc = load_policy_dir(ws, [_dir(tmp_path, 443)], today=None, actor="anyone", activate=True)
    assert doc["activated"] and doc["version"] == 1
    return ws


def test_an_app_owner_stores_a_version_but_may_not_activate_it(
    bound: Workspace, tmp_path: Path
) -> None:
    new = _dir(tmp_path, 8443)
    doc = load_policy_dir(bound, [new], today=None, actor="alice")
    assert doc["version"] == 2 and not doc["activated"]
    with pytest.raises(PermissionDeniedError, match=r"alice .*may not policy\.activate"):
        activate_policy(bound, 2, actor="alice")
    with pytest.raises(PermissionDeniedError):
        load_policy_dir(bound, [new], today=None, actor="alice", activate=True)
    denied = AuditLog(bound.engine).entries(action="policy.activate")
    assert [(e.actor, e.outcome) for e in denied][:2] == [("alice", "denied")] * 2
    assert activate_policy(bound, 2, actor="sam")["active"] is True


def test_auditors_and_strangers_change_nothing(bound: Workspace, tmp_path: Path) -> None:
    new = _dir(tmp_path, 9443)
    for who in ("audrey", "mallory"):
        with pytest.raises(PermissionDeniedError):
            load_policy_dir(bound, [new], today=None, actor=who)
    assert [e.outcome for e in AuditLog(bound.engine).entries(action="policy.load")][:2] == [
        "denied",
        "denied",
    ]


def test_the_cli_refuses_with_exit_2_and_names_the_role(bound: Workspace) -> None:
    home = ["--home", str(bound.home)]
    r = runner.invoke(app, ["policy", "activate", "1", *home], env={"CELLWALL_USER": "alice"})
    assert r.exit_code == 2 and "security-architect" in r.output
    r = runner.invoke(app, ["policy", "activate", "1", "--as", "sam", *home])
    assert r.exit_code == 0, r.output


def test_only_stewards_reload_the_inventory(bound: Workspace, tmp_path: Path) -> None:
    from cellwall.services.inventory import load_inventory

    inv = tmp_path / "inventory.csv"
    inv.write_text("name,addresses,owner,app,role\nweb-1,10.0.0.1,t,shop,web\n")
    with pytest.raises(PermissionDeniedError, match="alice"):
        load_inventory(bound, [inv], actor="alice")
    assert load_inventory(bound, [inv], actor="sam")["workloads_total"] == 1
    outcomes = [
        (e.actor, e.outcome) for e in AuditLog(bound.engine).entries(action="inventory.load")
    ]
    assert outcomes == [("sam", "ok"), ("alice", "denied")]


def test_only_stewards_review_what_the_database_firewall_learned(bound: Workspace) -> None:
    from cellwall.errors import UsageError
    from cellwall.services.dbfw import review_fingerprints

    with pytest.raises(PermissionDeniedError, match="alice"):
        review_fingerprints(bound, [1], "approved", actor="alice")
    with pytest.raises(UsageError, match="no learned fingerprint with id 999"):
        review_fingerprints(bound, [999], "approved", actor="sam")  # allowed, then not found
    denied = AuditLog(bound.engine).entries(action="dbfw.review")
    assert [(e.actor, e.outcome) for e in denied] == [("alice", "denied")]
