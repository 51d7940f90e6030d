"""The audit log records every change with its actor, in a hash chain that shows tampering."""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cellwall.cli import app
from cellwall.state.audit import AuditLog, current_actor, entry_digest
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


# The hash chain.


def _log(tmp_path: Path) -> AuditLog:
    log = AuditLog(Workspace.resolve(tmp_path / "home").engine)
    for i in range(1, 6):
        log.record(f"user-{i}", "policy.load", f"v{i}", "ok", {"n": i})
    return log


def _sql(log: AuditLog, statement: str) -> None:
    with log.engine.begin() as conn:
        conn.execute(sa.text(statement))


def _problems(log: AuditLog, anchors: list[tuple[int, str]] | None = None) -> list[tuple[int, str]]:
    return [(b.id, b.problem) for b in log.verify(anchors or []).breaks]


def test_an_untouched_chain_verifies_and_its_head_is_the_newest_digest(tmp_path: Path) -> None:
    log = _log(tmp_path)
    found = log.verify()
    assert found.ok and found.entries == 5
    newest = log.entries(limit=1)[0]
    assert log.head() == (5, newest.digest) == (found.head_seq, found.head_digest)
    assert len({e.digest for e in log.entries()}) == 5


def test_an_edited_entry_is_found(tmp_path: Path) -> None:
    log = _log(tmp_path)
    _sql(log, "UPDATE audit_log SET actor = 'mallory' WHERE id = 3")
    assert _problems(log) == [(3, "altered")]


def test_an_edit_with_a_recomputed_digest_breaks_the_next_link(tmp_path: Path) -> None:
    log = _log(tmp_path)
    row = log.entries(limit=5)[2]  # id 3
    prev = log.entries(limit=5)[3].digest  # id 2
    forged = entry_digest(3, prev or "", row.at, "mallory", row.action, row.target, "ok", "{}")
    _sql(log, f"UPDATE audit_log SET actor='mallory', details='{{}}', digest='{forged}' WHERE id=3")
    assert _problems(log) == [(4, "relinked")]


def test_removed_and_inserted_entries_are_found(tmp_path: Path) -> None:
    log = _log(tmp_path)
    _sql(log, "DELETE FROM audit_log WHERE id = 2")
    assert _problems(log) == [(3, "missing")]
    log = _log(tmp_path / "b")
    _sql(log, "DELETE FROM audit_log WHERE id = 5")
    assert _problems(log) == [(4, "truncated")]
    log = _log(tmp_path / "c")
    _sql(
        log,
        "INSERT INTO audit_log (id, at, actor, action, target, outcome, details) "
        "VALUES (6, '2026-11-24 00:00:00.000000', 'x', 'policy.load', 'v9', 'ok', '{}')",
    )
    assert (6, "unsealed") in _problems(log)


def test_an_anchor_catches_a_cut_tail_with_a_rewritten_head(tmp_path: Path) -> None:
    log = _log(tmp_path)
    anchor = log.head()
    entry4 = log.entries(limit=2)[1].digest
    _sql(log, "DELETE FROM audit_log WHERE id = 5")
    _sql(log, f"UPDATE audit_head SET seq = 4, digest = '{entry4}'")
    assert _problems(log) == []  # consistent without an anchor...
    assert _problems(log, [anchor]) == [(5, "anchor")]  # ...but not with one
    assert _problems(log, [(4, entry4 or "")]) == []


def _append(home: str, who: str, n: int) -> None:
    log = AuditLog(Workspace.resolve(Path(home)).engine)
    for i in range(n):
        log.record(who, "review.approve", f"rule-{i}")


def test_concurrent_writers_in_processes_chain_one_after_the_other(tmp_path: Path) -> None:
    home = tmp_path / "home"
    AuditLog(Workspace.resolve(home).engine)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(3, mp_context=ctx) as pool:
        jobs = [pool.submit(_append, str(home), f"p{k}", 40) for k in range(3)]
        for j in jobs:
            j.result()
    found = AuditLog(Workspace.resolve(home).engine).verify()
    assert found.ok, found.breaks
    assert found.entries == found.head_seq == 120


def test_an_older_log_is_sealed_when_first_opened(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE audit_log (id INTEGER PRIMARY KEY AUTOINCREMENT, at DATETIME NOT "
                "NULL, actor VARCHAR NOT NULL, action VARCHAR NOT NULL, target VARCHAR NOT "
                "NULL, outcome VARCHAR NOT NULL, details TEXT NOT NULL)"
            )
        )
        for i in range(3):
            conn.execute(
                sa.text(
                    "INSERT INTO audit_log (at, actor, action, target, outcome, details) "
                    f"VALUES ('2026-11-0{i + 1} 10:00:00.000000', 'old', 'ingest', 'f{i}', "
                    "'ok', '{}')"
                )
            )
    log = AuditLog(engine)
    log.record("new", "policy.load", "v1")
    found = log.verify()
    assert found.ok and found.entries == 4 and log.head()[0] == 4
    assert [e.actor for e in log.entries()] == ["new", "old", "old", "old"]


def test_cli_verify_head_and_tamper(tmp_path: Path) -> None:
    log = _log(tmp_path)
    args = ["--home", str(tmp_path / "home")]
    head = json.loads(runner.invoke(app, ["audit", "head", *args, "--json"]).stdout)
    assert head["seq"] == 5 and head["anchor"] == f"5:{log.head()[1]}"
    ok = runner.invoke(app, ["audit", "verify", *args, "--anchor", head["anchor"]])
    assert ok.exit_code == 0 and "intact: 5 entries" in ok.stdout and "1 anchor(s)" in ok.stdout
    listed = json.loads(runner.invoke(app, ["audit", "list", *args, "--json"]).stdout)
    assert [r["id"] for r in listed] == [5, 4, 3, 2, 1]
    _sql(log, "UPDATE audit_log SET outcome = 'denied' WHERE id = 2")
    bad = runner.invoke(app, ["audit", "verify", *args, "--json"])
    assert bad.exit_code == 1
    assert [(b["id"], b["problem"]) for b in json.loads(bad.stdout)["breaks"]] == [(2, "altered")]
    wrong = runner.invoke(app, ["audit", "verify", *args, "--anchor", "5:nothex"])
    assert wrong.exit_code == 2 and "SEQ:DIGEST" in wrong.output


def test_a_deleted_head_stops_recording_with_a_clear_error(tmp_path: Path) -> None:
    from cellwall.errors import WorkspaceError

    log = _log(tmp_path)
    _sql(log, "DELETE FROM audit_head")
    with pytest.raises(WorkspaceError, match="head row is missing"):
        log.record("x", "policy.load", "v9")
    assert [e.id for e in log.entries()] == [5, 4, 3, 2, 1]  # nothing half-written
    # A fresh process must not re-seal the chain (that would hide the tampering).
    again = AuditLog(sa.create_engine(f"sqlite:///{tmp_path / 'home' / 'state.db'}"))
    assert [(b.id, b.problem) for b in again.verify().breaks] == [(5, "truncated")]
    with pytest.raises(WorkspaceError):
        again.record("x", "policy.load", "v9")
