"""`cellwall map` end to end: the service over a demo workspace, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cellwall.cli import app
from cellwall.errors import EmptyWindowError
from cellwall.services.map import MapQuery, build_dependency_map
from cellwall.workspace import Workspace
from tests.discover.conftest import demo_vpc  # noqa: F401  (session fixture)

runner = CliRunner()


def test_window_outside_the_flows(demo_vpc: Path) -> None:  # noqa: F811
    from datetime import UTC, datetime

    import pytest

    ws = Workspace.resolve(demo_vpc / "home")
    with pytest.raises(EmptyWindowError):
        build_dependency_map(ws, MapQuery(since=datetime(2030, 1, 1, tzinfo=UTC)))


def test_cli_json_and_time_filter(demo_vpc: Path) -> None:  # noqa: F811
    home = str(demo_vpc / "home")
    lists = str(demo_vpc / "estate/truth/policy-app.yaml")
    full = runner.invoke(app, ["map", "--home", home, "--iplists", lists])
    assert full.exit_code == 0, full.output
    doc = json.loads(full.stdout)
    assert doc["group_by"] == "role" and doc["totals"]["edges"] > 50
    day = runner.invoke(
        app, ["map", "--home", home, "--since", "2026-11-03T00:00Z", "--until", "2026-11-04T00:00Z"]
    )
    assert day.exit_code == 0, day.output
    one = json.loads(day.stdout)
    assert 0 < one["totals"]["conversations"] < doc["totals"]["conversations"]
    assert all(e["days"] == 1 for e in one["edges"])


def test_cli_png_and_bad_options(demo_vpc: Path, tmp_path: Path) -> None:  # noqa: F811
    home = str(demo_vpc / "home")
    png = tmp_path / "map.png"
    done = runner.invoke(
        app,
        [
            "map",
            "--home",
            home,
            "--group-by",
            "app",
            "--label",
            "env=dev",
            "--format",
            "png",
            "--out",
            str(png),
        ],
    )
    assert done.exit_code == 0, done.output
    assert png.read_bytes().startswith(b"\x89PNG")
    bad = runner.invoke(app, ["map", "--home", home, "--format", "pdf"])
    assert bad.exit_code != 0 and "pdf" in bad.output
    bad = runner.invoke(app, ["map", "--home", home, "--label", "app"])
    assert bad.exit_code != 0 and "KEY=VALUE" in bad.output


def test_cli_hygiene(demo_vpc: Path) -> None:  # noqa: F811
    lists = str(demo_vpc / "estate/truth/policy-app.yaml")
    done = runner.invoke(
        app, ["map", "--home", str(demo_vpc / "home"), "--iplists", lists, "--hygiene"]
    )
    assert done.exit_code == 0, done.output
    findings = json.loads(done.stdout)["findings"]
    assert findings and all(f["evidence"] for f in findings)
