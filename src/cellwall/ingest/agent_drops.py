"""The host agent's drop records (``STATE/drops.jsonl``) as flows: format ``agent-drops``.

One JSON object per logged packet, written by :mod:`cellwall.enforce.droplog`: the
nftables ruleset logs a drop (``cw:drop:ID``) or, in visibility mode, a would-be drop
(``cw:would:ID``) to NFLOG, rate-limited, and the agent turns each log into one row. The
first key is ``"format": "cellwall-agent-drops/1"``, which is how
:meth:`AgentDropsSource.sniff` knows it. Unlike ``agent-counters``, a row is one
connection attempt with its real 5-tuple.

=================  ==========================================================================
flow column        from the drop row
=================  ==========================================================================
start, end         ``time``: when the kernel logged the packet
src_ip, src_port   ``src_ip``, ``src_port`` (no port for ICMP and other protocols)
dst_ip, dst_port   ``dst_ip``, ``dst_port``
proto              ``proto``
packets, bytes     1, ``bytes`` (the IP length of the logged packet)
action             ``REJECT`` (``verdict`` drop) or ``ACCEPT`` (``verdict`` would: visibility
                   mode logged it and let it through)
drop_reason        the rule id: why it was dropped, or would have been (as Hubble's AUDIT)
tcp_flags          ``tcp_flags`` (FIN 1, SYN 2, RST 4, PSH 8, ACK 16, URG 32)
direction          ``ingress`` (input hook) or ``egress`` (output hook)
exporter           ``host``
source_id          the rule id (``not-allowed`` for the default)
=================  ==========================================================================

Rejects: ``bad-json`` (not a JSON object), ``missing-field`` (no ``time``, ``src_ip``,
``dst_ip`` or ``rule_id``), ``bad-field`` (a value that does not fit its column).
"""

from __future__ import annotations

from typing import Any, ClassVar

from cellwall.ingest.agent_lines import AgentLinesSource, count, utc_time
from cellwall.ingest.base import register

__all__ = ["AgentDropsSource"]

_MARK = b'{"format":"cellwall-agent-drops/'
_REQUIRED = ("time", "src_ip", "dst_ip", "rule_id")
_ACTIONS = {"drop": "REJECT", "would": "ACCEPT"}


def _port(value: Any) -> int | None:
    if value is None:
        return None
    port = int(value)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {value!r} out of range")
    return port


def _row(doc: dict[str, Any]) -> dict[str, Any]:
    action = _ACTIONS.get(str(doc.get("verdict")))
    if action is None:
        raise ValueError(f"verdict {doc.get('verdict')!r} is not drop or would")
    proto = int(doc.get("proto") or 0)
    if not 0 <= proto <= 255:
        raise ValueError(f"protocol {proto} out of range")
    at = utc_time(doc["time"])
    flags = doc.get("tcp_flags")
    return {
        "start": at,
        "end": at,
        "src_ip": str(doc["src_ip"]),
        "src_port": _port(doc.get("src_port")),
        "dst_ip": str(doc["dst_ip"]),
        "dst_port": _port(doc.get("dst_port")),
        "proto": proto,
        "packets": 1,
        "bytes": count(doc.get("bytes"), "bytes"),
        "action": action,
        "drop_reason": str(doc["rule_id"]),
        "tcp_flags": None if flags is None else int(flags),
        "direction": doc.get("direction"),
        "exporter": doc.get("host"),
        "source_id": str(doc["rule_id"]),
    }


@register
class AgentDropsSource(AgentLinesSource):
    name: ClassVar[str] = "agent-drops"
    title: ClassVar[str] = "cellwall agent drop logs, one row per connection (JSON lines)"
    mark: ClassVar[bytes] = _MARK
    required: ClassVar[tuple[str, ...]] = _REQUIRED
    row = staticmethod(_row)
