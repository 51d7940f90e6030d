"""The map's fast path: conversations and edges, chunk by chunk, on integer-coded records.

The Ibis expressions of :mod:`.orient` and :mod:`.edges` are the definition, and they are what
Spark runs; this module computes the same result on one machine, faster and in bounded memory.
``tests/discover/test_fast.py`` keeps the two equal (conversations and edges, on the demo
estates and on cases made to break it: the gap rule, two exporters, conversations across
chunk boundaries and midnight, owners that change).

Records are read and coded by DuckDB (:mod:`.coded`) in time chunks of a few million, in two
passes over the window:

1. **Listening endpoints.** Each record gives two ``endpoint << 17 | peer port + 1`` values;
   sorted, an endpoint's values form a run whose ends are its smallest and largest peer
   port. Runs reduce to one *state* per endpoint (a peer port below 1024: never listening;
   one peer port; several), and states merge the same way across chunks. An endpoint
   listens when it has several peer ports and none below 1024, or when a record with
   exporter evidence shows it answering (:func:`orient.listening_endpoints`).
2. **Conversations, chunk by chunk**, one DuckDB statement each. Records are aggregated by
   key. A key whose records all start within the gap of its first start, that one exporter
   saw and that ends before the chunk's last gap is one conversation, straight from that
   aggregate. The other keys go through the gap rule's window functions, as in
   :func:`orient.conversations`. A conversation that ends within the gap of the chunk's end
   may go on in the next chunk: its per-exporter aggregates are carried there, and the gap
   rule treats them like the records they sum up. Closed conversations are oriented, their
   ends attributed to workloads at their first start, and summed into per-day parts of
   edges, which are small; only those outlive the chunk.

Memory is bounded by one chunk of records, not by the window.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from cellwall.discover.coded import (
    DAY_US,
    EP_IP_SHIFT,
    NO_EVIDENCE,
    PORT_MASK,
    FlowSource,
    coded_sql,
    listen_sql,
)
from cellwall.discover.edges import Grouping, _segments_table
from cellwall.discover.external import classify_external
from cellwall.discover.orient import DEFAULT_GAP_SECONDS, EVIDENCE
from cellwall.inventory.classify import IPListSpec
from cellwall.model.inventory import Workload

__all__ = ["FastPathUnavailable", "Listening", "fast_conversations", "fast_edges", "listening"]

_PEER_BITS = 17
_MAX_IPS = 1 << (63 - EP_IP_SHIFT - _PEER_BITS)  # endpoint << 17 | peer fits in a BIGINT
_MANY = PORT_MASK  # an endpoint state above every peer port + 1
_TS = pa.timestamp("us", tz="UTC")
_EVIDENCE_SQL = "[" + ", ".join(f"'{e}'" for e in EVIDENCE) + "]"  # 1-based, like the ranks


class FastPathUnavailable(ValueError):
    """The window does not fit the integer coding (the caller runs the Ibis expressions)."""


@dataclass(frozen=True, slots=True)
class Listening:
    """The window's distinct addresses (in string order; an id is a position) and its
    listening endpoints (sorted endpoint codes over those ids)."""

    addresses: list[str]
    endpoints: np.ndarray


def _connect(memory_limit: str, threads: int | None) -> Any:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{memory_limit}'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute("SET preserve_insertion_order = false")
    return con


def _prepare(con: Any, flows: FlowSource) -> list[str]:
    """Registers the window's addresses (``cellwall_addr``: ip, id in string order) and
    checks that exporter names hash apart."""
    every = flows.relation(con, None)
    ips = con.sql(
        f"SELECT DISTINCT ip FROM (SELECT src_ip ip FROM {every} UNION ALL "
        f"SELECT dst_ip FROM {every}) ORDER BY ip"
    ).fetchnumpy()["ip"]
    addresses = [str(ip) for ip in ips]
    if len(addresses) > _MAX_IPS:
        raise FastPathUnavailable(f"more than {_MAX_IPS} distinct addresses")
    ids = np.arange(len(addresses), dtype=np.int64)
    con.register("cellwall_addr", pa.table({"ip": pa.array(addresses, pa.string()), "id": ids}))
    ((names, hashes),) = con.sql(
        f"SELECT count(DISTINCT e), count(DISTINCT hash(e)) FROM "
        f"(SELECT coalesce(exporter, '') e FROM {every})"
    ).fetchall()
    if names != hashes:
        raise FastPathUnavailable("two exporter names share a hash")
    return addresses


def _reduce(values: np.ndarray) -> np.ndarray:
    """Sorted ``endpoint << 17 | x`` values, where ``x`` is a peer port + 1 or a state, to
    one ``endpoint << 17 | state`` per endpoint. A state is *dead* (0: a peer port below
    1024, or none), one peer port + 1, or :data:`_MANY` peer ports; pairs and states merge
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


def _merged(parts: Sequence[np.ndarray]) -> np.ndarray:
    values = np.concatenate(parts)
    if not len(values):
        return values
    values.sort()
    return _reduce(values)


def _listening(con: Any, flows: FlowSource) -> np.ndarray:
    states: list[np.ndarray] = []
    answered: list[np.ndarray] = [np.zeros(0, np.int64)]
    for chunk in flows.chunks():
        values = np.asarray(con.sql(listen_sql(flows.relation(con, chunk))).fetchnumpy()["v"])
        values.sort()
        split = int(np.searchsorted(values, 0))  # answering endpoints first, as -1 - endpoint
        answered.append(np.unique(-1 - values[:split]))
        if split < len(values):
            states.append(_reduce(values[split:]))
    final = _merged(states) if states else np.zeros(0, np.int64)
    by_peers = (final >> _PEER_BITS)[(final & PORT_MASK) == _MANY]
    return np.unique(np.concatenate([by_peers, *answered]))


def listening(flows: FlowSource, *, memory_limit: str = "2GB") -> Listening:
    """Pass 1 alone: the window's addresses and its listening endpoints."""
    con = _connect(memory_limit, None)
    try:
        addresses = _prepare(con, flows)
        return Listening(addresses, _listening(con, flows))
    finally:
        con.close()


_CARRY = (
    "k1 BIGINT, k2 BIGINT, exp UBIGINT, seq BIGINT, start BIGINT, end_ BIGINT, ab_b BIGINT, "
    "ba_b BIGINT, ab_p BIGINT, ba_p BIGINT, code SMALLINT, records BIGINT"
)
_CARRY_COLUMNS = "k1, k2, exp, start, end_, ab_b, ba_b, ab_p, ba_p, code, records"


def _chunk_sql(relation: str, gap: int, cut: int, sink: str) -> str:
    """One chunk: conversations (``conv``, closed before ``cut``), oriented (``f``), then
    ``sink`` over ``f``, tagged 0, and the open conversations' per-exporter rows, tagged 1.

    The records are read twice (the second time only for keys that need the gap rule's
    window functions): that costs less than DuckDB's materialising them."""
    rec = coded_sql(relation)
    return f"""
    WITH k AS (SELECT k1, k2, min(start) lo, max(start) hi, max(end_) mx, min(exp) e1, max(exp) e2,
                 sum(tb) bytes, sum(tp) packets, min(code) code, count(*) records
          FROM ({rec}) GROUP BY k1, k2),
    kc AS (SELECT k1, k2 FROM k WHERE hi > lo + {gap} OR e1 <> e2 OR mx >= {cut}
           UNION SELECT k1, k2 FROM cellwall_carry),
    cr AS (SELECT {_CARRY_COLUMNS.replace("records", "1::BIGINT records")}
           FROM ({rec}) SEMI JOIN kc USING (k1, k2)
           UNION ALL SELECT {_CARRY_COLUMNS} FROM cellwall_carry),
    w1 AS (SELECT *, max(end_) OVER (PARTITION BY k1, k2 ORDER BY start
                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) prev FROM cr),
    w2 AS (SELECT *, sum(CASE WHEN prev IS NULL OR start > prev + {gap} THEN 1 ELSE 0 END)
                     OVER (PARTITION BY k1, k2 ORDER BY start
                     RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) seq FROM w1),
    pe AS (SELECT k1, k2, exp, seq, min(start) start, max(end_) end_, sum(ab_b) ab_b,
                  sum(ba_b) ba_b, sum(ab_p) ab_p, sum(ba_p) ba_p, min(code) code,
                  sum(records) records
           FROM w2 GROUP BY k1, k2, seq, exp),
    pc AS (SELECT k1, k2, seq, min(start) start, max(end_) end_,
                  max(ab_b) + max(ba_b) bytes, max(ab_p) + max(ba_p) packets,
                  sum(records) records, count(*) exporters, min(code) code
           FROM pe GROUP BY k1, k2, seq),
    conv AS (SELECT k1, k2, lo start, mx end_, bytes, packets, records, 1 exporters, code
             FROM k ANTI JOIN kc USING (k1, k2)
             UNION ALL SELECT k1, k2, start, end_, bytes, packets, records, exporters, code
             FROM pc WHERE end_ < {cut}),
    o AS (SELECT c.*, CASE WHEN c.code < {NO_EVIDENCE * 16} THEN c.code // 16
                           WHEN (la.ep IS NULL) <> (lb.ep IS NULL)
                             THEN CASE WHEN lb.ep IS NULL THEN 7 ELSE 6 END
                           ELSE c.code % 16 END best
          FROM conv c LEFT JOIN cellwall_listen la ON c.k1 = la.ep
                      LEFT JOIN cellwall_listen lb ON c.k2 = lb.ep),
    e AS (SELECT CASE WHEN best % 2 = 0 THEN k1 ELSE k2 END cep,
                 CASE WHEN best % 2 = 0 THEN k2 ELSE k1 END sep, * FROM o),
    f AS (SELECT cep >> {EP_IP_SHIFT} cip, sep >> {EP_IP_SHIFT} sip,
                 (sep & {PORT_MASK}) - 1 sport, (sep >> 17) & 255 proto, start, end_,
                 bytes::BIGINT bytes, packets::BIGINT packets, records::BIGINT records,
                 exporters::BIGINT exporters, best FROM e),
    out AS ({sink})
    SELECT 0 tag, * FROM out
    UNION ALL BY NAME
    SELECT 1 tag, k1, k2, exp, seq, start, end_, ab_b::BIGINT ab_b, ba_b::BIGINT ba_b,
           ab_p::BIGINT ab_p, ba_p::BIGINT ba_p, code, records::BIGINT records
    FROM pe SEMI JOIN (SELECT k1, k2, seq FROM pc WHERE end_ >= {cut}) o USING (k1, k2, seq)
    """


# Per-day parts of edges: client and server as a workload number (``seg.owner``) or, for an
# address that no workload owns then, ``-1 - address id``.
_PARTS = f"""
    SELECT coalesce(sc.owner, -1 - f.cip) cref, coalesce(ss.owner, -1 - f.sip) sref,
           f.proto, f.sport, floor(f.start / {DAY_US})::BIGINT AS day, count(*) n,
           sum(f.records)::BIGINT p_records, sum(f.bytes)::BIGINT p_bytes,
           sum(f.packets)::BIGINT p_packets, min(f.start) first_seen, max(f.end_) last_seen
    FROM f
    LEFT JOIN cellwall_seg sc ON sc.ip = f.cip AND f.start >= sc.f AND f.start < sc.u
    LEFT JOIN cellwall_seg ss ON ss.ip = f.sip AND f.start >= ss.f AND f.start < ss.u
    GROUP BY ALL"""

_CONVERSATIONS = """
    SELECT cip, sip, sport server_port, proto, f.start c_start, f.end_ c_end,
           bytes c_bytes, packets c_packets, records c_records, exporters, best FROM f"""


def _run_chunks(con: Any, flows: FlowSource, gap_seconds: int, sink: str) -> pa.Table:
    """Pass 2 over every chunk; the rows of ``sink`` from all of them."""
    gap = gap_seconds * 1_000_000
    carry = pa.schema([(c.split()[0], _SQL_TYPES[c.split()[1]]) for c in _CARRY.split(", ")])
    con.register("cellwall_carry", carry.empty_table())
    out: list[pa.Table] = []
    chunks = flows.chunks()
    for i, chunk in enumerate(chunks):
        # a conversation that ends within the gap of the next chunk may go on there
        cut = chunk[1] - gap if i + 1 < len(chunks) else 1 << 62
        got = con.sql(_chunk_sql(flows.relation(con, chunk), gap, cut, sink)).to_arrow_table()
        tag = got["tag"].to_numpy()
        out.append(got.filter(pa.array(tag == 0)).drop_columns([*carry.names, "tag"]))
        con.register("cellwall_carry", got.filter(pa.array(tag == 1)).select(carry.names))
    return pa.concat_tables(out)


_SQL_TYPES = {"BIGINT": pa.int64(), "UBIGINT": pa.uint64(), "SMALLINT": pa.int16()}


def _segments(workloads: Sequence[Workload], addresses: Sequence[str]) -> pa.Table:
    seg = _segments_table(workloads)
    index = {ip: i for i, ip in enumerate(addresses)}
    number = {w.name: i for i, w in enumerate(workloads)}
    return pa.table(
        {
            "ip": pa.array([index.get(v, -1) for v in seg["ip"].to_pylist()], pa.int64()),
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


def _passes(
    flows: FlowSource, memory_limit: str, threads: int | None, sink: str, gap_seconds: int,
    workloads: Sequence[Workload] = (),
) -> tuple[Any, list[str], pa.Table]:  # fmt: skip
    con = _connect(memory_limit, threads)
    addresses = _prepare(con, flows)
    con.register("cellwall_listen", pa.table({"ep": _listening(con, flows)}))
    con.register("cellwall_seg", _segments(workloads, addresses))
    return con, addresses, _run_chunks(con, flows, gap_seconds, sink)


def fast_edges(
    flows: FlowSource,
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
    """:func:`edges.edges_table` of :func:`orient.conversations` over ``flows``, as Arrow (the
    same rows in the same order), and the window's distinct addresses."""
    con, addresses, parts = _passes(flows, memory_limit, threads, _PARTS, gap_seconds, workloads)
    try:
        con.register("cellwall_parts", parts)
        refs = np.unique(np.concatenate([parts["cref"].to_numpy(), parts["sref"].to_numpy()]))
        ip_ids = sorted(int(-1 - r) for r in refs.tolist() if r < 0)
        ext = classify_external([addresses[i] for i in ip_ids], iplists, dns_names)
        con.register("cellwall_nodes", pa.table({
            "ref": pa.array(list(range(len(workloads))) + [-1 - i for i in ip_ids], pa.int64()),
            "node": pa.array([grouping.node(w) for w in workloads] + ext["node"].to_pylist(),
                             pa.string()),
            "owner": pa.array([w.name for w in workloads] + [None] * len(ip_ids), pa.string()),
        }))  # fmt: skip
        where = []
        if services is not None:
            con.register(
                "cellwall_keep_svc", pa.table({"s": pa.array(list(services), pa.string())})
            )
            where.append("service IN (SELECT s FROM cellwall_keep_svc)")
        if only_workloads is not None:
            keep = pa.table({"w": pa.array(list(only_workloads), pa.string())})
            con.register("cellwall_keep_wl", keep)
            where.append("(c.owner IN (SELECT w FROM cellwall_keep_wl) "
                         "OR s.owner IN (SELECT w FROM cellwall_keep_wl))")  # fmt: skip
        edges = con.sql(
            f"""SELECT c.node client, s.node server, service,
                  sum(n)::BIGINT conversations, sum(p_records)::BIGINT records,
                  sum(p_bytes)::BIGINT bytes, sum(p_packets)::BIGINT packets,
                  make_timestamp(min(first_seen)) first_seen,
                  make_timestamp(max(last_seen)) last_seen, count(DISTINCT day)::BIGINT "days"
                FROM (SELECT *, {_service_sql("proto", "sport")} service FROM cellwall_parts) p
                JOIN cellwall_nodes c ON p.cref = c.ref JOIN cellwall_nodes s ON p.sref = s.ref
                {"WHERE " + " AND ".join(where) if where else ""}
                GROUP BY ALL ORDER BY client, server, service"""
        ).to_arrow_table()
    finally:
        con.close()
    schema = pa.schema([pa.field(f.name, _TS) if f.name.endswith("_seen") else f
                        for f in edges.schema])  # fmt: skip
    return edges.cast(schema), addresses


def fast_conversations(
    flows: FlowSource, *, gap_seconds: int = DEFAULT_GAP_SECONDS, memory_limit: str = "2GB"
) -> pa.Table:
    """:func:`orient.conversations` over ``flows``, as Arrow (in no particular order).

    This materialises one row per conversation: it is for tests and small windows.
    """
    con, _, got = _passes(flows, memory_limit, None, _CONVERSATIONS, gap_seconds)
    try:
        con.register("cellwall_conv", got)
        rows = con.sql(
            f"""SELECT a.ip client_ip, b.ip server_ip, server_port::INTEGER server_port,
                  proto, {_service_sql("proto", "server_port")} service,
                  make_timestamp(c_start) start, make_timestamp(c_end) "end",
                  c_bytes bytes, c_packets packets, c_records records, exporters,
                  {_EVIDENCE_SQL}[best // 2] orientation_evidence
                FROM cellwall_conv JOIN cellwall_addr a ON a.id = cip
                JOIN cellwall_addr b ON b.id = sip"""
        ).to_arrow_table()
    finally:
        con.close()
    schema = pa.schema([pa.field(f.name, _TS) if f.name in ("start", "end") else f
                        for f in rows.schema])  # fmt: skip
    return rows.cast(schema)
