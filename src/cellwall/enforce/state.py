"""The agent's state directory: what it applied last, and what it reported.

::

    STATE/
      state.json        serial, version, manifest hash, digest of the applied table, counters
      last-good.nft     the last ruleset that applied and passed its checks
      report.jsonl      counter reports (the ``agent-counters`` flow format)
      drops.jsonl       one row per logged drop (the ``agent-drops`` flow format)
      droplog/          the drop collector's files (:mod:`cellwall.enforce.droplog`)
      events.jsonl      one line per cycle event (applied, rejected, unreachable, tamper...)

Every write goes through a temporary file and ``os.replace``, so a crash never leaves a
half-written state behind.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["AgentState", "StateDir"]


@dataclass
class AgentState:
    """What the agent remembers between cycles."""

    serial: int | None = None
    version: str | None = None
    manifest_sha256: str | None = None
    applied_digest: str | None = None
    applied_at: str | None = None
    #: "chain/index/rule_id" → [packets, bytes] at the last report.
    counters: dict[str, list[int]] = field(default_factory=dict)
    reported_at: str | None = None
    #: Where the drop collector stopped reading its log: {"inode": ..., "offset": ...}.
    droplog: dict[str, int] = field(default_factory=dict)


class StateDir:
    """Reads and writes an agent's state directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def report_path(self) -> Path:
        return self.root / "report.jsonl"

    @property
    def drops_path(self) -> Path:
        return self.root / "drops.jsonl"

    @property
    def droplog_dir(self) -> Path:
        return self.root / "droplog"

    @property
    def events_path(self) -> Path:
        return self.root / "events.jsonl"

    def _write(self, name: str, text: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.root / name)

    def load(self) -> AgentState:
        path = self.root / "state.json"
        if not path.exists():
            return AgentState()
        doc = json.loads(path.read_text())
        known = AgentState.__dataclass_fields__
        return AgentState(**{k: v for k, v in doc.items() if k in known})

    def save(self, state: AgentState) -> None:
        self._write("state.json", json.dumps(asdict(state), indent=2, sort_keys=True) + "\n")

    def last_good(self) -> str | None:
        path = self.root / "last-good.nft"
        return path.read_text() if path.exists() else None

    def save_last_good(self, ruleset: str) -> None:
        self._write("last-good.nft", ruleset)

    def _append(self, path: Path, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            for row in rows:
                f.write(json.dumps(row, separators=(",", ":")) + "\n")

    def append_report(self, rows: list[dict[str, Any]]) -> None:
        self._append(self.report_path, rows)

    def append_drops(self, rows: list[dict[str, Any]]) -> None:
        self._append(self.drops_path, rows)

    def event(self, kind: str, **details: Any) -> dict[str, Any]:
        row = {"ts": datetime.now(UTC).isoformat(), "event": kind, **details}
        self._append(self.events_path, [row])
        return row

    def events(self) -> list[dict[str, Any]]:
        if not self.events_path.exists():
            return []
        return [json.loads(line) for line in self.events_path.read_text().splitlines() if line]
