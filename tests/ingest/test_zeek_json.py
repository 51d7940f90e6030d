"""The Zeek conn.log JSON-lines adapter: the same flows as the TSV, and its own damage.

The JSON is written here from the TSV baselines the way Zeek's JSON writer lays a record
out (``LogAscii::use_json=T``): flat dotted keys in field order, unset fields left out,
numbers for times, intervals, ports and counts, ``true``/``false``, sets as arrays.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from cellwall.errors import FormatError
from cellwall.ingest import zeek_json
from cellwall.ingest.base import detect
from cellwall.ingest.zeek import ZeekJsonSource, ZeekTsvSource
from tests.flowfiles import TESTDATA
from tests.ingest.test_zeek import (
    BASELINE,
    CONN_LOGS,
    MASK,
    SimpleLog,
    run,
    sample,
    simple_read,
    synthetic_ts,
    unmask,
)


def zeek_value(kind: str, text: str, ts_style: str) -> Any:
    if kind == "time":
        if ts_style == "iso":
            moment = datetime.fromtimestamp(0, UTC) + (
                datetime.fromtimestamp(int(Decimal(text)), UTC) - datetime.fromtimestamp(0, UTC)
            )
            micros = int((Decimal(text) % 1) * 1_000_000)
            return moment.replace(microsecond=micros).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if ts_style == "millis":
            return int(Decimal(text) * 1000)
        return float(text)
    if kind == "interval":
        return float(text)
    if kind in ("port", "count", "int"):
        return int(text)
    if kind == "bool":
        return text == "T"
    if kind.startswith(("set[", "vector[")):
        return [] if text == "(empty)" else text.split(",")
    return "" if text == "(empty)" else text


def to_json_lines(log: SimpleLog, ts_style: str = "epoch") -> str:
    out = []
    for _, row in log.rows:
        record = {
            name: zeek_value(kind, row[name], ts_style)
            for name, kind in zip(log.fields, log.types, strict=True)
            if row[name] != "-"
        }
        out.append(json.dumps(record, separators=(",", ":")))
    return "\n".join(out) + "\n"


def comparable(table: pa.Table) -> pa.Table:
    return table.drop_columns(["lineage_format", "lineage_pos"])


MASKED = [p for p in CONN_LOGS if MASK in p.read_text()]


@pytest.mark.real
@pytest.mark.parametrize("path", MASKED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_json_lines_give_the_same_flows_as_the_tsv(path: Path) -> None:
    text = unmask(path.read_text(), synthetic_ts)
    log = simple_read(text)
    tsv = run(ZeekTsvSource, text.encode(), file="conn")
    for style in ("epoch", "iso", "millis"):
        lines = to_json_lines(log, style)
        assert ZeekJsonSource.sniff(lines.encode())
        got = run(ZeekJsonSource, lines.encode(), file="conn")
        assert got.rejects.num_rows == 0, style
        want = tsv.flows
        if style == "millis":  # JSON::TS_MILLIS keeps whole milliseconds of ts
            start = pc.multiply(pc.divide(want["start"].cast(pa.int64()), 1000), 1000)
            shift = pc.subtract(want["start"].cast(pa.int64()), start)
            end = pc.subtract(want["end"].cast(pa.int64()), shift)
            for i, values in ((0, start), (1, end)):
                kind = want.schema.field(i)
                want = want.set_column(i, kind, values.cast(kind.type))
        assert comparable(got.flows).equals(comparable(want)), style
        assert got.flows["lineage_pos"].to_pylist() == list(range(1, len(log.rows) + 1))
        assert set(got.flows["lineage_format"].to_pylist()) == {"zeek-json"}


def test_detect_picks_json_for_json_lines() -> None:
    lines = to_json_lines(simple_read(sample())).encode()
    assert detect(lines[:65536], "conn.json") is ZeekJsonSource
    assert not ZeekTsvSource.sniff(lines)
    assert not ZeekJsonSource.sniff(b'{"ts": 1.0, "query": "example.com"}\n')
    assert not ZeekJsonSource.sniff(b"#separator \\x09\n")


def good_lines(count: int = 6) -> list[str]:
    log = simple_read(sample())
    return to_json_lines(log).splitlines()[:count]


def test_bad_lines_are_rejected_one_by_one_and_the_rest_kept() -> None:
    lines = good_lines(8)
    record = json.loads(lines[1])
    lines[1] = json.dumps(record | {"id.orig_p": "5353"})  # a string where a port goes
    lines[2] = '{"ts":XXXXXXXXXX.XXXXXX,' + lines[2][lines[2].index('"uid"') :]
    lines[3] = lines[3][:40]  # cut short
    lines[4] = "[1, 2, 3]"
    lines[5] = json.dumps(json.loads(lines[5]) | {"id.resp_h": "not-an-ip"})
    lines[6] = "\x00\x01binary"
    result = run(ZeekJsonSource, ("\n".join(lines) + "\n").encode())
    assert result.reasons() == {
        2: "bad-field",
        3: "no-timestamp",
        4: "bad-json",
        5: "bad-json",
        6: "bad-ip",
        7: "bad-json",
    }
    assert sorted(result.rows()) == [1, 8]
    assert "masked" in result.messages()[3] and "id.orig_p" in result.messages()[2]
    assert result.rejects["raw"].to_pylist()[1].startswith('{"ts":XXXXXXXXXX')


def test_unset_masked_string_and_nonsense_times() -> None:
    lines = good_lines(4)
    first = json.loads(lines[0])
    del first["ts"]
    lines[0] = json.dumps(first)
    lines[1] = json.dumps(json.loads(lines[1]) | {"ts": "XXXXXXXXXX.XXXXXX"})
    lines[2] = json.dumps(json.loads(lines[2]) | {"ts": "soon"})
    result = run(ZeekJsonSource, ("\n".join(lines) + "\n").encode())
    assert result.reasons() == {1: "no-timestamp", 2: "no-timestamp", 3: "bad-field"}
    assert sorted(result.rows()) == [4]


def test_blank_and_comment_lines_and_a_cut_last_line() -> None:
    lines = good_lines(3)
    text = "### BTest banner\n" + lines[0] + "\n\n   \n" + lines[1] + "\n" + lines[2][:30]
    result = run(ZeekJsonSource, text.encode())
    assert sorted(result.rows()) == [2, 5]
    assert result.reasons() == {6: "truncated"}
    assert result.ignored == Counter(blank=2)


def test_two_records_on_one_line_are_not_two_flows() -> None:
    lines = good_lines(3)
    text = lines[0] + "\n" + lines[1] + lines[2] + "\n"
    result = run(ZeekJsonSource, text.encode())
    assert sorted(result.rows()) == [1] and result.reasons() == {2: "bad-json"}


def test_many_blocks_on_several_threads() -> None:
    lines = good_lines(30) * 5
    lines[77] = "{oops"
    result = run(ZeekJsonSource, ("\n".join(lines) + "\n").encode(), workers="3", block_size="1000")
    assert result.reasons() == {78: "bad-json"}
    assert sorted(result.rows()) == [n for n in range(1, 151) if n != 78]


def test_another_json_log_is_a_format_error() -> None:
    dns = (
        '{"ts":1.5,"uid":"C1","id.orig_h":"1.2.3.4","id.orig_p":5,"id.resp_h":"5.6.7.8",'
        '"id.resp_p":53,"proto":"udp","query":"example.com"}\n'
    )
    with pytest.raises(FormatError, match=r"dns\.json"):
        run(ZeekJsonSource, dns.encode(), file="dns.json")
    tagged = json.dumps(json.loads(good_lines(1)[0]) | {"_path": "ssl"}) + "\n"
    with pytest.raises(FormatError, match="ssl"):
        run(ZeekJsonSource, tagged.encode(), file="x.json")
    conn = json.dumps(json.loads(good_lines(1)[0]) | {"_path": "conn"}) + "\n"
    assert run(ZeekJsonSource, conn.encode()).flows.num_rows == 1


def test_json_masked_baseline_is_all_no_timestamp() -> None:
    text = (BASELINE / "core.tunnels.vxlan" / "conn.log").read_text()
    log = simple_read(unmask(text, synthetic_ts))
    lines = [
        json.dumps(json.loads(line) | {"ts": MASK})
        for line in to_json_lines(log).split("\n")
        if line
    ]
    result = run(ZeekJsonSource, ("\n".join(lines) + "\n").encode())
    assert result.flows.num_rows == 0
    assert set(result.reasons().values()) == {"no-timestamp"} and len(result.reasons()) == 5


def test_good_blocks_never_take_the_line_by_line_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("a good block was read line by line")

    monkeypatch.setattr(zeek_json, "_line_by_line", refuse)
    lines = to_json_lines(simple_read(sample())) + "### a comment\n\n"
    result = run(ZeekJsonSource, (lines * 3).encode(), workers="2", block_size="2000")
    assert result.flows.num_rows == 3 * 34 and result.rejects.num_rows == 0
    assert result.ignored == Counter(blank=3)


def test_bare_json_values_are_rejected_without_reaching_arrow() -> None:
    # pyarrow's JSON reader crashed the process on a line holding only `null`.
    good = (
        b'{"ts":1.0,"id.orig_h":"1.2.3.4","id.orig_p":1,"id.resp_h":"1.2.3.5",'
        b'"id.resp_p":2,"proto":"tcp","conn_state":"S0"}'
    )
    data = b"null\n" + good + b"\n[1]\n"
    chunks = list(ZeekJsonSource().read(io.BytesIO(data), "x.json"))
    assert sum(c.flows.num_rows for c in chunks) == 1
    rejected = [(r["pos"], r["reason"]) for c in chunks for r in c.rejects.table().to_pylist()]
    assert rejected == [(1, "bad-json"), (3, "bad-json")]


def test_other_zeek_logs_are_not_sniffed_as_conn() -> None:
    dns = (TESTDATA / "flows/zeek/testing/btest/Baseline/opt.basic/dns.log").read_bytes()
    assert not ZeekTsvSource.sniff(dns)
    assert detect(dns, "dns.log").name == "zeek-dns"
    line = b'{"_path":"dns","ts":1.0,"id.orig_h":"1.2.3.4","query":"a.example"}\n'
    assert not ZeekJsonSource.sniff(line)
    assert ZeekJsonSource.sniff(line.replace(b'"dns"', b'"conn"'))
