"""The map's fast path: conversations and edges, day by day, on integer-coded records.

The Ibis expressions of :mod:`.orient` and :mod:`.edges` are the definition, and they are what
Spark runs; this module computes the same result on one machine, faster and in bounded memory.
``tests/discover/test_fast.py`` keeps the two equal (conversations and edges, on the demo
estate and on cases made to break it: the gap rule, two exporters, conversations across
midnight).

Two passes over the window's records, read with :mod:`.coded`:

1. **Listening endpoints.** Each record's two ends become ``endpoint << 17 | peer port + 1``
   int64 values; sorting a day's values puts each endpoint's smallest and largest peer port
   at the ends of its run. Runs are merged over the days, and an endpoint listens when it
   has two peer ports, all 1024 and up, or when a record with exporter evidence shows it
   answering (:func:`orient.listening_endpoints`). The pass also numbers the addresses.
2. **Conversations, one UTC day at a time** (DuckDB over the day's Arrow arrays). Records are
   aggregated by key. A key whose records all start within the gap of its first start and
   that one exporter saw is one conversation, straight from that aggregate; the other keys
   go through the gap rule's window functions, as in :func:`orient.conversations`. A
   conversation that ends within the gap of midnight may go on the next day: its
   per-exporter aggregates are carried into the next day as records, and the gap rule
   treats them like the records they sum up. Closed conversations are oriented, their ends
   attributed to workloads at their first start, and summed into per-day edge parts, which
   are small; only those outlive the day.

Memory is bounded by one day of records, not by the window.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from cellwall.discover.coded import (
    CODED_SCHEMA,
    DAY_US,
    EP_IP_SHIFT,
    LISTEN_COLUMNS,
    PORT_MASK,
    RECORD_COLUMNS,
    FlowDays,
    Interner,
    code_records,
    endpoints,
    exporter_verdict,
)
from cellwall.discover.edges import Grouping, _segments_table
from cellwall.discover.external import classify_external
from cellwall.discover.orient import DEFAULT_GAP_SECONDS, EVIDENCE
from cellwall.inventory.classify import IPListSpec
from cellwall.model.inventory import Workload

__all__ = ["Listening", "fast_conversations", "fast_edges", "listening"]

_PEER_BITS = 17
_MAX_IPS = 1 << (63 - EP_IP_SHIFT - _PEER_BITS)  # endpoint << 17 | peer fits in an int64
_TS = pa.timestamp("us", tz="UTC")
_EVIDENCE_SQL = "[" + ", ".join(f"'{e}'" for e in EVIDENCE) + "]"  # 1-based, like the ranks


class TooManyAddresses(ValueError):
    """More distinct addresses than the integer coding holds (the caller uses Ibis)."""


@dataclass(frozen=True, slots=True)
class Listening:
    """The window's distinct addresses (in string order; an id is a position) and its
    listening endpoints (sorted endpoint codes over those ids)."""

    addresses: list[str]
    endpoints: np.ndarray


_MANY = PORT_MASK  # an endpoint state above every peer port + 1
_MERGE_AT = 1 << 22  # states gathered before they are merged


def _reduce(values: np.ndarray) -> np.ndarray:
    """Sorted ``endpoint << 17 | x`` values, where ``x`` is a peer port + 1 or a state, to
    one ``endpoint << 17 | state`` per endpoint. A state is *dead* (0: a peer port below
    1024 or none), one peer port + 1, or :data:`_MANY` peer ports; pairs and states merge
    alike, so the reduction can run in any grouping."""
    ep = values >> _PEER_BITS
    breaks = np.flatnonzero(ep[1:] != ep[:-1])
    first = np.empty(len(breaks) + 1, np.intp)
    first[0], first[1:] = 0, breaks + 1
    last = np.empty_like(first)
    last[:-1], last[-1] = breaks, len(values) - 1
    lo, hi = values[first] & PORT_MASK, values[last] & PORT_MASK
    state = np.where(lo < 1024 + 1, 0, np.where(hi > lo, _MANY, lo))
    return (values[first] & ~PORT_MASK) | state  # type: ignore[no-any-return]


def _merged(parts: list[np.ndarray]) -> np.ndarray:
    values = np.concatenate(parts)
    values.sort()
    return _reduce(values)


def listening(days: FlowDays) -> Listening:
    """Pass 1: the addresses of the window and its listening endpoints."""
    ips = Interner()
    states: list[np.ndarray] = []
    gathered = 0
    answered: list[np.ndarray] = [np.zeros(0, np.int64)]
    for day in days.days():
        for b in days.batches(day, LISTEN_COLUMNS):
            e = endpoints(b, ips)
            if len(ips) > _MAX_IPS:
                raise TooManyAddresses(f"more than {_MAX_IPS} distinct addresses")
            sp, dp = e["sp"], e["dp"]
            pairs = [((e["ep_s"] << _PEER_BITS) | (dp + 1))[sp >= 0],
                     ((e["ep_d"] << _PEER_BITS) | (sp + 1))[dp >= 0]]  # fmt: skip
            states.append(_merged(pairs))
            gathered += len(states[-1])
            if gathered > _MERGE_AT and len(states) > 1:
                states = [_merged(states)]
                gathered = len(states[0])
            rank, src_client = exporter_verdict(b, e["proto"])
            ev = rank > 0
            if ev.any():
                server = np.where(src_client, e["ep_d"], e["ep_s"])[ev]
                answered.append(server[np.where(src_client, dp, sp)[ev] >= 0])
    addresses, rank_of = ips.sorted_ids()
    final = _merged(states) if states else np.zeros(0, np.int64)
    by_peers = (final >> _PEER_BITS)[(final & PORT_MASK) == _MANY]
    eps = np.concatenate([by_peers, *answered])
    low_bits = (1 << EP_IP_SHIFT) - 1
    eps = (rank_of[eps >> EP_IP_SHIFT] << EP_IP_SHIFT) | (eps & low_bits)
    eps.sort()
    keep = np.ones(len(eps), bool)
    keep[1:] = eps[1:] != eps[:-1]
    return Listening(addresses, eps[keep])


def _connect(memory_limit: str, threads: int | None) -> Any:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{memory_limit}'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute("SET preserve_insertion_order = false")
    return con


_SUMS = "sum(ab_b) ab_b, sum(ba_b) ba_b, sum(ab_p) ab_p, sum(ba_p) ba_p"
_CARRY_COLUMNS = "k1, k2, exp, start, end_, ab_b, ba_b, ab_p, ba_p, cx, cp, records"


class _Days:
    """Pass 2: per-day conversations in DuckDB, the open ones carried to the next day."""

    def __init__(self, con: Any, gap_seconds: int) -> None:
        self.con = con
        self.gap = gap_seconds * 1_000_000
        con.execute(
            "CREATE TEMP TABLE carry (k1 BIGINT, k2 BIGINT, exp INTEGER, start BIGINT, "
            "end_ BIGINT, ab_b BIGINT, ba_b BIGINT, ab_p BIGINT, ba_p BIGINT, cx TINYINT, "
            "cp TINYINT, records BIGINT)"
        )

    def day(self, records: pa.Table, next_start: int | None) -> None:
        """Leaves this day's closed conversations in the table ``conv``."""
        con, gap = self.con, self.gap
        con.register("day_r", records)
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW r AS SELECT *, 1::BIGINT records FROM day_r "
            f"UNION ALL SELECT {_CARRY_COLUMNS} FROM carry"
        )
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE k AS SELECT k1, k2, min(start) lo, max(start) hi, "
            f"max(end_) mx, min(exp) e1, max(exp) e2, {_SUMS}, min(cx) cx, min(cp) cp, "
            f"sum(records)::BIGINT records FROM r GROUP BY k1, k2"
        )
        simple = f"hi <= lo + {gap} AND e1 = e2"
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE pe AS
            WITH cr AS (SELECT r.* FROM r SEMI JOIN
                        (SELECT k1, k2 FROM k WHERE NOT ({simple})) x USING (k1, k2)),
            w1 AS (SELECT *, max(end_) OVER (PARTITION BY k1, k2 ORDER BY start
                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) prev FROM cr),
            w2 AS (SELECT *, sum(CASE WHEN prev IS NULL OR start > prev + {gap} THEN 1 ELSE 0
                   END) OVER (PARTITION BY k1, k2 ORDER BY start
                   RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) seq FROM w1)
            SELECT k1, k2, seq, exp, min(start) start, max(end_) end_, {_SUMS}, min(cx) cx,
                   min(cp) cp, sum(records)::BIGINT records
            FROM w2 GROUP BY k1, k2, seq, exp"""
        )
        # A conversation whose end is within the gap of the next day may go on then.
        cut = "TRUE" if next_start is None else f"end_ < {next_start - gap}"
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE conv AS
            SELECT k1, k2, start, end_, bytes, packets, records, exporters, cx, cp FROM (
              SELECT k1, k2, lo start, mx end_, ab_b + ba_b bytes, ab_p + ba_p packets,
                     records, 1::BIGINT exporters, cx, cp FROM k WHERE {simple}
              UNION ALL
              SELECT k1, k2, min(start), max(end_), max(ab_b) + max(ba_b),
                     max(ab_p) + max(ba_p), sum(records)::BIGINT, count(*), min(cx), min(cp)
              FROM pe GROUP BY k1, k2, seq) c WHERE {cut}"""
        )
        if next_start is None:
            con.execute("DELETE FROM carry")
        else:
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE carry AS
                SELECT k1, k2, e1 exp, lo start, mx end_, ab_b, ba_b, ab_p, ba_p, cx, cp,
                       records FROM k WHERE {simple} AND NOT ({cut.replace("end_", "mx")})
                UNION ALL
                SELECT {_CARRY_COLUMNS} FROM pe SEMI JOIN
                  (SELECT k1, k2, seq FROM pe GROUP BY k1, k2, seq
                   HAVING NOT ({cut.replace("end_", "max(end_)")})) o USING (k1, k2, seq)"""
            )
        con.unregister("day_r")


# The orientation of a closed conversation (table ``conv``), as in orient.conversations.
_ORIENTED = f"""
  WITH o AS (
    SELECT c.*, CASE WHEN c.cx < 127 THEN c.cx
                     WHEN (la.ep IS NULL) <> (lb.ep IS NULL)
                       THEN CASE WHEN lb.ep IS NULL THEN 7 ELSE 6 END
                     ELSE c.cp END best
    FROM conv c LEFT JOIN listen la ON c.k1 = la.ep LEFT JOIN listen lb ON c.k2 = lb.ep),
  e AS (
    SELECT CASE WHEN best % 2 = 0 THEN k1 ELSE k2 END cep,
           CASE WHEN best % 2 = 0 THEN k2 ELSE k1 END sep, * FROM o)
  SELECT cep >> {EP_IP_SHIFT} cip, (cep & {PORT_MASK}) - 1 cport, sep >> {EP_IP_SHIFT} sip,
         (sep & {PORT_MASK}) - 1 sport, (sep >> 17) & 255 proto, start, end_, bytes, packets,
         records, exporters, best FROM e"""

_PARTS = f"""
  INSERT INTO parts
  SELECT coalesce(sc.owner, -1 - f.cip) cref, coalesce(ss.owner, -1 - f.sip) sref, f.proto,
         f.sport, floor(f.start / {DAY_US})::BIGINT AS day, count(*), sum(f.records),
         sum(f.bytes), sum(f.packets), min(f.start), max(f.end_)
  FROM ({_ORIENTED}) f
  LEFT JOIN seg sc ON sc.ip = f.cip AND f.start >= sc.f AND f.start < sc.u
  LEFT JOIN seg ss ON ss.ip = f.sip AND f.start >= ss.f AND f.start < ss.u
  GROUP BY ALL"""


def _day_records(days: FlowDays, day: int, ips: Interner, exporters: Interner) -> pa.Table:
    batches = [code_records(b, ips, exporters) for b in days.batches(day, RECORD_COLUMNS)]
    return pa.Table.from_batches(batches, schema=CODED_SCHEMA)


def _run_days(con: Any, days: FlowDays, listen: Listening, gap_seconds: int, sink: str) -> None:
    """Pass 2 over every day, running ``sink`` (SQL over ``conv``) after each."""
    con.register("listen", pa.table({"ep": listen.endpoints}))
    ips, exporters = Interner(listen.addresses), Interner()
    runner = _Days(con, gap_seconds)
    numbers = days.days()
    for i, day in enumerate(numbers):
        records = _day_records(days, day, ips, exporters)
        next_start = (day + 1) * DAY_US if i + 1 < len(numbers) else None
        runner.day(records, next_start)
        del records
        con.execute(sink)


def _segments(workloads: Sequence[Workload], addresses: Sequence[str]) -> pa.Table:
    seg = _segments_table(workloads)
    index = {ip: i for i, ip in enumerate(addresses)}
    ip = [index.get(v, -1) for v in seg["ip"].to_pylist()]
    owner = [w.name for w in workloads]
    number = {n: i for i, n in enumerate(owner)}
    return pa.table(
        {
            "ip": pa.array(ip, pa.int64()),
            "f": seg["s_from"].cast(pa.int64()),
            "u": seg["s_until"].cast(pa.int64()),
            "owner": pa.array([number[o] for o in seg["owner"].to_pylist()], pa.int64()),
        }
    )


def _service_sql(proto: str, port: str) -> str:
    """:func:`orient.service_name` in SQL."""
    name = (f"CASE {proto} WHEN 6 THEN 'tcp' WHEN 17 THEN 'udp' WHEN 132 THEN 'sctp' "
            f"ELSE 'proto-' || {proto} END")  # fmt: skip
    return (
        f"CASE WHEN {proto} = 1 THEN 'icmp' WHEN {proto} = 58 THEN 'icmpv6' "
        f"WHEN {port} < 0 THEN {name} ELSE {name} || '/' || {port} END"
    )


def fast_edges(
    days: FlowDays,
    workloads: Sequence[Workload],
    grouping: Grouping,
    *,
    iplists: Mapping[str, IPListSpec] | None = None,
    dns_names: Mapping[str, str] | None = None,
    services: Iterable[str] | None = None,
    only_workloads: Iterable[str] | None = None,
    gap_seconds: int = DEFAULT_GAP_SECONDS,
    memory_limit: str = "2GB",
    threads: int | None = None,
) -> tuple[pa.Table, list[str]]:
    """:func:`edges.edges_table` of :func:`orient.conversations` over ``days``, as Arrow (the
    same rows, in the same order), and the window's distinct addresses."""
    listen = listening(days)
    con = _connect(memory_limit, threads)
    con.register("seg", _segments(workloads, listen.addresses))
    con.execute(
        "CREATE TEMP TABLE parts (cref BIGINT, sref BIGINT, proto BIGINT, sport BIGINT, "
        "day BIGINT, conversations BIGINT, records BIGINT, bytes BIGINT, packets BIGINT, "
        "first_seen BIGINT, last_seen BIGINT)"
    )
    _run_days(con, days, listen, gap_seconds, _PARTS)
    refs = con.execute("SELECT DISTINCT r FROM (SELECT cref r FROM parts UNION "
                       "SELECT sref FROM parts)").fetchnumpy()["r"]  # fmt: skip
    ip_ids = sorted(int(-1 - r) for r in refs if r < 0)
    ext = classify_external([listen.addresses[i] for i in ip_ids], iplists, dns_names)
    nodes = [grouping.node(w) for w in workloads] + ext["node"].to_pylist()
    names = [w.name for w in workloads] + [None] * len(ip_ids)
    con.register("nodes", pa.table({
        "ref": pa.array(list(range(len(workloads))) + [-1 - i for i in ip_ids], pa.int64()),
        "node": pa.array(nodes, pa.string()), "owner": pa.array(names, pa.string()),
    }))  # fmt: skip
    con.execute(
        "CREATE TEMP TABLE svc AS SELECT proto, sport, "
        f"{_service_sql('proto', 'sport')} service FROM (SELECT DISTINCT proto, sport FROM parts)"
    )
    where = []
    if services is not None:
        con.register("keep_svc", pa.table({"s": pa.array(list(services), pa.string())}))
        where.append("v.service IN (SELECT s FROM keep_svc)")
    if only_workloads is not None:
        con.register("keep_wl", pa.table({"w": pa.array(list(only_workloads), pa.string())}))
        where.append("(c.owner IN (SELECT w FROM keep_wl) OR s.owner IN (SELECT w FROM keep_wl))")
    cond = ("WHERE " + " AND ".join(where)) if where else ""
    edges = con.sql(
        f"""SELECT c.node client, s.node server, v.service, sum(p.conversations)::BIGINT
              conversations, sum(p.records)::BIGINT records, sum(p.bytes)::BIGINT bytes,
              sum(p.packets)::BIGINT packets, make_timestamp(min(p.first_seen)) first_seen,
              make_timestamp(max(p.last_seen)) last_seen, count(DISTINCT p.day)::BIGINT "days"
            FROM parts p JOIN nodes c ON p.cref = c.ref JOIN nodes s ON p.sref = s.ref
            JOIN svc v ON p.proto = v.proto AND p.sport = v.sport {cond}
            GROUP BY ALL ORDER BY client, server, service"""
    ).to_arrow_table()
    con.close()
    return edges.cast(_edge_schema(edges.schema)), listen.addresses


def _edge_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema(
        [pa.field(f.name, _TS) if f.name in ("first_seen", "last_seen") else f for f in schema]
    )


_CONVERSATIONS = f"""
  INSERT INTO convs SELECT cip, sip, sport, proto, {_service_sql("proto", "sport")},
    make_timestamp(start), make_timestamp(end_), bytes, packets, records, exporters,
    {_EVIDENCE_SQL}[best // 2]
  FROM ({_ORIENTED}) f"""


def fast_conversations(
    days: FlowDays, *, gap_seconds: int = DEFAULT_GAP_SECONDS, memory_limit: str = "2GB"
) -> pa.Table:
    """:func:`orient.conversations` over ``days``, as Arrow (in no particular order).

    This materialises one row per conversation: it is for tests and small windows.
    """
    listen = listening(days)
    con = _connect(memory_limit, None)
    con.execute(
        "CREATE TEMP TABLE convs (cip BIGINT, sip BIGINT, server_port INTEGER, proto BIGINT, "
        "service VARCHAR, start TIMESTAMP, \"end\" TIMESTAMP, bytes BIGINT, packets BIGINT, "
        "records BIGINT, exporters BIGINT, orientation_evidence VARCHAR)"
    )
    _run_days(con, days, listen, gap_seconds, _CONVERSATIONS)
    got = con.sql("SELECT * FROM convs").to_arrow_table()
    con.close()
    addresses = pa.array(listen.addresses, pa.string())
    return pa.table(
        {
            "client_ip": addresses.take(got["cip"]),
            "server_ip": addresses.take(got["sip"]),
            **{c: got[c] for c in ("server_port", "proto", "service")},
            "start": got["start"].cast(_TS),
            "end": got["end"].cast(_TS),
            **{c: got[c] for c in ("bytes", "packets", "records", "exporters")},
            "orientation_evidence": got["orientation_evidence"],
        }
    )
