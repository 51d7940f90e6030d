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

from typing import Any, ClassVar

from cellwall.ingest.agent_lines import AgentLinesSource, count, utc_time
from cellwall.ingest.base import register

__all__ = ["AgentCountersSource"]

_MARK = b'{"format":"cellwall-agent-counters/'
_REQUIRED = ("start", "src_ip", "dst_ip", "rule_id")


def _row(doc: dict[str, Any]) -> dict[str, Any]:
    action = doc.get("action")
    if action not in ("ACCEPT", "REJECT"):
        raise ValueError(f"action {action!r} is not ACCEPT or REJECT")
    port = doc.get("dst_port")
    proto = int(doc.get("proto") or 0)
    if not 0 <= proto <= 255 or (port is not None and not 0 <= int(port) <= 65535):
        raise ValueError("protocol or port out of range")
    return {
        "start": utc_time(doc["start"]),
        "end": utc_time(doc["end"]) if doc.get("end") else None,
        "src_ip": str(doc["src_ip"]),
        "dst_ip": str(doc["dst_ip"]),
        "dst_port": None if port is None else int(port),
        "proto": proto,
        "packets": count(doc.get("packets"), "packets"),
        "bytes": count(doc.get("bytes"), "bytes"),
        "action": action,
        "drop_reason": str(doc["rule_id"]) if action == "REJECT" else None,
        "direction": doc.get("direction"),
        "exporter": doc.get("host"),
        "source_id": str(doc["rule_id"]),
    }


@register
class AgentCountersSource(AgentLinesSource):
    name: ClassVar[str] = "agent-counters"
    title: ClassVar[str] = "cellwall agent rule counters (JSON lines)"
    mark: ClassVar[bytes] = _MARK
    required: ClassVar[tuple[str, ...]] = _REQUIRED
    row = staticmethod(_row)
