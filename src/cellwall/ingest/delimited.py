"""Parsing blocks of delimited text (VPC logs, Zeek TSV) into typed Arrow columns.

The fast path asks Arrow's CSV reader for typed columns. When a block holds a value that
does not convert, the block is parsed again as strings and every typed column is checked
with vectorised regular expressions, so that only the bad rows are rejected, each with its
line number, field and value. Blank lines are skipped; rows with the wrong number of fields
are rejected. Every surviving row keeps its physical line number.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from cellwall.ingest.base import Rejects
from cellwall.ingest.stream import Block

__all__ = ["Parsed", "parse_block"]

_LONE_CR = re.compile(rb"\r(?!\n|\Z)")
_TEXT = re.compile(rb"[^\r\n]")
_UINT = r"^[0-9]{1,19}$"
_INT = r"^-?[0-9]{1,18}$"
_FLOAT = r"^-?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?$"


@dataclass
class Parsed:
    """Good rows of a block: typed columns, and the physical line number of each row."""

    table: pa.Table
    lines: np.ndarray
    delimiter: str

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def reject(
        self, bad: pa.Array | np.ndarray, rejects: Rejects, reason: str, what: str
    ) -> Parsed:
        """Move the rows where ``bad`` is true into ``rejects``; return the rest."""
        mask = np.asarray(pa.array(bad).fill_null(True) if isinstance(bad, pa.Array) else bad)
        if not mask.any():
            return self
        idx = np.flatnonzero(mask)
        rows = self.table.take(pa.array(idx)).to_pylist()
        for i, row in zip(idx, rows, strict=True):
            raw = self.delimiter.join("-" if v is None else str(v) for v in row.values())
            rejects.add(int(self.lines[i]), reason, what, raw)
        keep = pa.array(~mask)
        return Parsed(self.table.filter(keep), self.lines[~mask], self.delimiter)


def _scrub(block: Block, rejects: Rejects) -> bytes:
    """Blank out (and reject) lines that are not UTF-8 text; line numbers stay as they were."""
    data = block.data
    if data.startswith(b"\xef\xbb\xbf"):
        # Arrow drops a BOM at the start of what it reads, but only the file's own BOM is not
        # content: spell out any other, so that a line does not depend on where a block begins.
        data = data[3:] if block.offset == 0 else b"\\ufeff" + data[3:]
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
        # Arrow ends a row at a lone CR; spell it out so that rows stay physical lines.
        data = _LONE_CR.sub(rb"\\r", data)
    if data.isascii():
        return data
    try:
        data.decode("utf-8")
        return data
    except UnicodeDecodeError:
        pass
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            rejects.add(block.first_line + i, "not-text", "the line is not UTF-8 text", line)
            lines[i] = b""
    return b"\n".join(lines)


def _nonblank_lines(data: bytes, seen: int) -> np.ndarray:
    """Line numbers (1-based, relative) of the lines that are neither empty nor a lone CR.

    ``seen`` is how many lines Arrow did not skip: when that is all of them, none is blank.
    """
    buf = np.frombuffer(data, np.uint8)
    newline = buf == 10
    count = int(np.count_nonzero(newline)) + (0 if data.endswith(b"\n") else 1)
    if seen == count:
        return np.arange(1, count + 1, dtype=np.int64)
    ends = np.flatnonzero(newline)  # line k ends at ends[k - 1]
    starts = np.concatenate((np.zeros(1, np.int64), ends[:-1] + 1))
    size = ends - starts
    blank = (size == 0) | ((size == 1) & (buf[ends - 1] == 13))
    if len(data) > (int(ends[-1]) + 1 if len(ends) else 0):  # a last line without a newline
        tail = data[int(ends[-1]) + 1 :] if len(ends) else data
        blank = np.append(blank, tail == b"\r")
    return np.flatnonzero(~blank).astype(np.int64) + 1


def _read(
    data: bytes,
    names: Sequence[str],
    types: Mapping[str, pa.DataType],
    delimiter: str,
    null_values: Sequence[str],
    quoting: bool = False,
) -> tuple[pa.Table, list[tuple[int, str, int]]]:
    invalid: list[tuple[int, str, int]] = []

    def handler(row: pacsv.InvalidRow) -> str:
        invalid.append((row.number or 0, row.text, row.actual_columns))
        return "skip"

    table = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(
            column_names=list(names), use_threads=False, block_size=max(1 << 20, len(data) + 1)
        ),
        parse_options=pacsv.ParseOptions(
            delimiter=delimiter,
            quote_char='"' if quoting else False,
            escape_char=False,
            ignore_empty_lines=True,
            invalid_row_handler=handler,
        ),
        convert_options=pacsv.ConvertOptions(
            column_types=dict(types),
            null_values=list(null_values),
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            check_utf8=False,  # _scrub has already set aside every line that is not UTF-8
        ),
    )
    return table, invalid


def _as_arrow_reads(
    col: pa.Array, ok: pa.Array, values: pa.Array, via: pa.DataType
) -> tuple[pa.Array, pa.Array]:
    """Also take what the fast path takes (hex, blanks around a number), so that a value's
    fate never depends on whether a neighbour sent its block down the fallback path."""
    doubt = np.flatnonzero(~np.asarray(ok.fill_null(True)))
    rescued: dict[int, object] = {}
    for i in doubt:
        try:
            rescued[int(i)] = pa.scalar(col[int(i)].as_py().strip(" \t")).cast(via).as_py()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    if not rescued:
        return ok, values
    mask = np.zeros(len(col), np.bool_)
    mask[list(rescued)] = True
    values = pc.replace_with_mask(values, pa.array(mask), pa.array(list(rescued.values()), via))
    return pc.or_kleene(ok, pa.array(mask)), values


def _check_column(col: pa.Array, typ: pa.DataType) -> tuple[pa.Array, pa.Array | None, str]:
    """Convert a string column to ``typ``; return (values, bad mask or None, expectation)."""
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return col, None, ""
    if pa.types.is_floating(typ):
        pattern, via, expect = _FLOAT, pa.float64(), "a number"
    elif pa.types.is_unsigned_integer(typ):
        pattern, via = _UINT, pa.uint64()
        expect = f"an integer in 0..{np.iinfo(typ.to_pandas_dtype()).max}"
    elif pa.types.is_integer(typ):
        pattern, via = _INT, pa.int64()
        info = np.iinfo(typ.to_pandas_dtype())
        expect = f"an integer in {info.min}..{info.max}"
    else:
        raise TypeError(f"delimited parser cannot check {typ}")
    ok = pc.match_substring_regex(col, pattern)  # null stays null: a missing value is fine
    values = pc.cast(pc.if_else(ok, col, None), via)
    ok, values = _as_arrow_reads(col, ok, values, via)
    if pa.types.is_integer(typ):
        info = np.iinfo(typ.to_pandas_dtype())
        in_range = pc.and_(
            pc.greater_equal(values, pa.scalar(int(info.min), via)),
            pc.less_equal(values, pa.scalar(int(info.max), via)),
        )
        ok = pc.and_kleene(ok, in_range)
        values = pc.if_else(ok, values, None)
    bad = pc.invert(ok.fill_null(True)) if ok.null_count != len(ok) else None
    return pc.cast(values, typ), bad, expect


def parse_block(
    block: Block,
    names: Sequence[str],
    types: Mapping[str, pa.DataType],
    rejects: Rejects,
    *,
    delimiter: str,
    null_values: Sequence[str] = ("-",),
    quoting: bool = False,
) -> Parsed:
    """Parse one block; bad rows go to ``rejects`` with their line numbers."""
    data = _scrub(block, rejects)
    if _TEXT.search(data) is None:  # only blank lines; a line of spaces is still a record
        empty = pa.schema([(n, types.get(n, pa.string())) for n in names]).empty_table()
        return Parsed(empty, np.empty(0, np.int64), delimiter)
    try:
        table, invalid = _read(data, names, types, delimiter, null_values, quoting)
        fallback = False
    except pa.ArrowInvalid:
        strings = {n: pa.string() for n in names}
        table, invalid = _read(data, names, strings, delimiter, null_values, quoting)
        fallback = True
    base = block.first_line - 1
    # Arrow numbers rows among the non-blank lines; map them back to physical lines.
    nonblank = _nonblank_lines(data, table.num_rows + len(invalid))
    numbers = np.array([n for n, _, _ in invalid], np.int64)
    known = (numbers >= 1) & (numbers <= len(nonblank))
    invalid_lines = np.where(known, nonblank[np.clip(numbers - 1, 0, max(len(nonblank) - 1, 0))], 0)
    for line, (_, text, actual) in zip(invalid_lines, invalid, strict=True):
        rejects.add(
            base + int(line),
            "field-count",
            f"expected {len(names)} fields, found {actual}",
            text,
        )
    lines = (nonblank[~np.isin(nonblank, invalid_lines[known])] if invalid else nonblank) + base
    if len(lines) != table.num_rows:  # pragma: no cover - defensive; Arrow changed its mind
        lines = np.arange(table.num_rows, dtype=np.int64) + block.first_line
    parsed = Parsed(table, lines, delimiter)
    if not fallback:
        return parsed
    columns = {}
    bad_any: pa.Array | None = None
    problems: list[tuple[str, pa.Array, str]] = []
    for name in names:
        values, bad, expect = _check_column(
            table[name].combine_chunks(), types.get(name, pa.string())
        )
        columns[name] = values
        if bad is not None and pc.any(bad).as_py():
            problems.append((name, bad, expect))
            bad_any = bad if bad_any is None else pc.or_(bad_any, bad)
    as_text = parsed
    parsed = Parsed(pa.table(columns), lines, delimiter)
    if bad_any is None:
        return parsed
    mask = np.asarray(bad_any)
    for i in np.flatnonzero(mask):
        name, _, expect = next(p for p in problems if p[1][int(i)].as_py())
        value = as_text.table[name][int(i)].as_py()
        row = [as_text.table[n][int(i)].as_py() for n in names]
        raw = delimiter.join("-" if v is None else v for v in row)
        rejects.add(int(lines[i]), "bad-field", f"field {name!r} = {value!r} is not {expect}", raw)
    keep = pa.array(~mask)
    return Parsed(parsed.table.filter(keep), lines[~mask], delimiter)
