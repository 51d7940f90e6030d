"""Flow records as integer codes in SQL, one UTC day at a time: the input of the fast path.

:mod:`.fast` works on integers, never on strings:

- an **address** is its position among the window's distinct addresses in string order (a
  join with that small table), so that comparing two ids means what comparing the strings
  means in :mod:`.orient` (which end of a record is ``a``);
- an **endpoint** ``(address, proto, port)`` is one BIGINT, ``ip << 25 | proto << 17 |
  port + 1`` (port ``-1`` where the protocol has none);
- an **exporter** is the hash of its name (a missing one is the empty string, as in
  :mod:`.orient`); :func:`exporter_hashes_unique` checks that no two names share one.

A :class:`FlowSource` cuts the records into time chunks and names each as a DuckDB relation;
:func:`coded_sql` turns one into the columns that both passes read. DuckDB reads the Parquet
files itself, on every core, and nothing per record crosses into Python. The lake's chunks
are whole hours planned from the Parquet footers (the row groups' ranges of ``start``), so
that a chunk reads only its own row groups and its working set stays small.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from cellwall.lake.layout import LakeLayout

__all__ = [
    "DAY_US",
    "EP_IP_SHIFT",
    "NO_EVIDENCE",
    "PORT_MASK",
    "Chunk",
    "FlowSource",
    "LakeFlows",
    "TableFlows",
    "coded_sql",
    "endpoint_sql",
    "listen_sql",
    "plan_chunks",
]

DAY_US = 86_400_000_000
EP_IP_SHIFT = 25  # proto: 8 bits, port + 1: 17 bits
PORT_MASK = (1 << 17) - 1
NO_EVIDENCE = 127  # the exporter-evidence code of a record without any (codes are 2..5)
_EPHEMERAL_FLOOR = 32768  # orient.EPHEMERAL_FLOOR


Chunk = tuple[int, int]  # [start, end) in microseconds since the epoch


class FlowSource(Protocol):
    """Flow records (lake schema), cut into time chunks by their start."""

    def chunks(self) -> list[Chunk]:
        """Non-overlapping ``[start, end)`` windows, ascending, that hold every record."""
        ...

    def relation(self, con: Any, chunk: Chunk | None) -> str:
        """SQL for the records of ``chunk`` (all of them for ``None``) on ``con``."""
        ...


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_EPOCH = date(1970, 1, 1)


def _us(t: datetime) -> int:
    return (t - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class _Group:
    """A Parquet row group: its file, rows and range of ``start``."""

    path: str
    rows: int
    lo: int
    hi: int  # inclusive


def _groups(path: str, day: int) -> list[_Group]:
    meta = pq.ParquetFile(path).metadata
    names = meta.schema.to_arrow_schema().names
    col = names.index("start") if "start" in names else -1
    out = []
    for i in range(meta.num_row_groups):
        rg = meta.row_group(i)
        stats = rg.column(col).statistics if col >= 0 else None
        if stats is not None and stats.has_min_max:
            lo, hi = _us(stats.min), _us(stats.max)
        else:  # no statistics: the whole day
            lo, hi = day * DAY_US, (day + 1) * DAY_US - 1
        out.append(_Group(path, rg.num_rows, lo, hi))
    return out


def plan_chunks(groups: Sequence[_Group], lo: int, hi: int, target: int) -> list[Chunk]:
    """Hour-aligned chunks of ``[lo, hi)`` that each read about ``target`` records or fewer
    (by the row groups' ranges of ``start``), or one chunk when the row groups are not in
    time order (every chunk would read most of them)."""
    hour = DAY_US // 24

    def reads(a: int, b: int) -> int:
        return sum(g.rows for g in groups if g.lo < b and g.hi >= a)

    out: list[Chunk] = []
    a = lo
    while a < hi:
        b = min(hi, (a // hour + 1) * hour)
        while b < hi and reads(a, min(hi, b + hour)) <= target:
            b = min(hi, b + hour)
        out.append((a, b))
        a = b
    total = sum(g.rows for g in groups if g.lo < hi and g.hi >= lo)
    if len(out) > 1 and sum(reads(a, b) for a, b in out) > 1.5 * total:
        return [(lo, hi)]
    return out


@dataclass(frozen=True, slots=True)
class LakeFlows:
    """The lake's records over ``[since, until)``, in chunks of about ``chunk_records``."""

    layout: LakeLayout
    since: datetime | None = None
    until: datetime | None = None
    chunk_records: int = 4_000_000

    def _days(self) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        for folder in sorted(self.layout.flows.glob("day=*")):
            try:
                day = date.fromisoformat(folder.name.removeprefix("day="))
            except ValueError:
                continue
            files = sorted(str(p) for p in folder.glob("*.parquet"))
            if files:
                found[(day - _EPOCH).days] = files
        return found

    def _window(self) -> Chunk:
        lo = _us(self.since.astimezone(UTC)) if self.since is not None else -(1 << 62)
        hi = _us(self.until.astimezone(UTC)) if self.until is not None else 1 << 62
        return lo, hi

    def chunks(self) -> list[Chunk]:
        w_lo, w_hi = self._window()
        out: list[Chunk] = []
        for day, files in sorted(self._days().items()):
            lo, hi = max(w_lo, day * DAY_US), min(w_hi, (day + 1) * DAY_US)
            if lo < hi:
                groups = [g for f in files for g in _groups(f, day)]
                out += plan_chunks(groups, lo, hi, self.chunk_records)
        return out

    def relation(self, con: Any, chunk: Chunk | None) -> str:
        lo, hi = chunk if chunk is not None else self._window()
        days = self._days()
        files = [f for d in sorted(days) if lo < (d + 1) * DAY_US and hi > d * DAY_US
                 for f in days[d]]  # fmt: skip
        if not files:
            return f"(SELECT * FROM {_EMPTY} WHERE false)"
        scan = f"read_parquet([{', '.join(_quote(f) for f in files)}], union_by_name = true)"
        return f"(SELECT * FROM {scan} WHERE {_between(lo, hi)})"


def _between(lo: int, hi: int) -> str:
    return f"start >= make_timestamptz({lo}::BIGINT) AND start < make_timestamptz({hi}::BIGINT)"


_EMPTY = "(SELECT NULL::TIMESTAMPTZ start)"


@dataclass(frozen=True, slots=True)
class TableFlows:
    """An in-memory Arrow table of flow records in the lake's schema, in chunks of
    ``chunk_us`` (a day unless told)."""

    table: pa.Table
    chunk_us: int = DAY_US

    def chunks(self) -> list[Chunk]:
        start = self.table["start"].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        first = sorted({v // self.chunk_us for v in start.unique().to_pylist()})
        return [(c * self.chunk_us, (c + 1) * self.chunk_us) for c in first]

    def relation(self, con: Any, chunk: Chunk | None) -> str:
        con.register("cellwall_flows", self.table)
        if chunk is None:
            return "cellwall_flows"
        return f"(SELECT * FROM cellwall_flows WHERE {_between(*chunk)})"


def endpoint_sql(ip: str, proto: str, port: str) -> str:
    return f"(({ip} << {EP_IP_SHIFT}) | ({proto} << 17) | ({port} + 1))"


def _port_class(p: str) -> str:
    return f"(CASE WHEN {p} < 1024 THEN 0 WHEN {p} < {_EPHEMERAL_FLOOR} THEN 1 ELSE 2 END)"


def _base_sql(relation: str) -> str:
    """Ids, ports, protocol, times, counters and the exporter's own verdict of each record:
    ``xr`` (1 initiator, 2 SYN or reject, else null) and ``xs`` (the source is the client)."""
    syn = ("(r.proto = 6 AND r.tcp_flags IS NOT NULL AND (r.tcp_flags::INTEGER & 2) <> 0 "
           "AND (r.tcp_flags::INTEGER & 16) = 0)")  # fmt: skip
    return f"""
    SELECT s.id sid, d.id did, coalesce(r.src_port::BIGINT, -1) sp,
           coalesce(r.dst_port::BIGINT, -1) dp, r.proto::BIGINT proto,
           epoch_us(r.start) start, epoch_us(coalesce(r."end", r.start)) end_,
           hash(coalesce(r.exporter, '')) exp,
           coalesce(r.bytes::BIGINT, 0) by_, coalesce(r.packets::BIGINT, 0) pk,
           coalesce(r.rev_bytes::BIGINT, 0) rb, coalesce(r.rev_packets::BIGINT, 0) rp,
           CASE WHEN r.src_initiated IS NOT NULL THEN 1
                WHEN {syn} OR coalesce(r.action = 'REJECT', false) THEN 2 END xr,
           coalesce(r.src_initiated, true) xs
    FROM {relation} r JOIN cellwall_addr s ON s.ip = r.src_ip
                      JOIN cellwall_addr d ON d.ip = r.dst_ip"""


def listen_sql(relation: str) -> str:
    """One column ``v``: per record, ``src endpoint << 17 | dst port + 1`` and the same from
    the other end (where that end has a port), and ``-1 - endpoint`` for the endpoint that
    exporter evidence shows answering."""
    src, dst = endpoint_sql("sid", "proto", "sp"), endpoint_sql("did", "proto", "dp")
    return f"""
    WITH b AS ({_base_sql(relation)})
    SELECT ({src} << 17) | (dp + 1) v FROM b WHERE sp >= 0
    UNION ALL SELECT ({dst} << 17) | (sp + 1) FROM b WHERE dp >= 0
    UNION ALL SELECT -1 - CASE WHEN xs THEN {dst} ELSE {src} END FROM b
    WHERE xr IS NOT NULL AND CASE WHEN xs THEN dp ELSE sp END >= 0"""


def coded_sql(relation: str) -> str:
    """Per record: the key ``k1`` (endpoint a), ``k2`` (endpoint b), ``exp``, ``start``,
    ``end_``, bytes and packets both ways (``tb``, ``tp``) and a → b and b → a, and
    ``code``: the exporter's evidence ``rank * 2 + (0 if a is the client else 1)`` (or
    :data:`NO_EVIDENCE`) times 16, plus the port numbers' verdict ``8 + (0 if a is the
    client else 1)``. The smallest code of a conversation holds its best exporter evidence,
    or else its best port verdict.

    Endpoint codes order as ``(ip, port)`` do (the protocol is the same at both ends), so
    ``a``, the smaller end, is the smaller code."""
    sc, dc = _port_class("sp"), _port_class("dp")
    port_src = (f"CASE WHEN proto IN (1, 58) THEN sp NOT IN (0, 129) "
                f"WHEN {sc} <> {dc} THEN {sc} > {dc} ELSE sp >= dp END")  # fmt: skip
    return f"""
    SELECT least(se, de) k1, greatest(se, de) k2, exp, start, end_,
           by_ + rb tb, pk + rp tp,
           CASE WHEN a_src THEN by_ ELSE rb END ab_b, CASE WHEN a_src THEN rb ELSE by_ END ba_b,
           CASE WHEN a_src THEN pk ELSE rp END ab_p, CASE WHEN a_src THEN rp ELSE pk END ba_p,
           (coalesce(xr * 2 + CASE WHEN xs = a_src THEN 0 ELSE 1 END, {NO_EVIDENCE}) * 16
            + 8 + CASE WHEN ({port_src}) = a_src THEN 0 ELSE 1 END)::SMALLINT code
    FROM (SELECT *, se <= de a_src FROM (
            SELECT *, {endpoint_sql("sid", "proto", "sp")} se,
                   {endpoint_sql("did", "proto", "dp")} de
            FROM ({_base_sql(relation)})))"""
