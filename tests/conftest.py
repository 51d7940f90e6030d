"""Shared fixtures: a fresh workspace and a column mapping for the generic CSV format."""

from __future__ import annotations

from collections.abc import Iterator
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


@pytest.fixture
def lab_lock() -> Iterator[None]:
    """One lab at a time across pytest-xdist workers: `lab clean` removes every lab
    namespace, so a lab running in another worker would lose its namespaces."""
    import tempfile

    from filelock import FileLock

    with FileLock(Path(tempfile.gettempdir()) / "cellwall-lab-tests.lock"):
        yield
