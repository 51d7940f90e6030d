"""Golden files: every target's output for the fixture estate, byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellwall.targets.base import target_names
from tests.targets.common import GOLDEN
from tests.targets.regen import regenerate


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("golden")
    regenerate(root)
    return root


@pytest.mark.parametrize("target", target_names())
def test_golden(fresh: Path, target: str) -> None:
    want = {
        p.relative_to(GOLDEN / target): p.read_text()
        for p in (GOLDEN / target).rglob("*")
        if p.is_file()
    }
    got = {
        p.relative_to(fresh / target): p.read_text()
        for p in (fresh / target).rglob("*")
        if p.is_file()
    }
    assert sorted(got) == sorted(want), "run `python -m tests.targets.regen` and review"
    for name, text in got.items():
        assert text == want[name], f"{target}/{name} differs: run `python -m tests.targets.regen`"
