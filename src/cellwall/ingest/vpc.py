"""AWS VPC Flow Logs: the default (version 2) format and custom formats named by a header.

AWS writes one record per line, its fields separated by single spaces, with ``-`` where a
field does not apply or could not be computed. Files delivered to S3 start with a header
line that names the fields in their order; the header is how a custom format (any subset
of the fields, in any order) is read. A file without a header is read in the default
format, whose 14 fields are :data:`DEFAULT_FIELDS`.

How a record becomes a flow:

- ``start``/``end`` (unix seconds) become timestamps; ``srcaddr``/``dstaddr`` become
  ``src_ip``/``dst_ip``, except that ``pkt-srcaddr``/``pkt-dstaddr``, when present, are
  the packet's real addresses and win; ``tcp-flags`` becomes ``tcp_flags`` and
  ``flow-direction`` becomes ``direction``; ``exporter`` is ``aws:ACCOUNT:INTERFACE``
  (with whichever of the two the record has).
- ``log-status`` ``NODATA`` and ``SKIPDATA`` records say that an interface had no traffic,
  or that records were lost, in a capture window. They are not flows: they are counted in
  :attr:`Chunk.ignored`, neither stored nor quarantined. (A custom format without
  ``log-status`` has only flows.) A line that repeats the header (files that were
  concatenated) is counted as ignored ``header``.
- A header field that cellwall does not know is read and ignored. A header that lacks
  ``srcaddr``, ``dstaddr``, ``protocol`` or ``start``, or names a field twice, is a
  :class:`~cellwall.errors.FormatError` at line 1.
- Quarantine reasons: ``field-count``, ``not-text`` and ``bad-field`` (from the block
  parser; also an ``action`` or ``flow-direction`` that AWS does not write),
  ``bad-log-status``, ``missing-field`` (``-`` in an address, the protocol or the start of
  an ``OK`` record), ``bad-ip``, ``bad-time`` (not a plausible unix time, or ``end`` before
  ``start``). Each message names the field and its value.

Blocks are parsed on a small thread pool (Arrow releases the GIL); chunks come out in the
order of the input.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from cellwall.errors import Diagnostic, FormatError
from cellwall.ingest.base import Chunk, FlowSource, Rejects, register
from cellwall.ingest.delimited import Parsed, parse_block
from cellwall.ingest.parallel import int_option, ordered_map, worker_count
from cellwall.ingest.stream import BLOCK_SIZE, Block, iter_blocks
from cellwall.model.flow_schema import FLOW_SCHEMA, conform
from cellwall.model.net import canonical_ip, canonical_ips

__all__ = ["DEFAULT_FIELDS", "KNOWN_FIELDS", "MANDATORY_FIELDS", "VpcFlowLogs"]

DEFAULT_FIELDS = (
    "version",
    "account-id",
    "interface-id",
    "srcaddr",
    "dstaddr",
    "srcport",
    "dstport",
    "protocol",
    "packets",
    "bytes",
    "start",
    "end",
    "action",
    "log-status",
)
_LATER_FIELDS = (
    # version 3
    "vpc-id",
    "subnet-id",
    "instance-id",
    "tcp-flags",
    "type",
    "pkt-srcaddr",
    "pkt-dstaddr",
    # version 4
    "region",
    "az-id",
    "sublocation-type",
    "sublocation-id",
    # version 5
    "pkt-src-aws-service",
    "pkt-dst-aws-service",
    "flow-direction",
    "traffic-path",
    # version 7 (ECS); read but not mapped
    "ecs-cluster-arn",
    "ecs-cluster-name",
    "ecs-container-instance-arn",
    "ecs-container-instance-id",
    "ecs-container-id",
    "ecs-second-container-id",
    "ecs-service-name",
    "ecs-task-definition-arn",
    "ecs-task-arn",
    "ecs-task-id",
    # version 8
    "reject-reason",
)
KNOWN_FIELDS = frozenset(DEFAULT_FIELDS + _LATER_FIELDS)
MANDATORY_FIELDS = ("srcaddr", "dstaddr", "protocol", "start")

_TYPES: dict[str, pa.DataType] = {
    "srcport": pa.uint16(),
    "dstport": pa.uint16(),
    "protocol": pa.uint8(),
    "packets": pa.uint64(),
    "bytes": pa.uint64(),
    "start": pa.int64(),
    "end": pa.int64(),
    "tcp-flags": pa.uint16(),
}
_STATUSES = {"OK": None, "NODATA": "nodata", "SKIPDATA": "skipdata"}
_CHOICES = {"action": ("ACCEPT", "REJECT"), "flow-direction": ("ingress", "egress")}
_TARGETS = {
    "srcport": "src_port",
    "dstport": "dst_port",
    "protocol": "proto",
    "packets": "packets",
    "bytes": "bytes",
    "action": "action",
    "tcp-flags": "tcp_flags",
    "flow-direction": "direction",
}
_ADDRESSES = (("src_ip", "pkt-srcaddr", "srcaddr"), ("dst_ip", "pkt-dstaddr", "dstaddr"))
MAX_EPOCH = 253_402_300_799  # 9999-12-31T23:59:59Z
_NAME = re.compile(r"[a-z][a-z0-9-]*\Z")
_DERIVED = "="  # prefix of the columns this module adds to a parsed table
_UNKNOWN = "?"  # prefix of the columns of fields that cellwall does not know
_TS = FLOW_SCHEMA.field("start").type

Mask = npt.NDArray[np.bool_]
Row = dict[str, Any]
T = TypeVar("T")
R = TypeVar("R")


@register
class VpcFlowLogs(FlowSource):
    """AWS VPC Flow Logs, default or custom format, plain or gzip.

    Options: ``workers`` (threads that parse blocks, default 2) and ``block_size`` (bytes
    per block, default 16 MiB).
    """

    name: ClassVar[str] = "vpc"
    title: ClassVar[str] = "AWS VPC Flow Logs (default v2 format, or custom with a header)"

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        line = _first_line(head)
        if line.startswith(b"version "):
            return True
        tokens = line.split(b" ")
        if b"srcaddr" in tokens and b"dstaddr" in tokens:
            return True
        return len(tokens) == len(DEFAULT_FIELDS) and tokens[0] == b"2"

    def read(self, stream: BinaryIO, file: str) -> Iterator[Chunk]:
        blocks = iter_blocks(stream, int_option(self.options, "block_size", BLOCK_SIZE, self.name))
        first = next(blocks, None)
        if first is None:
            return
        layout, rest = _Layout.from_first_block(first, file)
        todo = blocks if rest is None else _chain(rest, blocks)
        workers = worker_count(self.options, self.name)
        yield from ordered_map(lambda b: layout.chunk(b, file), todo, workers)


def _chain(first: Block, rest: Iterator[Block]) -> Iterator[Block]:
    yield first
    yield from rest


def _header_error(file: str, message: str, hint: str) -> FormatError:
    diagnostic = Diagnostic(file, 1, None, "vpc-header", message, hint)
    return FormatError(f"{file}:1: {message}", hint=hint, diagnostics=[diagnostic])


@dataclass(frozen=True)
class _Layout:
    """The fields of one file, in order, and how to turn a block of its lines into flows."""

    names: tuple[str, ...]  # column names for the parser; unknown fields are renamed
    header: bytes  # the header line's text (or the default one's): repeats are ignored
    repeat: re.Pattern[bytes]  # finds the header (once it is in a block at all)

    @classmethod
    def make(cls, names: tuple[str, ...], header: bytes) -> _Layout:
        return cls(names, header, re.compile(re.escape(header) + rb"\r?$", re.M))

    @classmethod
    def from_first_block(cls, first: Block, file: str) -> tuple[_Layout, Block | None]:
        """The layout from the first block, and what remains of it after any header."""
        cut = first.data.find(b"\n")
        layout = cls.from_header(_first_line(first.data), file)
        if layout is None:
            default = b" ".join(n.encode() for n in DEFAULT_FIELDS)
            return cls.make(DEFAULT_FIELDS, default), first
        if cut < 0 or cut + 1 == len(first.data):
            return layout, None
        return layout, Block(first.first_line + 1, first.offset + cut + 1, first.data[cut + 1 :])

    @classmethod
    def from_header(cls, line: bytes, file: str) -> _Layout | None:
        """The layout that a header line names, or None when the line is not a header."""
        try:
            tokens = line.decode("ascii").split()
        except UnicodeDecodeError:
            return None
        if not tokens or not all(_NAME.match(t) for t in tokens):
            return None
        if not any(t in KNOWN_FIELDS for t in tokens):
            return None
        twice = sorted({t for t in tokens if t in KNOWN_FIELDS and tokens.count(t) > 1})
        if twice:
            raise _header_error(
                file,
                f"the VPC flow log header names {', '.join(twice)} more than once",
                "each field may appear once in a flow log format",
            )
        missing = [f for f in MANDATORY_FIELDS if f not in tokens]
        if missing:
            raise _header_error(
                file,
                f"the VPC flow log header lacks the mandatory fields {', '.join(missing)}",
                "cellwall needs at least " + " ".join(MANDATORY_FIELDS) + " in the format",
            )
        names = tuple(
            t if t in KNOWN_FIELDS else f"{_UNKNOWN}{i}:{t}" for i, t in enumerate(tokens)
        )
        return cls.make(names, line)

    def has(self, name: str) -> bool:
        return name in self.names

    def chunk(self, block: Block, file: str) -> Chunk:
        """Parse one block into flows, rejects and ignored records."""
        rejects = Rejects(file)
        ignored: Counter[str] = Counter()
        block, headers = self._drop_headers(block)
        if headers:
            ignored["header"] = headers
        types = {n: _TYPES.get(n, pa.string()) for n in self.names}
        rows = parse_block(block, self.names, types, rejects, delimiter=" ", null_values=("-",))
        rows = self._by_status(rows, rejects, ignored)
        rows = self._present(rows, rejects)
        rows = self._addresses(rows, rejects)
        rows = self._times(rows, rejects)
        rows = self._choices(rows, rejects)
        return Chunk(self._flows(rows, file), rejects, ignored)

    def _drop_headers(self, block: Block) -> tuple[Block, int]:
        """Blank out lines that repeat the header (concatenated files); count them."""
        data = block.data
        if self.header not in data:
            return block, 0
        spans = [
            m.span()
            for m in self.repeat.finditer(data)
            if m.start() == 0 or data[m.start() - 1] == 10  # the whole line, from its start
        ]
        if not spans:
            return block, 0
        kept, end = [], 0
        for a, b in spans:
            kept.append(data[end:a])
            end = b
        kept.append(data[end:])
        return Block(block.first_line, block.offset, b"".join(kept)), len(spans)

    def _drop(
        self, rows: Parsed, bad: Mask, rejects: Rejects, reason: str, say: Callable[[Row], str]
    ) -> Parsed:
        """Move the rows where ``bad`` is true into ``rejects``, each with its own message."""
        if not bad.any():
            return rows
        index = np.flatnonzero(bad)
        for i, row in zip(index, rows.table.take(pa.array(index)).to_pylist(), strict=True):
            raw = " ".join("-" if v is None else str(v) for k, v in row.items() if k[0] != _DERIVED)
            rejects.add(int(rows.lines[i]), reason, say(row), raw)
        keep = ~bad
        return Parsed(rows.table.filter(pa.array(keep)), rows.lines[keep], rows.delimiter)

    def _by_status(self, rows: Parsed, rejects: Rejects, ignored: Counter[str]) -> Parsed:
        """Keep the OK records; count NODATA and SKIPDATA; reject any other status."""
        if not self.has("log-status") or not len(rows):
            return rows
        status = rows.table["log-status"]
        ok = _mask(pc.equal(status, "OK"))
        if ok.all():
            return rows
        known = ok.copy()
        for value, key in _STATUSES.items():
            if key is not None:
                hit = _mask(pc.equal(status, value))
                if hit.any():
                    ignored[key] += int(hit.sum())
                known |= hit
        rows = self._drop(rows, ~known, rejects, "bad-log-status", _say_status)
        ok = ok[known]
        return Parsed(rows.table.filter(pa.array(ok)), rows.lines[ok], rows.delimiter)

    def _present(self, rows: Parsed, rejects: Rejects) -> Parsed:
        """Reject OK records with ``-`` in an address, the protocol or the start."""
        table = rows.table
        missing = np.zeros(len(rows), np.bool_)
        for name in ("protocol", "start"):
            if table[name].null_count:
                missing |= _mask(pc.is_null(table[name]))
        for _, pkt, plain in _ADDRESSES:
            if table[plain].null_count:
                absent = pc.is_null(table[plain])
                if self.has(pkt):
                    absent = pc.and_(absent, pc.is_null(table[pkt]))
                missing |= _mask(absent)
        return self._drop(rows, missing, rejects, "missing-field", self._say_missing)

    def _say_missing(self, row: Row) -> str:
        absent = [
            n
            for n in MANDATORY_FIELDS
            if row[n] is None and not (n.endswith("addr") and row.get("pkt-" + n) is not None)
        ]
        return f"no value ('-') for {', '.join(absent)} in an OK record"

    def _addresses(self, rows: Parsed, rejects: Rejects) -> Parsed:
        """Canonical ``=src_ip``/``=dst_ip`` columns; reject records with a bad address."""
        table, n = rows.table, len(rows)
        real = [
            pc.coalesce(table[pkt], table[plain]) if self.has(pkt) else table[plain]
            for _, pkt, plain in _ADDRESSES
        ]
        # The interface's own addresses must be addresses too, when the packet's are given.
        own = [table[plain] for _, pkt, plain in _ADDRESSES if self.has(pkt)]
        # One pass over all the columns: most addresses appear in several of them.
        chunks = [c for col in real + own for c in _chunks(col)]
        checked = canonical_ips(pa.chunked_array(chunks, pa.string()))
        parts = [checked.slice(i * n, n) for i in range(len(real) + len(own))]
        bad = np.zeros(n, np.bool_)
        for part in parts[: len(real)]:
            bad |= _mask(pc.is_null(part))
        for col, part in zip(own, parts[len(real) :], strict=True):
            bad |= _mask(pc.and_(pc.is_valid(col), pc.is_null(part)))
        for (target, _, _), part in zip(_ADDRESSES, parts, strict=False):
            table = table.append_column(_DERIVED + target, part)
        rows = Parsed(table, rows.lines, rows.delimiter)
        return self._drop(rows, bad, rejects, "bad-ip", self._say_ip)

    def _say_ip(self, row: Row) -> str:
        for _, pkt, plain in _ADDRESSES:
            for name in (pkt, plain):
                value = row.get(name)
                if value is not None and canonical_ip(value) is None:
                    return f"field {name!r} = {value!r} is not an IP address"
        return "an address is not an IP address"  # pragma: no cover - the mask says otherwise

    def _times(self, rows: Parsed, rejects: Rejects) -> Parsed:
        """Reject records whose start or end is not a plausible time, or ends before it starts."""
        start = rows.table["start"]
        good = pc.and_(pc.greater_equal(start, 0), pc.less_equal(start, MAX_EPOCH))
        if self.has("end"):
            end = rows.table["end"]
            end_ok = pc.and_(pc.greater_equal(end, start), pc.less_equal(end, MAX_EPOCH))
            good = pc.and_(good, pc.or_kleene(pc.is_null(end), end_ok))
        return self._drop(rows, ~_mask(good), rejects, "bad-time", _say_time)

    def _choices(self, rows: Parsed, rejects: Rejects) -> Parsed:
        """Reject records whose action or flow-direction is not one that AWS writes."""
        for name, allowed in _CHOICES.items():
            if not self.has(name) or not len(rows):
                continue
            col = rows.table[name]
            bad = _mask(pc.and_(pc.is_valid(col), pc.invert(pc.is_in(col, pa.array(allowed)))))
            rows = self._drop(rows, bad, rejects, "bad-field", _say_choice(name, allowed))
        return rows

    def _flows(self, rows: Parsed, file: str) -> pa.Table:
        table, n = rows.table, len(rows)
        micros = pc.multiply(table["start"], 1_000_000)  # in range: checked by _times
        columns: dict[str, Any] = {
            "start": micros.cast(_TS),
            "src_ip": table[_DERIVED + "src_ip"],
            "dst_ip": table[_DERIVED + "dst_ip"],
            "exporter": self._exporter(table),
            "lineage_format": pa.repeat(pa.scalar("vpc"), n),
            "lineage_file": pa.repeat(pa.scalar(file), n),
            "lineage_pos": pa.array(rows.lines, pa.int64()),
        }
        if self.has("end"):
            columns["end"] = pc.multiply(table["end"], 1_000_000).cast(_TS)
        for field, target in _TARGETS.items():
            if self.has(field):
                columns[target] = table[field]
        return conform({k: _array(v) for k, v in columns.items()}, n)

    def _exporter(self, table: pa.Table) -> pa.ChunkedArray | None:
        """``aws:ACCOUNT:INTERFACE`` with the parts a record has; null when it has neither."""
        parts = [table[n] for n in ("account-id", "interface-id") if self.has(n)]
        if not parts:
            return None
        joined = pc.binary_join_element_wise("aws", *parts, ":", null_handling="skip")
        if not all(p.null_count for p in parts):
            return joined
        neither = pc.is_null(parts[0])
        for part in parts[1:]:
            neither = pc.and_(neither, pc.is_null(part))
        return pc.if_else(neither, None, joined)


def _first_line(data: bytes) -> bytes:
    """The first line, without its line end or a byte order mark."""
    return data.split(b"\n", 1)[0].rstrip(b"\r").removeprefix(b"\xef\xbb\xbf")


def _chunks(values: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return list(values.chunks) if isinstance(values, pa.ChunkedArray) else [values]


def _array(values: Any) -> Any:
    """A one-chunk column as its array, so that ``conform`` does not copy it."""
    if isinstance(values, pa.ChunkedArray) and values.num_chunks == 1:
        return values.chunk(0)
    return values


def _mask(values: pa.Array | pa.ChunkedArray) -> Mask:
    """A boolean Arrow column as a NumPy mask; null counts as false."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return np.asarray(values.fill_null(False).to_numpy(zero_copy_only=False), np.bool_)


def _say_status(row: Row) -> str:
    value = row["log-status"]
    return f"field 'log-status' = {value or '-'!r} is not OK, NODATA or SKIPDATA"


def _say_time(row: Row) -> str:
    start, end = row["start"], row.get("end")
    if not 0 <= start <= MAX_EPOCH:
        return f"field 'start' = {start} is not a unix time in seconds"
    if end is not None and end > MAX_EPOCH:
        return f"field 'end' = {end} is not a unix time in seconds"
    return f"field 'end' = {end} is before field 'start' = {start}"


def _say_choice(name: str, allowed: tuple[str, ...]) -> Callable[[Row], str]:
    def say(row: Row) -> str:
        return f"field {name!r} = {row[name]!r} is not {' or '.join(allowed)}"

    return say
