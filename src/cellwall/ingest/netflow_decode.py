"""Vectorised decoding of NetFlow/IPFIX data records: one NumPy dtype per template.

The records of every data set that used one template are concatenated and read with one
``np.frombuffer`` through the template's structured dtype; each flow column is then one
array operation over all of them. Nothing loops over records in Python, except to find the
record boundaries of templates with variable-length fields (their fixed fields are then
gathered into the same dtype).

Information elements (IANA numbers, shared by v9 for ids below 128) that become columns:

==========================  ===============================================================
``src_ip``/``dst_ip``       8/12 (IPv4), 27/28 (IPv6)
``src_port``/``dst_port``   7/11; for ICMP the type and the code (from 32/139, or from the
                            v5/v9 habit of ``dst_port = type * 256 + code``)
``proto``, ``tcp_flags``    4, 6
``bytes``/``packets``       1/2 (delta) or 85/86 (total), times the sampling rate
``start``/``end``           152/153 (ms), 150/151 (s), 156/157 and 154/155 (NTP), 158/159
                            (µs before the export time), or 22/21 relative to ``sysUptime``
                            (v5/v9) or to ``systemInitTimeMilliseconds`` (160, IPFIX); with
                            none of them, the export time of the datagram
``direction``               61 (0 ingress, 1 egress)
``sampling_rate``           34, 305 or 50 in the record, else the options data of the domain
``rev_bytes``/``rev_packets``  RFC 5103 biflows: the reverse elements 1/2 (or 85/86) of
                            enterprise 29305, times the sampling rate
``src_initiated``           RFC 5103 ``biflowDirection`` (239): 1 the source initiated, 2 the
                            destination did; 0 (arbitrary) and 3 (perimeter) say nothing
==========================  ===============================================================

Fields of any other enterprise (the enterprise bit) and unknown fields are skipped.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from cellwall.ingest.netflow_templates import VARIABLE, Segments, Template

__all__ = [
    "MAX_MS",
    "Decoded",
    "decode",
    "dtype_of",
    "options_values",
    "split_variable",
    "v4_strings",
    "v6_strings",
]

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
MAX_MS = 253_402_300_799_000  # 9999-12-31T23:59:59Z
REVERSE_PEN = 29305  # RFC 5103: reverse information elements
NTP_EPOCH_S = 2_208_988_800
SAMPLING_IES = (34, 305, 50)
_TIME_PAIRS = ((152, 153, "ms"), (150, 151, "s"), (156, 157, "ntp"), (154, 155, "ntp"))
_TS = pa.timestamp("us", tz="UTC")


def dtype_of(template: Template) -> np.dtype[Any]:
    """The structured dtype of a template's fixed fields (variable ones are left out)."""
    if template._dtype is None:
        names, formats = [], []
        for i, f in enumerate(template.fields):
            if f.length == VARIABLE:
                continue
            names.append(f"f{i}")
            formats.append(f">u{f.length}" if f.length in (1, 2, 4, 8) else f"V{f.length}")
        template._dtype = np.dtype({"names": names, "formats": formats})
    return template._dtype


def split_variable(template: Template, body: bytes) -> tuple[bytes, int, str | None]:
    """Gather the fixed fields of variable-length records; returns (bytes, count, error).

    IPFIX prefixes a variable field with one length byte, or 255 and two length bytes. A
    record that runs past the set ends the set; the error says so.
    """
    out = bytearray()
    pos, n, end = 0, 0, len(body)
    fixed_total = template.record_length
    while pos < end:
        if end - pos < max(fixed_total, 1) and not any(body[pos:end]):
            break  # padding
        start_n = len(out)
        for f in template.fields:
            if f.length == VARIABLE:
                if pos >= end:
                    del out[start_n:]
                    return bytes(out), n, f"record {n} runs past the end of its set"
                size = body[pos]
                pos += 1
                if size == 255:
                    if pos + 2 > end:
                        del out[start_n:]
                        return bytes(out), n, f"record {n} runs past the end of its set"
                    size = int.from_bytes(body[pos : pos + 2], "big")
                    pos += 2
                pos += size
            else:
                out += body[pos : pos + f.length]
                pos += f.length
            if pos > end:
                del out[start_n:]
                return bytes(out), n, f"record {n} runs past the end of its set"
        n += 1
    return bytes(out), n, None


def _uint(column: npt.NDArray[Any], length: int) -> U64:
    """An unsigned integer column of any width (reduced-size encodings too)."""
    if column.dtype.kind == "u":
        return column.astype(np.uint64)
    raw = np.frombuffer(column.tobytes(), np.uint8).reshape(-1, length)[:, -8:]
    out = np.zeros(len(raw), np.uint64)
    for j in range(raw.shape[1]):
        out = (out << np.uint64(8)) | raw[:, j].astype(np.uint64)
    return out


class _Fields:
    """Look up the columns of a decoded record array by information element."""

    def __init__(self, template: Template, records: npt.NDArray[Any]) -> None:
        self.records = records
        self.index: dict[int, tuple[str, int]] = {}
        self.reverse: dict[int, tuple[str, int]] = {}
        for i, f in enumerate(template.fields):
            if f.length == VARIABLE:
                continue
            table = {0: self.index, REVERSE_PEN: self.reverse}.get(f.enterprise)
            if table is not None and f.ie not in table:
                table[f.ie] = (f"f{i}", f.length)

    def has(self, ie: int) -> bool:
        return ie in self.index

    def uint(self, ie: int) -> U64 | None:
        hit = self.index.get(ie)
        if hit is None:
            return None
        return _uint(self.records[hit[0]], hit[1])

    def reverse_uint(self, ie: int) -> U64 | None:
        """An RFC 5103 reverse element (enterprise 29305) of information element ``ie``."""
        hit = self.reverse.get(ie)
        return None if hit is None else _uint(self.records[hit[0]], hit[1])

    def raw(self, ie: int, length: int) -> npt.NDArray[Any] | None:
        hit = self.index.get(ie)
        if hit is None or hit[1] != length:
            return None
        return self.records[hit[0]]


def options_values(template: Template, body: bytes) -> list[dict[int, int]]:
    """The integer values of the sampling and init-time fields of options data records."""
    if template.variable:
        body, n, _ = split_variable(template, body)
    dtype = dtype_of(template)
    if dtype.itemsize == 0:
        return []
    n = len(body) // dtype.itemsize
    records = np.frombuffer(body, dtype, count=n)
    fields = _Fields(template, records)
    out: list[dict[int, int]] = [{} for _ in range(n)]
    for ie in (*SAMPLING_IES, 160):
        values = fields.uint(ie)
        if values is not None:
            for row, v in zip(out, values.tolist(), strict=True):
                row[ie] = int(v)
    return out


def v4_strings(values: U64 | npt.NDArray[np.uint32]) -> pa.Array:
    """Canonical text of IPv4 addresses given as integers, computed once per distinct value.

    The distinct values are found by Arrow's hash table (no sort); the dotted quads are
    joined column-wise from the four octets' decimal text.
    """
    encoded = pc.dictionary_encode(pa.array(np.asarray(values).astype(np.uint32)))
    uniq = encoded.dictionary.to_numpy()
    octets = [pa.array((uniq >> np.uint32(shift)) & np.uint32(0xFF)).cast(pa.string())
              for shift in (24, 16, 8, 0)]  # fmt: skip
    text = pc.binary_join_element_wise(*octets, ".")
    return pc.take(text, encoded.indices)


def v6_strings(values: npt.NDArray[Any]) -> pa.Array:
    """Canonical text of IPv6 addresses given as 16-byte values, once per distinct value."""
    uniq, inverse = np.unique(values, return_inverse=True)
    text = pa.array([str(ipaddress.IPv6Address(bytes(v))) for v in uniq.tolist()], pa.string())
    return pc.take(text, pa.array(inverse.astype(np.int32)))


class Decoded:
    """The flow columns of one template's records, plus the rows that must be rejected."""

    def __init__(self, columns: dict[str, Any], length: int, bad: dict[str, npt.NDArray[Any]]):
        self.columns = columns
        self.length = length
        self.bad = bad  # reason -> boolean mask over the rows


@dataclass(frozen=True, slots=True)
class _Sets:
    """What the headers said about the data sets that hold records, one value per set."""

    counts: I64
    export_ms: I64
    uptime_ms: list[int | None]
    init_ms: list[int | None]

    def per_record(self, values: Any) -> I64:
        return np.repeat(np.asarray(values, np.int64), self.counts)


def _times(fields: _Fields, sets: _Sets) -> tuple[I64, I64]:
    counts = sets.counts
    export = sets.per_record(sets.export_ms)
    for first_ie, last_ie, unit in _TIME_PAIRS:
        first, last = fields.uint(first_ie), fields.uint(last_ie)
        if first is None and last is None:
            continue
        if unit == "ntp":
            conv = [_ntp_ms(v) if v is not None else None for v in (first, last)]
        else:
            scale = 1000 if unit == "s" else 1
            conv = [
                np.minimum(v, np.uint64(2**62)).astype(np.int64) * scale if v is not None else None
                for v in (first, last)
            ]
        start = conv[0] if conv[0] is not None else conv[1]
        end = conv[1] if conv[1] is not None else conv[0]
        assert start is not None and end is not None
        return start, end
    delta_first, delta_last = fields.uint(158), fields.uint(159)
    if delta_first is not None or delta_last is not None:
        d0 = delta_first if delta_first is not None else delta_last
        d1 = delta_last if delta_last is not None else delta_first
        assert d0 is not None and d1 is not None
        return export - (d0 // 1000).astype(np.int64), export - (d1 // 1000).astype(np.int64)
    first, last = fields.uint(22), fields.uint(21)
    if first is None and last is None:
        return export, export.copy()
    first = first if first is not None else last
    last = last if last is not None else first
    assert first is not None and last is not None
    if sets.uptime_ms[0] is not None:  # v5/v9: relative to the header's sysUptime
        up = sets.per_record([u or 0 for u in sets.uptime_ms])
        mask = np.int64(0xFFFFFFFF)
        start = export - ((up - first.astype(np.int64)) & mask)
        end = export - ((up - last.astype(np.int64)) & mask)
        return start, end
    # IPFIX: relative to the exporter's boot (systemInitTimeMilliseconds), where that is
    # known and before the export time; else the newest end in each set is taken to be the
    # export time.
    guess = np.maximum.reduceat(last.astype(np.int64), _starts(counts)) if len(last) else last
    base_ms = [
        i if i is not None and i <= e else e - g
        for i, e, g in zip(sets.init_ms, sets.export_ms.tolist(), guess.tolist(), strict=True)
    ]
    base = sets.per_record(base_ms)
    return base + first.astype(np.int64), base + last.astype(np.int64)


def _starts(counts: I64) -> I64:
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)


def _ntp_ms(value: U64) -> I64:
    seconds = (value >> np.uint64(32)).astype(np.int64) - NTP_EPOCH_S
    fraction = (value & np.uint64(0xFFFFFFFF)).astype(np.int64)
    return seconds * 1000 + (fraction * 1000 >> 32)


def _addresses(fields: _Fields, v4_ie: int, v6_ie: int) -> pa.Array | None:
    v4 = fields.raw(v4_ie, 4)
    v6 = fields.raw(v6_ie, 16)
    if v4 is None and v6 is None:
        return None
    if v6 is None:
        assert v4 is not None
        return v4_strings(v4)
    v6_text = v6_strings(v6)
    if v4 is None:
        return v6_text
    return pc.if_else(pa.array(v4 == 0), v6_text, v4_strings(v4))


def _ports(fields: _Fields, proto: U64 | None, n: int) -> tuple[U64 | None, U64 | None]:
    src, dst = fields.uint(7), fields.uint(11)
    if proto is None:
        return src, dst
    icmp = (proto == 1) | (proto == 58)
    if not icmp.any():
        return src, dst
    code = fields.uint(32)
    if code is None:
        code = fields.uint(139)
    if code is None or not code.any():
        code = dst if dst is not None else np.zeros(n, np.uint64)
    src = np.where(icmp, code >> np.uint64(8), src if src is not None else 0).astype(np.uint64)
    dst = np.where(icmp, code & np.uint64(0xFF), dst if dst is not None else 0).astype(np.uint64)
    return src, dst


def _records(
    dtype: np.dtype[Any], segments: Segments
) -> tuple[npt.NDArray[Any], _Sets, npt.NDArray[np.bool_]]:
    """All records of the data sets in one array; the sets that hold some; which they are."""
    size = dtype.itemsize
    lengths = np.fromiter(map(len, segments.bodies), np.int64, len(segments))
    counts = lengths // size
    held = counts > 0
    if (lengths == counts * size).all():  # no set has padding or a partial record
        body = b"".join(segments.bodies)
    else:
        body = b"".join(b[: int(c) * size] for b, c in zip(segments.bodies, counts, strict=True))
    records = np.frombuffer(body, dtype, count=int(counts.sum()))
    export = np.asarray(segments.export_ms, np.int64)
    if held.all():
        return records, _Sets(counts, export, segments.uptime_ms, segments.init_ms), held
    keep = np.flatnonzero(held).tolist()
    sets = _Sets(
        counts[held],
        export[held],
        [segments.uptime_ms[i] for i in keep],
        [segments.init_ms[i] for i in keep],
    )
    return records, sets, held


def decode(
    template: Template,
    segments: Segments,
    exporter: str | None,
    fmt: str,
    file: str,
) -> Decoded:
    """Decode every record of ``segments`` (all of ``template``) into flow columns."""
    dtype = dtype_of(template)
    records, sets, held = _records(dtype, segments)
    if not held.any():
        return Decoded({}, 0, {})
    counts = sets.counts
    n = len(records)
    fields = _Fields(template, records)
    src_ip = _addresses(fields, 8, 27)
    dst_ip = _addresses(fields, 12, 28)
    proto = fields.uint(4)
    if proto is None and (fields.has(32) or fields.has(139)):  # ICMP-only templates
        proto = np.full(n, 1 if fields.has(32) else 58, np.uint64)
    bad: dict[str, npt.NDArray[Any]] = {}
    if src_ip is None or dst_ip is None or proto is None:
        bad["missing-field"] = np.ones(n, bool)
    start, end = _times(fields, sets)
    bad_time = (start < 0) | (start > MAX_MS) | (end < 0) | (end > MAX_MS) | (end < start)
    if bad_time.any():
        bad["bad-time"] = bad_time
    rate = np.repeat(np.asarray(segments.rate, np.int64)[held], counts)
    for ie in SAMPLING_IES:
        inline = fields.uint(ie)
        if inline is not None:
            rate = np.where(inline > 0, inline.astype(np.int64), rate)
    scale = np.maximum(rate, 1).astype(np.uint64)
    octets = fields.uint(1) if fields.has(1) else fields.uint(85)
    packets = fields.uint(2) if fields.has(2) else fields.uint(86)
    src_port, dst_port = _ports(fields, proto, n)
    # a record's offset: its set's, plus the records before it in the set times their size
    first = np.asarray(segments.pos, np.int64)[held] - _starts(counts) * dtype.itemsize
    pos = np.repeat(first, counts) + np.arange(n, dtype=np.int64) * dtype.itemsize
    columns: dict[str, Any] = {
        "start": pa.array(np.clip(start, 0, MAX_MS) * 1000).cast(_TS),
        "end": pa.array(np.clip(end, 0, MAX_MS) * 1000).cast(_TS),
        "src_ip": src_ip,
        "dst_ip": dst_ip,
        "proto": _narrow(proto, np.uint8),
        "src_port": _narrow(src_port, np.uint16),
        "dst_port": _narrow(dst_port, np.uint16),
        "bytes": octets * scale if octets is not None else None,
        "packets": packets * scale if packets is not None else None,
        "tcp_flags": _narrow(fields.uint(6), np.uint16),
        "sampling_rate": pa.array(np.minimum(rate, 2**32 - 1).astype(np.uint32), mask=rate <= 0),
        "exporter": pa.repeat(pa.scalar(exporter, pa.string()), n) if exporter else None,
        "lineage_format": pa.repeat(pa.scalar(fmt, pa.string()), n),
        "lineage_file": pa.repeat(pa.scalar(file, pa.string()), n),
        "lineage_pos": pos,
    }
    rev_octets = fields.reverse_uint(1)
    rev_octets = rev_octets if rev_octets is not None else fields.reverse_uint(85)
    rev_packets = fields.reverse_uint(2)
    rev_packets = rev_packets if rev_packets is not None else fields.reverse_uint(86)
    if rev_octets is not None:
        columns["rev_bytes"] = rev_octets * scale
    if rev_packets is not None:
        columns["rev_packets"] = rev_packets * scale
    biflow = fields.uint(239)
    if biflow is not None:
        known = (biflow == 1) | (biflow == 2)
        columns["src_initiated"] = pa.array(biflow == 1, mask=~known)
    direction = fields.uint(61)
    if direction is not None:
        names = pa.array(["ingress", "egress", None], pa.string())
        columns["direction"] = pc.take(names, pa.array(np.minimum(direction, 2).astype(np.int32)))
    for name in ("src_ip", "dst_ip", "proto"):
        if columns[name] is None:
            columns[name] = pa.nulls(n, pa.string() if name != "proto" else pa.uint8())
    return Decoded(columns, n, bad)


def _narrow(values: U64 | None, dtype: type[np.unsignedinteger[Any]]) -> Any:
    """An integer column in its schema width; values that do not fit become null."""
    if values is None:
        return None
    limit = np.iinfo(dtype).max
    if not len(values) or values.max() <= limit:  # the usual case: every value fits
        return pa.array(values.astype(dtype))
    over = values > limit
    return pa.array(np.minimum(values, limit).astype(dtype), mask=over)
