"""Regenerate the golden files: ``python -m tests.targets.regen`` (review the diff)."""

from __future__ import annotations

import shutil
from pathlib import Path

from cellwall.services.compile import compile_policy, write_artefacts
from cellwall.targets.base import target_names
from tests.targets.common import AT, GOLDEN, fixture_estate


def regenerate(root: Path = GOLDEN) -> list[Path]:
    ps, workloads = fixture_estate()
    written: list[Path] = []
    for name in target_names():
        arts = compile_policy(ps, workloads, name, at=AT, today=AT.date())
        dest = root / name
        if dest.exists():
            shutil.rmtree(dest)
        written += write_artefacts(arts, dest)
    return written


if __name__ == "__main__":
    for p in regenerate():
        print(p)
