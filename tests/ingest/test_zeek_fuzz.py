"""Fuzzing both Zeek readers: no input crashes them, and every data line is accounted for.

The accounting: every line that does not start with ``#`` is exactly one of a flow, a
reject (each at its own line), a blank line, or the one ``zeek-cut -m`` header line; and
``#close`` lines are counted as ignored. Small blocks and several workers are used so that
block boundaries and the ordering of results are exercised too.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellwall.errors import FormatError
from cellwall.ingest.base import FlowSource
from cellwall.ingest.zeek import ZeekJsonSource, ZeekTsvSource
from tests.ingest.test_zeek import FIELDS, Result, build_log, rows_for, run, sample, simple_read
from tests.ingest.test_zeek_json import to_json_lines

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLOSE = re.compile(rb"#close(?![A-Za-z_])")
VALID = sample("core.tunnels.vxlan").encode()
TOKENS = [
    "#separator \\x09",
    "#separator \\x7c",
    "#fields",
    "#types",
    "#path\tconn",
    "#close",
    "#unset_field\t-",
    "#empty_field\t(empty)",
    "### banner",
    "ts",
    "uid",
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
    "proto",
    "history",
    "duration",
    "ip_proto",
    "orig_ip_bytes",
    "-",
    "(empty)",
    "XXXXXXXXXX.XXXXXX",
    "1700000000.5",
    "1e400",
    "nan",
    "2024-02-30T00:00:00Z",
    "10.0.0.1",
    "::1",
    "999.1.1.1",
    "65536",
    "80",
    "tcp",
    "udp",
    "icmp",
    "ShADadFf",
    "^h",
    "255",
    "256",
    '{"ts":1.5,"id.orig_h":"1.2.3.4"}',
    "\r",
    "",
]


def lines_of(data: bytes) -> list[bytes]:
    if not data:
        return []
    lines = data.split(b"\n")
    return lines[:-1] if data.endswith(b"\n") else lines


def tsv_blank(line: bytes) -> bool:
    return line in (b"", b"\r")


def json_blank(line: bytes) -> bool:
    return not line.strip(b" \t\r")


def check_accounting(
    result: Result, data: bytes, blank: Callable[[bytes], bool], counts_close: bool
) -> None:
    lines = lines_of(data)
    data_lines = {n for n, line in enumerate(lines, 1) if not line.startswith(b"#")}
    blanks = {n for n in data_lines if blank(lines[n - 1])}
    positions = result.flows["lineage_pos"].to_pylist() + result.rejects["pos"].to_pylist()
    assert len(positions) == len(set(positions)), "a line was counted twice"
    assert set(positions) <= data_lines - blanks
    header = result.ignored["header"]
    assert header in (0, 1)
    assert len(data_lines - blanks - set(positions)) == header
    assert result.ignored["blank"] == len(blanks)
    closes = sum(1 for line in lines if CLOSE.match(line)) if counts_close else 0
    assert result.ignored["close"] == closes
    assert result.accounted() == len(data_lines) + closes


def read_or_format_error(
    source: type[FlowSource], data: bytes, workers: str, block: int
) -> Result | None:
    try:
        return run(source, data, workers=workers, block_size=str(block))
    except FormatError as exc:
        allowed = b"#path" in data if source is ZeekTsvSource else b"{" in data
        assert allowed, exc
        return None


def check_both(data: bytes, workers: str, block: int) -> None:
    tsv = read_or_format_error(ZeekTsvSource, data, workers, block)
    if tsv is not None:
        check_accounting(tsv, data, tsv_blank, counts_close=True)
    js = read_or_format_error(ZeekJsonSource, data, workers, block)
    if js is not None:
        check_accounting(js, data, json_blank, counts_close=False)


@SETTINGS
@given(st.binary(max_size=3000), st.sampled_from(["1", "2"]), st.integers(16, 600))
def test_arbitrary_bytes(data: bytes, workers: str, block: int) -> None:
    check_both(data, workers, block)


@SETTINGS
@given(
    st.lists(st.lists(st.sampled_from(TOKENS), max_size=8).map("\t".join), max_size=40),
    st.sampled_from(["1", "2"]),
    st.integers(16, 600),
)
def test_zeek_shaped_token_soup(lines: list[str], workers: str, block: int) -> None:
    check_both("\n".join(lines).encode(), workers, block)


MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(["insert", "delete", "replace", "truncate", "dup-line"]),
        st.integers(0, len(VALID)),
        st.binary(min_size=1, max_size=12),
    ),
    min_size=1,
    max_size=6,
)


def mutate(data: bytes, steps: list[tuple[str, int, bytes]]) -> bytes:
    for kind, pos, payload in steps:
        pos = min(pos, len(data))
        if kind == "insert":
            data = data[:pos] + payload + data[pos:]
        elif kind == "delete":
            data = data[:pos] + data[pos + len(payload) :]
        elif kind == "replace":
            data = data[:pos] + payload + data[pos + len(payload) :]
        elif kind == "truncate":
            data = data[:pos]
        else:
            start = data.rfind(b"\n", 0, pos) + 1
            end = data.find(b"\n", pos)
            line = data[start : (len(data) if end < 0 else end + 1)]
            data = data[:start] + line + data[start:]
    return data


@SETTINGS
@given(MUTATIONS, st.sampled_from(["1", "2"]), st.integers(32, 2000))
def test_mutations_of_a_valid_log(
    steps: list[tuple[str, int, bytes]], workers: str, block: int
) -> None:
    check_both(mutate(VALID, steps), workers, block)


FIELD_TEXT = st.text(
    st.characters(blacklist_characters="\t\n\r", blacklist_categories=["Cs"]), max_size=20
)


@SETTINGS
@given(st.integers(0, 9), st.integers(0, len(FIELDS) - 1), FIELD_TEXT, st.sampled_from(["1", "2"]))
def test_one_bad_field_loses_nothing_else(row: int, column: int, text: str, workers: str) -> None:
    rows = rows_for(FIELDS, 10)
    if column == 0 and text.startswith("#"):
        text = "x" + text  # a leading '#' would make the line a header line
    rows[row][column] = text
    log_text = build_log(FIELDS, rows)
    lines = [line for line, _ in simple_read(log_text).rows]
    bad = lines[row]
    result = run(ZeekTsvSource, log_text.encode(), workers=workers, block_size="200")
    kept = set(result.flows["lineage_pos"].to_pylist())
    assert kept >= set(lines) - {bad}
    assert kept | set(result.rejects["pos"].to_pylist()) == set(lines)


VALID_JSON = to_json_lines(simple_read(sample("core.tunnels.vxlan"))).encode()


@SETTINGS
@given(MUTATIONS, st.sampled_from(["1", "2"]), st.integers(32, 2000))
def test_mutations_of_valid_json_lines(
    steps: list[tuple[str, int, bytes]], workers: str, block: int
) -> None:
    data = mutate(VALID_JSON, steps)
    result = read_or_format_error(ZeekJsonSource, data, workers, block)
    if result is not None:
        check_accounting(result, data, json_blank, counts_close=False)
