"""Zeek conn.log in Zeek's own ASCII format: TSV under ``#`` header directives.

The main thread reads the header directives in order (they may come back mid-file when
logs are concatenated) and cuts every block into runs of data lines, each tagged with the
column layout in force. Worker threads parse the runs with the shared delimited parser
and map them to flows. A layout is a value, so a run never sees a later header.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from functools import partial
from typing import BinaryIO, ClassVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from cellwall.errors import Diagnostic, FormatError
from cellwall.ingest.base import Chunk, FlowSource, Rejects, register
from cellwall.ingest.delimited import parse_block
from cellwall.ingest.parallel import int_option, ordered_map, worker_count
from cellwall.ingest.stream import Block, iter_blocks
from cellwall.ingest.zeek_blocks import (
    BLOCK_SIZE,
    LineIndex,
    chunk_of,
    is_conn_path,
    ready,
    reject_lines,
    tail_chunk,
    whole_lines,
)
from cellwall.ingest.zeek_mapping import FIELD_TYPES, Context, to_flows

__all__ = ["ZeekTsvSource"]

_DIRECTIVE = re.compile(r"#([A-Za-z_]+)(.*)", re.S)
_ESCAPE = re.compile(r"\\x([0-9A-Fa-f]{2})")
_NAMES_LINE = re.compile(rb"[A-Za-z_][\w.]*(\t[A-Za-z_][\w.]*)*\r?")
_REQUIRED = ("id.orig_h", "id.resp_h")
_REQUIRED_B = tuple(n.encode() for n in _REQUIRED)

Job = Callable[[], Chunk]


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


@dataclass(frozen=True, slots=True)
class Layout:
    """How the data lines under one header read: their fields, separator and null marker.

    ``problem`` (reason, message) is set when the header cannot be used; the lines under it
    are then rejected with that reason.
    """

    names: tuple[str, ...]
    delimiter: str = "\t"
    unset: str = "-"
    empty: str = "(empty)"
    problem: tuple[str, str] | None = None


_NO_HEADER = Layout(
    (), problem=("no-header", "no #fields header before this line: its columns are unknown")
)


def _layout_problem(names: list[str], types: list[str] | None, sep: str, line: int) -> str | None:
    if len(sep) != 1 or sep in "\r\n":
        return f"the #separator {sep!r} is not one character"
    if not all(names) or len(set(names)) != len(names):
        return f"the #fields header (line {line}) has empty or repeated names"
    missing = [n for n in _REQUIRED if n not in names]
    if missing:
        return f"the #fields header (line {line}) lacks {', '.join(missing)}: not a conn log"
    if types is not None and len(types) != len(names):
        return f"#types (line {line}) lists {len(types)} types for {len(names)} fields"
    return None


@dataclass
class _Header:
    """The header directives read so far; a ``#separator`` line starts a new log."""

    file: str
    separator: str = "\t"
    unset: str = "-"
    empty: str = "(empty)"
    path: str | None = None
    names: list[str] | None = None
    types: list[str] | None = None
    fields_line: int = 0
    layout: Layout = _NO_HEADER

    def directive(self, raw: bytes, line: int) -> str | None:
        """Apply one ``#`` line; return its directive name (None for a comment)."""
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        m = _DIRECTIVE.fullmatch(text)
        if m is None:
            return None  # a comment, such as BTest's "### BTest baseline data ..." line
        key, rest = m.group(1), m.group(2)
        if key == "separator":
            self._new_log(_unescape(rest[1:] if rest[:1] in (" ", "\t") else rest))
            return key
        value = rest[1:] if rest[:1] in (self.separator, " ") else rest
        if key == "empty_field":
            self.empty = _unescape(value)
        elif key == "unset_field":
            self.unset = _unescape(value)
        elif key == "path":
            self._path(value, line)
        elif key == "fields":
            self.names, self.types, self.fields_line = value.split(self.separator), None, line
        elif key == "types":
            self.types = value.split(self.separator)
        self._relayout()
        return key

    def _new_log(self, separator: str) -> None:
        self.separator, self.unset, self.empty = separator, "-", "(empty)"
        self.path = self.names = self.types = None
        self._relayout()

    def minimal(self, raw: bytes, line: int) -> bool:
        """Take a bare line of field names (``zeek-cut -m`` output) as the header."""
        if self.names is not None or not _NAMES_LINE.fullmatch(raw):
            return False
        names = raw.decode().rstrip("\r").split("\t")
        if not all(n in names for n in _REQUIRED):
            return False
        self.separator, self.names, self.types, self.fields_line = "\t", names, None, line
        self._relayout()
        return True

    def _path(self, path: str, line: int) -> None:
        self.path = path or None
        if path and not is_conn_path(path):
            raise FormatError(
                f"{self.file}: line {line}: this is Zeek's {path}.log, not conn.log; "
                "only conn.log holds flows",
                hint="ingest the conn.log files (or their JSON form, --format zeek-json)",
                diagnostics=[Diagnostic(self.file, line, None, "zeek-not-conn", f"#path {path}")],
            )

    def _relayout(self) -> None:
        if self.names is None:
            self.layout = _NO_HEADER
            return
        problem = _layout_problem(self.names, self.types, self.separator, self.fields_line)
        self.layout = Layout(
            tuple(self.names),
            self.separator,
            self.unset,
            self.empty,
            ("bad-header", problem) if problem else None,
        )


def _data_chunk(block: Block, layout: Layout, ctx: Context) -> Chunk:
    """Parse a run of data lines under one layout (runs on a worker thread)."""
    rejects = Rejects(ctx.file)
    if layout.problem is not None:
        index = LineIndex.of(block.data)
        empty = index.blank()
        reason, message = layout.problem
        reject_lines(index, np.flatnonzero(~empty), block.first_line, rejects, reason, message)
        return chunk_of(None, rejects, Counter(blank=int(empty.sum())) - Counter())
    types = {n: FIELD_TYPES.get(n, pa.string()) for n in layout.names}
    parsed = parse_block(
        block, layout.names, types, rejects, delimiter=layout.delimiter, null_values=(layout.unset,)
    )
    # The parser skips blank lines; every other line is now a row or a reject.
    lines = int(np.count_nonzero(np.frombuffer(block.data, np.uint8) == 10))
    blank = lines - len(parsed) - len(rejects)
    flows = to_flows(parsed, rejects, ctx, empty=layout.empty)
    return chunk_of(flows, rejects, Counter(blank=blank) - Counter())


class _Planner:
    """Cuts blocks into runs of data lines under the header in force (main thread)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.header = _Header(ctx.file)
        self.seen_data = False

    def jobs(self, blocks: Iterator[Block]) -> Iterator[Job]:
        for item in whole_lines(blocks):
            if isinstance(item, Block):
                yield from self._block(item)
            elif item.final and item.data.startswith(b"#"):
                yield from self._block(Block(item.line, 0, item.data + b"\n"))
            elif item.final and item.data == b"\r":
                yield ready(chunk_of(None, Rejects(self.ctx.file), Counter(blank=1)))
            else:
                yield ready(tail_chunk(item, self.ctx.file))

    def _block(self, block: Block) -> Iterator[Job]:
        data = block.data
        if data.find(b"#") < 0:  # one memchr: the usual block holds no header line
            yield from self._run(block)
            return
        buf = np.frombuffer(data, np.uint8)
        hashes = np.flatnonzero(buf == 35)
        at_start = np.ones(len(hashes), np.bool_)
        inner = hashes > 0
        at_start[inner] = buf[hashes[inner] - 1] == 10
        hashes = hashes[at_start]
        if not len(hashes):
            yield from self._run(block)
            return
        newlines = np.flatnonzero(buf == 10)
        pos = 0
        for h in hashes.tolist():
            if h > pos:
                yield from self._run(self._slice(block, newlines, pos, h))
            end = data.find(b"\n", h)
            end = len(data) if end < 0 else end + 1
            line = block.first_line + int(np.searchsorted(newlines, h))
            if self.header.directive(data[h:end], line) == "close":
                yield ready(chunk_of(None, Rejects(self.ctx.file), Counter(close=1)))
            pos = end
        if pos < len(data):
            yield from self._run(self._slice(block, newlines, pos, len(data)))

    @staticmethod
    def _slice(block: Block, newlines: npt.NDArray[np.intp], start: int, end: int) -> Block:
        line = block.first_line + int(np.searchsorted(newlines, start))
        return Block(line, block.offset + start, block.data[start:end])

    def _run(self, block: Block) -> Iterator[Job]:
        if not self.seen_data and self.header.names is None:
            block = yield from self._maybe_minimal(block)
            if not block.data:
                return
        self.seen_data = self.seen_data or bool(block.data.strip(b"\r\n"))
        yield partial(_data_chunk, block, self.header.layout, self.ctx)

    def _maybe_minimal(self, block: Block) -> Generator[Job, None, Block]:
        """Before any header: a bare line of field names is the header (zeek-cut -m)."""
        data, skipped = block.data, 0
        while data.startswith((b"\n", b"\r\n")):
            nl = data.index(b"\n") + 1
            data, skipped = data[nl:], skipped + 1
        if not data:
            return block
        end = data.find(b"\n")
        first = data if end < 0 else data[:end]
        line = block.first_line + skipped
        if not self.header.minimal(first, line):
            return block
        ignored = Counter(header=1, blank=skipped) - Counter()
        yield ready(chunk_of(None, Rejects(self.ctx.file), ignored))
        rest = b"" if end < 0 else data[end + 1 :]
        return Block(line + 1, block.offset + len(block.data) - len(rest), rest)


@register
class ZeekTsvSource(FlowSource):
    """Zeek conn.log as Zeek writes it: TSV under ``#separator`` ... ``#fields`` headers."""

    name: ClassVar[str] = "zeek"
    title: ClassVar[str] = "Zeek conn.log, ASCII (TSV with #fields header)"

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        for line in head.split(b"\n")[:64]:
            if line.startswith(b"#path"):  # another Zeek log (dns, http) is not flows
                return is_conn_path(line[5:].strip().decode("utf-8", "replace"))
        for line in head.split(b"\n")[:64]:
            if not line.strip() or (line.startswith(b"#") and not line[1:2].isalpha()):
                continue  # a comment, such as BTest's "### BTest baseline data" banner
            if line.startswith(b"#"):
                return line.startswith((b"#separator", b"#fields"))
            names = line.rstrip(b"\r").split(b"\t")
            return bool(_NAMES_LINE.fullmatch(line)) and all(n in names for n in _REQUIRED_B)
        return False

    def read(self, stream: BinaryIO, file: str) -> Iterator[Chunk]:
        ctx = Context(file, self.name, self.options.get("sensor"))
        planner = _Planner(ctx)
        size = int_option(self.options, "block_size", BLOCK_SIZE, self.name)
        blocks = iter_blocks(stream, size)
        yield from ordered_map(_run, planner.jobs(blocks), worker_count(self.options, self.name))


def _run(job: Callable[[], Chunk]) -> Chunk:
    return job()
