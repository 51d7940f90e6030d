"""Zeek dns.log as DNS evidence (format ``zeek-dns``): TSV and JSON, real and damaged."""

from __future__ import annotations

import io
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellwall.errors import FormatError
from cellwall.ingest.base import Chunk
from cellwall.ingest.zeek_dns import ZeekDnsSource
from cellwall.services.ingest import ingest_paths
from cellwall.workspace import Workspace
from tests.flowfiles import TESTDATA

BASELINE = TESTDATA / "flows" / "zeek" / "testing" / "btest" / "Baseline"
DNS_LOG = BASELINE / "opt.basic" / "dns.log"
MASK = "XXXXXXXXXX.XXXXXX"
TS = "1300475168.652003"


def read(data: bytes | str, **options: str) -> list[Chunk]:
    raw = data.encode() if isinstance(data, str) else data
    return list(ZeekDnsSource(options).read(io.BytesIO(raw), "dns.log"))


def totals(chunks: list[Chunk]) -> Counter[str]:
    out: Counter[str] = Counter()
    for c in chunks:
        out.update(c.ignored)
        out.update(c.rejects.counts())
        out["dns-record"] += c.dns_records
    return +out


def evidence(chunks: list[Chunk]) -> list[tuple[str, str, int | None, str | None, int]]:
    return [
        (r["ip"], r["name"], r["ttl_s"], r["client_ip"], r["lineage_pos"])
        for c in chunks
        if c.dns is not None
        for r in c.dns.to_pylist()
    ]


def test_the_masked_baseline_is_rejected_for_its_timestamps() -> None:
    text = DNS_LOG.read_text()
    chunks = read(text)
    assert totals(chunks) == Counter({"no-timestamp": 34, "header": 9, "close": 1})
    assert sum(c.read for c in chunks) == len(text.splitlines())
    assert all(c.flows.num_rows == 0 for c in chunks)


def test_names_and_answers_of_the_baseline() -> None:
    """The same log with a real time: IP answers named by the query, CNAMEs skipped."""
    text = DNS_LOG.read_text().replace(MASK, TS)
    chunks = read(text)
    assert totals(chunks) == Counter(
        {"dns-record": 5, "dns-no-address": 29, "header": 9, "close": 1}
    )
    upload = ("208.80.152.3", "upload.wikimedia.org", 2156, "141.142.220.118")
    assert evidence(chunks) == [
        (*upload, 15),
        (*upload, 18),
        (*upload, 21),
        (*upload, 24),
        ("208.80.152.2", "meta.wikimedia.org", 2141, "141.142.220.118", 26),
    ]
    [first] = [c.dns for c in chunks if c.dns is not None and c.dns.num_rows][:1]
    row = first.to_pylist()[0]
    assert row["ts"] == datetime(2011, 3, 18, 19, 6, 8, 652003, tzinfo=UTC)
    assert row["source"] == "zeek-dns"


def json_line(**fields: Any) -> str:
    record = {"_path": "dns", "ts": 1700000000.25, "uid": "C1", "id.orig_h": "10.0.0.5",
              "id.orig_p": 40000, "id.resp_h": "10.0.0.53", "id.resp_p": 53, "proto": "udp",
              "query": "api.example.com", "qtype_name": "A"}  # fmt: skip
    record.update(fields)
    return json.dumps({k: v for k, v in record.items() if v is not None})


def test_json_lines() -> None:
    lines = [
        json_line(answers=["cdn.example", "192.0.2.7", "2001:DB8::7"], TTLs=[30.0, 0.0, 1e8 - 1]),
        json_line(query="nothing.example"),
        "#close 2024",
        "",
        json_line(ts="not a time", answers=["192.0.2.1"], TTLs=[10.0]),
        json_line(query="Other.Example.", answers=["192.0.2.9"]),
        json_line(query=None, answers=["192.0.2.8"], TTLs=[5.0]),
        "{not json",
    ]  # fmt: skip
    chunks = read("\n".join(lines) + "\n")
    assert evidence(chunks) == [
        ("192.0.2.7", "api.example.com", 0, "10.0.0.5", 1),
        ("2001:db8::7", "api.example.com", 99999999, "10.0.0.5", 1),
        ("192.0.2.9", "other.example", None, "10.0.0.5", 6),
    ]
    rejects = sorted((r["pos"], r["reason"]) for c in chunks for r in c.rejects.table().to_pylist())
    assert rejects == [(5, "bad-field"), (7, "missing-field"), (8, "bad-json")]
    assert totals(chunks)["dns-no-address"] == 1
    assert sum(c.read for c in chunks) == len(lines)


def test_json_with_iso_times() -> None:
    line = json_line(ts="2023-11-14T22:13:21.5Z", answers=["192.0.2.9"], TTLs=[60.0])
    [row] = [r for c in read(line + "\n") if c.dns is not None for r in c.dns.to_pylist()]
    assert row["ts"] == datetime(2023, 11, 14, 22, 13, 21, 500000, tzinfo=UTC)


TSV_HEAD = (
    "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tdns\n"
)


def test_tsv_with_its_own_markers_and_bad_rows() -> None:
    text = (
        TSV_HEAD
        + "#fields\tts\tid.orig_h\tquery\tanswers\tTTLs\n"
        + f"{TS}\t10.0.0.1\ta.example\t192.0.2.1,192.0.2.2\t60.0,abc\n"
        + f"{TS}\t10.0.0.1\ta.example\t(empty)\t(empty)\n"
        + f"{TS}\t10.0.0.1\ta.example\n"
        + "-\t10.0.0.1\ta.example\t192.0.2.1\t60.0\n"
        + f"{TS}\t10.0.0.1\t-\t192.0.2.1\t60.0\n"
    )
    chunks = read(text)
    assert evidence(chunks) == [
        ("192.0.2.1", "a.example", 60, "10.0.0.1", 7),
        ("192.0.2.2", "a.example", None, "10.0.0.1", 7),
    ]
    rejects = sorted((r["pos"], r["reason"]) for c in chunks for r in c.rejects.table().to_pylist())
    assert rejects == [(9, "field-count"), (10, "no-timestamp"), (11, "missing-field")]
    assert sum(c.read for c in chunks) == len(text.splitlines())


def test_lines_without_a_usable_header_are_rejected() -> None:
    chunks = read(f"{TS}\t10.0.0.1\ta.example\t192.0.2.1\t60.0\n#fields\tts\tuid\n{TS}\tC1\n")
    rejects = [(r["pos"], r["reason"]) for c in chunks for r in c.rejects.table().to_pylist()]
    assert rejects == [(1, "no-header"), (3, "bad-header")]


def test_another_log_is_a_format_error() -> None:
    with pytest.raises(FormatError, match=r"conn\.log, not dns\.log"):
        read(TSV_HEAD.replace("#path\tdns", "#path\tconn"))
    with pytest.raises(FormatError, match=r"conn\.log, not dns\.log"):
        read(json.dumps({"_path": "conn", "ts": 1.0}) + "\n")


def test_sniff() -> None:
    assert ZeekDnsSource.sniff(TSV_HEAD.encode())
    assert ZeekDnsSource.sniff((json_line() + "\n").encode())
    assert not ZeekDnsSource.sniff(TSV_HEAD.replace("dns", "conn").encode())
    assert not ZeekDnsSource.sniff(b'{"_path":"conn","ts":1}\n')


def test_ingest_stores_evidence_and_no_flows(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "dns.json"
    path.write_text(json_line(answers=["192.0.2.7"], TTLs=[300.0]) + "\n" + json_line() + "\n")
    summary = ingest_paths(ws, [path], fmt="zeek-dns").to_dict()
    assert (summary["read"], summary["stored"], summary["dns"]) == (2, 0, 1)
    assert summary["ignored"] == {"dns-no-address": 1}


TOKENS = ["#fields\tts\tid.orig_h\tquery\tanswers\tTTLs", "#path\tdns", "#close",
          "#set_separator\t;", TS, MASK, "-", "(empty)", "10.0.0.1", "a.example",
          "192.0.2.1,x,::1", "1e400", "60,abc", "nan", "\t", "\r", "\xff"]  # fmt: skip


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.lists(st.sampled_from(TOKENS), max_size=6).map("\t".join), max_size=15),
    st.sampled_from(["64", "4096"]),
    st.booleans(),
)
def test_fuzz_tsv_and_json_account_for_every_line(
    rows: list[str], block_size: str, as_json: bool
) -> None:
    if as_json:
        rows = [json_line(answers=r.split("\t"), query=r[:5] or None) if r else r for r in rows]
    data = "".join(r.replace("\n", " ") + "\n" for r in rows).encode("utf-8", "surrogateescape")
    try:
        chunks = read(data, block_size=block_size)
    except FormatError:
        return  # a #path of another log (never produced here) is the only FormatError
    assert sum(c.read for c in chunks) == len(rows)
