"""What the agent's JSON-lines reports share: a format mark on the first key, one object a
line turned into one flow row, and every bad line rejected with its line number.

A subclass names its ``mark`` (the bytes a file starts with), its ``required`` keys and
``row``, which turns one object into the flow columns (raising ValueError or TypeError for
a value that does not fit).
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Iterator
from datetime import datetime
from typing import Any, BinaryIO, ClassVar

import pyarrow as pa

from cellwall.ingest.base import Chunk, FlowSource, Rejects
from cellwall.model.flow_schema import conform

__all__ = ["AgentLinesSource", "count", "utc_time"]

_BATCH = 50_000


def utc_time(text: Any) -> datetime:
    """An ISO 8601 time that carries its zone (``Z`` or an offset)."""
    t = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"time {text!r} has no zone")
    return t


def count(value: Any, what: str) -> int:
    """A non-negative integer count (packets, bytes)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{what} {value!r} is not a count")
    n = int(value)
    if n < 0:
        raise ValueError(f"{what} {value!r} is negative")
    return n


class AgentLinesSource(FlowSource):
    mark: ClassVar[bytes] = b""
    required: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return bool(cls.mark) and head.lstrip().startswith(cls.mark)

    @staticmethod
    @abstractmethod
    def row(doc: dict[str, Any]) -> dict[str, Any]:
        """One object as flow columns; ValueError or TypeError for a value that does not fit."""

    def _table(self, rows: list[dict[str, Any]], pos: list[int], file: str) -> pa.Table:
        cols: dict[str, Any] = {k: [r[k] for r in rows] for k in rows[0]}
        cols["lineage_format"] = [self.name] * len(rows)
        cols["lineage_file"] = [file] * len(rows)
        cols["lineage_pos"] = pa.array(pos, pa.int64())
        cols["start"] = pa.array(cols["start"], pa.timestamp("us", tz="UTC"))
        cols["end"] = pa.array(cols["end"], pa.timestamp("us", tz="UTC"))
        return conform(cols, len(rows))

    def _chunk(
        self,
        rows: list[dict[str, Any]],
        pos: list[int],
        raws: list[bytes],
        file: str,
        rej: Rejects,
    ) -> Chunk:
        if not rows:
            return Chunk(conform({}, 0), rej)
        try:
            return Chunk(self._table(rows, pos, file), rej)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
        # A value that fits no column: find the rows that hold one, keep the others.
        kept: list[pa.Table] = []
        for row, n, raw in zip(rows, pos, raws, strict=True):
            try:
                kept.append(self._table([row], [n], file))
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
                rej.add(n, "bad-field", str(exc), raw)
        return Chunk(pa.concat_tables(kept) if kept else conform({}, 0), rej)

    def read(self, stream: BinaryIO, file: str) -> Iterator[Chunk]:
        rows: list[dict[str, Any]] = []
        pos: list[int] = []
        raws: list[bytes] = []
        rej = Rejects(file)
        for n, raw in enumerate(stream, start=1):
            if not raw.strip():
                continue
            try:
                doc = json.loads(raw)
            except ValueError as exc:
                rej.add(n, "bad-json", f"not JSON: {exc}", raw)
                continue
            if not isinstance(doc, dict):
                rej.add(n, "bad-json", "not a JSON object", raw)
                continue
            missing = [k for k in self.required if doc.get(k) in (None, "")]
            if missing:
                rej.add(n, "missing-field", f"no {', '.join(missing)}", raw)
                continue
            try:
                rows.append(self.row(doc))
            except (ValueError, TypeError) as exc:
                rej.add(n, "bad-field", str(exc), raw)
                continue
            pos.append(n)
            raws.append(raw)
            if len(rows) >= _BATCH:
                yield self._chunk(rows, pos, raws, file, rej)
                rows, pos, raws, rej = [], [], [], Rejects(file)
        yield self._chunk(rows, pos, raws, file, rej)
