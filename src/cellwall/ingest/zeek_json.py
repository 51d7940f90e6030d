"""Zeek conn.log as JSON lines (``LogAscii::use_json=T``): one object per line.

Keys are Zeek's flat field names (``"id.orig_h"``); unset fields are left out. Each block
is read by Arrow's JSON reader with an explicit schema for the keys that become flow
columns (the other keys are ignored). Only a block that Arrow refuses is read again line
by line in Python, so that the bad lines are rejected one by one and the rest kept.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, BinaryIO, ClassVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.json as pajson

from cellwall.errors import Diagnostic, FormatError
from cellwall.ingest.base import Chunk, FlowSource, Rejects, register
from cellwall.ingest.delimited import Parsed
from cellwall.ingest.parallel import int_option, ordered_map, worker_count
from cellwall.ingest.stream import Block, iter_blocks
from cellwall.ingest.zeek_blocks import (
    BLOCK_SIZE,
    CONN_ONLY_FIELDS,
    LineIndex,
    chunk_of,
    is_conn_path,
    ready,
    tail_chunk,
    whole_lines,
)
from cellwall.ingest.zeek_mapping import FIELD_TYPES, Context, to_flows

__all__ = ["ZeekJsonSource"]

_TS_IS_TEXT = re.compile(rb'"ts"\s*:\s*"')
_TS_MASKED = re.compile(rb'"ts"\s*:\s*"?X+(\.X+)?"?')
_PATH = re.compile(rb'"_path"\s*:\s*"([^"]*)"')
_WHITESPACE = b" \t\r"
_SCHEMAS = {
    text: pa.schema(
        [
            (k, pa.string() if k == "ts" and text else (pa.float64() if k == "ts" else t))
            for k, t in FIELD_TYPES.items()
        ]
    )
    for text in (False, True)
}
_PORT, _COUNT, _BYTE = (1 << 16) - 1, (1 << 64) - 1, (1 << 8) - 1
_INT_RANGE = {"id.orig_p": _PORT, "id.resp_p": _PORT, "ip_proto": _BYTE}

Job = Callable[[], Chunk]


def _problem(key: str, value: Any) -> str | None:
    """Why a JSON value cannot go into the flow column for ``key`` (None when it can)."""
    kind = FIELD_TYPES[key]
    if value is None:
        return None
    if key == "ts":
        ok = isinstance(value, (int, float, str)) and not isinstance(value, bool)
        return None if ok else "a number or a string"
    if pa.types.is_string(kind):
        return None if isinstance(value, str) else "a string"
    if pa.types.is_floating(kind):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else "a number"
    top = _INT_RANGE.get(key, _COUNT)
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= top
    return None if ok else f"an integer in 0..{top}"


def _ts_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return repr(float(value)) if isinstance(value, float) else str(value)


def _line_by_line(
    index: LineIndex, content: npt.NDArray[np.intp], first_line: int, rejects: Rejects
) -> tuple[pa.Table, npt.NDArray[np.int64]]:
    """Read a block that Arrow refused one line at a time; reject the bad lines."""
    values: dict[str, list[Any]] = {k: [] for k in FIELD_TYPES}
    lines: list[int] = []
    for i in content.tolist():
        raw, line = index.line(i), first_line + i
        try:
            record = json.loads(raw)
        except UnicodeDecodeError:
            rejects.add(line, "not-text", "the line is not UTF-8 text", raw)
            continue
        except ValueError as exc:
            if _TS_MASKED.search(raw):
                rejects.add(
                    line,
                    "no-timestamp",
                    "ts is masked (XXXXXXXXXX.XXXXXX, as in "
                    "Zeek's test baselines): a flow needs its start time",
                    raw,
                )
            else:
                rejects.add(line, "bad-json", f"not valid JSON: {exc}", raw)
            continue
        if not isinstance(record, dict):
            rejects.add(line, "bad-json", "not a JSON object", raw)
            continue
        bad = next(
            ((k, why) for k in FIELD_TYPES if (why := _problem(k, record.get(k))) is not None), None
        )
        if bad is not None:
            key, why = bad
            rejects.add(line, "bad-field", f"field {key!r} = {record[key]!r} is not {why}", raw)
            continue
        for key, column in values.items():
            column.append(_ts_text(record.get(key)) if key == "ts" else record.get(key))
        lines.append(line)
    table = pa.table({k: pa.array(v, _SCHEMAS[True].field(k).type) for k, v in values.items()})
    return table, np.array(lines, np.int64)


def _content_lines(index: LineIndex) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(blank, comment) masks: blank is empty or whitespace only; comment starts with '#'."""
    first = index.first_bytes()
    size = index.ends - index.starts
    comment = (first == ord("#")) & (size > 0)
    maybe = np.flatnonzero((size > 0) & np.isin(first, np.frombuffer(_WHITESPACE, np.uint8)))
    blank = size == 0
    for i in maybe.tolist():
        blank[i] = not index.line(i).strip(_WHITESPACE)
    return blank, comment


def _json_chunk(block: Block, ctx: Context) -> Chunk:
    """Parse one block of JSON lines (runs on a worker thread)."""
    rejects = Rejects(ctx.file)
    index = LineIndex.of(block.data)
    blank, comment = _content_lines(index)
    ignored: Counter[str] = Counter()
    if blank.any():
        ignored["blank"] = int(blank.sum())
    content = np.flatnonzero(~blank & ~comment)
    if not len(content):
        return chunk_of(None, rejects, ignored)
    data = block.data
    if comment.any():  # spaces keep the offsets; Arrow skips a line of spaces
        buf = bytearray(data)
        for i in np.flatnonzero(comment).tolist():
            buf[int(index.starts[i]) : int(index.ends[i])] = b" " * int(
                index.ends[i] - index.starts[i]
            )
        data = bytes(buf)
    lines = content.astype(np.int64) + block.first_line
    text_ts = bool(_TS_IS_TEXT.search(index.line(int(content[0]))))
    objects = bool((index.first_bytes()[content] == ord("{")).all())
    try:
        if not objects:  # Arrow's reader can crash on a bare value such as `null`
            raise ValueError("a line that is not a JSON object")
        if not data.isascii():
            data.decode("utf-8")  # Arrow's JSON reader does not check string values
        table = pajson.read_json(
            io.BytesIO(data),
            read_options=pajson.ReadOptions(
                use_threads=False, block_size=max(1 << 20, len(data) + 1)
            ),
            parse_options=pajson.ParseOptions(
                explicit_schema=_SCHEMAS[text_ts], unexpected_field_behavior="ignore"
            ),
        )
        if table.num_rows != len(lines):
            raise ValueError("rows and lines differ")  # e.g. two objects on one line
    except (pa.ArrowInvalid, ValueError):  # UnicodeDecodeError is a ValueError
        table, lines = _line_by_line(index, content, block.first_line, rejects)
    parsed = Parsed(table, lines, "\t")
    return chunk_of(to_flows(parsed, rejects, ctx, empty="", millis=True), rejects, ignored)


def _check_conn(block: Block, file: str) -> None:
    """Raise FormatError when the first readable record is of another Zeek log."""
    index = LineIndex.of(block.data)
    for i in range(min(len(index), 64)):
        try:
            record = json.loads(index.line(i))
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        path = record.get("_path")
        if isinstance(path, str) and not is_conn_path(path):
            why = f"its _path is {path!r}"
        elif "_path" not in record and not CONN_ONLY_FIELDS & record.keys():
            why = f"it has none of conn.log's {', '.join(sorted(CONN_ONLY_FIELDS))}"
        else:
            return
        line = block.first_line + i
        raise FormatError(
            f"{file}: line {line}: this is not a Zeek conn.log record ({why}); only conn.log "
            "holds flows",
            hint="ingest the conn.log files",
            diagnostics=[Diagnostic(file, line, None, "zeek-not-conn", why)],
        )


def _jobs(blocks: Iterator[Block], ctx: Context) -> Iterator[Job]:
    first = True
    for item in whole_lines(blocks):
        if isinstance(item, Block):
            if first:
                _check_conn(item, ctx.file)
                first = False
            yield partial(_json_chunk, item, ctx)
            continue
        if not item.final or (item.data.strip(_WHITESPACE) and not item.data.startswith(b"#")):
            chunk = tail_chunk(item, ctx.file)
        else:
            blank = Counter() if item.data.startswith(b"#") else Counter(blank=1)
            chunk = chunk_of(None, Rejects(ctx.file), blank)
        yield ready(chunk)


@register
class ZeekJsonSource(FlowSource):
    """Zeek conn.log written as JSON lines (``LogAscii::use_json=T``)."""

    name: ClassVar[str] = "zeek-json"
    title: ClassVar[str] = "Zeek conn.log, JSON lines (LogAscii::use_json=T)"

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        for line in head.split(b"\n")[:64]:
            stripped = line.strip(_WHITESPACE)
            if not stripped or stripped.startswith(b"#"):
                continue
            if not (stripped.startswith(b"{") and b'"id.orig_h"' in line and b'"ts"' in line):
                return False
            path = _PATH.search(line)  # another Zeek log (dns, http) is not flows
            return path is None or is_conn_path(path.group(1).decode("utf-8", "replace"))
        return False

    def read(self, stream: BinaryIO, file: str) -> Iterator[Chunk]:
        ctx = Context(file, self.name, self.options.get("sensor"))
        size = int_option(self.options, "block_size", BLOCK_SIZE, self.name)
        blocks = iter_blocks(stream, size)
        yield from ordered_map(_run, _jobs(blocks, ctx), worker_count(self.options, self.name))


def _run(job: Callable[[], Chunk]) -> Chunk:
    return job()
