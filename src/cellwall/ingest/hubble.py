"""Cilium Hubble flows as JSON lines: ``hubble observe -o jsonpb`` and ``-o json``.

``-o jsonpb`` writes one ``GetFlowsResponse`` per line: ``{"flow": {...}, "node_name": ...,
"time": ...}``, or another kind of response (``node_status``, ``lost_events``,
``agent_event``, ``debug_event``), which is counted as ignored under its key. ``-o json``
writes the bare flow object. Both use flow.proto's field names and enum names.

=================  ==========================================================================
flow column        from the Hubble flow (flow.proto)
=================  ==========================================================================
start              ``time`` (RFC 3339, nanoseconds truncated to µs)
end                null: a Hubble flow is one event, not a window
src_ip, dst_ip     ``IP.source``, ``IP.destination`` (canonical text form)
proto              the member of ``l4`` that is set: TCP 6, UDP 17, SCTP 132, ICMPv4 1,
                   ICMPv6 58
src_port,          TCP/UDP/SCTP ``source_port``, ``destination_port``; for ICMP the ``type``
dst_port           in src_port and the ``code`` in dst_port
tcp_flags          the OR of ``l4.TCP.flags`` (FIN 1, SYN 2, RST 4, PSH 8, ACK 16, URG 32,
                   ECE 64, CWR 128, NS 256); 0 when TCP has no flags, null for other protocols
action             ``verdict``: FORWARDED, REDIRECTED (to the L7 proxy), TRANSLATED, TRACED
                   and AUDIT (policy would drop, audit mode passed it) are ``ACCEPT``: the
                   packet went on. DROPPED and ERROR are ``REJECT``. Unknown or absent: null.
drop_reason        ``drop_reason_desc`` (``POLICY_DENIED``, ...), whatever the verdict, unless
                   it is ``DROP_REASON_UNKNOWN``
direction          ``traffic_direction``: INGRESS ``ingress``, EGRESS ``egress``, else null
src_initiated      ``not is_reply``: a reply (``is_reply: true``) is kept as Hubble wrote it,
                   source = the server, and marked ``false``; conversations orient it. Null
                   when Hubble does not know (``is_reply`` absent).
exporter           ``node_name`` (of the flow, else of the response)
source_id          ``uuid``
http_method,       ``l7.http.method``, the path of ``l7.http.url`` (no query, no fragment;
http_path,         ``/`` for a URL without one), ``l7.http.code`` (0 means none: null)
http_status
bytes, packets     null: Hubble events carry no counters
lineage_pos        the physical line, 1-based
=================  ==========================================================================

DNS: an ``l7.dns`` record with ``ips`` (a response) also yields DNS evidence rows
(:mod:`cellwall.evidence.dns`): each address of ``ips`` named ``query``, valid for ``ttl``
seconds from ``time``; the client is the destination of a reply, else the source.

Each block is read by Arrow's JSON reader with an explicit nested schema
(:data:`~cellwall.ingest.hubble_mapping.READ_SCHEMA`). A block that starts with a
``GetFlowsResponse`` flow is read first with the cheaper
:func:`~cellwall.ingest.hubble_mapping.response_schema`, and only its lines with a bare
flow's keys again with the full one: the result is the same. A block that Arrow refuses is
split in halves until the refused lines stand alone, so only those are rejected, one by one:
``bad-json`` (not JSON, not an object), ``bad-field`` (a value of the wrong JSON type, such
as a verdict written as a number; a port out of range), ``not-text``, ``no-timestamp``,
``missing-field`` (no ``IP``, no ``l4``), ``bad-ip``, ``not-a-flow`` (an object that is no
flow and no known response), ``truncated`` and ``too-long``. Blank lines are ignored.

Options: ``workers`` (threads; default one per CPU, at most 4), ``block_size`` (bytes per
block, default 8 MiB).
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, ClassVar, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from cellwall.ingest.base import Chunk, FlowSource, Rejects, register
from cellwall.ingest.hubble_mapping import (
    EVENT_KEYS,
    FLOW_TYPE,
    LEAN_FLOW_TYPE,
    LEAN_READ_SCHEMA,
    READ_SCHEMA,
    Mapped,
    map_flows,
    response_schema,
)
from cellwall.ingest.parallel import int_option, ordered_map, worker_count
from cellwall.ingest.stream import Block, iter_blocks
from cellwall.ingest.zeek_blocks import BLOCK_SIZE, LineIndex, Tail, tail_chunk, whole_lines
from cellwall.ingest.zeek_mapping import IpMemo
from cellwall.model.flow_schema import empty_flows

__all__ = [
    "HubbleSource",
    "ParsedBlock",
    "blank_lines",
    "json_lines",
    "parse_hubble",
    "parsed_blocks",
]

_WHITESPACE = b" \t\r"
_BARE_KEYS = ("time", "IP", "l4", "verdict", "uuid")
#: How a block of ``-o jsonpb`` lines starts: those are read with the response schema.
_RESPONSE_START = b'{"flow":'


def _options(schema: pa.Schema) -> pajson.ParseOptions:
    return pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")


@dataclass(frozen=True)
class _Shape:
    """The flow struct type and the two ways to read it: every line, or responses first."""

    flow_type: pa.StructType
    full: pajson.ParseOptions
    responses: pajson.ParseOptions
    #: a bare flow's keys that a GetFlowsResponse does not have at its top
    bare_keys: tuple[str, ...]

    @classmethod
    def of(cls, flow_type: pa.StructType, schema: pa.Schema) -> _Shape:
        bare = tuple(f.name for f in flow_type if f.name not in ("time", "node_name"))
        return cls(flow_type, _options(schema), _options(response_schema(flow_type)), bare)


#: With the endpoints (for inventory hints) or without.
_SHAPES = {
    True: _Shape.of(FLOW_TYPE, READ_SCHEMA),
    False: _Shape.of(LEAN_FLOW_TYPE, LEAN_READ_SCHEMA),
}


class _Adds(Protocol):
    def add(self, pos: int, reason: str, message: str, raw: str | bytes = "") -> None: ...


class _Held:
    """Rejects held back, to be added in line order once every pass over a block is done.

    ``lines`` maps the positions given to :meth:`add` to the block's lines, when a pass
    reads a subset of them.
    """

    def __init__(self, lines: npt.NDArray[np.int64] | None = None) -> None:
        self.rows: list[tuple[int, str, str, str | bytes]] = []
        self.lines = lines

    def add(self, pos: int, reason: str, message: str, raw: str | bytes = "") -> None:
        line = int(pos) if self.lines is None else int(self.lines[pos])
        self.rows.append((line, reason, message, raw))

    def into(self, rejects: Rejects) -> None:
        for row in sorted(self.rows, key=lambda r: r[0]):
            rejects.add(*row)
        self.rows.clear()


@dataclass
class ParsedBlock:
    """One block read and mapped: its chunk, and the flow structs of the stored flows."""

    chunk: Chunk
    flows: pa.Array = field(default_factory=lambda: pa.array([], FLOW_TYPE))
    start_us: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))


def _arrow(data: bytes, rows: int, options: pajson.ParseOptions) -> pa.Table | None:
    """Arrow's reading of ``rows`` JSON lines, or None when it refuses them."""
    try:
        if not data.isascii():
            data.decode("utf-8")  # Arrow's JSON reader does not check string values
        table = pajson.read_json(
            io.BytesIO(data),
            read_options=pajson.ReadOptions(
                use_threads=False, block_size=max(1 << 20, len(data) + 1)
            ),
            parse_options=options,
        )
    except (pa.ArrowInvalid, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    return table if table.num_rows == rows else None


def _why(raw: bytes, options: pajson.ParseOptions) -> tuple[str, str]:
    """Why Arrow refused a single line: the reason code and message."""
    try:
        record = json.loads(raw)
    except UnicodeDecodeError:
        return "not-text", "the line is not UTF-8 text"
    except ValueError as exc:
        return "bad-json", f"not valid JSON: {exc}"
    if not isinstance(record, dict):
        return "bad-json", "not a JSON object"
    try:
        pajson.read_json(io.BytesIO(raw), parse_options=options)
    except pa.ArrowInvalid as exc:
        text = str(exc).removeprefix("JSON parse error: ")
        return "bad-field", f"a value has the wrong JSON type: {text}"
    return "bad-json", "more than one JSON value on the line"


def json_lines(
    index: LineIndex,
    content: npt.NDArray[np.intp],
    first_line: int,
    rejects: _Adds,
    options: pajson.ParseOptions,
    why: pajson.ParseOptions | None = None,
) -> tuple[list[pa.Table], list[npt.NDArray[np.intp]]]:
    """Read the content lines of a block with Arrow; reject only the lines it refuses.

    A refused run of lines is halved until the refused lines stand alone, so a block with
    ``k`` bad lines costs about ``k * log2(lines)`` extra Arrow calls. Returns the tables
    and, for each, the indices (in the block) of its lines, in order. A refused line is
    explained by reading it with ``why`` (default: ``options``). Also used by
    :mod:`cellwall.ingest.zeek_dns`.
    """
    why = why or options
    tables: list[pa.Table] = []
    kept: list[npt.NDArray[np.intp]] = []
    # Arrow's reader must only see objects: a block of nothing but ``null`` lines crashes
    # it (pyarrow 26, SIGSEGV). Any line that does not start with "{" is not an object.
    first = index.first_bytes()[content]
    objects = first == ord("{")
    for at in np.flatnonzero(~objects):
        i = int(content[at])
        raw = index.line(i)
        if raw.lstrip(_WHITESPACE).startswith(b"{"):
            objects[at] = True
            continue
        reason, message = _why(raw, why)
        rejects.add(first_line + i, reason, message, raw)
    content = content[objects]
    if not len(content):
        return tables, kept
    todo = [content]
    while todo:
        run = todo.pop()
        data = index.data[int(index.starts[run[0]]) : int(index.ends[run[-1]])]
        table = _arrow(data, len(run), options)
        if table is not None:
            tables.append(table)
            kept.append(run)
        elif len(run) == 1:
            raw = index.line(int(run[0]))
            reason, message = _why(raw, why)
            rejects.add(first_line + int(run[0]), reason, message, raw)
        else:
            half = len(run) // 2
            todo += [run[half:], run[:half]]  # the first half is popped first: order kept
    return tables, kept


def blank_lines(index: LineIndex) -> npt.NDArray[np.bool_]:
    """Lines that are empty or only spaces, tabs and CRs."""
    size = index.ends - index.starts
    blank: npt.NDArray[np.bool_] = np.asarray(size == 0, np.bool_)
    first = index.first_bytes()
    for i in np.flatnonzero((size > 0) & np.isin(first, np.frombuffer(_WHITESPACE, np.uint8))):
        blank[i] = not index.line(int(i)).strip(_WHITESPACE)
    return blank


class _Lines:
    """The raw text of a block's lines, indexed only when a line is asked for."""

    def __init__(self, block: Block, index: LineIndex | None = None) -> None:
        self.block = block
        self._index = index

    @property
    def index(self) -> LineIndex:
        if self._index is None:
            self._index = LineIndex.of(self.block.data)
        return self._index

    def __call__(self, line: int) -> bytes:
        return self.index.line(line - self.block.first_line)


def _split(
    table: pa.Table,
    lines: npt.NDArray[np.int64],
    raw: _Lines,
    flow_type: pa.StructType,
    rejects: Rejects,
) -> tuple[pa.Array, pa.Array, npt.NDArray[np.int64], Counter[str]]:
    """Flow structs (wrapped or bare) and their lines; other responses counted or refused."""
    wrapped = table["flow"].combine_chunks()
    is_wrapped = np.asarray(pc.is_valid(wrapped))
    ignored: Counter[str] = Counter()
    event = np.zeros(table.num_rows, np.bool_)
    for key in EVENT_KEYS:
        here = np.asarray(pc.is_valid(table[key].combine_chunks())) & ~is_wrapped & ~event
        if here.any():
            ignored[key] += int(here.sum())
            event |= here
    is_flow = is_wrapped.copy()
    if not is_flow.all():
        bare_any = np.zeros(table.num_rows, np.bool_)
        for key in _BARE_KEYS:
            bare_any |= np.asarray(pc.is_valid(table[key].combine_chunks()))
        is_flow |= ~event & bare_any
        for i in np.flatnonzero(~is_flow & ~event):
            line = int(lines[i])
            rejects.add(
                line,
                "not-a-flow",
                "the object is neither a Hubble flow nor a GetFlowsResponse",
                raw(line),
            )
        bare = pa.StructArray.from_arrays(
            [table[f.name].combine_chunks() for f in flow_type], fields=list(flow_type)
        )
        wrapped = pc.if_else(pa.array(is_wrapped), wrapped, bare)
    top_node = table["node_name"].combine_chunks()
    if is_flow.all():
        return wrapped, top_node, lines, ignored
    mask = pa.array(is_flow)
    return wrapped.filter(mask), top_node.filter(mask), lines[is_flow], ignored


def _object_lines(data: bytes) -> int:
    """The number of lines when every line of ``data`` starts with "{", else 0.

    NumPy, not ``bytes.count``: it releases the GIL, so the worker threads run together.
    """
    buf = np.frombuffer(data, np.uint8)
    if not len(buf) or buf[0] != ord("{") or buf[-1] != ord("\n"):
        return 0
    ends = np.flatnonzero(buf == ord("\n"))
    if len(ends) > 1 and not (buf[ends[:-1] + 1] == ord("{")).all():
        return 0
    return len(ends)


def _read_block(
    block: Block,
    options: pajson.ParseOptions,
    rejects: _Adds,
    ignored: Counter[str],
    why: pajson.ParseOptions | None = None,
) -> tuple[pa.Table | None, npt.NDArray[np.int64], _Lines]:
    """The block's objects as a table, and the line of each row.

    The usual block (every line an object, no blank line) is read by Arrow in one call
    without indexing its lines; anything else line by line where needed.
    """
    data = block.data
    n = _object_lines(data)
    if n:
        table = _arrow(data, n, options)
        if table is not None:
            return table, np.arange(n, dtype=np.int64) + block.first_line, _Lines(block)
    index = LineIndex.of(data)
    raw = _Lines(block, index)
    blank = blank_lines(index)
    if blank.any():
        ignored["blank"] = int(blank.sum())
    content = np.flatnonzero(~blank)
    if not len(content):
        return None, np.zeros(0, np.int64), raw
    tables, runs = json_lines(index, content, block.first_line, rejects, options, why)
    if not tables:
        return None, np.zeros(0, np.int64), raw
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    return table, np.concatenate(runs).astype(np.int64) + block.first_line, raw


_Flows = tuple[pa.Array, pa.Array, npt.NDArray[np.int64], _Lines]


def _read_all(
    block: Block, shape: _Shape, rejects: Rejects, ignored: Counter[str]
) -> _Flows | None:
    """Every line read with the full schema: flow structs, node names and lines."""
    table, lines, raw = _read_block(block, shape.full, rejects, ignored)
    if table is None:
        return None
    flows, top_node, flow_lines, events = _split(table, lines, raw, shape.flow_type, rejects)
    ignored.update(events)
    return flows, top_node, flow_lines, raw


def _valid(table: pa.Table, key: str) -> npt.NDArray[np.bool_]:
    column = table[key]
    if column.null_count == len(column):  # the usual case for all but a few keys
        return np.zeros(len(column), np.bool_)
    return np.asarray(pc.is_valid(column.combine_chunks()), np.bool_)


def _read_responses(
    block: Block, shape: _Shape, rejects: Rejects, ignored: Counter[str]
) -> _Flows | None:
    """Read with the response schema; lines with a bare flow's keys again with the full one.

    Lines refused by the response schema are refused by the full one too, with the reason
    that the full one gives; the rejects of both passes are added in line order.
    """
    held = _Held()
    table, lines, raw = _read_block(block, shape.responses, held, ignored, shape.full)
    if table is None:
        held.into(rejects)
        return None
    is_wrapped = _valid(table, "flow")
    event = np.zeros(table.num_rows, np.bool_)
    for key in EVENT_KEYS:
        event |= _valid(table, key)
    redo = ~is_wrapped & ~event
    for key in shape.bare_keys:
        redo |= _valid(table, key)
    again = _reread(raw, lines[redo], shape, held) if redo.any() else None
    held.into(rejects)
    if again is None and redo.all():
        return None  # no line was read after all
    counted = np.zeros(table.num_rows, np.bool_)
    for key in EVENT_KEYS:
        here = _valid(table, key) & ~is_wrapped & ~counted & ~redo
        if here.any():
            ignored[key] += int(here.sum())
            counted |= here
    keep = is_wrapped & ~redo
    flows = table["flow"].combine_chunks()
    top_node = table["node_name"].combine_chunks()
    if not keep.all():
        mask = pa.array(keep)
        flows, top_node, lines = flows.filter(mask), top_node.filter(mask), lines[keep]
    if again is None:
        return flows, top_node, lines, raw
    flows_b, top_b, lines_b, events = _split(*again, raw, shape.flow_type, rejects)
    ignored.update(events)
    lines = np.concatenate([lines, lines_b])
    order = pa.array(np.argsort(lines, kind="stable"))
    flows = pa.concat_arrays([flows, flows_b]).take(order)
    top_node = pa.concat_arrays([top_node, top_b]).take(order)
    return flows, top_node, lines[np.asarray(order)], raw


def _reread(
    raw: _Lines, lines: npt.NDArray[np.int64], shape: _Shape, held: _Held
) -> tuple[pa.Table, npt.NDArray[np.int64]] | None:
    """The given lines read (again) with the full schema; the table and its rows' lines."""
    data = b"".join([raw(int(line)) + b"\n" for line in lines])
    index = LineIndex.of(data)
    where = _Held(lines)
    content = np.arange(len(lines), dtype=np.intp)
    tables, runs = json_lines(index, content, 0, where, shape.full)
    held.rows += where.rows
    if not tables:
        return None
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    return table, lines[np.concatenate(runs)]


def parse_hubble(
    block: Block, file: str, fmt: str, memo: IpMemo, *, endpoints: bool = False
) -> ParsedBlock:
    """Read and map one block of whole lines (runs on a worker thread).

    With ``endpoints``, the flow structs keep ``source`` and ``destination`` (for hints).
    """
    shape = _SHAPES[endpoints]
    rejects = Rejects(file)
    ignored: Counter[str] = Counter()
    read = _read_responses if block.data.startswith(_RESPONSE_START) else _read_all
    got = read(block, shape, rejects, ignored)
    if got is None:
        return ParsedBlock(Chunk(empty_flows(), rejects, ignored), pa.array([], shape.flow_type))
    flows, top_node, flow_lines, raw = got
    mapped: Mapped = map_flows(flows, top_node, flow_lines, file, fmt, memo)
    for row, reason, message in mapped.refused:
        line = int(flow_lines[row])
        rejects.add(line, reason, message, raw(line))
    chunk = Chunk(mapped.flows, rejects, ignored, dns=mapped.dns)
    kept = flows if mapped.kept.all() else flows.filter(pa.array(mapped.kept))
    return ParsedBlock(chunk, kept, mapped.start_us)


def _tail(item: Tail, file: str) -> ParsedBlock:
    if item.final and not item.data.strip(_WHITESPACE):
        return ParsedBlock(Chunk(empty_flows(), Rejects(file), Counter(blank=1)))
    return ParsedBlock(tail_chunk(item, file))


def parsed_blocks(
    stream: BinaryIO,
    file: str,
    *,
    fmt: str = "hubble",
    block_size: int = BLOCK_SIZE,
    workers: int = 1,
    endpoints: bool = False,
) -> Iterator[ParsedBlock]:
    """Read the stream block by block (on ``workers`` threads), in order."""
    memo = IpMemo()

    def parse(item: Block | Tail) -> ParsedBlock:
        if isinstance(item, Block):
            return parse_hubble(item, file, fmt, memo, endpoints=endpoints)
        return _tail(item, file)

    yield from ordered_map(parse, whole_lines(iter_blocks(stream, block_size)), workers)


@register
class HubbleSource(FlowSource):
    """Cilium Hubble flows, ``hubble observe -o jsonpb`` or ``-o json`` lines."""

    name: ClassVar[str] = "hubble"
    title: ClassVar[str] = "Cilium Hubble flows, JSON lines (hubble observe -o jsonpb / -o json)"

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        for line in head.split(b"\n")[:64]:
            stripped = line.strip(_WHITESPACE)
            if not stripped:
                continue
            if not stripped.startswith(b"{") or b'"id.orig_h"' in line:
                return False
            return b'"flow":' in line or (b'"verdict":' in line and b'"IP":' in line)
        return False

    def read(self, stream: BinaryIO, file: str) -> Iterator[Chunk]:
        size = int_option(self.options, "block_size", BLOCK_SIZE, self.name)
        workers = worker_count(self.options, self.name)
        for parsed in parsed_blocks(stream, file, fmt=self.name, block_size=size, workers=workers):
            yield parsed.chunk
