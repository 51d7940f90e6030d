from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from cellwall.demo import DemoConfig, DemoResult, generate

# Monday 2 November 2026; nine days hold a Sunday and one day of every nine-day cycle.
START = datetime(2026, 11, 2, tzinfo=UTC)
VPC = DemoConfig(seed=11, start=START, days=2, flows=20_000, fmt="vpc")
ZEEK = DemoConfig(seed=11, start=START, days=9, flows=25_000, fmt="zeek", gzip=True)


@pytest.fixture(scope="session")
def vpc_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoResult]:
    out = tmp_path_factory.mktemp("vpc")
    return out, generate(out, VPC)


@pytest.fixture(scope="session")
def zeek_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoResult]:
    out = tmp_path_factory.mktemp("zeek")
    return out, generate(out, ZEEK)
