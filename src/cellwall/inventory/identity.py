"""Who owned an address at a time: vectorised identity resolution, and labels by workload.

A workload owns an address over ``[start, until)``. The leases of all workloads are first cut
into *segments* that do not overlap per address (:func:`build_segments`): where two
workloads claim one address at once, the lease that started last wins (a newer claim
supersedes a stale one), on equal starts the one that ends first (the more specific claim),
then the smaller name; :func:`lease_conflicts`
reports such overlaps. With disjoint segments, the owner at time ``t`` is the segment with
the greatest ``start <= t``, if ``t < until``: one DuckDB ``ASOF JOIN`` over
(address, time), never a Python loop over flows. :func:`owners_ibis` is the same query as a
plain range join in Ibis (for Spark); a test keeps the two equal.

Times are microseconds since the epoch (UTC) inside; unbounded sides are sentinels.
"""

from __future__ import annotations

import heapq
import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from cellwall.errors import Diagnostic
from cellwall.inventory.classify import IPClassifier, IPListSpec
from cellwall.model.inventory import Workload
from cellwall.model.labels import STANDARD_KEYS

__all__ = [
    "MAX_US",
    "MIN_US",
    "SEGMENT_SCHEMA",
    "Resolver",
    "build_segments",
    "lease_conflicts",
    "owners_ibis",
]

MIN_US = -(2**62)
MAX_US = 2**62
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
TS = pa.timestamp("us", tz="UTC")
SEGMENT_SCHEMA = pa.schema(
    [("ip", pa.string()), ("start", pa.int64()), ("until", pa.int64()), ("owner", pa.string())]
)
Lease = tuple[int, int, str]  # start, until, owner


def _us(ts: datetime | None, default: int) -> int:
    return default if ts is None else (ts - _EPOCH) // _US


def _leases(workloads: Iterable[Workload]) -> dict[str, list[Lease]]:
    by_ip: dict[str, list[Lease]] = defaultdict(list)
    for w in workloads:
        for a in w.addresses:
            by_ip[a.ip].append((_us(a.start, MIN_US), _us(a.until, MAX_US), w.name))
    return by_ip


def _sweep(leases: list[Lease]) -> list[Lease]:
    """Disjoint (start, until, owner) segments: the latest start wins, then the earliest end,
    then the smaller name."""
    if len(leases) == 1:
        return leases
    leases = sorted(leases)
    points = sorted({p for s, u, _ in leases for p in (s, u)})
    heap: list[tuple[int, int, str]] = []  # (-start, until, owner)
    out: list[Lease] = []
    i = 0
    for p, nxt in itertools.pairwise(points):
        while i < len(leases) and leases[i][0] <= p:
            s, u, name = leases[i]
            heapq.heappush(heap, (-s, u, name))
            i += 1
        while heap and heap[0][1] <= p:
            heapq.heappop(heap)
        if not heap:
            continue
        owner = heap[0][2]
        if out and out[-1][2] == owner and out[-1][1] == p:
            out[-1] = (out[-1][0], nxt, owner)
        else:
            out.append((p, nxt, owner))
    return out


def build_segments(workloads: Iterable[Workload]) -> pa.Table:
    """Non-overlapping ownership segments per address, in :data:`SEGMENT_SCHEMA`."""
    ips: list[str] = []
    starts: list[int] = []
    untils: list[int] = []
    owners: list[str] = []
    for ip, leases in _leases(workloads).items():
        for s, u, owner in _sweep(leases):
            ips.append(ip)
            starts.append(s)
            untils.append(u)
            owners.append(owner)
    return pa.table([ips, starts, untils, owners], schema=SEGMENT_SCHEMA)


def lease_conflicts(workloads: Iterable[Workload]) -> list[Diagnostic]:
    """One warning per address that two workloads own at the same time."""
    workloads = list(workloads)
    origins = {w.name: w.source for w in workloads}
    diags: list[Diagnostic] = []
    for ip, leases in sorted(_leases(workloads).items()):
        leases.sort()
        names: set[str] = set()
        at: int | None = None
        culprit = ""
        best_until, best_name = MIN_US, ""
        for s, u, name in leases:
            if s < best_until and name != best_name:
                names |= {name, best_name}
                if at is None:
                    at, culprit = s, name
            if u > best_until:
                best_until, best_name = u, name
        if names:
            o = origins[culprit]
            when = "" if at is None or at == MIN_US else f" from {(_EPOCH + at * _US).isoformat()}"
            who = ", ".join(f"`{n}`" for n in sorted(names))
            msg = f"address {ip} is owned by {who} at the same time{when}"
            hint = "the lease that started last wins; end the older one with `until`"
            diags.append(
                Diagnostic(o.file, o.line, o.col, "overlapping-lease", msg, hint, "warning")
            )
    return diags


def _ts_us(ts: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(ts, pa.ChunkedArray):
        ts = ts.combine_chunks()
    if not pa.types.is_timestamp(ts.type):
        raise TypeError(f"times must be timestamps, not {ts.type}")
    return ts.cast(pa.timestamp("us", tz="UTC"), safe=False).view(pa.int64())


def _encoded(a: pa.Array | pa.ChunkedArray) -> pa.DictionaryArray:
    """A dictionary-encoded string column (kept as it is when it already is one)."""
    if isinstance(a, pa.ChunkedArray):
        if pa.types.is_dictionary(a.type):
            a = a.unify_dictionaries()
        a = a.combine_chunks()
    if pa.types.is_dictionary(a.type):
        if a.dictionary.type != pa.string():
            a = pa.DictionaryArray.from_arrays(a.indices, a.dictionary.cast(pa.string()))
        return a
    return pc.dictionary_encode(a.cast(pa.string()))


def _strings(a: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(a, pa.ChunkedArray):
        a = a.combine_chunks()
    return a.cast(pa.string())


class Resolver:
    """Resolves (address, time) to the owning workload, classifies the rest, and joins labels.

    Built once per inventory; each call works on whole Arrow arrays.
    """

    def __init__(
        self,
        workloads: Iterable[Workload],
        iplists: Mapping[str, IPListSpec] | None = None,
        *,
        connection: duckdb.DuckDBPyConnection | None = None,
    ) -> None:
        self.workloads = sorted(workloads, key=lambda w: w.name)
        self.names = pa.array([w.name for w in self.workloads], pa.string())
        self.segments = build_segments(self.workloads)
        self._seg_ip = self.segments["ip"].combine_chunks()
        self._seg_start = self.segments["start"].combine_chunks()
        self._seg_until = self.segments["until"].combine_chunks()
        self._seg_owner = pc.index_in(self.segments["owner"].combine_chunks(), value_set=self.names)
        self.classifier = IPClassifier(iplists)
        self._own_connection = connection is None
        self._con = connection if connection is not None else duckdb.connect()

    def close(self) -> None:
        """Close the DuckDB connection if the resolver opened it."""
        if self._own_connection:
            self._con.close()

    def __enter__(self) -> Resolver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def owners(self, ips: pa.Array | pa.ChunkedArray, ts: pa.Array | pa.ChunkedArray) -> pa.Array:
        """The workload that owned each address at each time; null where none did."""
        out = self.owner_indices(ips, ts)
        return pc.take(self.names, pa.array(out, mask=out < 0))

    def owner_indices(
        self, ips: pa.Array | pa.ChunkedArray, ts: pa.Array | pa.ChunkedArray
    ) -> npt.NDArray[np.int64]:
        """:meth:`owners` as indexes into ``self.workloads`` (-1 where no workload did)."""
        if len(ips) != len(ts):
            raise ValueError("addresses and times must have the same length")
        enc = _encoded(ips)
        seg_code = pc.index_in(self._seg_ip, value_set=enc.dictionary)
        wanted = pc.is_valid(seg_code)
        segs = pa.table(
            {
                "code": seg_code.filter(wanted),
                "start": self._seg_start.filter(wanted),
                "until": self._seg_until.filter(wanted),
                "owner": self._seg_owner.filter(wanted),
            }
        )
        out = np.full(len(ips), -1, np.int64)
        if segs.num_rows:
            # an address with one segment for all time has its owner whatever the time:
            # one lookup per row; only the others need the as-of join
            codes = np.asarray(segs["code"].to_numpy(), np.int64)
            counts = np.bincount(codes, minlength=len(enc.dictionary))
            always = (
                (np.asarray(segs["start"].to_numpy()) == MIN_US)
                & (np.asarray(segs["until"].to_numpy()) == MAX_US)
                & (counts[codes] == 1)
            )
            static = np.full(len(enc.dictionary) + 1, -1, np.int64)
            static[codes[always]] = np.asarray(segs["owner"].to_numpy(), np.int64)[always]
            idx = np.asarray(enc.indices.fill_null(-1).to_numpy(), np.int64)
            out = static[idx]
            timed = np.zeros(len(static), bool)
            timed[codes[~always]] = True
            rows = np.flatnonzero(timed[idx])
            if not len(rows):
                return out  # no address changed hands: times are not needed
            us = _ts_us(ts).take(pa.array(rows))
            rows = rows[np.asarray(us.is_valid())]
            us = us.drop_null()
            flows = pa.table({"rid": rows, "code": enc.indices.take(rows), "ts": us})
            found = self._asof(flows, segs)
            out[np.asarray(found["rid"])] = np.asarray(found["owner"])
        return out

    def _asof(self, flows: pa.Table, segs: pa.Table) -> pa.Table:
        cur = self._con.cursor()
        try:
            cur.register("cw_flows", flows)
            cur.register("cw_segments", segs)
            return cur.sql(
                "SELECT f.rid, s.owner FROM cw_flows f ASOF JOIN cw_segments s "
                "ON f.code = s.code AND f.ts >= s.start WHERE f.ts < s.until"
            ).to_arrow_table()
        finally:
            cur.close()

    def resolve(self, ips: pa.Array | pa.ChunkedArray, ts: pa.Array | pa.ChunkedArray) -> pa.Table:
        """``owner`` per row, and ``address_class`` for rows without one (null where owned)."""
        owner = self.owners(ips, ts)
        klass = self.classifier.classify(_strings(ips))
        klass = pc.if_else(pc.is_valid(owner), pa.scalar(None, pa.string()), klass)
        return pa.table({"owner": owner, "address_class": klass})

    def label_keys(self) -> list[str]:
        return sorted({k for w in self.workloads for k in w.labels})

    def labels(
        self,
        owners: pa.Array | pa.ChunkedArray,
        keys: Sequence[str] | None = None,
        prefix: str = "",
    ) -> pa.Table:
        """One column per label key with each owner's value (null when absent or no owner)."""
        idx = pc.index_in(_strings(owners), value_set=self.names)
        cols = {}
        for key in self.label_keys() if keys is None else keys:
            values = pa.array([w.labels.get(key) for w in self.workloads], pa.string())
            cols[prefix + key] = pc.take(values, idx)
        return pa.table(cols)

    def identify(
        self, flows: pa.Table, *, ts_column: str = "start", keys: Sequence[str] = STANDARD_KEYS
    ) -> pa.Table:
        """``flows`` plus ``src_/dst_`` ``workload``, ``class`` and one column per label key."""
        n = flows.num_rows
        ts = _ts_us(flows[ts_column]).cast(TS)
        both = self.resolve(
            pa.concat_arrays([_strings(flows["src_ip"]), _strings(flows["dst_ip"])]),
            pa.concat_arrays([ts, ts]),
        )
        out = flows
        for side, lo in (("src", 0), ("dst", n)):
            part = both.slice(lo, n)
            out = out.append_column(f"{side}_workload", part["owner"])
            out = out.append_column(f"{side}_class", part["address_class"])
            labels = self.labels(part["owner"], keys, f"{side}_")
            for name in labels.column_names:
                out = out.append_column(name, labels[name])
        return out


def owners_ibis(flows: Any, segments: Any) -> Any:
    """The Ibis twin of :meth:`Resolver.owners`: ``flows`` (``rid``, ``ip``, ``ts`` in µs) left
    joined to segments (:data:`SEGMENT_SCHEMA`) by a range join, giving ``rid``, ``owner``.

    Segments are disjoint per address, so at most one matches each flow row.
    """
    j = flows.left_join(
        segments,
        [flows.ip == segments.ip, flows.ts >= segments.start, flows.ts < segments.until],
    )
    return j.select(rid=j.rid, owner=j.owner)
