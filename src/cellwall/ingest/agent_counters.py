"""The host agent's counter reports (``STATE/report.jsonl``) as flows: format ``agent-counters``.

One JSON object per line, written by :mod:`cellwall.enforce.counters`; the first key is
``"format": "cellwall-agent-counters/1"``, which is how :meth:`AgentCountersSource.sniff`
knows it.

=================  ==========================================================================
flow column        from the report row
=================  ==========================================================================
start, end         ``start``, ``end``: the window since the previous report
src_ip, dst_ip     ``src_ip``, ``dst_ip``: what the rule pins, else ``0.0.0.0`` or ``::``
dst_port, proto    ``dst_port``, ``proto`` (0 when the rule pins no protocol)
packets, bytes     the counter's increase over the window
action             ``ACCEPT`` (an accepting rule) or ``REJECT`` (a dropping rule)
drop_reason        the rule id, for ``REJECT`` rows
direction          ``ingress`` (input hook) or ``egress`` (output hook)
exporter           ``host``
source_id          the rule id
=================  ==========================================================================

Rejects: ``bad-json`` (not a JSON object), ``missing-field`` (no ``start``, ``src_ip``,
``dst_ip`` or ``rule_id``), ``bad-field`` (a value that does not fit its column).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any, BinaryIO, ClassVar

import pyarrow as pa

from cellwall.ingest.base import Chunk, FlowSource, Rejects, register
from cellwall.model.flow_schema import conform

__all__ = ["AgentCountersSource"]

_MARK = b'{"format":"cellwall-agent-counters/'
_REQUIRED = ("start", "src_ip", "dst_ip", "rule_id")
_BATCH = 50_000


def _time(text: Any) -> datetime:
    t = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"time {text!r} has no zone")
    return t


def _row(doc: dict[str, Any]) -> dict[str, Any]:
    action = doc.get("action")
    if action not in ("ACCEPT", "REJECT"):
        raise ValueError(f"action {action!r} is not ACCEPT or REJECT")
    port = doc.get("dst_port")
    proto = int(doc.get("proto") or 0)
    if not 0 <= proto <= 255 or (port is not None and not 0 <= int(port) <= 65535):
        raise ValueError("protocol or port out of range")
    return {
        "start": _time(doc["start"]),
        "end": _time(doc["end"]) if doc.get("end") else None,
        "src_ip": str(doc["src_ip"]),
        "dst_ip": str(doc["dst_ip"]),
        "dst_port": None if port is None else int(port),
        "proto": proto,
        "packets": int(doc.get("packets") or 0),
        "bytes": int(doc.get("bytes") or 0),
        "action": action,
        "drop_reason": str(doc["rule_id"]) if action == "REJECT" else None,
        "direction": doc.get("direction"),
        "exporter": doc.get("host"),
        "source_id": str(doc["rule_id"]),
    }


@register
class AgentCountersSource(FlowSource):
    name: ClassVar[str] = "agent-counters"
    title: ClassVar[str] = "cellwall agent rule counters (JSON lines)"

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return head.lstrip().startswith(_MARK)

    def _chunk(self, rows: list[dict[str, Any]], pos: list[int], file: str, rej: Rejects) -> Chunk:
        cols: dict[str, Any] = {k: [r[k] for r in rows] for k in (rows[0] if rows else {})}
        cols["lineage_format"] = [self.name] * len(rows)
        cols["lineage_file"] = [file] * len(rows)
        cols["lineage_pos"] = pa.array(pos, pa.int64())
        if rows:
            cols["start"] = pa.array(cols["start"], pa.timestamp("us", tz="UTC"))
            cols["end"] = pa.array(cols["end"], pa.timestamp("us", tz="UTC"))
        else:
            cols = {}
        return Chunk(conform(cols, len(rows)), rej)

    def read(self, stream: BinaryIO, file: str) -> Iterator[Chunk]:
        rows: list[dict[str, Any]] = []
        pos: list[int] = []
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
            missing = [k for k in _REQUIRED if doc.get(k) in (None, "")]
            if missing:
                rej.add(n, "missing-field", f"no {', '.join(missing)}", raw)
                continue
            try:
                rows.append(_row(doc))
            except (ValueError, TypeError) as exc:
                rej.add(n, "bad-field", str(exc), raw)
                continue
            pos.append(n)
            if len(rows) >= _BATCH:
                yield self._chunk(rows, pos, file, rej)
                rows, pos, rej = [], [], Rejects(file)
        yield self._chunk(rows, pos, file, rej)
