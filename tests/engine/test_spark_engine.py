"""`cellwall map --engine spark` runs the Ibis expressions on PySpark (local mode) and draws
the same map as the default engine, DuckDB, on the demo estate."""

from __future__ import annotations

import json
from pathlib import Path

# `make test` installs the spark extra and a JRE: a missing one fails here, never skips.
import pyspark  # noqa: F401
import pytest
from typer.testing import CliRunner

from cellwall.cli import app
from tests.discover.conftest import demo_vpc  # noqa: F401  (session fixture)

# PySpark and ibis's Spark backend warn from their own code; those are theirs to fix.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def test_spark_draws_the_same_map_as_duckdb(demo_vpc: Path) -> None:  # noqa: F811
    args = ["map", "--home", str(demo_vpc / "home"), "--group-by", "role",
            "--since", "2026-11-03T00:00Z", "--until", "2026-11-04T00:00Z",
            "--iplists", str(demo_vpc / "estate/truth/policy-app.yaml")]  # fmt: skip
    duck = CliRunner().invoke(app, args)
    assert duck.exit_code == 0, duck.output
    spark = CliRunner().invoke(app, [*args, "--engine", "spark"])
    assert spark.exit_code == 0, spark.output
    assert json.loads(spark.stdout) == json.loads(duck.stdout)
    assert json.loads(duck.stdout)["totals"]["edges"] > 50


def test_an_unknown_engine_is_bad_usage(demo_vpc: Path) -> None:  # noqa: F811
    done = CliRunner().invoke(app, ["map", "--home", str(demo_vpc / "home"), "--engine", "x"])
    assert done.exit_code == 2 and "spark" in done.output
