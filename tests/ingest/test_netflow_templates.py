"""Templates, options and bad input, on datagrams built here field by field."""

from __future__ import annotations

import struct
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from cellwall.ingest.base import Chunk
from cellwall.ingest.netflow_session import NetflowDecoder
from cellwall.ingest.netflow_templates import TemplateCache

EXPORT_S = 1_762_000_000
TEMPLATE = 300
# (ie, length): src, dst, sport, dport, proto, bytes, packets, flowStartMs, flowEndMs
FIELDS = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 8), (2, 8), (152, 8), (153, 8)]


def record(src: int = 0x0A000001, dst: int = 0x0A000002, sport: int = 40000, dport: int = 443,
           proto: int = 6, octets: int = 1500, packets: int = 3, start_ms: int = EXPORT_S * 1000,
           end_ms: int = EXPORT_S * 1000 + 500) -> bytes:  # fmt: skip
    return struct.pack(
        ">IIHHBQQQQ", src, dst, sport, dport, proto, octets, packets, start_ms, end_ms
    )


def template_set(tid: int = TEMPLATE, fields: list[tuple[int, int]] | None = None,
                 set_id: int = 2, enterprise: dict[int, int] | None = None) -> bytes:  # fmt: skip
    fields = FIELDS if fields is None else fields
    body = struct.pack(">HH", tid, len(fields))
    for i, (ie, length) in enumerate(fields):
        pen = (enterprise or {}).get(i)
        body += struct.pack(">HH", ie | (0x8000 if pen is not None else 0), length)
        if pen is not None:
            body += struct.pack(">I", pen)
    return struct.pack(">HH", set_id, len(body) + 4) + body


def options_set(tid: int, fields: list[tuple[int, int]], scope: int = 1) -> bytes:
    body = struct.pack(">HHH", tid, len(fields), scope)
    for ie, length in fields:
        body += struct.pack(">HH", ie, length)
    return struct.pack(">HH", 3, len(body) + 4) + body


def data_set(records: list[bytes], tid: int = TEMPLATE) -> bytes:
    body = b"".join(records)
    return struct.pack(">HH", tid, len(body) + 4) + body


def ipfix(*sets: bytes, domain: int = 7, export_s: int = EXPORT_S) -> bytes:
    body = b"".join(sets)
    return struct.pack(">HHIII", 10, 16 + len(body), export_s, 1, domain) + body


def v9(*sets: bytes, uptime_ms: int = 100_000, export_s: int = EXPORT_S, domain: int = 0) -> bytes:
    body = b"".join(sets)
    return struct.pack(">HHIIII", 9, len(sets), uptime_ms, export_s, 1, domain) + body


def run(*datagrams: bytes, exporter: str = "192.0.2.1", **cache: Any) -> tuple[pa.Table, Chunk]:
    decoder = NetflowDecoder("test", cache=TemplateCache(**cache))
    pos = 0
    for d in datagrams:
        decoder.feed(d, exporter, pos, stamp=float(int.from_bytes(d[4:8], "big")))
        pos += len(d)
    chunk = decoder.take(final=True)
    return chunk.flows, chunk


def reasons(chunk: Chunk) -> Counter[str]:
    return chunk.rejects.counts()


def test_a_template_then_its_data() -> None:
    flows, chunk = run(ipfix(template_set(), data_set([record(), record(dport=22)])))
    rows = flows.to_pylist()
    assert [(r["src_ip"], r["dst_ip"], r["dst_port"]) for r in rows] == [
        ("10.0.0.1", "10.0.0.2", 443),
        ("10.0.0.1", "10.0.0.2", 22),
    ]
    assert rows[0]["start"] == datetime.fromtimestamp(EXPORT_S, UTC)
    assert (rows[0]["end"] - rows[0]["start"]).total_seconds() == 0.5
    assert rows[0]["exporter"] == "192.0.2.1" and rows[0]["sampling_rate"] is None
    assert not len(chunk.rejects)


def test_data_before_its_template_is_held_then_decoded() -> None:
    flows, chunk = run(
        ipfix(data_set([record(dport=1)])),
        ipfix(data_set([record(dport=2)])),
        ipfix(template_set(), data_set([record(dport=3)])),
    )
    assert sorted(flows["dst_port"].to_pylist()) == [1, 2, 3]
    assert not len(chunk.rejects)


def test_data_whose_template_never_comes_is_counted_and_the_rest_kept() -> None:
    flows, chunk = run(
        ipfix(data_set([record()], tid=999)),
        ipfix(template_set(), data_set([record()])),
    )
    assert flows.num_rows == 1
    [row] = chunk.rejects.table().to_pylist()
    assert row["reason"] == "no-template" and "template 999" in row["message"]
    assert row["pos"] == 16 + 4  # the data set's records, in the first datagram


def test_the_hold_is_bounded_in_time_and_in_number() -> None:
    late = EXPORT_S + 120
    flows, chunk = run(
        ipfix(data_set([record()])),  # waits from EXPORT_S: gone after 60 s
        ipfix(template_set(tid=301), export_s=late),
        ipfix(template_set(), data_set([record()]), export_s=late),
    )
    assert flows.num_rows == 1 and reasons(chunk) == {"no-template": 1}
    msg = chunk.rejects.table()["message"][0].as_py()
    assert "did not arrive in time" in msg
    flows, chunk = run(*(ipfix(data_set([record()], tid=900 + i)) for i in range(5)), max_pending=2)
    assert reasons(chunk) == {"no-template": 5}
    assert (
        sum(
            "hold for data without a template is full" in m
            for m in chunk.rejects.table()["message"].to_pylist()
        )
        == 3
    )


def test_templates_are_kept_per_exporter_and_domain() -> None:
    decoder = NetflowDecoder("t")
    decoder.feed(ipfix(template_set(), domain=1), "192.0.2.1", 0)
    decoder.feed(ipfix(data_set([record()]), domain=2), "192.0.2.1", 100)  # other domain
    decoder.feed(ipfix(data_set([record()]), domain=1), "192.0.2.9", 200)  # other exporter
    decoder.feed(ipfix(data_set([record()]), domain=1), "192.0.2.1", 300)
    chunk = decoder.take(final=True)
    assert chunk.flows.num_rows == 1 and reasons(chunk) == {"no-template": 2}


def test_withdrawal_forgets_the_template() -> None:
    withdraw = struct.pack(">HHHH", 2, 8, TEMPLATE, 0)
    flows, chunk = run(
        ipfix(template_set(), data_set([record()])),
        ipfix(withdraw, data_set([record()])),
    )
    assert flows.num_rows == 1 and reasons(chunk) == {"no-template": 1}
    assert chunk.ignored["template-withdrawal"] == 1
    withdraw_all = struct.pack(">HHHH", 2, 8, 2, 0)
    flows, chunk = run(ipfix(template_set(), withdraw_all, data_set([record()])))
    assert flows.num_rows == 0 and reasons(chunk) == {"no-template": 1}


def test_a_refreshed_template_with_other_fields_applies_from_then_on() -> None:
    short = [(8, 4), (12, 4), (4, 1), (1, 4), (2, 4)]
    flows, _ = run(
        ipfix(template_set(), data_set([record(octets=1)])),
        ipfix(template_set(fields=short), data_set([struct.pack(">IIBII", 1, 2, 17, 2, 1)])),
    )
    assert flows.num_rows == 2
    assert sorted(flows["bytes"].to_pylist()) == [1, 2]
    assert set(flows["proto"].to_pylist()) == {6, 17}


def test_options_sampling_scales_bytes_and_packets() -> None:
    opts = options_set(400, [(149, 4), (305, 4)])
    flows, chunk = run(
        ipfix(template_set(), opts, data_set([struct.pack(">II", 7, 100)], tid=400)),
        ipfix(data_set([record(octets=10, packets=2)])),
    )
    [row] = flows.to_pylist()
    assert (row["bytes"], row["packets"], row["sampling_rate"]) == (1000, 200, 100)
    assert chunk.ignored["options-record"] == 1


def test_v9_options_template_and_sysuptime_times() -> None:
    tpl = struct.pack(">HH", 0, 8 + 4 * 7) + struct.pack(
        ">HH" + "HH" * 7, 260, 7, 8, 4, 12, 4, 4, 1, 1, 4, 2, 4, 22, 4, 21, 4
    )
    opt_body = struct.pack(">HHH", 261, 4, 8) + struct.pack(">HHHHHH", 1, 4, 34, 4, 35, 1)
    opt_body += b"\x00" * (-(len(opt_body) + 4) % 4)
    opt = struct.pack(">HH", 1, len(opt_body) + 4) + opt_body
    opt_data = data_set([struct.pack(">IIB", 0, 10, 2) + b"\x00\x00\x00"], tid=261)
    rec = struct.pack(">IIBIIII", 0x01020304, 0x05060708, 17, 50, 5, 90_000, 99_000)
    flows, chunk = run(v9(tpl, opt, opt_data), v9(data_set([rec], tid=260), uptime_ms=100_000))
    [row] = flows.to_pylist()
    assert (row["src_ip"], row["dst_ip"], row["bytes"], row["sampling_rate"]) == (
        "1.2.3.4", "5.6.7.8", 500, 10,
    )  # fmt: skip
    assert row["start"] == datetime.fromtimestamp(EXPORT_S - 10, UTC)
    assert row["end"] == datetime.fromtimestamp(EXPORT_S - 1, UTC)
    assert not len(chunk.rejects)


def test_variable_length_and_enterprise_fields_are_skipped_keeping_the_rest() -> None:
    fields = [(8, 4), (82, 0xFFFF), (12, 4), (1, 4), (7, 2), (4, 1), (11, 2), (2, 4)]
    tpl = template_set(fields=fields, enterprise={4: 29305})  # field 4 is an enterprise's
    tail = ">IIHBHI"  # dst, bytes, (enterprise field), proto, dport, packets
    first = struct.pack(">I", 0x0A000001) + b"\x03eth"  # a 1-byte length, then 3 bytes
    second = struct.pack(">I", 0x0A000003) + b"\xff\x00\x02ab"  # 255, a 2-byte length
    recs = [
        first + struct.pack(tail, 0x0A000002, 900, 7, 6, 80, 9),
        second + struct.pack(tail, 0x0A000004, 800, 7, 6, 81, 8),
    ]
    flows, chunk = run(ipfix(tpl, data_set(recs)))
    rows = flows.to_pylist()
    assert [(r["src_ip"], r["dst_ip"], r["bytes"], r["dst_port"], r["src_port"]) for r in rows] == [
        ("10.0.0.1", "10.0.0.2", 900, 80, None),
        ("10.0.0.3", "10.0.0.4", 800, 81, None),
    ]
    assert not len(chunk.rejects)


def test_ipv6_and_icmp_type_code() -> None:
    fields = [(27, 16), (28, 16), (4, 1), (139, 2), (1, 4), (2, 4)]
    src = bytes.fromhex("20010db8000000000000000000000001")
    dst = bytes.fromhex("fe800000000000000000000000000abc")
    flows, _ = run(
        ipfix(
            template_set(fields=fields),
            data_set([src + dst + struct.pack(">BHII", 58, 0x8000, 64, 1)]),
        )
    )
    [row] = flows.to_pylist()
    assert (row["src_ip"], row["dst_ip"], row["proto"]) == ("2001:db8::1", "fe80::abc", 58)
    assert (row["src_port"], row["dst_port"]) == (128, 0)


def test_zero_length_fields_reject_the_template_not_the_datagram() -> None:
    bad = template_set(tid=301, fields=[(8, 4), (12, 0)])
    flows, chunk = run(
        ipfix(bad, template_set(), data_set([record()]), data_set([record()], tid=301))
    )
    assert flows.num_rows == 1
    assert reasons(chunk) == {"bad-template": 1, "no-template": 1}
    assert "length zero" in chunk.rejects.table()["message"][0].as_py()


def test_lying_lengths_and_truncation_are_rejected_and_the_next_datagram_kept() -> None:
    good = ipfix(template_set(), data_set([record()]))
    lying_set = ipfix(template_set())[:-2] + b""  # message length now says 2 bytes more
    long_set = good[:16] + struct.pack(">HH", 2, 4000) + good[20:]
    short_msg = struct.pack(">HH", 10, 8) + good[4:]
    flows, chunk = run(good, lying_set, long_set, short_msg, good[:10], good)
    assert flows.num_rows == 2
    assert reasons(chunk) == {"truncated": 2, "bad-length": 2}


def test_v5_with_a_lying_count_is_truncated() -> None:
    header = struct.pack(">HHIIIIBBH", 5, 2, 1000, EXPORT_S, 0, 1, 0, 0, 0)
    rec = struct.pack(
        ">IIIHHIIIIHHBBBBHHBBH", 1, 2, 0, 0, 0, 1, 60, 900, 1000, 1, 2, 0, 0, 6, 0, 0, 0, 0, 0, 0
    )
    flows, chunk = run(header + rec, header + rec + rec)
    assert flows.num_rows == 2 and reasons(chunk) == {"truncated": 1}


def test_unknown_version_then_good_data() -> None:
    flows, chunk = run(
        struct.pack(">HH", 7, 0) + b"\x00" * 30, ipfix(template_set(), data_set([record()]))
    )
    assert flows.num_rows == 1 and reasons(chunk) == {"bad-version": 1}


def test_a_record_whose_end_is_before_its_start_is_bad_time() -> None:
    flows, chunk = run(
        ipfix(template_set(), data_set([record(), record(end_ms=EXPORT_S * 1000 - 1)]))
    )
    assert flows.num_rows == 1 and reasons(chunk) == {"bad-time": 1}
    [row] = chunk.rejects.table().to_pylist()
    assert row["pos"] == 16 + 4 + 4 + 4 * len(FIELDS) + 4 + len(record())


# RFC 5103 biflow: the forward fields, then reverse octets/packets (enterprise 29305) and
# biflowDirection (239)
BIFLOW = [*FIELDS, (1, 8), (2, 8), (239, 1)]
BIFLOW_PEN = {len(FIELDS): 29305, len(FIELDS) + 1: 29305}


def biflow_record(rev_octets: int, rev_packets: int, direction: int, **kw: Any) -> bytes:
    return record(**kw) + struct.pack(">QQB", rev_octets, rev_packets, direction)


def test_rfc5103_biflow_fills_the_reverse_counters_and_the_initiator() -> None:
    tpl = template_set(fields=BIFLOW, enterprise=BIFLOW_PEN)
    data = data_set([
        biflow_record(9000, 7, 1),
        biflow_record(10, 1, 2, dport=53, proto=17),
        biflow_record(0, 0, 0, dport=80),
        biflow_record(5, 1, 3, dport=81),
    ])  # fmt: skip
    flows, chunk = run(ipfix(tpl, data))
    assert not reasons(chunk)
    rows = flows.to_pylist()
    got = [(r["bytes"], r["rev_bytes"], r["rev_packets"], r["src_initiated"]) for r in rows]
    assert got == [
        (1500, 9000, 7, True),
        (1500, 10, 1, False),
        (1500, 0, 0, None),
        (1500, 5, 1, None),
    ]


def test_reverse_elements_of_another_enterprise_are_skipped() -> None:
    tpl = template_set(fields=BIFLOW, enterprise={len(FIELDS): 9, len(FIELDS) + 1: 9})
    flows, chunk = run(ipfix(tpl, data_set([biflow_record(9000, 7, 1)])))
    assert not reasons(chunk)
    row = flows.to_pylist()[0]
    assert (row["bytes"], row["rev_bytes"], row["rev_packets"]) == (1500, None, None)
    assert row["src_initiated"] is True


def test_short_padded_and_whole_sets_of_one_template_keep_their_offsets_and_times() -> None:
    """Data sets are collected per template over many datagrams and decoded at once; each
    record keeps its own byte offset and its datagram's clock (v9: sysUptime)."""
    fields = [(8, 4), (12, 4), (4, 1), (22, 4), (21, 4)]  # src, dst, proto, first, last

    def rec(dst: int, first: int) -> bytes:
        return struct.pack(">IIBII", 0x0A000001, dst, 17, first, first + 250)

    datagrams = [
        v9(template_set(fields=fields, set_id=0)),
        v9(data_set([rec(1, 99_000), b"\0\0\0"]), uptime_ms=100_000),  # padded
        v9(data_set([b"\0" * 5]), uptime_ms=150_000),  # shorter than one record
        v9(data_set([rec(2, 190_000), rec(3, 199_000)]), uptime_ms=200_000, export_s=EXPORT_S + 9),
    ]
    flows, chunk = run(*datagrams)
    starts = [sum(len(d) for d in datagrams[:i]) + 24 for i in range(len(datagrams))]
    rows = flows.to_pylist()
    assert [(r["dst_ip"], r["lineage_pos"]) for r in rows] == [
        ("0.0.0.1", starts[1]), ("0.0.0.2", starts[3]), ("0.0.0.3", starts[3] + 17),
    ]  # fmt: skip
    ago = [(1000, EXPORT_S), (10_000, EXPORT_S + 9), (1000, EXPORT_S + 9)]
    for row, (ms, export_s) in zip(rows, ago, strict=True):
        assert row["start"] == datetime.fromtimestamp(export_s - ms / 1000, UTC)
        assert (row["end"] - row["start"]).total_seconds() == 0.25
    assert not len(chunk.rejects)
