"""Bytes to runs of whole lines, and the threads that turn runs into chunks, in order.

Shared by the two Zeek readers (:mod:`cellwall.ingest.zeek_tsv`,
:mod:`cellwall.ingest.zeek_json`): :func:`whole_lines` joins what :func:`iter_blocks` cuts so
that every block holds whole lines, :func:`pipeline` runs the per-block work on a few
threads with a bounded number of blocks in flight, and the helpers here reject whole lines
with their line numbers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from cellwall.ingest.base import Chunk, Rejects
from cellwall.ingest.stream import Block, newline_offsets
from cellwall.model.flow_schema import empty_flows

__all__ = [
    "BLOCK_SIZE",
    "CONN_ONLY_FIELDS",
    "MAX_LINE",
    "LineIndex",
    "Tail",
    "chunk_of",
    "is_conn_path",
    "ready",
    "reject_lines",
    "tail_chunk",
    "whole_lines",
]

#: Bytes per block handed to one worker: small enough to stay in cache, large enough that
#: the per-block overhead does not show.
BLOCK_SIZE = 8 << 20

#: Fields that conn.log has and the other Zeek logs with an ``id`` (dns, http, ssl) lack.
CONN_ONLY_FIELDS = frozenset(
    {"conn_state", "history", "orig_pkts", "resp_pkts", "orig_ip_bytes", "resp_ip_bytes"}
)


def is_conn_path(path: str) -> bool:
    """``conn``, or a conn log split by a filter (``conn_long``, ``conn-internal``)."""
    return path == "conn" or path.startswith(("conn_", "conn-"))


@dataclass(frozen=True, slots=True)
class LineIndex:
    """Where each line of a block starts and ends (the end is the newline's offset)."""

    data: bytes
    starts: npt.NDArray[np.int64]
    ends: npt.NDArray[np.int64]

    @classmethod
    def of(cls, data: bytes) -> LineIndex:
        ends = newline_offsets(data)
        starts = np.concatenate((np.zeros(1, np.int64), ends + 1))
        if len(data) > (int(ends[-1]) + 1 if len(ends) else 0):
            ends = np.append(ends, np.int64(len(data)))  # a last line without a newline
        return cls(data, starts[: len(ends)], ends)

    def __len__(self) -> int:
        return len(self.ends)

    def line(self, i: int) -> bytes:
        return self.data[int(self.starts[i]) : int(self.ends[i])]

    def first_bytes(self) -> npt.NDArray[np.uint8]:
        """The first byte of every line (a newline for an empty line)."""
        buf = np.frombuffer(self.data, np.uint8)
        return buf[np.minimum(self.starts, len(self.data) - 1)] if len(self.data) else buf

    def blank(self) -> npt.NDArray[np.bool_]:
        """Lines that are empty or a lone CR (what the delimited parser skips)."""
        size = self.ends - self.starts
        first = self.first_bytes()
        return np.asarray((size == 0) | ((size == 1) & (first == 13)), np.bool_)


#: A line longer than this is rejected whole ("too-long") rather than held in memory.
MAX_LINE = 1 << 20


@dataclass(frozen=True, slots=True)
class Tail:
    """A line without its newline: the input ended in it, or it was too long to keep."""

    line: int
    data: bytes
    final: bool


def whole_lines(blocks: Iterator[Block], max_line: int = MAX_LINE) -> Iterator[Block | Tail]:
    """Blocks of whole, newline-ended lines; a line split across blocks is joined first.

    :func:`iter_blocks` hands over a line that has no newline for a long stretch in
    pieces; here such a line is kept whole up to ``max_line`` bytes and reported as a
    :class:`Tail` (not final) beyond that, and the rest of it is skipped.
    """
    carry, carry_line, carry_offset, skipping = b"", 0, 0, False
    for block in blocks:
        data, first, offset = block.data, block.first_line, block.offset
        if carry or skipping:
            nl = data.find(b"\n")
            if not skipping:
                carry += data if nl < 0 else data[: nl + 1]
                if len(carry) > max_line:
                    yield Tail(carry_line, carry[:max_line], final=False)
                    carry, skipping = b"", True
            if nl < 0:
                continue
            if carry:
                yield Block(carry_line, carry_offset, carry)
            carry, skipping = b"", False
            data, first, offset = data[nl + 1 :], first + 1, offset + nl + 1
        if not data:
            continue
        if data.endswith(b"\n"):
            yield block if data is block.data else Block(first, offset, data)
            continue
        cut = data.rfind(b"\n") + 1
        if cut:
            yield Block(first, offset, data[:cut])
        carry, carry_offset = data[cut:], offset + cut
        carry_line = first + data.count(b"\n", 0, cut)
        if len(carry) > max_line:
            yield Tail(carry_line, carry[:max_line], final=False)
            carry, skipping = b"", True
    if carry:
        yield Tail(carry_line, carry, final=True)


def tail_chunk(tail: Tail, file: str) -> Chunk:
    """Reject a line that ends the input without a newline, or is too long to keep."""
    rejects = Rejects(file)
    if tail.final:
        rejects.add(tail.line, "truncated", "the input ends in the middle of this line", tail.data)
    else:
        rejects.add(tail.line, "too-long", f"the line is longer than {MAX_LINE} bytes", tail.data)
    return Chunk(empty_flows(), rejects)


def reject_lines(
    index: LineIndex,
    which: npt.NDArray[np.intp],
    first_line: int,
    rejects: Rejects,
    reason: str,
    message: str,
) -> None:
    """Reject whole lines (by index in the block) with their raw text."""
    for i in which:
        rejects.add(first_line + int(i), reason, message, index.line(int(i)))


def ready(chunk: Chunk) -> Callable[[], Chunk]:
    """A job whose chunk is already made (a header's ignored count, a cut last line)."""
    return lambda: chunk


def chunk_of(flows: pa.Table | None, rejects: Rejects, ignored: Counter[str]) -> Chunk:
    """A chunk; no flows (only rejects or ignored lines) when ``flows`` is None."""
    return Chunk(empty_flows() if flows is None else flows, rejects, ignored)
