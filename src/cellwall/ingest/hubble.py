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

Each line is read by the schema of its kind, whatever its neighbours: a line with ``flow``
or an event key is a response, read with
:func:`~cellwall.ingest.hubble_mapping.response_schema` (its other top-level keys are not a
response's and are ignored); any other line is a bare flow, read with
:func:`~cellwall.ingest.hubble_mapping.bare_schema`. A block is read in one Arrow call with
the schema of the kind that its first line has, and the lines of the other kind again with
theirs. A block that Arrow refuses is split in halves until the refused lines stand alone
(:mod:`cellwall.ingest.json_block`); a refused line of the other kind is judged by its own
kind's schema. Rejects: ``bad-json`` (not JSON, not an object), ``bad-field`` (a value of
the wrong JSON type, such as a verdict written as a number; a port out of range),
``not-text``, ``no-timestamp``, ``missing-field`` (no ``IP``, no ``l4``), ``bad-ip``,
``not-a-flow`` (an object that is no flow and no known response), ``truncated`` and
``too-long``. Blank lines are ignored.

Options: ``workers`` (threads; default one per CPU, at most 4), ``block_size`` (bytes per
block, default 8 MiB).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, ClassVar

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
    Mapped,
    bare_schema,
    map_flows,
    response_schema,
)
from cellwall.ingest.json_block import WHITESPACE, Held, Lines, read_block, reread
from cellwall.ingest.parallel import int_option, ordered_map, worker_count
from cellwall.ingest.stream import Block, iter_blocks
from cellwall.ingest.zeek_blocks import BLOCK_SIZE, Tail, tail_chunk, whole_lines
from cellwall.ingest.zeek_mapping import IpMemo
from cellwall.model.flow_schema import empty_flows

__all__ = [
    "HubbleSource",
    "ParsedBlock",
    "parse_hubble",
    "parsed_blocks",
]

_BARE_KEYS = ("time", "IP", "l4", "verdict", "uuid")
#: How a block of ``-o jsonpb`` lines starts: it is read with the response schema first.
_RESPONSE_START = b'{"flow":'
_NOT_A_FLOW = "the object is neither a Hubble flow nor a GetFlowsResponse"


def _options(schema: pa.Schema) -> pajson.ParseOptions:
    return pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")


@dataclass(frozen=True)
class _Shape:
    """The flow struct type and the schemas of the two kinds of line."""

    flow_type: pa.StructType
    response: pajson.ParseOptions
    bare: pajson.ParseOptions

    @classmethod
    def of(cls, flow_type: pa.StructType) -> _Shape:
        return cls(
            flow_type, _options(response_schema(flow_type)), _options(bare_schema(flow_type))
        )

    def options(self, response: bool) -> pajson.ParseOptions:
        return self.response if response else self.bare


#: With the endpoints (for inventory hints) or without.
_SHAPES = {True: _Shape.of(FLOW_TYPE), False: _Shape.of(LEAN_FLOW_TYPE)}


@dataclass
class ParsedBlock:
    """One block read and mapped: its chunk, and the flow structs of the stored flows."""

    chunk: Chunk
    flows: pa.Array = field(default_factory=lambda: pa.array([], FLOW_TYPE))
    start_us: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))


def _is_response(raw: bytes) -> bool:
    """Whether a line (a JSON object) is a response: ``flow`` or an event key is set."""
    record = json.loads(raw)
    return any(record.get(key) is not None for key in ("flow", *EVENT_KEYS))


class _Judge:
    """Where the first read's refusals go: a line of the first read's kind is rejected with
    its reason; a line of the other kind is handed to the other kind's schema, which judges
    it (a wrapped flow's top-level keys mean nothing to a response, for instance)."""

    def __init__(self, held: Held, response: bool) -> None:
        self.held = held
        self.response = response
        self.others: list[int] = []

    def add(self, pos: int, reason: str, message: str, raw: str | bytes = "") -> None:
        if reason == "bad-field" and isinstance(raw, bytes) and _is_response(raw) != self.response:
            self.others.append(int(pos))
            return
        self.held.add(pos, reason, message, raw)


def _valid(table: pa.Table, key: str) -> npt.NDArray[np.bool_]:
    column = table[key]
    if column.null_count == len(column):  # the usual case for all but a few keys
        return np.zeros(len(column), np.bool_)
    return np.asarray(pc.is_valid(column.combine_chunks()), np.bool_)


@dataclass
class _Sorted:
    """The rows of one read: its flows, and the lines that belong to the other kind."""

    flows: pa.Array
    top_node: pa.Array
    lines: npt.NDArray[np.int64]
    others: npt.NDArray[np.int64]


def _sort(
    table: pa.Table,
    lines: npt.NDArray[np.int64],
    response: bool,
    shape: _Shape,
    held: Held,
    raw: Lines,
    ignored: Counter[str],
) -> _Sorted:
    """Flows, other responses (counted), lines of the other kind, and non-flows (rejected).

    Read as responses, a row is a flow when ``flow`` is set, an event when an event key is,
    and else of the other kind. Read as bare flows, a row with ``flow`` set is of the other
    kind; one with an event key is an event; one with none of a bare flow's keys is no flow.
    """
    wrapped = _valid(table, "flow")
    event = np.zeros(table.num_rows, np.bool_)
    for key in EVENT_KEYS:
        here = _valid(table, key) & ~wrapped & ~event
        if here.any():
            ignored[key] += int(here.sum())
            event |= here
    if response:
        keep, other = wrapped, ~wrapped & ~event
        flows = table["flow"].combine_chunks()
    else:
        flowish = np.zeros(table.num_rows, np.bool_)
        for key in _BARE_KEYS:
            flowish |= _valid(table, key)
        keep, other = ~wrapped & ~event & flowish, wrapped
        for i in np.flatnonzero(~wrapped & ~event & ~flowish):
            line = int(lines[i])
            held.add(line, "not-a-flow", _NOT_A_FLOW, raw(line))
        flows = pa.StructArray.from_arrays(
            [table[f.name].combine_chunks() for f in shape.flow_type], fields=list(shape.flow_type)
        )
    top_node = table["node_name"].combine_chunks()
    if not keep.all():
        mask = pa.array(keep)
        flows, top_node = flows.filter(mask), top_node.filter(mask)
    return _Sorted(flows, top_node, lines[keep], lines[other])


_Flows = tuple[pa.Array, pa.Array, npt.NDArray[np.int64], Lines]


def _read_kinds(
    block: Block, shape: _Shape, rejects: Rejects, ignored: Counter[str]
) -> _Flows | None:
    """Every line read by the schema of its kind: flow structs, node names and lines.

    A block is read with the schema of the kind that it starts with; the lines of the other
    kind (and the refused lines that are of the other kind) are read again with the other
    schema. So a line's fate never depends on its neighbours.
    """
    response = block.data.startswith(_RESPONSE_START)
    held = Held()
    judge = _Judge(held, response)
    table, lines, raw = read_block(block, shape.options(response), judge, ignored)
    parts: list[_Sorted] = []
    others = np.asarray(judge.others, np.int64)
    if table is not None:
        first = _sort(table, lines, response, shape, held, raw, ignored)
        parts.append(first)
        others = np.sort(np.concatenate([others, first.others]))
    if len(others):
        again = reread(raw, others, shape.options(not response), held)
        if again is not None:
            second = _sort(*again, not response, shape, held, raw, ignored)
            for line in second.others:  # cannot be: each kind was told by the same keys
                held.add(int(line), "not-a-flow", _NOT_A_FLOW, raw(int(line)))
            parts.append(second)
    held.into(rejects)
    parts = [p for p in parts if len(p.lines)]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0].flows, parts[0].top_node, parts[0].lines, raw
    lines = np.concatenate([p.lines for p in parts])
    order = np.argsort(lines, kind="stable")
    take = pa.array(order)
    flows = pa.concat_arrays([p.flows for p in parts]).take(take)
    top_node = pa.concat_arrays([p.top_node for p in parts]).take(take)
    return flows, top_node, lines[order], raw


def parse_hubble(
    block: Block, file: str, fmt: str, memo: IpMemo, *, endpoints: bool = False
) -> ParsedBlock:
    """Read and map one block of whole lines (runs on a worker thread).

    With ``endpoints``, the flow structs keep ``source`` and ``destination`` (for hints).
    """
    shape = _SHAPES[endpoints]
    rejects = Rejects(file)
    ignored: Counter[str] = Counter()
    got = _read_kinds(block, shape, rejects, ignored)
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
    if item.final and not item.data.strip(WHITESPACE):
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
            stripped = line.strip(WHITESPACE)
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
