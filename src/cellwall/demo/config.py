"""What a demo generation is asked for (`DemoConfig`) and what it made (`DemoResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from cellwall.errors import UsageError

__all__ = ["FORMATS", "DemoConfig", "DemoResult", "FlowFormat"]

FlowFormat = Literal["vpc", "zeek"]
FORMATS: tuple[FlowFormat, ...] = ("vpc", "zeek")


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """The knobs of one generation. Same config (seed included) gives byte-identical output.

    ``flows`` is the approximate number of flow records to write: VPC lines (a conversation
    gives a request and a reply record) or Zeek rows (one per conversation). Below a floor of
    about two records per intended dependency, every dependency still appears once.
    ``chunk`` bounds the conversations held in memory at once; it is part of the config
    because it decides how an hour is cut into slices, and so the random draws.
    """

    seed: int = 1
    start: datetime = datetime(2026, 11, 2, tzinfo=UTC)
    days: int = 7
    flows: int = 1_000_000
    fmt: FlowFormat = "vpc"
    mislabel: int = 3
    gzip: bool = False
    file_per: Literal["hour", "day"] = "hour"
    attacks: bool = True
    attack_at: float = 0.75
    chunk: int = 200_000

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    def validate(self) -> DemoConfig:
        """Return self, or raise UsageError naming the bad option."""
        if self.start.tzinfo is None or self.start.utcoffset() != timedelta(0):
            raise UsageError("demo start must be a UTC time", hint="e.g. 2026-11-02T00:00:00Z")
        if self.start.minute or self.start.second or self.start.microsecond:
            raise UsageError("demo start must be on the hour", hint="e.g. 2026-11-02T00:00:00Z")
        if not 1 <= self.days <= 3660:
            raise UsageError(f"demo days must be 1..3660, not {self.days}")
        if self.flows < 0:
            raise UsageError(f"demo flows must not be negative, not {self.flows}")
        if self.fmt not in FORMATS:
            raise UsageError(f"unknown demo format {self.fmt!r}", hint="use vpc or zeek")
        if self.file_per not in ("hour", "day"):
            raise UsageError(f"file_per must be hour or day, not {self.file_per!r}")
        if self.mislabel < 0:
            raise UsageError(f"mislabel must not be negative, not {self.mislabel}")
        if not 0.0 <= self.attack_at <= 1.0:
            raise UsageError(f"attack_at is a fraction of the span, 0..1, not {self.attack_at}")
        if self.chunk < 1000:
            raise UsageError(f"chunk must be at least 1000 conversations, not {self.chunk}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "start": iso(self.start),
            "end": iso(self.end),
            "days": self.days,
            "flows": self.flows,
            "fmt": self.fmt,
            "mislabel": self.mislabel,
            "gzip": self.gzip,
            "file_per": self.file_per,
            "attacks": self.attacks,
            "attack_at": self.attack_at,
            "chunk": self.chunk,
        }


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What one generation wrote, with its counts."""

    out_dir: Path
    flow_files: tuple[Path, ...]
    documents: dict[str, Path]
    records: int
    conversations: int
    attack_conversations: int
    other_lines: int
    workloads: int
    edges: int
    seconds: float = 0.0
    extra: dict[str, int] = field(default_factory=dict)

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "flow_files": len(self.flow_files),
            "documents": {k: str(v) for k, v in sorted(self.documents.items())},
            "records": self.records,
            "conversations": self.conversations,
            "attack_conversations": self.attack_conversations,
            "other_lines": self.other_lines,
            "workloads": self.workloads,
            "edges": self.edges,
            "seconds": round(self.seconds, 3),
            "records_per_second": round(self.records_per_second),
            **self.extra,
        }


def iso(t: datetime) -> str:
    """UTC time as ``2026-11-02T00:00:00Z`` (microseconds only when present)."""
    text = t.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")
