"""Flow records as integer codes in SQL, one UTC day at a time: the input of the fast path.

:mod:`.fast` works on integers, never on strings:

- an **address** is its position among the window's distinct addresses in string order (a
  join with that small table), so that comparing two ids means what comparing the strings
  means in :mod:`.orient` (which end of a record is ``a``);
- an **endpoint** ``(address, proto, port)`` is one BIGINT, ``ip << 25 | proto << 17 |
  port + 1`` (port ``-1`` where the protocol has none);
- an **exporter** is the hash of its name (a missing one is the empty string, as in
  :mod:`.orient`); :func:`exporter_hashes_unique` checks that no two names share one.

A :class:`FlowDays` names the records of each day as a DuckDB relation; :func:`coded_sql`
turns it into the columns that both passes read. DuckDB reads the Parquet files itself, on
every core, and nothing per record crosses into Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

import pyarrow as pa

from cellwall.lake.layout import LakeLayout

__all__ = [
    "DAY_US",
    "EP_IP_SHIFT",
    "NO_EVIDENCE",
    "PORT_MASK",
    "FlowDays",
    "LakeDays",
    "TableDays",
    "coded_sql",
    "endpoint_sql",
    "listen_sql",
]

DAY_US = 86_400_000_000
EP_IP_SHIFT = 25  # proto: 8 bits, port + 1: 17 bits
PORT_MASK = (1 << 17) - 1
NO_EVIDENCE = 127  # the exporter-evidence code of a record without any (codes are 2..5)
_EPHEMERAL_FLOOR = 32768  # orient.EPHEMERAL_FLOOR


class FlowDays(Protocol):
    """Flow records (lake schema) grouped by the UTC day of their start."""

    def days(self) -> list[int]:
        """Day numbers (days since 1970-01-01) that may hold records, ascending."""
        ...

    def relation(self, con: Any, day: int | None) -> str:
        """SQL for the records of ``day`` (every day for ``None``) on ``con``."""
        ...


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class LakeDays:
    """The lake's day partitions over ``[since, until)``."""

    layout: LakeLayout
    since: datetime | None = None
    until: datetime | None = None

    def _folders(self) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        for folder in sorted(self.layout.flows.glob("day=*")):
            try:
                day = date.fromisoformat(folder.name.removeprefix("day="))
            except ValueError:
                continue
            if self.since is not None and day < self.since.astimezone(UTC).date():
                continue
            if self.until is not None and day > self.until.astimezone(UTC).date():
                continue
            files = sorted(str(p) for p in folder.glob("*.parquet"))
            if files:
                found[(day - _EPOCH).days] = files
        return found

    def days(self) -> list[int]:
        return sorted(self._folders())

    def relation(self, con: Any, day: int | None) -> str:
        folders = self._folders()
        files = [f for d in sorted(folders) if day is None or d == day for f in folders[d]]
        scan = f"read_parquet([{', '.join(_quote(f) for f in files)}], union_by_name = true)"
        where = []
        if self.since is not None:
            where.append(f"start >= {_quote(self.since.astimezone(UTC).isoformat())}::TIMESTAMPTZ")
        if self.until is not None:
            where.append(f"start < {_quote(self.until.astimezone(UTC).isoformat())}::TIMESTAMPTZ")
        return f"(SELECT * FROM {scan}{' WHERE ' + ' AND '.join(where) if where else ''})"


@dataclass(frozen=True, slots=True)
class TableDays:
    """An in-memory Arrow table of flow records in the lake's schema."""

    table: pa.Table

    def days(self) -> list[int]:
        start = self.table["start"].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        return sorted({v // DAY_US for v in start.unique().to_pylist()})

    def relation(self, con: Any, day: int | None) -> str:
        con.register("cellwall_flows", self.table)
        if day is None:
            return "cellwall_flows"
        lo, hi = day * DAY_US, (day + 1) * DAY_US
        return f"(SELECT * FROM cellwall_flows WHERE epoch_us(start) >= {lo} AND epoch_us(start) < {hi})"


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
    """Per record: ``src endpoint << 17 | dst port + 1`` and the same from the other end
    (-1 where that end has no port), and the endpoint that exporter evidence shows
    answering (-1 for none)."""
    src, dst = endpoint_sql("sid", "proto", "sp"), endpoint_sql("did", "proto", "dp")
    return f"""
    SELECT CASE WHEN sp >= 0 THEN ({src} << 17) | (dp + 1) ELSE -1 END src_pair,
           CASE WHEN dp >= 0 THEN ({dst} << 17) | (sp + 1) ELSE -1 END dst_pair,
           CASE WHEN xr IS NULL THEN -1 WHEN xs AND dp >= 0 THEN {dst}
                WHEN NOT xs AND sp >= 0 THEN {src} ELSE -1 END answered
    FROM ({_base_sql(relation)})"""


def coded_sql(relation: str) -> str:
    """Per record: the key ``k1`` (endpoint a), ``k2`` (endpoint b), ``exp``, ``start``,
    ``end_``, bytes and packets a → b and b → a, and ``code``: the exporter's evidence
    ``rank * 2 + (0 if a is the client else 1)`` (or :data:`NO_EVIDENCE`) times 16, plus
    the port numbers' verdict ``8 + (0 if a is the client else 1)``. The smallest code of
    a conversation holds its best exporter evidence, or else its best port verdict."""
    src, dst = endpoint_sql("sid", "proto", "sp"), endpoint_sql("did", "proto", "dp")
    sc, dc = _port_class("sp"), _port_class("dp")
    port_src = (f"CASE WHEN proto IN (1, 58) THEN sp NOT IN (0, 129) "
                f"WHEN {sc} <> {dc} THEN {sc} > {dc} ELSE sp >= dp END")  # fmt: skip
    return f"""
    SELECT CASE WHEN a_src THEN {src} ELSE {dst} END k1,
           CASE WHEN a_src THEN {dst} ELSE {src} END k2,
           exp, start, end_,
           CASE WHEN a_src THEN by_ ELSE rb END ab_b, CASE WHEN a_src THEN rb ELSE by_ END ba_b,
           CASE WHEN a_src THEN pk ELSE rp END ab_p, CASE WHEN a_src THEN rp ELSE pk END ba_p,
           (coalesce(xr * 2 + CASE WHEN xs = a_src THEN 0 ELSE 1 END, {NO_EVIDENCE}) * 16
            + 8 + CASE WHEN ({port_src}) = a_src THEN 0 ELSE 1 END)::SMALLINT code
    FROM (SELECT *, (sid < did) OR (sid = did AND sp <= dp) a_src FROM ({_base_sql(relation)}))"""
