"""The audit log records every change with its actor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cellwall.cli import app
from cellwall.state.audit import AuditLog, current_actor
from cellwall.workspace import Workspace
from tests.flowfiles import make_rows, write_csv

runner = CliRunner()


def test_actor_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELLWALL_USER", "alice")
    assert current_actor("bob") == "bob"
    assert current_actor() == "alice"
    monkeypatch.delenv("CELLWALL_USER")
    assert current_actor().startswith("os:")


def test_ingest_and_inventory_load_are_audited(tmp_path: Path, mapping: Path) -> None:
    home = tmp_path / "home"
    f = write_csv(tmp_path / "f.csv", make_rows(20))
    inv = tmp_path / "inv.csv"
    inv.write_text("name,addresses,owner,app\nweb-1,10.0.0.1,t,shop\n")
    args = ["--home", str(home)]
    res = runner.invoke(
        app,
        ["ingest", str(f), "--format", "csv", "-o", f"mapping={mapping}", *args, "--as", "carol"],
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["inventory", "load", str(inv), *args], env={"CELLWALL_USER": "dave"})
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["audit", *args, "--json"])
    rows = json.loads(res.stdout)
    assert [(r["actor"], r["action"]) for r in rows] == [
        ("dave", "inventory.load"),
        ("carol", "ingest"),
    ]
    assert rows[1]["details"]["stored"] == 20 and rows[1]["target"] == str(f)
    only = AuditLog(Workspace.resolve(home).engine).entries(action="ingest")
    assert len(only) == 1 and only[0].outcome == "ok"
