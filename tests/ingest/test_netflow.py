"""NetFlow v5/v9/IPFIX against real exports: the shared samples and nfdump's decode of them."""

from __future__ import annotations

import csv
import json
import struct
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dpkt
import pyarrow as pa
import pytest

from cellwall.ingest.base import Chunk, detect
from cellwall.ingest.netflow import NetflowSource
from cellwall.services.ingest import ingest_paths
from cellwall.workspace import Workspace

pytestmark = pytest.mark.real

DATA = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "flows"
SAMPLES = DATA / "netflow"
SOFTFLOWD = DATA / "softflowd"
NFDUMP = SOFTFLOWD / "nfdump"
PROTOS = {"TCP": 6, "UDP": 17, "ICMP": 1, "ICMP6": 58}

Key = tuple[str, str, int, int, int, int, int]


def read(path: Path, **options: str) -> list[Chunk]:
    with open(path, "rb") as f:
        return list(NetflowSource(options).read(f, str(path)))


def flows(chunks: list[Chunk]) -> pa.Table:
    return pa.concat_tables([c.flows for c in chunks])


def reasons(chunks: list[Chunk]) -> Counter[str]:
    out: Counter[str] = Counter()
    for c in chunks:
        out.update(c.rejects.counts())
    return out


def key(row: dict[str, Any]) -> Key:
    return (
        row["src_ip"],
        row["dst_ip"],
        row["src_port"],
        row["dst_port"],
        row["proto"],
        row["bytes"],
        row["packets"],
    )


def nfdump_rows(name: str) -> list[dict[str, str]]:
    text = (NFDUMP / name).read_text().split("\nSummary")[0]
    return list(csv.DictReader(text.splitlines()))


def nfdump_key(row: dict[str, str]) -> Key:
    proto = PROTOS.get(row["pr"]) or int(row["pr"])
    sp, dp = int(row["sp"]), int(row["dp"])
    if proto in (0, 1, 58):  # nfdump keeps ICMP's type * 256 + code in the port
        sp, dp = dp >> 8, dp & 0xFF
    return (row["sa"], row["da"], sp, dp, proto, int(row["ibyt"]), int(row["ipkt"]))


# -- the shared samples with their decoded records ------------------------------------------


def test_v5_sample_matches_its_decode() -> None:
    truth = json.loads((SAMPLES / "netflow_v5.decoded.json").read_text())[0]["flows"]
    rows = flows(read(SAMPLES / "bin" / "PACKET_V5.bin")).to_pylist()
    assert len(rows) == 3
    for got, want in zip(rows, truth, strict=True):
        assert got["src_ip"] == str(_v4(want["IPV4_SRC_ADDR"]))
        assert got["dst_ip"] == str(_v4(want["IPV4_DST_ADDR"]))
        assert (got["bytes"], got["packets"]) == (want["IN_OCTETS"], want["IN_PACKETS"])
        assert got["proto"] == want["PROTO"]
        if want["PROTO"] == 1:  # ICMP: the type and code that v5 packs into the port
            ports = (want["DST_PORT"] >> 8, want["DST_PORT"] & 255)
        else:
            ports = (want["SRC_PORT"], want["DST_PORT"])
        assert (got["src_port"], got["dst_port"]) == ports
        duration = got["end"] - got["start"]
        assert duration.total_seconds() * 1000 == want["LAST_SWITCHED"] - want["FIRST_SWITCHED"]


def _v4(value: int) -> str:
    return ".".join(str((value >> s) & 255) for s in (24, 16, 8, 0))


def test_v9_pcap_matches_its_decode_packet_by_packet() -> None:
    truth = json.loads((SAMPLES / "netflow_v9.decoded.json").read_text())
    assert [len(p["flows"]) for p in truth] == [8, 12, 12, 12]
    rows = flows(read(SAMPLES / "netflow_v9.pcap")).to_pylist()
    want = [
        (
            f["IPV4_SRC_ADDR"],
            f["IPV4_DST_ADDR"],
            f["L4_SRC_PORT"],
            f["L4_DST_PORT"],
            f["PROTOCOL"],
            f["IN_BYTES"],
            f["IN_PKTS"],
        )
        for p in truth
        for f in p["flows"]
    ]
    assert [key(r) for r in rows] == want
    assert all(r["exporter"] == "127.0.0.1" for r in rows)
    assert {r["tcp_flags"] for r in rows} == {f["TCP_FLAGS"] for p in truth for f in p["flows"]}


def test_ipfix_pcap_matches_its_decode() -> None:
    truth = json.loads((SAMPLES / "ipfix.decoded.json").read_text())
    assert len(truth[0]["flows"]) == 20
    records = [f for p in truth for f in p["flows"]]
    data = [f for f in records if "octetDeltaCount" in f]
    chunks = read(SAMPLES / "ipfix.pcap")
    rows = flows(chunks).to_pylist()
    assert len(rows) == len(data) == 46
    assert sum(c.ignored["options-record"] for c in chunks) == len(records) - len(data)
    want = Counter((f["octetDeltaCount"], f["packetDeltaCount"], _proto(f)) for f in data)
    assert Counter((r["bytes"], r["packets"], r["proto"]) for r in rows) == want
    assert not reasons(chunks)


def _proto(record: dict[str, int]) -> int:
    """The protocol; ICMP-only templates carry a type-code field instead."""
    if "protocolIdentifier" in record:
        return record["protocolIdentifier"]
    return 1 if "icmpTypeCodeIPv4" in record else 58


def test_ipfix_template_packet_alone_decodes_its_20_records() -> None:
    chunks = read(SAMPLES / "bin" / "PACKET_IPFIX_TEMPLATE.bin")
    assert flows(chunks).num_rows + sum(c.ignored["options-record"] for c in chunks) == 20
    assert flows(chunks)["sampling_rate"].to_pylist() == [1] * 19


def test_ipv6_records_keep_their_addresses() -> None:
    rows = flows(read(SAMPLES / "ipfix.pcap")).to_pylist()
    v6 = [r for r in rows if ":" in r["src_ip"]]
    assert v6 and all(":" in r["dst_ip"] for r in v6)
    assert "fde6:6f14:e0f1:9609:0:242:ac11:2" in {r["src_ip"] for r in v6}


def test_data_without_its_template_is_counted_not_guessed() -> None:
    chunks = read(SAMPLES / "bin" / "PACKETS_V9_1.bin")
    assert flows(chunks).num_rows == 0
    assert reasons(chunks) == {"no-template": 1}


def test_unknown_versions_are_rejected_with_their_version() -> None:
    for name, version in (("PACKET_V1.bin", 1), ("PACKET_INVALID.bin", 65535)):
        chunks = read(SAMPLES / "bin" / name)
        [row] = chunks[-1].rejects.table().to_pylist()
        assert row["reason"] == "bad-version" and f"version {version} " in row["message"]


def test_zero_padding_after_the_sets_is_not_an_error() -> None:
    chunks = read(SAMPLES / "bin" / "PACKET_V9_WITH_ZEROS.bin")
    assert set(reasons(chunks)) == {"no-template"}  # its template is in another datagram


# -- nfdump's decode of softflowd's exports is the truth ------------------------------------


@pytest.mark.parametrize("version", ["v5", "v9", "ipfix"])
def test_softflowd_export_equals_nfdump_record_for_record(version: str) -> None:
    pcap = SOFTFLOWD / f"softflowd_{'netflow_' if version != 'ipfix' else ''}{version}.pcap"
    chunks = read(pcap)
    ours = flows(chunks).to_pylist()
    theirs = nfdump_rows(f"nfdump_softflowd_{version}.csv")
    assert len(ours) == len(theirs) > 70
    assert Counter(key(r) for r in ours) == Counter(nfdump_key(r) for r in theirs)
    assert not reasons(chunks)
    # Times agree wherever nfdump has one (softflowd sends some as epoch 0): to the second
    # for v5/v9. For IPFIX nfdump sometimes prints a start after the end; cellwall's start
    # (systemInitTimeMilliseconds + flowStartSysUpTime) is within a second of the earlier.
    starts: dict[Key, list[datetime]] = {}
    for r in ours:
        starts.setdefault(key(r), []).append(r["start"])
    timed = [r for r in theirs if not r["ts"].startswith("1970")]
    assert len(timed) > 60
    slack = 1.0 if version == "ipfix" else 0.0
    for r in timed:
        first = min(_nfdump_time(r["ts"]), _nfdump_time(r["te"]))
        near = [
            abs((s.replace(microsecond=0) - first).total_seconds()) for s in starts[nfdump_key(r)]
        ]
        assert min(near) <= slack, (r, starts[nfdump_key(r)])


def _nfdump_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def test_sample_pcaps_equal_nfdump_with_icmp_protocol_inferred() -> None:
    chunks = [c for n in ("netflow_v5", "netflow_v9", "ipfix") for c in read(SAMPLES / f"{n}.pcap")]
    ours = Counter(key(r) for r in flows(chunks).to_pylist())
    theirs = Counter(nfdump_key(r) for r in nfdump_rows("nfdump_pynetflow_samples.csv"))
    assert sum(ours.values()) == sum(theirs.values()) == 93
    # Templates with an ICMP type-code field and no protocol field: nfdump says protocol 0;
    # cellwall says ICMP (1) or ICMPv6 (58), from which of the two type-code fields it is.
    fixed = Counter()
    for k, n in theirs.items():
        if k[4] == 0:
            k = (*k[:4], 58 if ":" in k[0] else 1, *k[5:])
        fixed[k] += n
    assert ours == fixed


# -- positions, detection, the lake ---------------------------------------------------------


def test_lineage_pos_is_the_byte_offset_of_the_record_in_the_capture() -> None:
    path = SOFTFLOWD / "softflowd_netflow_v9.pcap"
    raw = path.read_bytes()
    for row in flows(read(path)).to_pylist():
        if ":" in row["src_ip"]:
            continue
        at = row["lineage_pos"]
        assert raw[at : at + 4] == bytes(int(x) for x in row["src_ip"].split("."))
        assert raw[at + 4 : at + 8] == bytes(int(x) for x in row["dst_ip"].split("."))


def test_udp_payloads_equal_dpkt_reading_of_the_same_capture() -> None:
    from cellwall.ingest.netflow_pcap import iter_frames

    path = SOFTFLOWD / "softflowd_ipfix.pcap"
    with open(path, "rb") as f:
        ours = [fr.data for fr in iter_frames(f) if fr.skip is None]
    with open(path, "rb") as f:
        reader = dpkt.pcap.Reader(f)
        theirs = [_dpkt_udp(buf, reader.datalink()) for _, buf in reader]
    assert ours == [t for t in theirs if t is not None] and len(ours) > 5


def _dpkt_udp(buf: bytes, link: int) -> bytes | None:
    ip: Any = dpkt.ethernet.Ethernet(buf).data if link == 1 else dpkt.ip.IP(buf[4:])
    return bytes(ip.data.data) if isinstance(ip.data, dpkt.udp.UDP) else None


def test_pcapng_gives_the_same_flows_as_pcap(tmp_path: Path) -> None:
    src = SOFTFLOWD / "softflowd_ipfix.pcap"
    out = tmp_path / "x.pcapng"
    with open(src, "rb") as f, open(out, "wb") as g:
        reader = dpkt.pcap.Reader(f)
        writer = dpkt.pcapng.Writer(g, linktype=reader.datalink())
        for ts, buf in reader:
            writer.writepkt(buf, ts)
    a, b = flows(read(src)), flows(read(out))
    assert a.drop(["lineage_file", "lineage_pos"]).equals(b.drop(["lineage_file", "lineage_pos"]))
    raw = out.read_bytes()
    for row in b.to_pylist()[:5]:
        assert raw[row["lineage_pos"] : row["lineage_pos"] + 4] == bytes(
            int(x) for x in row["src_ip"].split(".")
        )


def test_auto_detection_picks_netflow_for_captures_and_datagrams() -> None:
    for path in (
        SAMPLES / "ipfix.pcap",
        SAMPLES / "bin" / "PACKET_V5.bin",
        SAMPLES / "bin" / "PACKET_V9_TEMPLATE.bin",
        SAMPLES / "bin" / "PACKET_IPFIX_TEMPLATE.bin",
    ):
        assert detect(path.read_bytes()[:4096], str(path)) is NetflowSource


def test_ingest_into_the_lake_with_quarantine(tmp_path: Path) -> None:
    ws = Workspace.resolve(tmp_path / "home")
    paths = [SOFTFLOWD / "softflowd_ipfix.pcap", SAMPLES / "bin" / "PACKET_V1.bin"]
    summary = ingest_paths(ws, paths, fmt="netflow").to_dict()
    assert summary["stored"] == 89
    assert summary["quarantined"] == {"bad-version": 1}
    assert summary["files"][0]["ignored"] == {"options-record": 6}
    again = ingest_paths(ws, paths, fmt="netflow").to_dict()
    assert again["stored"] == 0 and again["duplicate"] == 89


def test_the_start_time_comes_from_sysuptime_and_the_export_time() -> None:
    [row, *_] = flows(read(SAMPLES / "bin" / "PACKET_V5.bin")).to_pylist()
    raw = (SAMPLES / "bin" / "PACKET_V5.bin").read_bytes()
    uptime = int.from_bytes(raw[4:8], "big")
    secs, nsecs = int.from_bytes(raw[8:12], "big"), int.from_bytes(raw[12:16], "big")
    first = int.from_bytes(raw[24 + 24 : 24 + 28], "big")  # First
    want_ms = secs * 1000 + nsecs // 1_000_000 - (uptime - first)
    assert row["start"] == datetime.fromtimestamp(want_ms / 1000, UTC)


def _udp4(payload: bytes, frag: int = 0, proto: int = 17) -> bytes:
    udp = struct.pack(">HHHH", 4000, 2055, 8 + len(payload), 0) + payload
    return (
        struct.pack(">BBHHHBBH", 0x45, 0, 20 + len(udp), 1, frag, 64, proto, 0)
        + bytes([192, 0, 2, 7, 192, 0, 2, 9])
        + udp
    )


def _udp6(payload: bytes) -> bytes:
    udp = struct.pack(">HHHH", 4000, 2055, 8 + len(payload), 0) + payload
    src = bytes.fromhex("20010db8000000000000000000000007")
    return struct.pack(">IHBB", 0x60000000, len(udp), 17, 64) + src + bytes(16) + udp


def test_link_types_ipv6_transport_and_frames_that_are_not_exports(tmp_path: Path) -> None:
    from cellwall.ingest.netflow_pcap import iter_frames

    eth, vlan = b"\x00" * 12 + b"\x08\x00", b"\x00" * 12 + b"\x81\x00\x00\x05\x08\x00"
    cases = [
        (1, vlan + _udp4(b"A"), ("192.0.2.7", b"A", None)),
        (1, b"\x00" * 12 + b"\x86\xdd" + _udp6(b"B"), ("2001:db8::7", b"B", None)),
        (0, b"\x02\x00\x00\x00" + _udp4(b"C"), ("192.0.2.7", b"C", None)),
        (113, b"\x00" * 14 + b"\x08\x00" + _udp4(b"D"), ("192.0.2.7", b"D", None)),
        (101, _udp4(b"E"), ("192.0.2.7", b"E", None)),
        (1, eth + _udp4(b"F", frag=0x2000), ("", b"", "ip-fragment")),
        (1, eth + _udp4(b"G", proto=6), ("", b"", "not-udp")),
        (1, b"\x00" * 12 + b"\x08\x06" + b"\x00" * 28, ("", b"", "not-udp")),
    ]
    for linktype, frame, want in cases:
        path = tmp_path / f"{linktype}.pcap"
        with open(path, "wb") as f:
            dpkt.pcap.Writer(f, linktype=linktype).writepkt(frame, 0)
        with open(path, "rb") as f:
            [got] = list(iter_frames(f))
        assert (got.source, got.data, got.skip) == want, (linktype, frame)
        if got.skip is None:
            assert path.read_bytes()[got.pos : got.pos + 1] == want[1]
