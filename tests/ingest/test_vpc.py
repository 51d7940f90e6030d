"""AWS VPC Flow Logs: the default and custom formats, ignored and rejected records."""

from __future__ import annotations

import gzip
import io
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellwall.errors import FormatError, UsageError
from cellwall.ingest import delimited
from cellwall.ingest.base import Chunk, get_source
from cellwall.ingest.stream import iter_blocks, open_input
from cellwall.ingest.vpc import KNOWN_FIELDS, VpcFlowLogs
from cellwall.model.flow_schema import FLOW_SCHEMA, REQUIRED_COLUMNS
from cellwall.model.net import canonical_ip
from cellwall.services.ingest import ingest_paths
from cellwall.workspace import Workspace

HEADER = (
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes "
    "start end action log-status"
)
# Records in the style of AWS's own documentation examples.
SSH_ACCEPTED = (
    "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 "
    "1418530010 1418530070 ACCEPT OK"
)
RDP_REJECTED = (
    "2 123456789010 eni-1235b8ca123456789 172.31.9.69 172.31.9.12 49761 3389 6 20 4249 "
    "1418530010 1418530070 REJECT OK"
)
NODATA = "2 123456789010 eni-1235b8ca123456789 - - - - - - - 1431280876 1431280934 - NODATA"
SKIPDATA = "2 123456789010 eni-11111111111111111 - - - - - - - 1431280876 1431280934 - SKIPDATA"
IPV6_SSH = (
    "2 123456789010 eni-1235b8ca123456789 2001:DB8:1234:a100:8d6e:3477:df66:f105 "
    "2001:db8:1234:a102:3304:8879:34cf:4071 34892 22 6 54 8855 1477913708 1477913820 ACCEPT OK"
)
ICMP_PING = (
    "2 123456789010 eni-1235b8ca123456789 203.0.113.12 172.31.16.139 0 0 1 4 336 "
    "1432917027 1432917142 ACCEPT OK"
)

V5_HEADER = (
    "version account-id interface-id vpc-id subnet-id instance-id srcaddr dstaddr srcport "
    "dstport pkt-srcaddr pkt-dstaddr protocol packets bytes start end action tcp-flags type "
    "flow-direction traffic-path region az-id sublocation-type sublocation-id "
    "pkt-src-aws-service pkt-dst-aws-service log-status"
)
# Through a NAT gateway: srcaddr is the gateway's interface, pkt-srcaddr the instance.
V5_NAT = (
    "5 123456789010 eni-0b4a5f2c7d8e9f012 vpc-0a1b2c3d4e5f67890 subnet-0123456789abcdef0 - "
    "10.40.2.236 203.0.113.5 49153 443 10.40.1.175 203.0.113.5 6 12 3256 1620140661 "
    "1620140721 ACCEPT 19 IPv4 egress 8 us-east-1 use1-az1 - - - - OK"
)
V5_S3 = (
    "5 123456789010 eni-0b4a5f2c7d8e9f012 vpc-0a1b2c3d4e5f67890 subnet-0123456789abcdef0 "
    "i-01234567890abcdef 52.216.10.20 10.40.1.175 443 50122 - - 6 40 52000 1620140661 "
    "1620140721 ACCEPT 3 IPv4 ingress - us-east-1 use1-az1 - - S3 - OK"
)


def utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def chunks_of(data: bytes, name: str = "flows.log", **options: str) -> list[Chunk]:
    return list(VpcFlowLogs(options).read(io.BytesIO(data), name))


def read_all(
    data: bytes, name: str = "flows.log", **options: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Counter[str]]:
    flows, rejects, ignored = [], [], Counter[str]()
    for chunk in chunks_of(data, name, **options):
        assert chunk.flows.schema == FLOW_SCHEMA
        flows.extend(chunk.flows.to_pylist())
        rejects.extend(chunk.rejects.table().to_pylist())
        ignored.update(chunk.ignored)
    return flows, rejects, ignored


def lines(*rows: str) -> bytes:
    return ("\n".join(rows) + "\n").encode()


def test_default_format_maps_every_field() -> None:
    flows, rejects, ignored = read_all(lines(HEADER, SSH_ACCEPTED, RDP_REJECTED))
    assert rejects == [] and ignored == Counter()
    ssh, rdp = flows
    assert ssh == {
        **{name: None for name in FLOW_SCHEMA.names},
        "start": datetime(2014, 12, 14, 4, 6, 50, tzinfo=UTC),
        "end": datetime(2014, 12, 14, 4, 7, 50, tzinfo=UTC),
        "src_ip": "172.31.16.139",
        "src_port": 20641,
        "dst_ip": "172.31.16.21",
        "dst_port": 22,
        "proto": 6,
        "bytes": 4249,
        "packets": 20,
        "action": "ACCEPT",
        "exporter": "aws:123456789010:eni-1235b8ca123456789",
        "lineage_format": "vpc",
        "lineage_file": "flows.log",
        "lineage_pos": 2,
    }
    assert (rdp["src_ip"], rdp["dst_port"], rdp["action"], rdp["lineage_pos"]) == (
        "172.31.9.69",
        3389,
        "REJECT",
        3,
    )


def test_nodata_and_skipdata_are_counted_but_neither_stored_nor_quarantined() -> None:
    data = lines(HEADER, NODATA, SSH_ACCEPTED, SKIPDATA, NODATA, ICMP_PING)
    flows, rejects, ignored = read_all(data)
    assert [f["lineage_pos"] for f in flows] == [3, 6]
    assert rejects == []
    assert ignored == Counter({"nodata": 2, "skipdata": 1})
    icmp = flows[1]
    assert (icmp["proto"], icmp["src_port"], icmp["dst_port"]) == (1, 0, 0)


def test_file_without_header_is_read_as_default_format() -> None:
    flows, rejects, ignored = read_all(lines(SSH_ACCEPTED, NODATA, IPV6_SSH))
    assert rejects == [] and ignored == Counter({"nodata": 1})
    assert [f["lineage_pos"] for f in flows] == [1, 3]
    assert flows[0]["start"] == utc(1418530010)


def test_ipv6_addresses_are_canonical() -> None:
    flows, rejects, _ = read_all(lines(HEADER, IPV6_SSH))
    assert rejects == []
    assert flows[0]["src_ip"] == "2001:db8:1234:a100:8d6e:3477:df66:f105"
    assert flows[0]["dst_ip"] == "2001:db8:1234:a102:3304:8879:34cf:4071"
    assert (flows[0]["packets"], flows[0]["bytes"]) == (54, 8855)


def test_custom_v5_format_uses_packet_addresses_flags_and_direction() -> None:
    flows, rejects, ignored = read_all(lines(V5_HEADER, V5_NAT, V5_S3))
    assert rejects == [] and ignored == Counter()
    nat, s3 = flows
    assert (nat["src_ip"], nat["dst_ip"]) == ("10.40.1.175", "203.0.113.5")
    assert (nat["tcp_flags"], nat["direction"], nat["src_port"], nat["dst_port"]) == (
        19,
        "egress",
        49153,
        443,
    )
    assert (nat["packets"], nat["bytes"]) == (12, 3256)
    assert nat["exporter"] == "aws:123456789010:eni-0b4a5f2c7d8e9f012"
    # '-' in pkt-srcaddr: the interface's own addresses are the packet's.
    assert (s3["src_ip"], s3["dst_ip"], s3["direction"], s3["tcp_flags"]) == (
        "52.216.10.20",
        "10.40.1.175",
        "ingress",
        3,
    )
    assert s3["end"] == utc(1620140721)


def test_custom_format_in_any_order_with_a_subset_of_fields() -> None:
    header = "start dstaddr log-status protocol srcaddr interface-id"
    data = lines(
        header, "1620140661 10.0.0.2 OK 17 10.0.0.1 eni-0a1b2c3d", "1620140662 ::1 OK 6 ::2 -"
    )
    flows, rejects, _ = read_all(data)
    assert rejects == []
    first, second = flows
    assert (first["src_ip"], first["dst_ip"], first["proto"]) == ("10.0.0.1", "10.0.0.2", 17)
    assert (first["end"], first["src_port"], first["bytes"], first["action"]) == (
        None,
        None,
        None,
        None,
    )
    assert first["exporter"] == "aws:eni-0a1b2c3d"
    assert second["exporter"] is None  # neither account nor interface is known
    assert (second["src_ip"], second["start"]) == ("::2", utc(1620140662))


def test_unknown_and_ecs_fields_are_ignored() -> None:
    header = "version srcaddr dstaddr future-field protocol start ecs-cluster-name reject-reason"
    data = lines(header, "8 10.0.0.1 10.0.0.2 whatever 6 1700000000 prod-cluster -")
    flows, rejects, _ = read_all(data)
    assert rejects == []
    assert [(f["src_ip"], f["dst_ip"], f["proto"], f["start"]) for f in flows] == [
        ("10.0.0.1", "10.0.0.2", 6, utc(1700000000))
    ]


def test_header_without_mandatory_fields_is_a_format_error() -> None:
    data = lines("version account-id srcaddr srcport packets start", "2 1 10.0.0.1 1 1 1700000000")
    with pytest.raises(FormatError) as info:
        read_all(data, name="bucket/custom.log")
    first_line = str(info.value).splitlines()[0]
    assert first_line.startswith("bucket/custom.log:1: ")
    assert first_line.endswith("lacks the mandatory fields dstaddr, protocol")
    diagnostic = info.value.diagnostics[0]
    assert (diagnostic.file, diagnostic.line, diagnostic.code) == (
        "bucket/custom.log",
        1,
        "vpc-header",
    )


def test_header_naming_a_field_twice_is_a_format_error() -> None:
    with pytest.raises(FormatError, match="srcaddr more than once"):
        read_all(lines("srcaddr dstaddr protocol start srcaddr", "1.1.1.1 2.2.2.2 6 1 3.3.3.3"))


BAD_FILE = [
    HEADER,  # 1
    SSH_ACCEPTED,  # 2
    SSH_ACCEPTED.replace("172.31.16.139", "172.31.16.300"),  # 3 bad-ip
    SSH_ACCEPTED.replace(" 22 ", " 70000 "),  # 4 bad-field (port)
    SSH_ACCEPTED.rsplit(" ", 1)[0],  # 5 field-count
    SSH_ACCEPTED.replace("1418530070", "1418530000"),  # 6 bad-time: end before start
    SSH_ACCEPTED.replace(" OK", " MAYBE"),  # 7 bad-log-status
    "\x00\ufffd\x01 binary junk",  # 8 (bytes replaced below) not-text
    SSH_ACCEPTED.replace(" 6 20 ", " - 20 "),  # 9 missing-field: protocol
    SSH_ACCEPTED.replace("ACCEPT", "DROP"),  # 10 bad-field (action)
    SSH_ACCEPTED.replace("1418530010", "99999999999999"),  # 11 bad-time: not a unix time
    RDP_REJECTED,  # 12
    SSH_ACCEPTED.replace(" 6 20 ", " 256 20 "),  # 13 bad-field (protocol)
    NODATA,  # 14
    "",  # 15 blank
    ICMP_PING,  # 16
    SSH_ACCEPTED.replace("172.31.16.21", "-"),  # 17 missing-field: dstaddr
]
EXPECTED_REJECTS = [
    (3, "bad-ip"),
    (4, "bad-field"),
    (5, "field-count"),
    (6, "bad-time"),
    (7, "bad-log-status"),
    (8, "not-text"),
    (9, "missing-field"),
    (10, "bad-field"),
    (11, "bad-time"),
    (13, "bad-field"),
    (17, "missing-field"),
]


def bad_file() -> bytes:
    return lines(*BAD_FILE).replace("\x00\ufffd\x01".encode(), b"\x00\xff\xfe\x01")


@pytest.mark.parametrize(
    "options",
    [{}, {"workers": "1"}, {"workers": "2", "block_size": "300"}, {"block_size": "64"}],
)
def test_bad_records_are_quarantined_with_line_reason_and_value(options: dict[str, str]) -> None:
    flows, rejects, ignored = read_all(bad_file(), **options)
    assert [f["lineage_pos"] for f in flows] == [2, 12, 16]
    assert sorted((r["pos"], r["reason"]) for r in rejects) == EXPECTED_REJECTS
    assert ignored == Counter({"nodata": 1})
    by_line = {r["pos"]: r for r in rejects}
    assert "'srcaddr'" in by_line[3]["message"] and "172.31.16.300" in by_line[3]["message"]
    assert "'dstport'" in by_line[4]["message"] and "70000" in by_line[4]["message"]
    assert by_line[5]["message"] == "expected 14 fields, found 13"
    assert "'end' = 1418530000" in by_line[6]["message"]
    assert "'start' = 1418530010" in by_line[6]["message"]
    assert "'MAYBE'" in by_line[7]["message"]
    assert "protocol" in by_line[9]["message"] and "dstaddr" not in by_line[9]["message"]
    assert "'action' = 'DROP'" in by_line[10]["message"]
    assert "99999999999999" in by_line[11]["message"]
    assert "'protocol' = '256'" in by_line[13]["message"]
    assert "dstaddr" in by_line[17]["message"]
    assert by_line[3]["raw"] == BAD_FILE[2]
    assert {r["file"] for r in rejects} == {"flows.log"}


def test_ingest_summary_counts_stored_quarantined_and_ignored(
    ws: Workspace, tmp_path: Path
) -> None:
    path = tmp_path / "flows.log"
    path.write_bytes(bad_file())
    summary = ingest_paths(ws, [path], fmt="vpc").to_dict()
    assert summary["failed_files"] == 0, summary
    assert (summary["read"], summary["stored"]) == (len(BAD_FILE) - 2, 3)
    assert summary["quarantined"] == dict(Counter(reason for _, reason in EXPECTED_REJECTS))
    assert summary["ignored"] == {"nodata": 1}


def test_end_may_be_unknown() -> None:
    record = SSH_ACCEPTED.replace("1418530070", "-")
    flows, rejects, _ = read_all(lines(HEADER, record))
    assert rejects == [] and flows[0]["end"] is None and flows[0]["start"] == utc(1418530010)


def test_crlf_bom_and_repeated_headers_of_concatenated_files() -> None:
    data = lines(HEADER, SSH_ACCEPTED, HEADER, RDP_REJECTED).replace(b"\n", b"\r\n")
    data = b"\xef\xbb\xbf" + data
    assert VpcFlowLogs.sniff(data)
    flows, rejects, ignored = read_all(data)
    assert rejects == []
    assert [f["lineage_pos"] for f in flows] == [2, 4]
    assert ignored == Counter({"header": 1})


def test_only_whole_lines_count_as_repeated_headers() -> None:
    data = lines(HEADER, "x" + HEADER, SSH_ACCEPTED, HEADER + " x", HEADER) + HEADER.encode()
    flows, rejects, ignored = read_all(data, block_size="64")
    assert [f["lineage_pos"] for f in flows] == [3]
    assert [(r["pos"], r["reason"]) for r in rejects] == [(2, "bad-field"), (4, "field-count")]
    assert ignored == Counter({"header": 2})


def test_gzip_input_through_open_input(tmp_path: Path) -> None:
    plain = lines(HEADER, SSH_ACCEPTED, NODATA, IPV6_SSH, RDP_REJECTED)
    path = tmp_path / "123456789010_vpcflowlogs_us-east-1_fl-1234abcd_20141214T0405Z_abcd.log.gz"
    path.write_bytes(gzip.compress(plain))
    with open_input(path) as stream:
        assert stream.compressed
        got = [c for c in VpcFlowLogs().read(stream, str(path))]
    flows = [f for c in got for f in c.flows.to_pylist()]
    expected, _, _ = read_all(plain, name=str(path))
    assert flows == expected
    assert [f["lineage_pos"] for f in flows] == [2, 4, 5]
    assert {f["lineage_file"] for f in flows} == {str(path)}
    assert sum(c.ignored["nodata"] for c in got) == 1


def test_one_chunk_per_block_in_input_order() -> None:
    records = [
        SSH_ACCEPTED.replace("20641", str(1000 + i)).replace("4249", str(i)) for i in range(500)
    ]
    data = lines(HEADER, *records)
    chunks = chunks_of(data, block_size="4096", workers="2")
    assert len(chunks) == len(list(iter_blocks(io.BytesIO(data), 4096))) > 10
    shortest = min(len(r) for r in records) + 1
    assert all(c.flows.num_rows <= 4096 // shortest + 1 for c in chunks)
    flows = [f for c in chunks for f in c.flows.to_pylist()]
    assert [f["lineage_pos"] for f in flows] == list(range(2, 502))
    assert [f["bytes"] for f in flows] == list(range(500))
    assert flows == read_all(data, workers="1")[0]


def test_reading_stays_a_few_blocks_ahead_of_the_consumer() -> None:
    data = lines(HEADER, *[SSH_ACCEPTED] * 4000)

    class Counting(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            out = super().read(size)
            self.total = getattr(self, "total", 0) + len(out)
            return out

    stream = Counting(data)
    chunks = VpcFlowLogs({"block_size": "4096", "workers": "2"}).read(stream, "f")
    first = next(chunks)
    assert first.flows.num_rows > 0
    assert stream.total <= 5 * 4096 < len(data) / 10
    assert sum(c.flows.num_rows for c in chunks) + first.flows.num_rows == 4000


def test_times_that_are_not_unix_seconds_are_rejected() -> None:
    data = lines(
        HEADER,
        SSH_ACCEPTED.replace("1418530070", "99999999999999"),
        SSH_ACCEPTED.replace("1418530010", "-5"),
        SSH_ACCEPTED.replace("1418530010", "253402300799").replace("1418530070", "-"),
    )
    flows, rejects, _ = read_all(data)
    assert [(r["pos"], r["reason"]) for r in rejects] == [(2, "bad-time"), (3, "bad-time")]
    assert "field 'end' = 99999999999999 is not a unix time" in rejects[0]["message"]
    assert "field 'start' = -5 is not a unix time" in rejects[1]["message"]
    assert flows[0]["start"] == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def test_fast_path_and_fallback_give_the_same_flows(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_read = delimited._read

    def counting_read(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[2]["srcport"])
        return real_read(*args, **kwargs)

    monkeypatch.setattr(delimited, "_read", counting_read)
    good = [HEADER, SSH_ACCEPTED, IPV6_SSH, NODATA, ICMP_PING, RDP_REJECTED]
    # Values that Arrow's typed reader takes: the fallback must take them too.
    good.append(SSH_ACCEPTED.replace(" 22 ", " 0x16 ").replace("20641", "\t20641"))
    fast, fast_rejects, _ = read_all(lines(*good), workers="1")
    assert calls == [pa.uint16()] and fast_rejects == []
    calls.clear()
    slow, slow_rejects, _ = read_all(lines(*good, SSH_ACCEPTED.replace(" 22 ", " x22 ")))
    assert calls == [pa.uint16(), pa.string()]  # the typed read failed: the fallback ran
    assert [(r["pos"], r["reason"]) for r in slow_rejects] == [(len(good) + 1, "bad-field")]
    assert slow == fast
    assert fast[-1]["dst_port"] == 22 and fast[-1]["src_port"] == 20641


def test_options_are_checked() -> None:
    with pytest.raises(UsageError, match="workers"):
        chunks_of(lines(HEADER, SSH_ACCEPTED), workers="0")


def test_sniff_and_registry() -> None:
    assert VpcFlowLogs.sniff(lines(HEADER, SSH_ACCEPTED))
    assert VpcFlowLogs.sniff(lines(SSH_ACCEPTED))
    assert VpcFlowLogs.sniff(lines(V5_HEADER))
    assert VpcFlowLogs.sniff(b"interface-id srcaddr dstaddr protocol start\r\n")
    assert not VpcFlowLogs.sniff(b"ts,src,dst,sport,dport,proto,octets\n1,2,3\n")
    assert not VpcFlowLogs.sniff(b"#separator \\x09\n#set_separator\t,\n")
    assert not VpcFlowLogs.sniff(lines(SSH_ACCEPTED.replace("2 ", "3 ", 1)))
    assert not VpcFlowLogs.sniff(b"")
    assert get_source("vpc") is VpcFlowLogs


# --- fuzzing: nothing crashes, and every line is accounted for -------------------------------

_NAME = re.compile(r"[a-z][a-z0-9-]*")


def is_header(line: bytes) -> bool:
    """The documented rule: field-name tokens, at least one of them a VPC field."""
    try:
        tokens = line.decode("ascii").split()
    except UnicodeDecodeError:
        return False
    return (
        bool(tokens)
        and all(_NAME.fullmatch(t) for t in tokens)
        and any(t in KNOWN_FIELDS for t in tokens)
    )


def nonblank_line_numbers(data: bytes) -> list[int]:
    parts = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")  # a leading BOM is no content
    if data.endswith(b"\n"):
        parts.pop()
    return [i + 1 for i, part in enumerate(parts) if part not in (b"", b"\r")]


def check_accounting(data: bytes, **options: str) -> None:
    expected = nonblank_line_numbers(data)
    first = data.split(b"\n", 1)[0].rstrip(b"\r").removeprefix(b"\xef\xbb\xbf")
    try:
        chunks = chunks_of(data, **options)
    except FormatError:
        assert is_header(first)
        return
    if is_header(first):
        expected = [n for n in expected if n != 1]
    stored = [p for c in chunks for p in c.flows["lineage_pos"].to_pylist()]
    rejected = [int(p) for c in chunks for p in c.rejects.table()["pos"].to_pylist()]
    ignored = sum(sum(c.ignored.values()) for c in chunks)
    assert len(stored) + len(rejected) + ignored == len(expected)
    assert len(set(stored) | set(rejected)) == len(stored) + len(rejected)
    assert set(stored) | set(rejected) <= set(expected)
    assert stored == sorted(stored)
    for chunk in chunks:
        for name in REQUIRED_COLUMNS:
            assert chunk.flows[name].null_count == 0
        for ip in chunk.flows["src_ip"].to_pylist() + chunk.flows["dst_ip"].to_pylist():
            assert canonical_ip(ip) == ip


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=400), st.sampled_from(["1", "2"]), st.sampled_from(["64", "16777216"]))
def test_arbitrary_bytes_never_crash(data: bytes, workers: str, block_size: str) -> None:
    check_accounting(data, workers=workers, block_size=block_size)


@FUZZ
@given(
    st.lists(st.binary(max_size=60), max_size=6).map(lambda parts: b"\n".join(parts)),
    st.sampled_from([HEADER.encode() + b"\n", b""]),
)
def test_arbitrary_lines_after_a_header_never_crash(body: bytes, header: bytes) -> None:
    check_accounting(header + body, block_size="64")


SAMPLES = [SSH_ACCEPTED, RDP_REJECTED, NODATA, SKIPDATA, IPV6_SSH, ICMP_PING]
SPECIAL = [b" ", b"-", b"\n", b"\r", b"\r\n", b"\t", b"\xff", b"\x00", b"0", b"-1", b"256"]
SPECIAL += [b"65536", b"99999999999999999999", b"0x1F", b"::", b"1.2.3.4", b"OK", b"NODATA"]
SPECIAL += [b"SKIPDATA", HEADER.encode()]
PIECES = st.sampled_from(SPECIAL)


@st.composite
def mutated_file(draw: st.DrawFn) -> bytes:
    records = [s.encode() for s in draw(st.lists(st.sampled_from(SAMPLES), min_size=1, max_size=8))]
    for _ in range(draw(st.integers(0, 6))):
        i = draw(st.integers(0, len(records) - 1))
        record = records[i]
        at = draw(st.integers(0, len(record)))
        cut = draw(st.integers(0, 12))
        payload = draw(st.one_of(PIECES, st.binary(max_size=4)))
        records[i] = record[:at] + payload + record[at + cut :]
    header = draw(st.sampled_from([HEADER.encode() + b"\n", V5_HEADER.encode() + b"\n", b""]))
    return header + b"\n".join(records) + draw(st.sampled_from([b"\n", b"", b"\r\n"]))


@FUZZ
@given(mutated_file(), st.sampled_from(["1", "2"]), st.sampled_from(["64", "16777216"]))
def test_mutated_records_never_crash(data: bytes, workers: str, block_size: str) -> None:
    check_accounting(data, workers=workers, block_size=block_size)


FORMATS = {
    "v2": (HEADER, SAMPLES, SSH_ACCEPTED.replace(" 20 4249 ", " 2O 4249 ")),
    "v5": (V5_HEADER, [V5_NAT, V5_S3], V5_NAT.replace(" 12 3256 ", " 12 3256x ")),
}


@FUZZ
@given(st.sampled_from(sorted(FORMATS)), st.data())
def test_a_bad_neighbour_never_costs_a_good_record(fmt: str, data: st.DataObject) -> None:
    header, samples, bad = FORMATS[fmt]
    records = data.draw(st.lists(st.sampled_from(samples), min_size=1, max_size=10))
    where = data.draw(st.integers(0, len(records)))
    alone, alone_rejects, _ = read_all(lines(header, *records))
    assert alone_rejects == []
    spoiled = [*records[:where], bad, *records[where:]]
    with_bad, rejects, _ = read_all(lines(header, *spoiled))
    assert [(r["pos"], r["reason"]) for r in rejects] == [(where + 2, "bad-field")]
    for flow in with_bad:
        if flow["lineage_pos"] > where + 2:
            flow["lineage_pos"] -= 1
    assert with_bad == alone
