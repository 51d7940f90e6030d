"""Shared fixtures: a fresh workspace and a column mapping for the generic CSV format."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellwall.workspace import Workspace
from tests.flowfiles import MAPPING


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.resolve(tmp_path / "home")


@pytest.fixture
def mapping(tmp_path: Path) -> Path:
    p = tmp_path / "mapping.yaml"
    p.write_text(MAPPING)
    return p
