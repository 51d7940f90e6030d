"""`cellwall dbproxy`: running the proxy as a command, and reviewing what it learned."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from cellwall.cli import app
from cellwall.state.audit import AuditLog
from cellwall.workspace import Workspace
from tests.dbfw.pgserver import free_port, start_postgres

runner = CliRunner()


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    for args in (
        ["--upstream", "127.0.0.1:5432"],
        ["--listen", "nohost", "--upstream", "127.0.0.1:5432"],
        ["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:5432", "--mode", "block"],
        ["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:5432", "--require-tls"],
        ["review", "approve", "7"],
    ):
        res = runner.invoke(
            app,
            ["dbproxy", *args, "--home", home]
            if args[0] != "review"
            else ["dbproxy", "--home", home, *args],
        )
        assert res.exit_code == 2, (args, res.output)


@pytest.mark.real
def test_learn_review_and_enforce_through_the_command(tmp_path: Path) -> None:
    pg = start_postgres()
    home = tmp_path / "home"
    port = free_port()

    def serve(mode: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cellwall.cli",
                "dbproxy",
                "--listen",
                f"127.0.0.1:{port}",
                "--upstream",
                f"127.0.0.1:{pg.port}",
                "--mode",
                mode,
                "--home",
                str(home),
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None and "listening" in proc.stderr.readline()
        return proc

    def stop(proc: subprocess.Popen[str]) -> dict[str, int]:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        return dict(json.loads(out))

    try:
        proc = serve("learn")
        with psycopg.connect(pg.dsn(port, user="shop")) as c:
            c.execute("SELECT name FROM users WHERE id = 1")
            c.execute("SELECT email FROM users WHERE id = 2")
        assert stop(proc)["queries"] == 4  # two BEGINs (psycopg's transactions), two SELECTs
        listed = runner.invoke(app, ["dbproxy", "review", "list", "--home", str(home), "--json"])
        rows = json.loads(listed.stdout)["fingerprints"]
        assert listed.exit_code == 0 and len(rows) == 2
        assert all(r["status"] == "learned" and r["count"] == 1 for r in rows)
        email = next(r for r in rows if "email" in r["sample"])
        res = runner.invoke(
            app,
            [
                "dbproxy",
                "review",
                "reject",
                str(email["id"]),
                "--home",
                str(home),
                "--as",
                "alice",
                "--note",
                "not ours",
                "--json",
            ],
        )
        assert res.exit_code == 0 and json.loads(res.stdout)["fingerprints"][0]["status"] == (
            "rejected"
        )
        proc = serve("enforce")
        with psycopg.connect(pg.dsn(port, user="shop")) as c:
            assert c.execute("SELECT name FROM users WHERE id = 9").fetchone() == ("user9",)
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="rejected"):
                c.execute("SELECT email FROM users WHERE id = 9")
        assert stop(proc)["blocked"] == 1
        alerts = (home / "dbproxy" / "alerts.jsonl").read_text().splitlines()
        assert json.loads(alerts[-1])["cellwall"]["reasons"][0]["id"] == "rejected-fingerprint"
        audit = AuditLog(Workspace.resolve(home).engine).entries(action="dbproxy.reject")
        assert audit[0].actor == "alice" and audit[0].details["note"] == "not ours"
    finally:
        pg.stop()
