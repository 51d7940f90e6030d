"""A block of JSON lines read by Arrow: in one call when it can, else line by line.

Arrow's JSON reader takes a whole block in one call. When it refuses a block, the lines
are read in runs that are halved until the refused lines stand alone, so only those are
rejected, each with its line and why: ``bad-json`` (not JSON, not an object, more than one
value), ``not-text`` (not UTF-8) or ``bad-field`` (a value of the wrong JSON type for the
schema). Used by :mod:`cellwall.ingest.hubble` and :mod:`cellwall.ingest.zeek_dns`.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.json as pajson

from cellwall.ingest.base import Rejects
from cellwall.ingest.stream import Block, newline_offsets
from cellwall.ingest.zeek_blocks import LineIndex

__all__ = [
    "WHITESPACE",
    "Adds",
    "Held",
    "Lines",
    "blank_lines",
    "json_lines",
    "read_block",
    "reread",
]

#: What may stand around a JSON value on a line, besides the newline.
WHITESPACE = b" \t\r"


class Adds(Protocol):
    """Where refused lines go: ``pos`` is the line, ``raw`` its text."""

    def add(self, pos: int, reason: str, message: str, raw: str | bytes = "") -> None: ...


class Held:
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


def _arrow(data: bytes, rows: int, options: pajson.ParseOptions) -> pa.Table | None:
    """Arrow's reading of ``rows`` JSON lines, or None when it refuses them."""
    try:
        if not data.isascii():
            data.decode("utf-8")  # Arrow's JSON reader does not check string values
        table = pajson.read_json(
            pa.BufferReader(data),  # zero-copy: Arrow reads the bytes where they are
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
    rejects: Adds,
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
        if raw.lstrip(WHITESPACE).startswith(b"{"):
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
    for i in np.flatnonzero((size > 0) & np.isin(first, np.frombuffer(WHITESPACE, np.uint8))):
        blank[i] = not index.line(int(i)).strip(WHITESPACE)
    return blank


class Lines:
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


def _object_lines(data: bytes) -> int:
    """The number of lines when every line of ``data`` starts with "{", else 0.

    NumPy, not ``bytes.count``: it releases the GIL, so the worker threads run together.
    """
    buf = np.frombuffer(data, np.uint8)
    if not len(buf) or buf[0] != ord("{") or buf[-1] != ord("\n"):
        return 0
    ends = newline_offsets(data)
    if len(ends) > 1 and not (buf[ends[:-1] + 1] == ord("{")).all():
        return 0
    return len(ends)


def read_block(
    block: Block,
    options: pajson.ParseOptions,
    rejects: Adds,
    ignored: Counter[str],
) -> tuple[pa.Table | None, npt.NDArray[np.int64], Lines]:
    """The block's objects as a table, and the line of each row.

    The usual block (every line an object, no blank line) is read by Arrow in one call
    without indexing its lines; anything else line by line where needed.
    """
    data = block.data
    n = _object_lines(data)
    if n:
        table = _arrow(data, n, options)
        if table is not None:
            return table, np.arange(n, dtype=np.int64) + block.first_line, Lines(block)
    index = LineIndex.of(data)
    raw = Lines(block, index)
    blank = blank_lines(index)
    if blank.any():
        ignored["blank"] = int(blank.sum())
    content = np.flatnonzero(~blank)
    if not len(content):
        return None, np.zeros(0, np.int64), raw
    tables, runs = json_lines(index, content, block.first_line, rejects, options)
    if not tables:
        return None, np.zeros(0, np.int64), raw
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    return table, np.concatenate(runs).astype(np.int64) + block.first_line, raw


def reread(
    raw: Lines, lines: npt.NDArray[np.int64], options: pajson.ParseOptions, held: Held
) -> tuple[pa.Table, npt.NDArray[np.int64]] | None:
    """The given lines of a block read (again) with ``options``; the table and its rows'
    lines. Refused lines go to ``held``, explained by ``options``."""
    data = b"".join([raw(int(line)) + b"\n" for line in lines])
    index = LineIndex.of(data)
    where = Held(lines)
    content = np.arange(len(lines), dtype=np.intp)
    tables, runs = json_lines(index, content, 0, where, options)
    held.rows += where.rows
    if not tables:
        return None
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    return table, lines[np.concatenate(runs)]
