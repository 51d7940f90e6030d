"""Zeek ``dns.log`` as DNS evidence (format ``zeek-dns``): TSV or JSON lines.

A dns.log record is not a flow (its connection is in conn.log); it names addresses. Each
record whose ``answers`` hold IP addresses becomes evidence rows
(:mod:`cellwall.evidence.dns`): every IP answer is named by ``query``, from ``ts`` for its
``TTLs`` entry (paired by position); ``id.orig_h`` is the client. Chunks carry only
``dns``: no flows.

Every line is accounted for: a record with IP answers counts as a DNS record; a record
without any (a query that got no answer, NXDOMAIN, only CNAMEs) is ignored as
``dns-no-address``; header lines as ``header``, ``#close`` as ``close``, blank lines as
``blank``. Rejected: ``no-timestamp`` (``ts`` unset or masked, as in Zeek's test
baselines), ``bad-field`` (``ts`` not a time), ``missing-field`` (IP answers but no
``query``), ``field-count``, ``no-header``, ``bad-header`` (a ``#fields`` without
``query``), and for JSON ``bad-json``, ``not-text``; ``truncated``/``too-long`` lines.

TSV: ``#separator``, ``#set_separator`` (``answers`` and ``TTLs`` are sets/vectors split on
it), ``#unset_field``, ``#empty_field``, ``#fields`` and ``#path`` are honoured. A ``#path``
other than ``dns`` (or JSON ``_path``) is a FormatError.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, ClassVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from cellwall.errors import Diagnostic, FormatError
from cellwall.evidence.dns import dns_rows
from cellwall.ingest.base import Chunk, FlowSource, Rejects, register
from cellwall.ingest.delimited import parse_block
from cellwall.ingest.json_block import blank_lines, json_lines
from cellwall.ingest.parallel import int_option
from cellwall.ingest.stream import Block, iter_blocks
from cellwall.ingest.zeek_blocks import BLOCK_SIZE, LineIndex, Tail, tail_chunk, whole_lines
from cellwall.ingest.zeek_mapping import MASKED, NOT_A_TIME, UNSET, epoch_us
from cellwall.model.flow_schema import empty_flows

__all__ = ["ZeekDnsSource", "evidence"]

_DIRECTIVE = re.compile(r"#([A-Za-z_]+)(.*)", re.S)
_ESCAPE = re.compile(r"\\x([0-9A-Fa-f]{2})")
_FLOAT = r"^[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?$"
_TS_IS_TEXT = re.compile(rb'"ts"\s*:\s*"')
_FIELDS = ("ts", "id.orig_h", "query", "answers", "TTLs")
_JSON_SCHEMAS = {
    text: pa.schema(
        [
            ("_path", pa.string()),
            ("ts", pa.string() if text else pa.float64()),
            ("id.orig_h", pa.string()),
            ("query", pa.string()),
            ("answers", pa.list_(pa.string())),
            ("TTLs", pa.list_(pa.float64())),
        ]
    )
    for text in (False, True)
}


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def evidence(
    ts: pa.Array,
    client: pa.Array,
    query: pa.Array,
    answers: pa.ListArray,
    ttls: pa.ListArray,
    lines: npt.NDArray[np.int64],
    raw: list[bytes] | None,
    rejects: Rejects,
    file: str,
) -> tuple[pa.Table, int, int]:
    """Evidence rows from dns.log columns; (rows, records with IP answers, records without).

    ``raw`` gives the line text for the quarantine (by row), when it is at hand.
    """
    us, status = epoch_us(ts)

    rows = dns_rows(us, query, answers, ttls, client, lines, source="zeek-dns", file=file)
    with_ip = np.zeros(len(lines), np.bool_)
    if rows.num_rows:
        with_ip[np.searchsorted(lines, rows["lineage_pos"].to_numpy())] = True
    no_query = np.asarray(pc.equal(pc.utf8_rtrim(query, characters="."), "").fill_null(True))
    answered = np.asarray(pc.greater(pc.list_value_length(answers), 0).fill_null(False))
    bad = np.zeros(len(lines), np.uint8)
    why = [
        ("no-timestamp", "ts is unset or masked (XXXXXXXXXX.XXXXXX): evidence needs its time"),
        ("bad-field", "ts is not a time (epoch seconds or ISO 8601 from 1970 on)"),
        ("missing-field", "the record has answers but no query name"),
    ]
    bad[(status == UNSET) | (status == MASKED)] = 1
    bad[(bad == 0) & (status == NOT_A_TIME)] = 2
    bad[(bad == 0) & no_query & answered] = 3
    for i in np.flatnonzero(bad):
        reason, message = why[int(bad[i]) - 1]
        rejects.add(int(lines[i]), reason, message, raw[int(i)] if raw is not None else b"")
    good_lines = lines[bad == 0]
    rows = rows.filter(pa.array(np.isin(rows["lineage_pos"].to_numpy(), good_lines)))
    records = int(np.count_nonzero(with_ip & (bad == 0)))
    return rows, records, int(np.count_nonzero(bad == 0)) - records


@dataclass
class _Header:
    file: str
    separator: str = "\t"
    set_separator: str = ","
    unset: str = "-"
    empty: str = "(empty)"
    names: tuple[str, ...] | None = None
    problem: str | None = None

    def directive(self, raw: bytes, line: int) -> str | None:
        m = _DIRECTIVE.fullmatch(raw.decode("utf-8", "replace").rstrip("\r\n"))
        if m is None:
            return None
        key, rest = m.group(1), m.group(2)
        if key == "separator":
            sep = _unescape(rest[1:] if rest[:1] in (" ", "\t") else rest)
            self.separator, self.set_separator, self.unset, self.empty = sep, ",", "-", "(empty)"
            self.names = None
            return key
        value = _unescape(rest[1:] if rest[:1] in (self.separator, " ") else rest)
        if key == "set_separator":
            self.set_separator = value
        elif key == "unset_field":
            self.unset = value
        elif key == "empty_field":
            self.empty = value
        elif key == "path" and value and value != "dns":
            raise FormatError(
                f"{self.file}: line {line}: this is Zeek's {value}.log, not dns.log",
                hint="ingest it with its own format (zeek for conn.log)",
                diagnostics=[Diagnostic(self.file, line, None, "zeek-not-dns", f"#path {value}")],
            )
        elif key == "fields":
            names = tuple(value.split(self.separator))
            self.names = names
            missing = [n for n in ("ts", "query", "answers") if n not in names]
            self.problem = (
                f"the #fields header (line {line}) lacks {', '.join(missing)}" if missing else None
            )
            if not all(names) or len(set(names)) != len(names):
                self.problem = f"the #fields header (line {line}) has empty or repeated names"
        return key


def _split_set(col: pa.Array, header: _Header) -> pa.ListArray:
    empty = pc.equal(col, header.empty).fill_null(False)
    parts = pc.split_pattern(pc.if_else(empty, "", col), header.set_separator)
    blank = pc.if_else(empty, pa.scalar([], pa.list_(pa.string())), parts)
    return blank.cast(pa.list_(pa.string()))  # type: ignore[no-any-return]


def _ttls(col: pa.ListArray) -> pa.ListArray:
    values = col.flatten()
    numbers = pc.cast(
        pc.if_else(pc.match_substring_regex(values, _FLOAT), values, None), pa.float64()
    )
    return pa.ListArray.from_arrays(col.offsets, numbers, mask=pc.is_null(col))


def _tsv_run(block: Block, header: _Header, file: str) -> Chunk:
    rejects = Rejects(file)
    index = LineIndex.of(block.data)
    blank = index.blank()
    ignored: Counter[str] = Counter(blank=int(blank.sum())) - Counter()
    if header.names is None or header.problem is not None:
        reason = "no-header" if header.names is None else "bad-header"
        msg = header.problem or "no #fields header before this line: its columns are unknown"
        for i in np.flatnonzero(~blank):
            rejects.add(block.first_line + int(i), reason, msg, index.line(int(i)))
        return Chunk(empty_flows(), rejects, ignored)
    names = header.names
    parsed = parse_block(
        block,
        names,
        {n: pa.string() for n in names},
        rejects,
        delimiter=header.separator,
        null_values=(header.unset,),
    )
    table, lines = parsed.table, np.asarray(parsed.lines, np.int64)
    n = table.num_rows

    def col(name: str) -> pa.Array:
        if name not in table.column_names:
            return pa.nulls(n, pa.string())
        return table[name].combine_chunks()

    raw = [index.line(int(line) - block.first_line) for line in lines]
    dns, records, unanswered = evidence(
        col("ts"),
        col("id.orig_h"),
        col("query"),
        _split_set(col("answers"), header),
        _ttls(_split_set(col("TTLs"), header)),
        lines,
        raw,
        rejects,
        file,
    )
    ignored.update(Counter({"dns-no-address": unanswered}) - Counter())
    return Chunk(empty_flows(), rejects, ignored, dns=dns, dns_records=records)


def _tsv_block(block: Block, header: _Header, file: str) -> Iterator[Chunk]:
    index = LineIndex.of(block.data)
    hashes: list[int] = (
        np.flatnonzero(index.first_bytes() == ord("#")).tolist() if len(index) else []
    )
    start = 0
    ignored: Counter[str] = Counter()
    for h in [*hashes, len(index)]:
        if h > start:
            a, b = int(index.starts[start]), int(index.ends[h - 1]) + 1
            yield _tsv_run(
                Block(block.first_line + start, block.offset + a, block.data[a:b]), header, file
            )
        if h < len(index):
            kind = header.directive(index.line(h), block.first_line + h)
            ignored["close" if kind == "close" else "header"] += 1
        start = h + 1
    yield Chunk(empty_flows(), Rejects(file), ignored)


def _json_block(block: Block, file: str) -> Chunk:
    rejects = Rejects(file)
    index = LineIndex.of(block.data)
    blank = blank_lines(index)
    comment = ~blank & (index.first_bytes() == ord("#"))
    ignored = Counter(blank=int(blank.sum()), header=int(comment.sum())) - Counter()
    content = np.flatnonzero(~blank & ~comment)
    if not len(content):
        return Chunk(empty_flows(), rejects, ignored)
    text = bool(_TS_IS_TEXT.search(index.line(int(content[0]))))
    tables, runs = json_lines(
        index,
        content,
        block.first_line,
        rejects,
        pajson.ParseOptions(
            explicit_schema=_JSON_SCHEMAS[text], unexpected_field_behavior="ignore"
        ),
    )
    if not tables:
        return Chunk(empty_flows(), rejects, ignored)
    table = pa.concat_tables(tables)
    idx = np.concatenate(runs)
    lines = idx.astype(np.int64) + block.first_line
    paths = table["_path"].combine_chunks().drop_null()
    other = pc.filter(paths, pc.not_equal(paths, "dns"))
    if len(other):
        path = other[0].as_py()
        raise FormatError(
            f"{file}: this is Zeek's {path}.log, not dns.log",
            hint="ingest it with its own format (zeek-json for conn.log)",
        )
    dns, records, unanswered = evidence(
        table["ts"].combine_chunks(),
        table["id.orig_h"].combine_chunks(),
        table["query"].combine_chunks(),
        table["answers"].combine_chunks(),
        table["TTLs"].combine_chunks(),
        lines,
        [index.line(int(i)) for i in idx],
        rejects,
        file,
    )
    ignored.update(Counter({"dns-no-address": unanswered}) - Counter())
    return Chunk(empty_flows(), rejects, ignored, dns=dns, dns_records=records)


def _tail(item: Tail, file: str) -> Chunk:
    if item.final and (not item.data.strip(b" \t\r") or item.data.startswith(b"#")):
        kind = "header" if item.data.startswith(b"#") else "blank"
        return Chunk(empty_flows(), Rejects(file), Counter({kind: 1}))
    return tail_chunk(item, file)


@register
class ZeekDnsSource(FlowSource):
    """Zeek dns.log (TSV or JSON lines): DNS evidence, no flows."""

    name: ClassVar[str] = "zeek-dns"
    title: ClassVar[str] = "Zeek dns.log, TSV or JSON lines: DNS evidence (IP to name)"

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        for line in head.split(b"\n")[:64]:
            stripped = line.strip(b" \t\r")
            if stripped.startswith(b"#path"):
                return stripped[5:].strip() == b"dns"
            if stripped.startswith(b"{"):
                return b'"_path":"dns"' in stripped.replace(b" ", b"")
        return False

    def read(self, stream: BinaryIO, file: str) -> Iterator[Chunk]:
        size = int_option(self.options, "block_size", BLOCK_SIZE, self.name)
        header = _Header(file)
        mode: str | None = None
        for item in whole_lines(iter_blocks(stream, size)):
            if isinstance(item, Tail):
                if item.final and item.data.startswith(b"#") and mode != "json":
                    item = Block(item.line, 0, item.data + b"\n")
                else:
                    yield _tail(item, file)
                    continue
            if mode is None:
                first = next((ln for ln in item.data.split(b"\n") if ln.strip(b" \t\r")), b"")
                if not first:
                    yield _json_block(item, file)
                    continue
                mode = "json" if first.lstrip().startswith(b"{") else "tsv"
            if mode == "json":
                yield _json_block(item, file)
            else:
                yield from _tsv_block(item, header, file)
