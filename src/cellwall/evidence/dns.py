"""DNS evidence: which name an address answered for, and until when that answer held.

A row says that at ``ts`` a DNS answer mapped ``name`` to ``ip`` and that the answer was
valid until ``valid_until``. Rows come from Zeek ``dns.log`` (format ``zeek-dns``) and from
Cilium Hubble L7 DNS flows (format ``hubble``); ingest stores them in the lake under
``LAKE/dns/day=YYYY-MM-DD/`` (by the UTC day of ``ts``) in the same transaction as the
file's flows.

- ``name`` is the *query* name, lower-cased and without its trailing dot: the name a client
  asked for is what an ``fqdn`` selector names, not a CDN's CNAME target.
- Only answers that are IP addresses become rows; CNAMEs and other records are skipped.
- ``valid_until = ts + clamp(ttl, MIN_TTL_S, MAX_TTL_S)``; a missing TTL counts as
  ``MIN_TTL_S``. ``ttl_s`` keeps the TTL as the source gave it.

:func:`names_for` answers "which name did this address have at this time" for whole
columns at once: among the answers with ``ts <= t < valid_until`` for the address, the most
recent wins (ties: the alphabetically first name).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from cellwall.model.net import canonical_ips

__all__ = [
    "DNS_SCHEMA",
    "MAX_TTL_S",
    "MIN_TTL_S",
    "addresses",
    "dns_files",
    "dns_rows",
    "empty_dns",
    "names_for",
    "names_in",
    "scan_dns",
]

#: An answer counts for at least a minute (resolvers and clients keep answers past a 0 TTL)
#: and at most a day (a week-long TTL should not name an address that has moved on).
MIN_TTL_S = 60
MAX_TTL_S = 86_400

TS = pa.timestamp("us", tz="UTC")
DNS_SCHEMA = pa.schema(
    [
        pa.field("ts", TS, nullable=False),
        pa.field("ip", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("ttl_s", pa.uint32()),
        pa.field("valid_until", TS, nullable=False),
        pa.field("client_ip", pa.string()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("lineage_file", pa.string(), nullable=False),
        pa.field("lineage_pos", pa.int64(), nullable=False),
    ]
)
_US = 1_000_000


def empty_dns() -> pa.Table:
    return DNS_SCHEMA.empty_table()


def _normal_names(names: pa.Array) -> pa.Array:
    lowered = pc.utf8_lower(names)
    return pc.utf8_rtrim(lowered, characters=".")


def dns_rows(
    ts_us: npt.NDArray[np.int64],
    query: pa.Array,
    answers: pa.ListArray,
    ttls: pa.ListArray | pa.Array | None,
    client: pa.Array | None,
    pos: npt.NDArray[np.int64],
    *,
    source: str,
    file: str,
) -> pa.Table:
    """Evidence rows for records that each asked ``query`` and got the list ``answers``.

    ``ttls`` is either a list per record, paired with ``answers`` by position (Zeek), or one
    number per record for all its answers (Hubble), or None. Column-wise throughout.
    """
    answers = answers.cast(pa.list_(pa.string()))
    flat = answers.flatten()
    if len(flat) == 0:
        return empty_dns()
    parent = np.asarray(pc.list_parent_indices(answers), np.int64)
    offsets = np.asarray(answers.offsets, np.int64)
    if answers.offset:  # flatten() starts at the first value of the slice
        offsets = offsets - offsets[0]
    ttl = _answer_ttls(ttls, parent, offsets, len(flat))
    ips = canonical_ips(flat)
    name = _normal_names(pc.take(query, pa.array(parent)))
    keep = pc.and_(pc.is_valid(ips), pc.invert(pc.equal(name, "").fill_null(True)))
    keep_np = np.asarray(keep.fill_null(False))
    rows = parent[keep_np]
    ttl = ttl.filter(keep)
    start = ts_us[rows]
    span = np.clip(ttl.fill_null(MIN_TTL_S).to_numpy(zero_copy_only=False), MIN_TTL_S, MAX_TTL_S)
    client_col = pc.take(canonical_ips(client), pa.array(rows)) if client is not None else None
    n = len(rows)
    return pa.Table.from_arrays(
        [
            pa.array(start, TS),
            ips.filter(keep),
            name.filter(keep),
            ttl,
            pa.array(start + span.astype(np.int64) * _US, TS),
            client_col if client_col is not None else pa.nulls(n, pa.string()),
            pa.array([source] * n, pa.string()),
            pa.array([file] * n, pa.string()),
            pa.array(pos[rows], pa.int64()),
        ],
        schema=DNS_SCHEMA,
    )


def _answer_ttls(
    ttls: pa.ListArray | pa.Array | None,
    parent: npt.NDArray[np.int64],
    offsets: npt.NDArray[np.int64],
    size: int,
) -> pa.Array:
    """One TTL (uint32 seconds, or null) per flattened answer."""
    if ttls is None:
        return pa.nulls(size, pa.uint32())
    if not pa.types.is_list(ttls.type):
        return _seconds(pc.take(ttls, pa.array(parent)))
    values = ttls.flatten()
    t_off = np.asarray(ttls.offsets, np.int64)
    if ttls.offset:
        t_off = t_off - t_off[0]
    t_len = np.diff(t_off)
    at = np.arange(size, dtype=np.int64) - offsets[parent]
    has = at < t_len[parent]
    idx = np.where(has, t_off[parent] + at, 0)
    if len(values) == 0:
        return pa.nulls(size, pa.uint32())
    taken = pc.take(values, pa.array(idx))
    return _seconds(pc.if_else(pa.array(has), taken, None))


def _seconds(values: pa.Array) -> pa.Array:
    """Seconds (any numeric type) as uint32; negative, huge or non-finite values are null."""
    as_float = pc.cast(values, pa.float64())
    with np.errstate(invalid="ignore"):
        arr = as_float.to_numpy(zero_copy_only=False)
        good = np.isfinite(arr) & (arr >= 0) & (arr < 2**32)
    whole = np.where(good, np.floor(np.where(good, arr, 0)), 0).astype(np.uint32)
    return pa.array(whole, pa.uint32(), mask=~good)


def _as_us(ts: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(ts, pa.ChunkedArray):
        ts = ts.combine_chunks()
    if not pa.types.is_timestamp(ts.type):
        raise TypeError(f"ts must be a timestamp column, not {ts.type}")
    if ts.type.tz is None:
        ts = ts.cast(pa.timestamp(ts.type.unit, tz="UTC"))
    return ts.cast(TS, safe=False)


def dns_files(
    lake_dir: Path, first: datetime | None = None, last: datetime | None = None
) -> list[str]:
    """The evidence files under ``lake_dir/dns``; with times, only the days that can answer.

    An answer lasts at most ``MAX_TTL_S``, so the day before ``first`` is read too.
    """
    root = Path(lake_dir) / "dns"
    files = sorted(root.glob("day=*/*.parquet"))
    if first is None or last is None:
        return [str(f) for f in files]
    lo = (first - timedelta(seconds=MAX_TTL_S)).strftime("%Y-%m-%d")
    hi = last.strftime("%Y-%m-%d")
    return [str(f) for f in files if lo <= f.parent.name.removeprefix("day=") <= hi]


def scan_dns(lake_dir: Path) -> pa.Table:
    """All evidence in the lake, in DNS_SCHEMA (empty when there is none)."""
    files = dns_files(lake_dir)
    if not files:
        return empty_dns()
    con = duckdb.connect()
    try:
        table = con.sql(f"select * from read_parquet({files!r})").to_arrow_table()
    finally:
        con.close()
    return table.select(DNS_SCHEMA.names).cast(DNS_SCHEMA)


def addresses(lake_dir: Path) -> pa.Array:
    """The distinct addresses that some answer in the lake named (string column)."""
    files = dns_files(lake_dir)
    if not files:
        return pa.array([], pa.string())
    con = duckdb.connect()
    try:
        found = con.sql(f"select distinct ip from read_parquet({files!r})").to_arrow_table()
    finally:
        con.close()
    return found["ip"].combine_chunks().cast(pa.string())


_LOOKUP = """
select q.i, first(e.name order by e.ts desc, e.name) as name
from q join ev e on q.ip = e.ip and q.ts >= e.ts and q.ts < e.valid_until
group by q.i
"""


def _lookup(con: duckdb.DuckDBPyConnection, ips: pa.Array, ts: pa.Array) -> pa.Array:
    n = len(ips)
    queries = pa.table(
        {"i": pa.array(np.arange(n, dtype=np.int64)), "ip": canonical_ips(ips), "ts": ts}
    )
    con.register("q", queries)
    found = con.sql(_LOOKUP).to_arrow_table()
    where = np.full(n, -1, np.int64)
    where[found["i"].to_numpy()] = np.arange(found.num_rows, dtype=np.int64)
    names = found["name"].combine_chunks()
    return pc.take(names, pa.array(where, mask=where < 0))


def names_in(evidence: pa.Table, ips: pa.Array, ts: pa.Array) -> pa.Array:
    """:func:`names_for` over an evidence table in memory instead of the lake."""
    ts_us = _as_us(ts)
    if len(ips) != len(ts_us):
        raise ValueError(f"ips has {len(ips)} values and ts {len(ts_us)}")
    if len(ips) == 0 or evidence.num_rows == 0:
        return pa.nulls(len(ips), pa.string())
    con = duckdb.connect()
    try:
        con.register("ev", evidence.select(["ip", "name", "ts", "valid_until"]))
        return _lookup(con, ips, ts_us)
    finally:
        con.close()


def names_for(lake_dir: Path, ips: pa.Array, ts: pa.Array) -> pa.Array:
    """The DNS name of each address at each time (string column; null where none is known).

    ``ips`` is a string column of addresses, ``ts`` a timestamp column of the same length.
    Only the lake's day partitions that can hold a valid answer are read.
    """
    ts_us = _as_us(ts)
    if len(ips) != len(ts_us):
        raise ValueError(f"ips has {len(ips)} values and ts {len(ts_us)}")
    valid = ts_us.drop_null()
    if len(ips) == 0 or len(valid) == 0:
        return pa.nulls(len(ips), pa.string())
    lo, hi = pc.min(valid).as_py(), pc.max(valid).as_py()
    files = dns_files(Path(lake_dir), lo.astimezone(UTC), hi.astimezone(UTC))
    if not files:
        return pa.nulls(len(ips), pa.string())
    con = duckdb.connect()
    try:
        con.execute(
            f"create temp view ev as select ip, name, ts, valid_until from read_parquet({files!r})"
        )
        return _lookup(con, ips, ts_us)
    finally:
        con.close()
