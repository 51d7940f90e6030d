"""The Zeek adapter's flows against the packets of the captures that Zeek read.

``MAPPING.tsv`` pairs every baseline folder with its pcap. The packets are decoded here with
dpkt, tunnels included (VXLAN on udp/4789 and Geneve on udp/6081 carry whole Ethernet
frames). Zeek's baselines mask ``ts``, so the tests put back the time of the first packet
of each row's connection and then check what the adapter made of every row against the
packets: the 5-tuple, the start, the end, and bytes and packets in each direction.
"""

from __future__ import annotations

import socket
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import dpkt
import pytest

from cellwall.ingest.zeek import ZeekTsvSource
from tests.ingest.test_zeek import BASELINE, MASK, TRACES, ZEEK, run, simple_read, unmask

Key = tuple[str, int, str, int, int]
VXLAN, GENEVE = 4789, 6081
# RFC 792 request/reply pairs, as Zeek pairs them for its ICMP "ports".
ICMP4_COUNTERPART = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
ICMP6_COUNTERPART = {128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 130: 131, 131: 130}


@dataclass(frozen=True)
class Packet:
    ts: float
    ip_len: int


def _pairs() -> list[tuple[str, Path]]:
    pairs: dict[str, Path] = {}
    for line in (ZEEK / "MAPPING.tsv").read_text().splitlines()[1:]:
        pcap, folder = line.split("\t")
        if (BASELINE / folder / "conn.log").exists():
            pairs[folder] = TRACES / pcap
    return sorted(pairs.items())


PAIRS = _pairs()


def _address(ip: dpkt.ip.IP | dpkt.ip6.IP6) -> tuple[str, str]:
    family = socket.AF_INET if isinstance(ip, dpkt.ip.IP) else socket.AF_INET6
    return socket.inet_ntop(family, ip.src), socket.inet_ntop(family, ip.dst)


def _ip_packets(ts: float, ip: object, out: dict[Key, list[Packet]]) -> None:
    if isinstance(ip, dpkt.ip.IP):
        length, proto = ip.len, ip.p
    elif isinstance(ip, dpkt.ip6.IP6):
        length, proto = ip.plen + 40, ip.p
    else:
        return
    src, dst = _address(ip)
    l4 = ip.data
    if isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP)):
        sport, dport = l4.sport, l4.dport
    elif isinstance(l4, (dpkt.icmp.ICMP, dpkt.icmp6.ICMP6)):
        table = ICMP4_COUNTERPART if proto == 1 else ICMP6_COUNTERPART
        sport, dport = l4.type, table.get(l4.type, l4.code)
    else:
        return
    out[(src, sport, dst, dport, proto)].append(Packet(ts, length))
    if isinstance(l4, dpkt.udp.UDP) and {VXLAN, GENEVE} & {sport, dport}:
        payload = bytes(l4.data)
        skip = 8 if VXLAN in (sport, dport) else 8 + (payload[0] & 0x3F) * 4
        _ip_packets(ts, dpkt.ethernet.Ethernet(payload[skip:]).data, out)


def read_pcap(path: Path) -> dict[Key, list[Packet]]:
    out: dict[Key, list[Packet]] = defaultdict(list)
    with path.open("rb") as f:
        for ts, frame in dpkt.pcap.Reader(f):
            _ip_packets(float(ts), dpkt.ethernet.Ethernet(frame).data, out)
    return out


def _both_ways(packets: dict[Key, list[Packet]], key: Key) -> tuple[list[Packet], list[Packet]]:
    src, sport, dst, dport, proto = key
    return packets.get(key, []), packets.get((dst, dport, src, sport, proto), [])


def _key(row: dict[str, str]) -> Key:
    proto = int(row["ip_proto"]) if "ip_proto" in row else {"tcp": 6, "udp": 17}[row["proto"]]
    return (row["id.orig_h"], int(row["id.orig_p"]), row["id.resp_h"], int(row["id.resp_p"]), proto)


def test_every_baseline_with_a_conn_log_has_its_pcap() -> None:
    assert len(PAIRS) == 7
    assert all(pcap.exists() for _, pcap in PAIRS)


@pytest.mark.real
@pytest.mark.parametrize(
    ("folder", "pcap"),
    [p for p in PAIRS if MASK in (BASELINE / p[0] / "conn.log").read_text()],
    ids=lambda v: v if isinstance(v, str) else v.name,
)
def test_flows_agree_with_the_packets(folder: str, pcap: Path) -> None:
    packets = read_pcap(pcap)
    text = (BASELINE / folder / "conn.log").read_text()
    rows = dict(simple_read(text).rows)

    def first_packet(line: int) -> str:
        fwd, rev = _both_ways(packets, _key(rows[line]))
        assert fwd or rev, f"{folder} line {line}: no packet of {_key(rows[line])}"
        return f"{min(p.ts for p in fwd + rev):.6f}"

    result = run(ZeekTsvSource, unmask(text, first_packet).encode(), file=folder)
    assert result.rejects.num_rows == 0
    flows = result.rows()
    assert sorted(flows) == sorted(rows)
    tuples = [_key(r) for r in rows.values()]
    for line, flow in flows.items():
        key = (flow["src_ip"], flow["src_port"], flow["dst_ip"], flow["dst_port"], flow["proto"])
        fwd, rev = _both_ways(packets, key)
        assert fwd or rev, f"{folder} line {line}: {key} is in no packet"
        times = [p.ts for p in fwd + rev]
        assert abs(flow["start"] / 1e6 - min(times)) <= 1e-3
        if tuples.count(_key(rows[line])) > 1:
            continue  # a reused 5-tuple: the packets belong to several connections
        assert (flow["packets"], flow["rev_packets"]) == (len(fwd), len(rev)), line
        assert (flow["bytes"], flow["rev_bytes"]) == (
            sum(p.ip_len for p in fwd),
            sum(p.ip_len for p in rev),
        ), line
        if flow["end"] is None:
            assert len(times) == 1, line  # Zeek leaves duration unset for a lone packet
        else:
            # Zeek's duration ends at a packet of the connection; a last ACK after both
            # FINs is counted but does not stretch it, so it can end before the last one.
            assert min(abs(flow["end"] / 1e6 - t) for t in times) <= 1e-3, line
            assert flow["end"] / 1e6 <= max(times) + 1e-3, line


@pytest.mark.real
def test_tunnel_inner_flows_are_checked_against_inner_packets() -> None:
    packets = read_pcap(TRACES / "tunnels" / "vxlan.pcap")
    fwd, rev = _both_ways(packets, ("10.0.0.1", 8, "10.0.0.2", 0, 1))
    assert (len(fwd), len(rev)) == (4, 4)  # the inner echo requests and replies
    assert sum(p.ip_len for p in fwd) == 336


@pytest.mark.real
def test_a_cut_log_without_ts_names_rows_that_are_in_the_pcap() -> None:
    folder = "scripts.base.protocols.postgresql.greenhouse-app"
    pcap = dict(PAIRS)[folder]
    packets = read_pcap(pcap)
    path = BASELINE / folder / "conn.log"
    result = run(ZeekTsvSource, path.read_bytes(), file=str(path))
    assert result.flows.num_rows == 0
    assert set(result.reasons().values()) == {"no-timestamp"}
    assert sorted(result.reasons()) == [3, 4]
    for raw in result.rejects["raw"].to_pylist():
        _, orig_h, orig_p, resp_h, resp_p, *_ = raw.split("\t")
        fwd, rev = _both_ways(packets, (orig_h, int(orig_p), resp_h, int(resp_p), 6))
        assert fwd and rev
