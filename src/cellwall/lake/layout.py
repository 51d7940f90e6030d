"""Where things live inside the lake directory."""

from __future__ import annotations

from pathlib import Path

__all__ = ["LakeLayout"]


class LakeLayout:
    """``flows/day=YYYY-MM-DD/*.parquet``, ``dns/day=YYYY-MM-DD/*.parquet`` (DNS evidence),
    ``quarantine/*.jsonl`` and ``_staging/<txn>/``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.flows = root / "flows"
        self.dns = root / "dns"
        self.quarantine = root / "quarantine"
        self.staging = root / "_staging"

    def flows_glob(self) -> str:
        return str(self.flows / "day=*" / "*.parquet")

    def day_dir(self, day: str) -> Path:
        return self.flows / f"day={day}"

    def dns_day_dir(self, day: str) -> Path:
        return self.dns / f"day={day}"

    def has_flows(self) -> bool:
        return any(self.flows.glob("day=*/*.parquet"))
