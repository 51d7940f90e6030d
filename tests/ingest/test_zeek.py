"""The Zeek conn.log TSV adapter, against Zeek's own test baselines and hand-made damage.

Expected values come from a deliberately simple reading of the TSV in this file
(``simple_read`` and ``expected_flow``), never from the adapter's own output.
"""

from __future__ import annotations

import gzip
import io
import ipaddress
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from cellwall.errors import FormatError, UsageError
from cellwall.ingest.base import FlowSource, Rejects, detect
from cellwall.ingest.stream import open_input
from cellwall.ingest.zeek import ZeekJsonSource, ZeekTsvSource
from cellwall.model.flow_schema import empty_flows
from cellwall.workspace import Workspace
from tests.flowfiles import TESTDATA

ZEEK = TESTDATA / "flows" / "zeek"
BASELINE = ZEEK / "testing" / "btest" / "Baseline"
TRACES = ZEEK / "testing" / "btest" / "Traces"
CONN_LOGS = sorted(BASELINE.glob("*/*conn.log"))
MASK = "XXXXXXXXXX.XXXXXX"
BITS = {"S": 0x02, "H": 0x12, "A": 0x10, "F": 0x01, "R": 0x04, "Q": 0x02}
PROTOS = {"tcp": 6, "udp": 17, "icmp": 1}


# --- running the adapter ------------------------------------------------------------------


@dataclass
class Result:
    flows: pa.Table
    rejects: pa.Table
    ignored: Counter[str]

    def rows(self) -> dict[int, dict[str, Any]]:
        """Flows by line, with times as µs since the epoch."""
        table = self.flows
        for name in ("start", "end"):
            table = table.set_column(
                table.schema.get_field_index(name), name, table[name].cast(pa.int64())
            )
        return {r["lineage_pos"]: r for r in table.to_pylist()}

    def reasons(self) -> dict[int, str]:
        return dict(
            zip(self.rejects["pos"].to_pylist(), self.rejects["reason"].to_pylist(), strict=True)
        )

    def messages(self) -> dict[int, str]:
        return dict(
            zip(self.rejects["pos"].to_pylist(), self.rejects["message"].to_pylist(), strict=True)
        )

    def accounted(self) -> int:
        return self.flows.num_rows + self.rejects.num_rows + sum(self.ignored.values())


def run(
    source: type[FlowSource], data: bytes | io.RawIOBase, file: str = "conn.log", **options: str
) -> Result:
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    chunks = list(source(options).read(stream, file))  # type: ignore[arg-type]
    ignored: Counter[str] = Counter()
    for c in chunks:
        ignored.update(c.ignored)
    flows = pa.concat_tables([empty_flows()] + [c.flows for c in chunks])
    rejects = pa.concat_tables([Rejects(file).table()] + [c.rejects.table() for c in chunks])
    assert set(rejects["file"].to_pylist()) <= {file}
    assert set(flows["lineage_file"].to_pylist()) <= {file}
    return Result(flows, rejects, ignored)


# --- an independent, simple reading of a TSV conn.log ---------------------------------------


@dataclass
class SimpleLog:
    fields: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    rows: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    closes: int = 0
    minimal_header: int | None = None


def simple_read(text: str) -> SimpleLog:
    log = SimpleLog()
    for number, line in enumerate(text.split("\n"), start=1):
        if line.startswith("#fields\t"):
            log.fields = line.split("\t")[1:]
        elif line.startswith("#types\t"):
            log.types = line.split("\t")[1:]
        elif line.startswith("#close"):
            log.closes += 1
        elif line.startswith("#") or not line:
            continue
        elif not log.fields:
            log.fields, log.minimal_header = line.split("\t"), number
        else:
            values = line.split("\t")
            assert len(values) == len(log.fields), (number, line)
            log.rows.append((number, dict(zip(log.fields, values, strict=True))))
    return log


def us(ts: str) -> int:
    return int(Decimal(ts) * 1_000_000)


def tcp_flags(history: str | None) -> int | None:
    if history is None:
        return None
    bits = 0
    for letter in history:
        bits |= BITS.get(letter.upper(), 0)
    return bits


def expected_flow(row: dict[str, str]) -> dict[str, Any]:
    """What the documented mapping makes of one conn.log row."""

    def get(key: str) -> str | None:
        value = row.get(key)
        return None if value in (None, "-", "(empty)") else value

    def count(key: str) -> int | None:
        value = get(key)
        return None if value is None else int(value)

    src = ipaddress.ip_address(row["id.orig_h"])
    proto = count("ip_proto")
    if proto is None:
        proto = PROTOS[row["proto"]]
        if proto == 1 and src.version == 6:
            proto = 58
    history = get("history") if proto == 6 else None
    start = us(row["ts"])
    duration = get("duration")
    return {
        "start": start,
        "end": None if duration is None else start + us(duration),
        "src_ip": str(src),
        "src_port": int(row["id.orig_p"]),
        "dst_ip": str(ipaddress.ip_address(row["id.resp_h"])),
        "dst_port": int(row["id.resp_p"]),
        "proto": proto,
        "bytes": count("orig_ip_bytes") if "orig_ip_bytes" in row else count("orig_bytes"),
        "packets": count("orig_pkts"),
        "rev_bytes": count("resp_ip_bytes") if "resp_ip_bytes" in row else count("resp_bytes"),
        "rev_packets": count("resp_pkts"),
        "tcp_flags": tcp_flags(history),
        "src_initiated": True if history is not None and "S" in history else None,
        "source_id": row["uid"],
        "action": None,
        "direction": None,
    }


def assert_flows_match(result: Result, log: SimpleLog) -> None:
    got = result.rows()
    assert sorted(got) == [line for line, _ in log.rows]
    for line, row in log.rows:
        want = expected_flow(row)
        have = {k: got[line][k] for k in want}
        assert have == want, f"line {line}"


def unmask(text: str, ts_of_line: Callable[[int], str]) -> str:
    """Put a real timestamp where Zeek's baselines mask it."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.startswith(MASK):
            lines[i] = ts_of_line(i + 1) + line[len(MASK) :]
    return "\n".join(lines)


def synthetic_ts(line: int) -> str:
    return f"{1_300_000_000 + 7 * line}.{(line * 104_729) % 1_000_000:06d}"


def sample(name: str = "opt.basic") -> str:
    return unmask((BASELINE / name / "conn.log").read_text(), synthetic_ts)


# --- the baselines -------------------------------------------------------------------------


@pytest.mark.real
@pytest.mark.parametrize("path", CONN_LOGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_baseline_as_written_rejects_every_row_for_its_masked_time(path: Path) -> None:
    text = path.read_text()
    log = simple_read(text)
    result = run(ZeekTsvSource, text.encode(), file=str(path))
    assert result.flows.num_rows == 0
    assert result.reasons() == {line: "no-timestamp" for line, _ in log.rows}
    assert result.accounted() == len(log.rows) + log.closes + (log.minimal_header is not None)
    assert result.ignored["close"] == log.closes
    for message in result.messages().values():
        assert ("masked" in message) if "ts" in log.fields else ("no ts field" in message)
    if "uid" in log.fields:  # the raw text keeps the record for the quarantine
        raws = result.rejects["raw"].to_pylist()
        assert [r.split("\t")[log.fields.index("uid")] for r in raws] == [
            row["uid"] for _, row in log.rows
        ]


@pytest.mark.real
@pytest.mark.parametrize(
    "path",
    [p for p in CONN_LOGS if MASK in p.read_text()],
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_baseline_with_times_gives_the_rows_as_flows(path: Path) -> None:
    text = unmask(path.read_text(), synthetic_ts)
    log = simple_read(text)
    assert log.rows
    result = run(ZeekTsvSource, text.encode(), file=str(path), sensor="tap-1")
    assert result.rejects.num_rows == 0
    assert result.flows.num_rows == len(log.rows)
    assert result.accounted() == len(log.rows) + log.closes
    assert_flows_match(result, log)
    assert set(result.flows["exporter"].to_pylist()) == {"tap-1"}
    assert set(result.flows["lineage_format"].to_pylist()) == {"zeek"}


@pytest.mark.real
def test_known_rows_of_the_wikipedia_trace() -> None:
    result = run(ZeekTsvSource, sample().encode())
    rows = result.rows()
    # Line 35 of opt.basic/conn.log: an HTTP connection with a full handshake.
    http = rows[35]
    assert (http["src_ip"], http["src_port"], http["dst_ip"], http["dst_port"], http["proto"]) == (
        "141.142.220.118",
        35642,
        "208.80.152.2",
        80,
        6,
    )
    assert (http["bytes"], http["packets"], http["rev_bytes"], http["rev_packets"]) == (
        750,
        4,
        576,
        3,
    )
    assert http["source_id"] == "CiyBAq1bBLNaTiTAc"
    assert http["tcp_flags"] == 0x12 and http["src_initiated"] is True  # ShADad
    assert http["end"] - http["start"] == 120_041
    # Line 43: Zeek flipped it (^h) and saw no SYN from the originator.
    flipped = rows[43]
    assert flipped["tcp_flags"] == 0x12 and flipped["src_initiated"] is None
    assert flipped["end"] is None and flipped["bytes"] == 0 and flipped["rev_bytes"] == 48
    # Line 11: IPv6 multicast DNS, udp: no TCP facts at all.
    mdns = rows[11]
    assert (mdns["src_ip"], mdns["dst_ip"], mdns["proto"]) == (
        "fe80::217:f2ff:fed7:cf65",
        "ff02::fb",
        17,
    )
    assert mdns["tcp_flags"] is None and mdns["src_initiated"] is None


@pytest.mark.real
def test_icmp_inside_a_tunnel_keeps_zeek_type_and_counterpart_as_ports() -> None:
    rows = run(ZeekTsvSource, sample("core.tunnels.geneve").encode()).rows()
    icmp = rows[12]
    assert (icmp["src_ip"], icmp["src_port"], icmp["dst_ip"], icmp["dst_port"], icmp["proto"]) == (
        "30.0.0.1",
        8,
        "30.0.0.2",
        0,
        1,
    )
    assert icmp["tcp_flags"] is None


@pytest.mark.real
def test_sniff_tells_the_baselines_apart() -> None:
    for path in CONN_LOGS:
        head = path.read_bytes()[:65536]
        assert ZeekTsvSource.sniff(head), path
        assert not ZeekJsonSource.sniff(head), path
        assert detect(head, str(path)) is ZeekTsvSource
    assert not ZeekTsvSource.sniff(b"version account-id interface-id srcaddr\n")
    assert not ZeekTsvSource.sniff(b"ts,src,dst\n1,2,3\n")
    assert not ZeekTsvSource.sniff(b'{"ts": 1, "id.orig_h": "1.2.3.4"}\n')


# --- layouts -------------------------------------------------------------------------------


def build_log(
    fields: list[str],
    rows: list[list[str]],
    *,
    separator: str = "\t",
    unset: str = "-",
    path: str = "conn",
    close: bool = True,
) -> str:
    escaped = "\\x" + format(ord(separator), "02x")
    head = [
        f"#separator {escaped}",
        f"#set_separator{separator},",
        f"#empty_field{separator}(empty)",
        f"#unset_field{separator}{unset}",
        f"#path{separator}{path}",
        f"#open{separator}2026-01-01-00-00-00",
        "#fields" + separator + separator.join(fields),
    ]
    body = [separator.join(r) for r in rows]
    tail = [f"#close{separator}2026-01-01-01-00-00"] if close else []
    return "\n".join(head + body + tail) + "\n"


FIELDS = [
    "ts",
    "uid",
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
    "proto",
    "duration",
    "orig_bytes",
    "resp_bytes",
    "history",
    "orig_pkts",
    "orig_ip_bytes",
    "resp_pkts",
    "resp_ip_bytes",
]


def good_row(i: int) -> dict[str, str]:
    return {
        "ts": f"1700000000.{i:06d}",
        "uid": f"C{i:017d}",
        "id.orig_h": f"10.0.{i // 250}.{i % 250}",
        "id.orig_p": str(40000 + i),
        "id.resp_h": "10.9.9.9",
        "id.resp_p": "443",
        "proto": "tcp",
        "duration": "1.5",
        "orig_bytes": "100",
        "resp_bytes": "200",
        "history": "ShADadFf",
        "orig_pkts": "3",
        "orig_ip_bytes": "220",
        "resp_pkts": "4",
        "resp_ip_bytes": "360",
        "community_id": "1:abc=",
        "service": "ssl",
    }


def rows_for(fields: list[str], count: int, start: int = 0) -> list[list[str]]:
    return [[good_row(i)[f] for f in fields] for i in range(start, start + count)]


def test_columns_in_any_order_with_extra_and_missing_fields() -> None:
    fields = [
        "uid",
        "community_id",
        "id.resp_p",
        "id.resp_h",
        "ts",
        "proto",
        "id.orig_h",
        "id.orig_p",
        "orig_bytes",
        "resp_bytes",
        "orig_pkts",
        "resp_pkts",
        "service",
    ]
    text = build_log(fields, rows_for(fields, 5))
    log = simple_read(text)
    result = run(ZeekTsvSource, text.encode())
    assert result.rejects.num_rows == 0
    assert_flows_match(result, log)
    rows = result.rows()
    assert rows[8]["bytes"] == 100 and rows[8]["rev_bytes"] == 200  # payload bytes fallback
    assert rows[8]["end"] is None and rows[8]["tcp_flags"] is None


def test_other_separator_and_unset_marker() -> None:
    rows = rows_for(FIELDS, 3)
    rows[1][FIELDS.index("duration")] = "NA"
    text = build_log(FIELDS, rows, separator="|", unset="NA")
    result = run(ZeekTsvSource, text.encode())
    assert result.rejects.num_rows == 0 and result.flows.num_rows == 3
    assert result.rows()[9]["end"] is None
    assert result.rows()[10]["end"] - result.rows()[10]["start"] == 1_500_000


def test_concatenated_logs_with_different_layouts() -> None:
    second = ["id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "ts", "uid", "ip_proto"]
    one = build_log(FIELDS, rows_for(FIELDS, 4))
    rows2 = [[good_row(i)[f] if f != "ip_proto" else "17" for f in second] for i in range(4, 7)]
    two = build_log(second, rows2)
    text = one + two
    result = run(ZeekTsvSource, text.encode())
    assert result.rejects.num_rows == 0
    assert result.ignored["close"] == 2
    rows = result.rows()
    assert sorted(rows) == [8, 9, 10, 11, 20, 21, 22]
    assert [rows[n]["proto"] for n in (8, 20)] == [6, 17]  # ip_proto wins over proto
    assert rows[20]["src_ip"] == "10.0.0.4" and rows[20]["tcp_flags"] is None


def test_a_header_that_reappears_at_a_block_boundary() -> None:
    text = "".join(build_log(FIELDS, rows_for(FIELDS, 9, 10 * k)) for k in range(4))
    log_lines = text.split("\n")
    data_lines = [n for n, line in enumerate(log_lines, 1) if line and line[0] != "#"]
    for workers in ("1", "3"):
        result = run(ZeekTsvSource, text.encode(), workers=workers, block_size="300")
        assert result.rejects.num_rows == 0
        assert sorted(result.rows()) == data_lines
        assert result.ignored == Counter(close=4)
        assert result.flows["source_id"].to_pylist() == [
            f"C{i:017d}" for k in range(4) for i in range(10 * k, 10 * k + 9)
        ]


def test_crlf_line_endings_parse_like_lf() -> None:
    text = sample()
    lf = run(ZeekTsvSource, text.encode())
    crlf = run(ZeekTsvSource, text.replace("\n", "\r\n").encode())
    assert crlf.rejects.num_rows == 0
    assert crlf.flows.equals(lf.flows)


def test_icmp_over_ipv6_is_protocol_58() -> None:
    row = good_row(1) | {
        "id.orig_h": "fe80::1",
        "id.resp_h": "ff02::1",
        "proto": "icmp",
        "id.orig_p": "135",
        "id.resp_p": "136",
        "history": "-",
    }
    result = run(ZeekTsvSource, build_log(FIELDS, [[row[f] for f in FIELDS]]).encode())
    flow = result.rows()[8]
    assert (flow["proto"], flow["src_port"], flow["dst_port"]) == (58, 135, 136)


def test_iso_times_in_tsv_are_read_too() -> None:
    rows = rows_for(FIELDS, 4)
    rows[0][0] = "2023-11-14T22:13:20.000001Z"
    rows[1][0] = "2023-11-14T22:13:20.5"  # no zone: UTC
    rows[2][0] = "2024-02-30T00:00:00Z"  # no such day
    rows[3][0] = "1960-01-01T00:00:00+01:00"  # before the epoch
    result = run(ZeekTsvSource, build_log(FIELDS, rows).encode())
    starts = {line: r["start"] for line, r in result.rows().items()}
    assert starts == {8: 1_700_000_000_000_001, 9: 1_700_000_000_500_000}
    assert result.reasons() == {10: "bad-field", 11: "bad-field"}


# --- damage --------------------------------------------------------------------------------


def test_a_file_cut_mid_line_rejects_only_that_line() -> None:
    text = sample().split("#close")[0]
    cut = text[: len(text) - 25]
    log = simple_read(text)
    result = run(ZeekTsvSource, cut.encode(), file="cut.log")
    last = log.rows[-1][0]
    assert result.reasons() == {last: "truncated"}
    assert sorted(result.rows()) == [line for line, _ in log.rows[:-1]]
    assert result.rejects["raw"][0].as_py() == cut.split("\n")[-1]


def test_masked_and_unset_times_do_not_stop_the_other_rows() -> None:
    rows = rows_for(FIELDS, 4)
    rows[1][0] = MASK
    rows[2][0] = "-"
    rows[3][0] = "yesterday"
    result = run(ZeekTsvSource, build_log(FIELDS, rows).encode())
    assert sorted(result.rows()) == [8]
    assert result.reasons() == {9: "no-timestamp", 10: "no-timestamp", 11: "bad-field"}
    assert "masked" in result.messages()[9] and "unset" in result.messages()[10]


def test_bad_addresses_ports_counts_and_protocols() -> None:
    rows = rows_for(FIELDS, 7)
    rows[1][FIELDS.index("id.orig_h")] = "10.0.0.300"
    rows[2][FIELDS.index("id.resp_p")] = "70000"
    rows[3][FIELDS.index("orig_pkts")] = "many"
    rows[4][FIELDS.index("proto")] = "gre"
    rows[5][FIELDS.index("id.resp_h")] = "-"
    rows[6] = rows[6][:-2]
    result = run(ZeekTsvSource, build_log(FIELDS, rows).encode())
    assert sorted(result.rows()) == [8]
    assert result.reasons() == {
        9: "bad-ip",
        10: "bad-field",
        11: "bad-field",
        12: "bad-proto",
        13: "missing-field",
        14: "field-count",
    }
    messages = result.messages()
    assert "id.orig_h" in messages[9] and "id.resp_p" in messages[10]
    assert "orig_pkts" in messages[11] and "id.resp_h" in messages[13]


def test_data_before_any_header_or_under_a_wrong_header() -> None:
    good = build_log(FIELDS, rows_for(FIELDS, 2))
    orphan = "\t".join(rows_for(FIELDS, 1)[0]) + "\n"
    no_ids = build_log(["ts", "uid", "query"], [["1.0", "Cx", "example.com"]])
    wrong_types = good.replace("#fields", "#types\ttime\tstring\n#fields").replace(
        "#open", "#types\ttime\n#open"
    )
    for text, reason in ((orphan + good, "no-header"), (no_ids + good, "bad-header")):
        result = run(ZeekTsvSource, text.encode(), file="mixed.log")
        first_data = 1 if reason == "no-header" else 8
        assert result.reasons() == {first_data: reason}
        assert result.flows.num_rows == 2
    fields_then_types = good.replace(
        "#fields" + "\t" + "\t".join(FIELDS), "#fields\t" + "\t".join(FIELDS) + "\n#types\ttime"
    )
    result = run(ZeekTsvSource, fields_then_types.encode())
    assert set(result.reasons().values()) == {"bad-header"} and result.flows.num_rows == 0
    assert "1 types for 15 fields" in next(iter(result.messages().values()))
    assert run(ZeekTsvSource, wrong_types.encode()).flows.num_rows == 2  # #fields resets types


def test_another_log_is_a_format_error_naming_the_file() -> None:
    text = build_log(
        ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "query"], [], path="dns"
    )
    with pytest.raises(FormatError) as info:
        run(ZeekTsvSource, text.encode(), file="/logs/dns.log")
    assert "/logs/dns.log" in str(info.value) and "dns.log" in str(info.value)
    assert info.value.diagnostics[0].line == 5


def test_binary_junk_between_good_lines() -> None:
    text = sample()
    log = simple_read(text)
    lines = text.encode().split(b"\n")
    junk = [b"\x00\x01\x02\xff\xfe", b"\x89PNG\r\x1a\x00", b"\xc3\x28\t\x80", b"\t\t\t\t"]
    at = [12, 20, 25, 30]  # insert before these (0-based) lines
    for offset, (pos, j) in enumerate(zip(at, junk, strict=True)):
        lines.insert(pos + offset, j)
    result = run(ZeekTsvSource, b"\n".join(lines))
    junk_lines = [pos + offset + 1 for offset, pos in enumerate(at)]
    assert sorted(result.reasons()) == junk_lines
    assert result.flows.num_rows == len(log.rows)
    assert result.accounted() == len(log.rows) + len(junk) + log.closes
    uids = {row["uid"] for _, row in log.rows}
    assert set(result.flows["source_id"].to_pylist()) == uids


def test_truncated_gzip_keeps_the_rows_before_the_damage(tmp_path: Path) -> None:
    text = "".join(build_log(FIELDS, rows_for(FIELDS, 400, 400 * k)) for k in range(3))
    packed = gzip.compress(text.encode(), compresslevel=1)
    path = tmp_path / "conn.log.gz"
    path.write_bytes(packed[: len(packed) // 2])
    stream = open_input(path)
    try:
        result = run(ZeekTsvSource, stream, file=str(path))
    finally:
        stream.close()
    assert stream.damage is not None
    good = text.encode()[: stream.position]
    complete = good[: good.rfind(b"\n") + 1].decode()
    log = simple_read(complete)
    assert sorted(result.rows()) == [line for line, _ in log.rows]
    partial = good.decode()[len(complete) :]
    assert partial and not partial.startswith("#")  # the damage cuts a data line
    assert result.reasons() == {complete.count("\n") + 1: "truncated"}
    assert result.rejects["raw"].to_pylist() == [partial]


def test_a_header_line_without_a_final_newline_is_still_a_header() -> None:
    text = build_log(FIELDS, rows_for(FIELDS, 2)).rstrip("\n")
    result = run(ZeekTsvSource, text.encode())
    assert result.rejects.num_rows == 0 and result.ignored == Counter(close=1)


def test_blank_lines_are_counted_as_ignored() -> None:
    text = build_log(FIELDS, rows_for(FIELDS, 2)).replace("#close", "\n\r\n#close")
    result = run(ZeekTsvSource, text.encode())
    assert result.ignored == Counter(close=1, blank=2) and result.flows.num_rows == 2


def test_minimal_header_of_zeek_cut() -> None:
    fields = ["ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "uid"]
    text = (
        "\t".join(fields)
        + "\n"
        + "\n".join("\t".join(good_row(i)[f] for f in fields) for i in range(3))
        + "\n"
    )
    assert ZeekTsvSource.sniff(text.encode())
    result = run(ZeekTsvSource, text.encode())
    assert sorted(result.rows()) == [2, 3, 4] and result.ignored == Counter(header=1)


def test_header_directive_parsing_ignores_comments() -> None:
    text = "### a banner\n# a comment\n" + build_log(FIELDS, rows_for(FIELDS, 1))
    assert ZeekTsvSource.sniff(text.encode())
    result = run(ZeekTsvSource, text.encode())
    assert sorted(result.rows()) == [10]


def test_the_registry_knows_both_formats() -> None:
    from cellwall.ingest.base import get_source

    assert get_source("zeek") is ZeekTsvSource
    assert get_source("zeek-json") is ZeekJsonSource
    assert re.search("TSV", ZeekTsvSource.title) and re.search("JSON", ZeekJsonSource.title)


@pytest.mark.parametrize("option", [{"workers": "0"}, {"block_size": "lots"}])
def test_bad_options_are_usage_errors(option: dict[str, str]) -> None:
    with pytest.raises(UsageError, match=next(iter(option))):
        run(ZeekTsvSource, sample().encode(), **option)


@pytest.mark.real
def test_ingest_into_the_lake_detects_stores_and_quarantines(ws: Workspace, tmp_path: Path) -> None:
    from cellwall.services.ingest import ingest_paths

    good = tmp_path / "conn.log.gz"
    good.write_bytes(gzip.compress(sample().encode()))
    masked = BASELINE / "scripts.base.protocols.pop3.basic" / "conn.log"
    summary = ingest_paths(ws, [good, masked]).to_dict()
    assert [f["format"] for f in summary["files"]] == ["zeek", "zeek"]
    assert summary["stored"] == 34
    assert summary["quarantined"] == {"no-timestamp": 11}
    assert summary["ignored"] == {"close": 2}
    assert summary["read"] == 34 + 11 + 2
