"""The cellwall command: JSON output, summaries and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cellwall.cli import app
from tests.flowfiles import make_rows, write_csv

runner = CliRunner()


def test_ingest_json_summary_and_query(tmp_path: Path, mapping: Path) -> None:
    home = tmp_path / "home"
    rows = make_rows(50)
    rows.append((1_762_000_000, "10.0.0.1", "not-an-ip", 1, 2, "tcp", 3))
    f = write_csv(tmp_path / "f.csv", rows)
    res = runner.invoke(
        app,
        [
            "ingest",
            str(f),
            "--format",
            "csv",
            "-o",
            f"mapping={mapping}",
            "--home",
            str(home),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert (doc["read"], doc["stored"], doc["quarantined"]) == (51, 50, {"bad-field": 1})
    res = runner.invoke(app, ["flows", "query", "--home", str(home), "--json", "--count"])
    assert res.exit_code == 0 and json.loads(res.stdout) == {"count": 50}


def test_exit_codes(tmp_path: Path, mapping: Path) -> None:
    home = tmp_path / "home"
    res = runner.invoke(
        app,
        [
            "ingest",
            str(tmp_path / "missing.csv"),
            "--format",
            "csv",
            "-o",
            f"mapping={mapping}",
            "--home",
            str(home),
            "--json",
        ],
    )
    assert res.exit_code == 2
    assert json.loads(res.stdout)["failed_files"] == 1
    res = runner.invoke(app, ["ingest", "x", "--format", "nosuch", "--home", str(home)])
    assert res.exit_code == 2 and "unknown flow format" in res.stderr
    res = runner.invoke(app, ["flows", "query", "--home", str(home), "--since", "yesterday"])
    assert res.exit_code == 2 and "--since" in res.stderr
    res = runner.invoke(app, ["flows", "query", "--home", str(home)])
    assert res.exit_code == 2 and "empty" in res.stderr
