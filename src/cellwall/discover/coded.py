"""Flow records as integer arrays, read one UTC day at a time: the input of the map's fast path.

:mod:`.fast` works on integers, never on strings:

- an **address** is a small integer id. The fast path's first pass numbers addresses as it
  meets them; :meth:`Interner.sorted_ids` then renumbers them in string order, so that
  comparing two ids means what comparing the two strings means in :mod:`.orient` (which end
  of a record is ``a``);
- an **endpoint** ``(address, proto, port)`` is one int64, ``ip << 25 | proto << 17 |
  port + 1`` (port ``-1`` where the protocol has none);
- an **exporter** is an index; a missing exporter is the empty string, as in :mod:`.orient`.

The lake stores addresses with Parquet dictionary pages, and they are read as dictionary
arrays: per record there are only integer indices, and the strings that Python looks at are
each page's dictionary (a few thousand values), never the records.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from cellwall.lake.layout import LakeLayout
from cellwall.model.flow_schema import FLOW_SCHEMA

__all__ = [
    "CODED_SCHEMA",
    "DAY_US",
    "EP_IP_SHIFT",
    "LISTEN_COLUMNS",
    "NO_EVIDENCE",
    "RECORD_COLUMNS",
    "FlowDays",
    "Interner",
    "LakeDays",
    "TableDays",
    "code_records",
    "endpoints",
    "exporter_verdict",
]

DAY_US = 86_400_000_000
EP_IP_SHIFT = 25  # proto: 8 bits, port + 1: 17 bits
PORT_MASK = (1 << 17) - 1
NO_EVIDENCE = 127  # the code of a record without exporter evidence (codes are 2..5)
_EPHEMERAL_FLOOR = 32768  # orient.EPHEMERAL_FLOOR; orient imports nothing from here
_DICT = ("src_ip", "dst_ip", "exporter", "action")
LISTEN_COLUMNS = ("src_ip", "dst_ip", "src_port", "dst_port", "proto", "action", "tcp_flags",
                  "src_initiated")  # fmt: skip
RECORD_COLUMNS = (*LISTEN_COLUMNS, "start", "end", "bytes", "packets", "rev_bytes",
                  "rev_packets", "exporter")  # fmt: skip
CODED_SCHEMA = pa.schema(
    [
        ("k1", pa.int64()),  # endpoint a
        ("k2", pa.int64()),  # endpoint b
        ("exp", pa.int32()),
        ("start", pa.int64()),  # microseconds since the epoch
        ("end_", pa.int64()),  # end, or start where there is none
        ("ab_b", pa.int64()),
        ("ba_b", pa.int64()),
        ("ab_p", pa.int64()),
        ("ba_p", pa.int64()),
        ("cx", pa.int8()),  # exporter evidence: rank * 2 + (0 if a is the client else 1)
        ("cp", pa.int8()),  # port numbers: 8 + (0 if a is the client else 1)
    ]
)


class FlowDays(Protocol):
    """Flow records grouped by the UTC day of their start, in day order."""

    def days(self) -> list[int]:
        """Day numbers (days since 1970-01-01) that may hold records, ascending."""
        ...

    def batches(self, day: int, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        """The records of ``day``; the address, exporter and action columns as dictionaries."""
        ...


def _schema(columns: Sequence[str]) -> pa.Schema:
    dictionary = pa.dictionary(pa.int32(), pa.string())
    return pa.schema(
        [pa.field(c, dictionary) if c in _DICT else FLOW_SCHEMA.field(c) for c in columns]
    )


_FORMAT = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=_DICT))
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

    def batches(self, day: int, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        files = self._folders().get(day, [])
        if not files:
            return iter(())
        data = ds.dataset(files, format=_FORMAT, schema=_schema(columns))
        flt = None
        if self.since is not None:
            flt = ds.field("start") >= pa.scalar(self.since, FLOW_SCHEMA.field("start").type)
        if self.until is not None:
            upper = ds.field("start") < pa.scalar(self.until, FLOW_SCHEMA.field("start").type)
            flt = upper if flt is None else flt & upper
        return iter(data.to_batches(columns=list(columns), filter=flt, batch_size=1 << 20))


@dataclass(frozen=True, slots=True)
class TableDays:
    """An in-memory table of flow records (lake schema; missing columns are null)."""

    table: pa.Table

    def _day(self) -> np.ndarray:
        start = self.table["start"].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        return np.floor_divide(start.to_numpy(), DAY_US)

    def days(self) -> list[int]:
        return sorted(int(d) for d in np.unique(self._day()))

    def batches(self, day: int, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        rows = self.table.filter(pa.array(self._day() == day))
        cols = {}
        for f in _schema(columns):
            if f.name in rows.column_names:
                col = rows[f.name].combine_chunks()
                cols[f.name] = col if pa.types.is_dictionary(col.type) else col.cast(f.type)
            else:
                cols[f.name] = pa.nulls(rows.num_rows, f.type)
        return iter(pa.table(cols).to_batches())


class Interner:
    """Strings to integer ids. Each batch's dictionary is looked up as a whole (vectorised);
    Python sees only values met for the first time."""

    def __init__(self, fixed: Sequence[str] | None = None) -> None:
        self._values: list[str] = list(fixed or ())
        self._known = pa.array(self._values, pa.string())
        self._frozen = fixed is not None
        self._last: tuple[pa.Array, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self._values)

    def values(self) -> list[str]:
        return list(self._values)

    def _lookup(self, dictionary: pa.Array) -> np.ndarray:
        """The ids of a dictionary's values; consecutive batches mostly share one."""
        if self._last is not None and self._last[0].equals(dictionary):
            return self._last[1]
        found = pc.index_in(dictionary, value_set=self._known)
        if found.null_count:
            if self._frozen:
                raise KeyError("an address that the first pass did not see")
            new = pc.unique(dictionary.filter(found.is_null()))
            self._values += new.to_pylist()
            self._known = pa.array(self._values, pa.string())
            found = pc.index_in(dictionary, value_set=self._known)
        ids = found.to_numpy(zero_copy_only=False).astype(np.int64)
        self._last = (dictionary, ids)
        return ids

    def codes(self, arr: Any) -> np.ndarray:
        """The ids of a string or dictionary array; a null is the empty string."""
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if arr.null_count:
            arr = pc.fill_null(arr.cast(pa.string()), "")
        if not pa.types.is_dictionary(arr.type):
            arr = pc.dictionary_encode(arr)
        lookup = self._lookup(arr.dictionary)
        return lookup[arr.indices.to_numpy(zero_copy_only=False)]

    def sorted_ids(self) -> tuple[list[str], np.ndarray]:
        """The values in string order, and each current id's position in that order."""
        values = self._values
        order = sorted(range(len(values)), key=values.__getitem__)
        rank = np.empty(len(values), dtype=np.int64)
        rank[np.array(order, dtype=np.int64)] = np.arange(len(values), dtype=np.int64)
        return [values[i] for i in order], rank


def _ints(arr: Any, fill: int, dtype: Any = np.int64) -> np.ndarray:
    return pc.fill_null(arr.cast(pa.int64()), fill).to_numpy(zero_copy_only=False).astype(dtype)


def _equals(arr: Any, value: str) -> np.ndarray:
    """Where a (dictionary) string column equals ``value``; null is not equal."""
    if pa.types.is_dictionary(arr.type):
        hit = pc.equal(arr.dictionary, value).fill_null(False).to_numpy(zero_copy_only=False)
        index = pc.fill_null(arr.indices, 0).to_numpy(zero_copy_only=False)
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        return hit[index] & valid if len(hit) else np.zeros(len(arr), bool)
    return pc.equal(arr, value).fill_null(False).to_numpy(zero_copy_only=False)  # type: ignore[no-any-return]


def endpoints(b: pa.RecordBatch, ips: Interner) -> dict[str, np.ndarray]:
    """Address ids, ports (-1 for none), protocol and both endpoint codes of a batch."""
    s, d = ips.codes(b["src_ip"]), ips.codes(b["dst_ip"])
    sp, dp = _ints(b["src_port"], -1), _ints(b["dst_port"], -1)
    proto = _ints(b["proto"], 0)
    return {
        "s": s, "d": d, "sp": sp, "dp": dp, "proto": proto,
        "ep_s": (s << EP_IP_SHIFT) | (proto << 17) | (sp + 1),
        "ep_d": (d << EP_IP_SHIFT) | (proto << 17) | (dp + 1),
    }  # fmt: skip


def exporter_verdict(b: pa.RecordBatch, proto: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rank: 1 initiator, 2 SYN or reject, 0 none; the source is the client), per record."""
    init = b["src_initiated"]
    has_init = init.is_valid().to_numpy(zero_copy_only=False)
    init_src = pc.fill_null(init, True).to_numpy(zero_copy_only=False)
    flags = _ints(b["tcp_flags"], 0)
    has_flags = b["tcp_flags"].is_valid().to_numpy(zero_copy_only=False)
    syn_only = (proto == 6) & has_flags & (flags & 2 != 0) & (flags & 16 == 0)
    rejected = _equals(b["action"], "REJECT")
    rank = np.where(has_init, 1, np.where(syn_only | rejected, 2, 0))
    return rank, np.where(has_init, init_src, True)


def _port_class(p: np.ndarray) -> np.ndarray:
    return np.where(p < 1024, 0, np.where(p < _EPHEMERAL_FLOOR, 1, 2))


def code_records(b: pa.RecordBatch, ips: Interner, exporters: Interner) -> pa.RecordBatch:
    """A batch of lake records in :data:`CODED_SCHEMA` (``ips`` must know every address)."""
    e = endpoints(b, ips)
    s, d, sp, dp, proto = e["s"], e["d"], e["sp"], e["dp"], e["proto"]
    a_is_src = (s < d) | ((s == d) & (sp <= dp))
    rank, src_client = exporter_verdict(b, proto)
    cx = np.where(rank > 0, rank * 2 + (src_client != a_is_src), NO_EVIDENCE)
    sc, dc = _port_class(sp), _port_class(dp)
    icmp = (proto == 1) | (proto == 58)
    port_src = np.where(icmp, (sp != 0) & (sp != 129), np.where(sc != dc, sc > dc, sp >= dp))
    cp = 8 + (port_src != a_is_src)
    start = b["start"].cast(pa.int64()).to_numpy(zero_copy_only=False)
    end = pc.fill_null(b["end"].cast(pa.int64()), b["start"].cast(pa.int64()))
    by, pk = _ints(b["bytes"], 0), _ints(b["packets"], 0)
    rb, rp = _ints(b["rev_bytes"], 0), _ints(b["rev_packets"], 0)
    cols = [
        np.where(a_is_src, e["ep_s"], e["ep_d"]),
        np.where(a_is_src, e["ep_d"], e["ep_s"]),
        exporters.codes(b["exporter"]).astype(np.int32),
        start,
        end.to_numpy(zero_copy_only=False),
        np.where(a_is_src, by, rb),
        np.where(a_is_src, rb, by),
        np.where(a_is_src, pk, rp),
        np.where(a_is_src, rp, pk),
        cx.astype(np.int8),
        cp.astype(np.int8),
    ]
    return pa.RecordBatch.from_arrays([pa.array(c) for c in cols], schema=CODED_SCHEMA)
