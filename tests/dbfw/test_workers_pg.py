"""``cellwall dbproxy --workers 2`` against a real PostgreSQL: two processes share the
port, both serve, they learn into one allow-list, enforce it, and stop together."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.dbfw.pgserver import PgServer, free_port

pytestmark = pytest.mark.real


def _proxy(home: Path, pg: PgServer, port: int, mode: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "cellwall.cli", "dbproxy", "--listen", f"127.0.0.1:{port}"]
    cmd += ["--upstream", f"127.0.0.1:{pg.port}", "--mode", mode, "--workers", "2"]
    cmd += ["--home", str(home), "--no-inventory", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "listening" in line and "in 2 processes" in line, line + proc.stderr.read()
    return proc


def _stop(proc: subprocess.Popen[str]) -> dict[str, Any]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


def test_two_workers_share_the_port_learn_together_and_enforce(
    pg: PgServer, tmp_path: Path
) -> None:
    home, port = tmp_path / "home", free_port()
    dsn = f"host=127.0.0.1 port={port} user=postgres dbname=shop"
    proc = _proxy(home, pg, port, "learn")
    for i in range(40):  # 40 connections: the kernel spreads them over both workers
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT name FROM users WHERE id = %s", (i,)).fetchall()
    stats = _stop(proc)
    assert stats["workers"] == 2 and stats["sessions"] == 40 and stats["blocked"] == 0
    assert (
        len(stats["sessions_by_worker"]) == 2 and min(stats["sessions_by_worker"]) > 0
    )  # both served (all 40 on one: 2**-39)
    proc = _proxy(home, pg, port, "enforce")
    try:
        for i in range(20):
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SELECT name FROM users WHERE id = %s", (1000 + i,)).fetchall()
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="cellwall"):
                    conn.execute("SELECT name FROM users WHERE id = 1 OR 1=1")
    finally:
        stats = _stop(proc)
    assert stats["sessions"] == 20 and stats["blocked"] == 20 and stats["alerts"] >= 20
    alerts = (home / "dbproxy" / "alerts.jsonl").read_text().splitlines()
    assert len(alerts) == stats["alerts"] and all(json.loads(a) for a in alerts)


def test_workers_need_a_fixed_port(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "cellwall.cli", "dbproxy", "--listen", "127.0.0.1:0"]
    cmd += ["--upstream", "127.0.0.1:5432", "--workers", "2", "--home", str(tmp_path / "h")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert done.returncode == 2 and "fixed --listen port" in done.stderr
