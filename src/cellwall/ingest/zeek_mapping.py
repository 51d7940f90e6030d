"""Zeek conn.log rows to flows: checked and mapped column-wise, for both readers.

Both readers (:mod:`cellwall.ingest.zeek_tsv`, :mod:`cellwall.ingest.zeek_json`) turn a
block of lines into a table whose columns carry Zeek's own field names, then call
:func:`to_flows`, which checks every row and maps it to the flow schema without a
per-record Python loop. :mod:`cellwall.ingest.zeek` documents the mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from cellwall.ingest.base import Rejects
from cellwall.ingest.delimited import Parsed
from cellwall.model.flow_schema import FLOW_SCHEMA, conform, empty_flows
from cellwall.model.net import IPV4_CANONICAL, canonical_ips

__all__ = [
    "FIELD_TYPES",
    "Context",
    "IpMemo",
    "epoch_us",
    "history_flags",
    "to_flows",
]

#: Arrow types of the conn.log fields that become flow columns; every other field is read as
#: a string and dropped.
FIELD_TYPES: dict[str, pa.DataType] = {
    "ts": pa.string(),  # parsed here: it may be epoch seconds, ISO 8601 or masked
    "uid": pa.string(),
    "id.orig_h": pa.string(),
    "id.orig_p": pa.uint16(),
    "id.resp_h": pa.string(),
    "id.resp_p": pa.uint16(),
    "proto": pa.string(),
    "duration": pa.float64(),
    "orig_bytes": pa.uint64(),
    "resp_bytes": pa.uint64(),
    "history": pa.string(),
    "orig_pkts": pa.uint64(),
    "orig_ip_bytes": pa.uint64(),
    "resp_pkts": pa.uint64(),
    "resp_ip_bytes": pa.uint64(),
    "ip_proto": pa.uint8(),
}

_TS = FLOW_SCHEMA.field("start").type
_TRANSPORTS = pa.array(["tcp", "udp", "icmp"])
_TRANSPORT_NUMBERS = pa.array([6, 17, 1], pa.uint8())
_NUMBER = r"^-?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?$"
_MASKED = r"^X+(\.X+)?$"
_ISO = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
_ZONE = r"(Z|[+-][0-9]{2}:?[0-9]{2})$"
#: Epoch seconds from 1970 up to (not including) 1e11 (year 5138); Zeek's JSON writer with
#: ``JSON::TS_MILLIS`` writes milliseconds, which are 1e11 and more.
_MAX_SECONDS = 1e11
_MAX_MILLIS = 1e14

# History letters (upper case: originator, lower case: responder) and the TCP header bits
# that each one proves were set: S = SYN, H = SYN+ACK, A = pure ACK, F = FIN, R = RST,
# Q = a multi-flag packet, which always holds SYN (SYN+FIN or SYN+RST).
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
_HISTORY_BITS = (
    ("[Ss]", SYN),
    ("[Hh]", SYN | ACK),
    ("[Aa]", ACK),
    ("[Ff]", FIN),
    ("[Rr]", RST),
    ("[Qq]", SYN),
)

OK, UNSET, MASKED, NOT_A_TIME = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class Context:
    """Per-file facts that every row of the file shares."""

    file: str
    fmt: str
    sensor: str | None = None
    ips: IpMemo = field(default_factory=lambda: IpMemo())


def _float_epoch_us(
    seconds: npt.NDArray[np.float64], millis: bool
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(seconds) & (seconds >= 0)
        in_seconds = seconds < _MAX_SECONDS
        in_millis = (seconds >= _MAX_SECONDS) & (seconds < _MAX_MILLIS) if millis else ~in_seconds
        ok &= in_seconds | in_millis
        us = np.where(in_seconds, seconds * 1e6, seconds * 1e3)
        us = np.rint(np.where(ok, us, 0.0)).astype(np.int64)
    return us, ok


def _iso_epoch_us(col: pa.Array) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """ISO 8601 strings (a missing zone means UTC) to µs; other values are not ok."""
    shaped = pc.match_substring_regex(col, _ISO).fill_null(False)
    zoned = pc.match_substring_regex(col, _ISO + _ZONE).fill_null(False)
    text = pc.if_else(zoned, col, pc.binary_join_element_wise(col, "Z", ""))
    text = pc.if_else(shaped, text, None)
    try:
        values = pc.cast(pc.cast(text, pa.timestamp("ns", "UTC")), _TS, safe=False)
        us = values.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        return us.astype(np.int64), np.asarray(pc.is_valid(values)) & (us >= 0)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass  # an impossible date among them: settle each shaped value on its own
    us = np.zeros(len(col), np.int64)
    ok = np.zeros(len(col), np.bool_)
    for i in np.flatnonzero(np.asarray(shaped)):
        raw = col[int(i)].as_py()
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            continue
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
        delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
        us[i] = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        ok[i] = us[i] >= 0
    return us, ok


def epoch_us(
    col: pa.Array, *, millis: bool = False
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """Zeek ``ts`` values as µs since the epoch, and a status per value.

    The status is ``OK``, ``UNSET`` (null), ``MASKED`` (``XXXXXXXXXX.XXXXXX``, as Zeek's test
    baselines write it) or ``NOT_A_TIME``. A value is epoch seconds (a number, or a numeric
    string), or an ISO 8601 string; with ``millis``, a number of 1e11 and more is epoch
    milliseconds (``JSON::TS_MILLIS``).
    """
    status = np.where(np.asarray(pc.is_null(col)), UNSET, OK).astype(np.uint8)
    if pa.types.is_floating(col.type) or pa.types.is_integer(col.type):
        seconds = col.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False)
        us, ok = _float_epoch_us(seconds, millis)
        status[(status == OK) & ~ok] = NOT_A_TIME
        return us, status
    try:
        seconds = pc.cast(col, pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False)
        us, ok = _float_epoch_us(seconds, millis)
        status[(status == OK) & ~ok] = NOT_A_TIME
        return us, status
    except pa.ArrowInvalid:
        pass  # not all numbers: sort the values out one kind at a time, still column-wise
    numeric = np.asarray(pc.match_substring_regex(col, _NUMBER).fill_null(False))
    masked = np.asarray(pc.match_substring_regex(col, _MASKED).fill_null(False))
    seconds = pc.cast(pc.if_else(pa.array(numeric), col, None), pa.float64())
    us, ok = _float_epoch_us(seconds.fill_null(0.0).to_numpy(zero_copy_only=False), millis)
    ok &= numeric
    rest = (status == OK) & ~numeric & ~masked
    if rest.any():
        iso_us, iso_ok = _iso_epoch_us(pc.if_else(pa.array(rest), col, None))
        us = np.where(rest, iso_us, us)
        ok |= rest & iso_ok
    status[(status == OK) & masked] = MASKED
    status[(status == OK) & ~ok] = NOT_A_TIME
    return us, status


def history_flags(history: pa.Array, empty: str) -> tuple[pa.Array, pa.Array]:
    """TCP flag bits (uint16) and "the originator sent a SYN" (true or null) from history.

    Work is done once per distinct history string, which is a handful in any real log.
    """
    encoded = pc.dictionary_encode(history)
    values = encoded.dictionary
    bits = pa.array(np.zeros(len(values), np.uint16))
    for pattern, bit in _HISTORY_BITS:
        hit = pc.match_substring_regex(values, pattern)
        bits = pc.if_else(hit, pc.bit_wise_or(bits, pa.scalar(bit, pa.uint16())), bits)
    unknown = pc.equal(values, empty)
    bits = pc.if_else(unknown, None, bits)
    syn = pc.match_substring(values, "S")
    syn = pc.if_else(pc.and_(syn, pc.invert(unknown)), True, None)
    return pc.take(bits, encoded.indices), pc.take(syn, encoded.indices)


class IpMemo:
    """:func:`canonical_ips` that remembers, for one file, what it found for other values.

    Canonical IPv4 is recognised column-wise; every other distinct value (IPv6, odd IPv4
    spellings, garbage) goes through ``canonical_ips`` once per file instead of once per
    block. Worker threads share one memo: a dict read and written under the GIL, and
    cleared when it grows past ``limit`` values.
    """

    def __init__(self, limit: int = 1 << 18) -> None:
        self.limit = limit
        self._known: dict[str, str | None] = {}

    def __call__(self, column: pa.Array) -> pa.Array:
        encoded = pc.dictionary_encode(column)
        values = encoded.dictionary
        other = pc.invert(pc.match_substring_regex(values, IPV4_CANONICAL).fill_null(False))
        if not pc.any(other).as_py():
            return pc.take(values, encoded.indices)
        texts = values.filter(other).to_pylist()
        known = self._known
        seen = {t: known[t] for t in texts if t in known}
        misses = [t for t in texts if t not in seen]
        if misses:
            fresh = canonical_ips(pa.array(misses, pa.string())).to_pylist()
            seen.update(zip(misses, fresh, strict=True))
            if len(known) + len(misses) > self.limit:
                known.clear()  # another thread may read it meanwhile: it only misses
            known.update(zip(misses, fresh, strict=True))
        found = pa.array([seen[t] for t in texts], pa.string())
        return pc.take(pc.replace_with_mask(values, other, found), encoded.indices)


def _column(table: pa.Table, name: str) -> pa.Array | None:
    if name not in table.column_names:
        return None
    col = table[name]
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


@dataclass
class _Verdicts:
    """The first problem of every row, as a code; rows keep code 0 when they are good."""

    codes: npt.NDArray[np.uint8]
    why: list[tuple[str, str]]

    def flag(self, mask: npt.NDArray[np.bool_], reason: str, message: str) -> None:
        if not mask.any():
            return
        self.why.append((reason, message))
        self.codes[(self.codes == 0) & mask] = len(self.why)

    def apply(self, parsed: Parsed, rejects: Rejects) -> tuple[Parsed, npt.NDArray[np.bool_]]:
        keep = self.codes == 0
        if keep.all():
            return parsed, keep
        current = self.codes
        for code, (reason, message) in enumerate(self.why, start=1):
            mask = current == code
            if mask.any():
                parsed = parsed.reject(mask, rejects, reason, message)
                current = current[~mask]
        return parsed, keep


def _ts_checks(table: pa.Table, verdicts: _Verdicts, millis: bool) -> npt.NDArray[np.int64]:
    n = table.num_rows
    ts = _column(table, "ts")
    if ts is None:
        verdicts.flag(
            np.ones(n, np.bool_),
            "no-timestamp",
            "the log has no ts field: a flow needs its start time",
        )
        return np.zeros(n, np.int64)
    us, status = epoch_us(ts, millis=millis)
    verdicts.flag(
        status == MASKED,
        "no-timestamp",
        "ts is masked (XXXXXXXXXX.XXXXXX, as in Zeek's test baselines): "
        "a flow needs its start time",
    )
    verdicts.flag(status == UNSET, "no-timestamp", "ts is unset: a flow needs its start time")
    verdicts.flag(
        status == NOT_A_TIME,
        "bad-field",
        "ts is not a time (epoch seconds or ISO 8601 from 1970 on)",
    )
    return us


def _ip_checks(table: pa.Table, name: str, verdicts: _Verdicts, memo: IpMemo) -> pa.Array:
    col = _column(table, name)
    if col is None:
        verdicts.flag(
            np.ones(table.num_rows, np.bool_), "missing-field", f"the log has no {name} field"
        )
        return pa.nulls(table.num_rows, pa.string())
    ips = memo(col)
    unset = np.asarray(pc.is_null(col))
    verdicts.flag(unset, "missing-field", f"{name} is unset")
    verdicts.flag(np.asarray(pc.is_null(ips)) & ~unset, "bad-ip", f"{name} is not an IP address")
    return ips


def _proto_checks(table: pa.Table, src: pa.Array, verdicts: _Verdicts) -> pa.Array:
    n = table.num_rows
    number = pa.nulls(n, pa.uint8())
    proto = _column(table, "proto")
    if proto is not None:
        number = pc.take(_TRANSPORT_NUMBERS, pc.index_in(proto, value_set=_TRANSPORTS))
        icmp = pc.equal(number, pa.scalar(1, pa.uint8())).fill_null(False)
        if pc.any(icmp).as_py():  # Zeek calls ICMPv6 "icmp" too; the addresses tell
            v6 = pc.match_substring(src, ":").fill_null(False)
            number = pc.if_else(pc.and_(icmp, v6), pa.scalar(58, pa.uint8()), number)
    ip_proto = _column(table, "ip_proto")
    if ip_proto is not None:
        number = pc.coalesce(ip_proto, number)
    verdicts.flag(
        np.asarray(pc.is_null(number)),
        "bad-proto",
        "proto names no IP protocol number (tcp, udp, icmp) and there is no ip_proto",
    )
    return number


def _end_us(table: pa.Table, start: npt.NDArray[np.int64], verdicts: _Verdicts) -> pa.Array:
    n = table.num_rows
    duration = _column(table, "duration")
    if duration is None:
        return pa.nulls(n, _TS)
    seconds = duration.fill_null(0.0).to_numpy(zero_copy_only=False)
    unset = np.asarray(pc.is_null(duration))
    with np.errstate(invalid="ignore"):
        good = np.isfinite(seconds) & (seconds >= 0) & (seconds < _MAX_SECONDS)
    verdicts.flag(~good & ~unset, "bad-field", "duration is not a number of seconds >= 0")
    span = np.rint(np.where(good, seconds, 0.0) * 1e6).astype(np.int64)
    return pa.array(start + span, _TS, mask=unset | ~good)


def to_flows(
    parsed: Parsed,
    rejects: Rejects,
    ctx: Context,
    *,
    empty: str = "(empty)",
    millis: bool = False,
) -> pa.Table:
    """Check and map the rows of ``parsed`` (Zeek field names) to flows; reject the rest."""
    table = parsed.table
    n = table.num_rows
    if n == 0:
        return empty_flows()
    verdicts = _Verdicts(np.zeros(n, np.uint8), [])
    start = _ts_checks(table, verdicts, millis)
    src = _ip_checks(table, "id.orig_h", verdicts, ctx.ips)
    dst = _ip_checks(table, "id.resp_h", verdicts, ctx.ips)
    proto = _proto_checks(table, src, verdicts)
    end = _end_us(table, start, verdicts)
    parsed, keep = verdicts.apply(parsed, rejects)
    columns: dict[str, pa.Array] = {
        "start": pa.array(start, _TS),
        "end": end,
        "src_ip": src,
        "dst_ip": dst,
        "proto": proto,
        "lineage_pos": pa.array(parsed.lines if len(parsed) else np.zeros(0, np.int64)),
    }
    for target, name in (
        ("src_port", "id.orig_p"),
        ("dst_port", "id.resp_p"),
        ("packets", "orig_pkts"),
        ("rev_packets", "resp_pkts"),
        ("source_id", "uid"),
    ):
        col = _column(table, name)
        if col is not None:
            columns[target] = col
    for target, ip_field, payload_field in (
        ("bytes", "orig_ip_bytes", "orig_bytes"),
        ("rev_bytes", "resp_ip_bytes", "resp_bytes"),
    ):
        col = _column(table, ip_field)
        col = _column(table, payload_field) if col is None else col
        if col is not None:
            columns[target] = col
    history = _column(table, "history")
    if history is not None:
        flags, syn = history_flags(history, empty)
        tcp = pc.equal(proto, pa.scalar(6, pa.uint8())).fill_null(False)
        columns["tcp_flags"] = pc.if_else(tcp, flags, None)
        columns["src_initiated"] = pc.if_else(tcp, syn, None)
    if not keep.all():
        mask = pa.array(keep)
        columns = {k: (v if k == "lineage_pos" else v.filter(mask)) for k, v in columns.items()}
    m = len(parsed)
    if ctx.sensor is not None:
        columns["exporter"] = pa.repeat(pa.scalar(ctx.sensor, pa.string()), m)
    columns["lineage_format"] = pa.repeat(pa.scalar(ctx.fmt, pa.string()), m)
    columns["lineage_file"] = pa.repeat(pa.scalar(ctx.file, pa.string()), m)
    return conform(columns, m)
