"""Hubble flow records (Arrow structs in flow.proto's shape) to flows and DNS evidence.

:mod:`cellwall.ingest.hubble` reads JSON lines into one struct column per block in the
shape of :data:`FLOW_TYPE`; :func:`map_flows` checks every row and maps it column-wise to
the flow schema, without a per-record Python loop. The mapping is documented in
:mod:`cellwall.ingest.hubble`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from cellwall.evidence.dns import dns_rows, empty_dns
from cellwall.ingest.zeek_mapping import MASKED, NOT_A_TIME, OK, UNSET, IpMemo, epoch_us
from cellwall.model.flow_schema import FLOW_SCHEMA, conform, empty_flows

__all__ = [
    "ENDPOINT_TYPE",
    "EVENT_KEYS",
    "FLOW_TYPE",
    "LEAN_FLOW_TYPE",
    "VERDICT_ACTIONS",
    "Mapped",
    "bare_schema",
    "map_flows",
    "response_schema",
]

_PORTS = pa.struct([("source_port", pa.int64()), ("destination_port", pa.int64())])
TCP_FLAG_BITS = (
    ("FIN", 0x01),
    ("SYN", 0x02),
    ("RST", 0x04),
    ("PSH", 0x08),
    ("ACK", 0x10),
    ("URG", 0x20),
    ("ECE", 0x40),
    ("CWR", 0x80),
    ("NS", 0x100),
)
_TCP = pa.struct(
    [
        ("source_port", pa.int64()),
        ("destination_port", pa.int64()),
        ("flags", pa.struct([(name, pa.bool_()) for name, _ in TCP_FLAG_BITS])),
    ]
)
_ICMP = pa.struct([("type", pa.int64()), ("code", pa.int64())])
ENDPOINT_TYPE = pa.struct(
    [
        ("namespace", pa.string()),
        ("labels", pa.list_(pa.string())),
        ("pod_name", pa.string()),
        ("workloads", pa.list_(pa.struct([("name", pa.string()), ("kind", pa.string())]))),
    ]
)
#: What is read of a flow: only what the mapping uses, so that a value cellwall has no use
#: for (``IP.ipVersion``, ``Type``, ``l7.dns.rcode``, ...) cannot get a flow refused, and
#: Arrow builds no column for it.
FLOW_TYPE = pa.struct(
    [
        ("time", pa.string()),
        ("uuid", pa.string()),
        ("verdict", pa.string()),
        ("drop_reason_desc", pa.string()),
        (
            "IP",
            pa.struct([("source", pa.string()), ("destination", pa.string())]),
        ),
        (
            "l4",
            pa.struct(
                [
                    ("TCP", _TCP),
                    ("UDP", _PORTS),
                    ("ICMPv4", _ICMP),
                    ("ICMPv6", _ICMP),
                    ("SCTP", _PORTS),
                ]
            ),
        ),
        ("source", ENDPOINT_TYPE),
        ("destination", ENDPOINT_TYPE),
        ("node_name", pa.string()),
        ("is_reply", pa.bool_()),
        ("traffic_direction", pa.string()),
        (
            "l7",
            pa.struct(
                [
                    ("type", pa.string()),
                    (
                        "dns",
                        pa.struct(
                            [
                                ("query", pa.string()),
                                ("ips", pa.list_(pa.string())),
                                ("ttl", pa.int64()),
                            ]
                        ),
                    ),
                    (
                        "http",
                        pa.struct(
                            [
                                ("code", pa.int64()),
                                ("method", pa.string()),
                                ("url", pa.string()),
                            ]
                        ),
                    ),
                ]
            ),
        ),
    ]
)
#: The other kinds of GetFlowsResponse: not flows, counted as ignored by their key.
EVENT_KEYS = ("node_status", "lost_events", "agent_event", "debug_event")


#: An object member that is only seen, not read: present (an object) or absent.
_SEEN = pa.struct([])


def response_schema(flow_type: pa.StructType) -> pa.Schema:
    """How a ``GetFlowsResponse`` line (``-o jsonpb``) is read: its ``flow``, its own
    ``node_name``, and whether it is another kind of response (an event key is seen).

    Other top-level keys are not part of a response and are ignored, like every other
    member that cellwall does not use.
    """
    return pa.schema(
        [pa.field("flow", flow_type), pa.field("node_name", pa.string())]
        + [pa.field(k, _SEEN) for k in EVENT_KEYS]
    )


def bare_schema(flow_type: pa.StructType) -> pa.Schema:
    """How a bare flow line (``-o json``) is read: the flow's members at the top, and whether
    the line is a response after all (``flow`` or an event key is seen): such a line is
    read again with :func:`response_schema`.
    """
    return pa.schema(
        [pa.field(f.name, f.type) for f in flow_type]
        + [pa.field("flow", _SEEN)]
        + [pa.field(k, _SEEN) for k in EVENT_KEYS]
    )


#: FLOW_TYPE less the endpoints (namespace, labels, pods): all that flows need, and a
#: third less for Arrow to build.
LEAN_FLOW_TYPE = pa.struct([f for f in FLOW_TYPE if f.name not in ("source", "destination")])

#: flow.proto's Verdict to the flow's action: did the packet get through?
VERDICT_ACTIONS = {
    "FORWARDED": "ACCEPT",
    "REDIRECTED": "ACCEPT",  # handed to the L7 proxy, which forwards it
    "TRANSLATED": "ACCEPT",  # service address translation, then forwarded
    "TRACED": "ACCEPT",  # a trace point on the way through
    "AUDIT": "ACCEPT",  # policy would drop it, audit mode let it pass (drop_reason says why)
    "DROPPED": "REJECT",
    "ERROR": "REJECT",  # the datapath could not process it: not delivered
}
_VERDICTS = pa.array(list(VERDICT_ACTIONS))
_ACTIONS = pa.array(list(VERDICT_ACTIONS.values()))
_DIRECTIONS = pa.array(["INGRESS", "EGRESS"])
_DIRECTION_NAMES = pa.array(["ingress", "egress"])
_TS = FLOW_SCHEMA.field("start").type
_TS_NS = pa.timestamp("ns", "UTC")
#: What :func:`epoch_us` takes as an ISO 8601 time with a zone.
_RFC3339 = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"(Z|[+-][0-9]{2}:?[0-9]{2})$"
)
_URL_PATH = r"^(?:[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*)?(?P<path>[^?#]*)"
_PORT_MAX, _ICMP_MAX = (1 << 16) - 1, (1 << 8) - 1
_PROTOS: tuple[tuple[str, int, str, str, int], ...] = (
    ("TCP", 6, "source_port", "destination_port", _PORT_MAX),
    ("UDP", 17, "source_port", "destination_port", _PORT_MAX),
    ("SCTP", 132, "source_port", "destination_port", _PORT_MAX),
    ("ICMPv4", 1, "type", "code", _ICMP_MAX),
    ("ICMPv6", 58, "type", "code", _ICMP_MAX),
)


@dataclass
class Mapped:
    """Flows of a block, the DNS evidence they carried, and the reasons rows were refused.

    ``refused`` holds (row, reason, message) for rows of the input struct array that did
    not become flows; ``kept`` is the mask of the rows that did.
    """

    flows: pa.Table
    dns: pa.Table
    kept: npt.NDArray[np.bool_]
    refused: list[tuple[int, str, str]] = field(default_factory=list)
    start_us: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))


class _Checks:
    """The first problem of every row."""

    def __init__(self, n: int) -> None:
        self.codes = np.zeros(n, np.uint8)
        self.why: list[tuple[str, str]] = []

    def flag(self, mask: npt.NDArray[np.bool_], reason: str, message: str) -> None:
        if mask.any():
            self.why.append((reason, message))
            self.codes[(self.codes == 0) & mask] = len(self.why)

    def refused(self) -> list[tuple[int, str, str]]:
        return [(int(i), *self.why[int(self.codes[i]) - 1]) for i in np.flatnonzero(self.codes)]


def _get(flows: pa.Array, *path: str) -> pa.Array:
    return pc.struct_field(flows, list(path))


def _np_bool(values: pa.Array) -> npt.NDArray[np.bool_]:
    return np.asarray(values.fill_null(False), np.bool_)


def _rfc3339_us(col: pa.Array) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """:func:`epoch_us`, quicker for what Hubble writes: every value an RFC 3339 time."""
    if col.null_count == 0 and len(col):
        shaped = pc.match_substring_regex(col, _RFC3339)
        if pc.all(shaped).as_py():
            try:
                values = pc.cast(pc.cast(col, _TS_NS), _TS, safe=False)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return epoch_us(col)  # an impossible date among them
            us = np.asarray(values.cast(pa.int64()), np.int64)
            return us, np.where(us >= 0, OK, NOT_A_TIME).astype(np.uint8)
    return epoch_us(col)


def _times(flows: pa.Array, checks: _Checks) -> npt.NDArray[np.int64]:
    us, status = _rfc3339_us(_get(flows, "time"))
    checks.flag(status == UNSET, "no-timestamp", "flow.time is absent: a flow needs its time")
    checks.flag(
        (status == NOT_A_TIME) | (status == MASKED),
        "bad-field",
        "flow.time is not an RFC 3339 time from 1970 on",
    )
    return us


def _ips(flows: pa.Array, side: str, checks: _Checks, memo: IpMemo) -> pa.Array:
    raw = _get(flows, "IP", side)
    unset = np.asarray(pc.is_null(raw))
    checks.flag(unset, "missing-field", f"flow.IP.{side} is absent (not an IP flow)")
    ips = memo(raw)
    checks.flag(np.asarray(pc.is_null(ips)) & ~unset, "bad-ip", f"flow.IP.{side} is not an address")
    return ips


def _l4(flows: pa.Array, checks: _Checks) -> tuple[pa.Array, pa.Array, pa.Array]:
    """(proto, src_port, dst_port) from whichever member of ``l4`` is set."""
    n = len(flows)
    proto = pa.nulls(n, pa.uint8())
    src = pa.nulls(n, pa.int64())
    dst = pa.nulls(n, pa.int64())
    for member, number, a, b, top in _PROTOS:
        here = pc.and_(pc.is_valid(_get(flows, "l4", member)), pc.is_null(proto))
        if not pc.any(here).as_py():
            continue
        one, two = _get(flows, "l4", member, a), _get(flows, "l4", member, b)
        for values, name in ((one, a), (two, b)):
            bad = pc.and_(here, pc.or_(pc.less(values, 0), pc.greater(values, top)))
            checks.flag(_np_bool(bad), "bad-field", f"flow.l4.{member}.{name} is not in 0..{top}")
        proto = pc.if_else(here, pa.scalar(number, pa.uint8()), proto)
        src = pc.if_else(here, one, src)
        dst = pc.if_else(here, two, dst)
    checks.flag(
        np.asarray(pc.is_null(proto)),
        "missing-field",
        "flow.l4 names no transport (TCP, UDP, SCTP, ICMPv4, ICMPv6)",
    )
    return proto, src, dst


def _tcp_flags(flows: pa.Array, proto: pa.Array) -> pa.Array:
    bits = np.zeros(len(flows), np.uint16)
    for name, bit in TCP_FLAG_BITS:
        bits |= _np_bool(_get(flows, "l4", "TCP", "flags", name)).astype(np.uint16) * np.uint16(bit)
    tcp = _np_bool(pc.equal(proto, pa.scalar(6, pa.uint8())))
    return pa.array(bits, pa.uint16(), mask=~tcp)


def _http(flows: pa.Array) -> dict[str, pa.Array]:
    method = _get(flows, "l7", "http", "method")
    url = _get(flows, "l7", "http", "url")
    path = pc.struct_field(pc.extract_regex(url, _URL_PATH), [0])
    path = pc.if_else(pc.equal(path, ""), pa.scalar("/"), path)
    code = _get(flows, "l7", "http", "code")
    status = pc.if_else(pc.and_(pc.greater(code, 0), pc.less_equal(code, _PORT_MAX)), code, None)
    return {
        "http_method": pc.if_else(pc.equal(method, ""), None, method),
        "http_path": path,
        "http_status": status,
    }


def _lookup(values: pa.Array, keys: pa.Array, out: pa.Array) -> pa.Array:
    return pc.take(out, pc.index_in(values, value_set=keys))


def _columns(flows: pa.Array, top_node: pa.Array) -> dict[str, pa.Array]:
    reason = _get(flows, "drop_reason_desc")
    known = pc.and_(pc.not_equal(reason, "DROP_REASON_UNKNOWN"), pc.not_equal(reason, ""))
    return {
        "action": _lookup(_get(flows, "verdict"), _VERDICTS, _ACTIONS),
        "drop_reason": pc.if_else(known, reason, None),
        "direction": _lookup(_get(flows, "traffic_direction"), _DIRECTIONS, _DIRECTION_NAMES),
        "src_initiated": pc.invert(_get(flows, "is_reply")),
        "exporter": pc.coalesce(_get(flows, "node_name"), top_node),
        "source_id": _get(flows, "uuid"),
        **_http(flows),
    }


def _dns(
    flows: pa.Array,
    start: npt.NDArray[np.int64],
    src: pa.Array,
    dst: pa.Array,
    pos: npt.NDArray[np.int64],
    file: str,
) -> pa.Table:
    ips = _get(flows, "l7", "dns", "ips")
    has = pc.greater(pc.list_value_length(ips), 0).fill_null(False)
    if not pc.any(has).as_py():
        return empty_dns()
    rows = pa.array(np.flatnonzero(np.asarray(has)))
    sub = pc.take(flows, rows)
    reply = pc.or_kleene(
        _get(sub, "is_reply"), pc.equal(_get(sub, "l7", "type"), "RESPONSE")
    ).fill_null(False)
    client = pc.if_else(reply, pc.take(dst, rows), pc.take(src, rows))
    return dns_rows(
        start[np.asarray(rows)],
        _get(sub, "l7", "dns", "query"),
        _get(sub, "l7", "dns", "ips"),
        _get(sub, "l7", "dns", "ttl"),
        client,
        pos[np.asarray(rows)],
        source="hubble",
        file=file,
    )


def map_flows(
    flows: pa.Array,
    top_node: pa.Array,
    lines: npt.NDArray[np.int64],
    file: str,
    fmt: str,
    memo: IpMemo,
) -> Mapped:
    """Check and map Hubble flow structs (FLOW_TYPE) to flows and DNS evidence."""
    n = len(flows)
    if n == 0:
        return Mapped(empty_flows(), empty_dns(), np.zeros(0, np.bool_))
    checks = _Checks(n)
    start = _times(flows, checks)
    src = _ips(flows, "source", checks, memo)
    dst = _ips(flows, "destination", checks, memo)
    proto, sport, dport = _l4(flows, checks)
    keep = checks.codes == 0
    columns: dict[str, pa.Array] = {
        "start": pa.array(start, _TS),
        "src_ip": src,
        "dst_ip": dst,
        "proto": proto,
        "src_port": sport,
        "dst_port": dport,
        "tcp_flags": _tcp_flags(flows, proto),
        "lineage_pos": pa.array(lines, pa.int64()),
        **_columns(flows, top_node),
    }
    if not keep.all():
        mask = pa.array(keep)
        columns = {k: v.filter(mask) for k, v in columns.items()}
        flows = flows.filter(mask)
    kept_n = int(keep.sum())
    columns["lineage_format"] = pa.repeat(pa.scalar(fmt, pa.string()), kept_n)
    columns["lineage_file"] = pa.repeat(pa.scalar(file, pa.string()), kept_n)
    table = conform(columns, kept_n)
    dns = _dns(
        flows,
        start[keep],
        table["src_ip"].combine_chunks(),
        table["dst_ip"].combine_chunks(),
        lines[keep],
        file,
    )
    return Mapped(table, dns, keep, checks.refused(), start[keep])
