from __future__ import annotations

from pathlib import Path

import pytest

from tests.recommend.quality import Estate, build


@pytest.fixture(scope="session")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Estate:
    """A 37-day demo estate (seed 5, the development seed), ingested and loaded."""
    return build(Path(tmp_path_factory.mktemp("estate")), seed=5)
