"""The demo's exporters: what they write, cellwall's readers read back exactly."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from cellwall.demo.exports import export_datagrams, hubble_lines, netflow_records, pcap
from cellwall.ingest.hubble import HubbleSource
from cellwall.ingest.netflow import NetflowSource

T0 = datetime(2026, 11, 2, 9, 30, 1, 250_000, tzinfo=UTC)
FLOWS = pa.table(
    {
        "src_ip": ["10.0.0.1", "10.0.0.2", "192.168.7.9"] * 25,
        "dst_ip": ["10.1.0.1", "203.0.113.10", "10.1.0.1"] * 25,
        "src_port": pa.array([40000, 40001, 53] * 25, pa.uint16()),
        "dst_port": pa.array([443, 443, 5353] * 25, pa.uint16()),
        "proto": pa.array([6, 6, 17] * 25, pa.uint8()),
        "bytes": pa.array([6 << 30, 1500, 80] * 25, pa.uint64()),  # 6 GiB: 8-byte counters
        "packets": pa.array([5_000_000, 3, 1] * 25, pa.uint64()),
        "start": pa.array([T0] * 75, pa.timestamp("us", "UTC")),
        "end": pa.array([datetime(2026, 11, 2, 9, 31, tzinfo=UTC)] * 75, pa.timestamp("us", "UTC")),
        "tcp_flags": pa.array([0x12, 0x18, None] * 25, pa.uint16()),
    }
)
COLUMNS = ["src_ip", "dst_ip", "src_port", "dst_port", "proto", "bytes", "packets", "start"]


@pytest.mark.parametrize("ipfix", [False, True])
def test_netflow_exports_read_back_exactly(ipfix: bool) -> None:
    export_s = int(datetime(2026, 11, 2, 9, 35, tzinfo=UTC).timestamp())
    uptime_ms = 86_400_000
    records = netflow_records(FLOWS, ipfix=ipfix, uptime_ms=uptime_ms, export_ms=export_s * 1000)
    datagrams = export_datagrams(records, ipfix=ipfix, export_s=export_s, uptime_ms=uptime_ms)
    assert len(datagrams) == 3  # 30 records a datagram
    chunks = list(NetflowSource().read(io.BytesIO(pcap(datagrams)), "x.pcap"))
    got = pa.concat_tables([c.flows for c in chunks])
    assert sum(len(c.rejects.table()) for c in chunks) == 0
    rows = got.select(COLUMNS).to_pylist()
    want = FLOWS.select(COLUMNS).to_pylist()
    assert rows == want  # the start to the millisecond, the 6 GiB flow whole


def test_hubble_lines_read_back_with_dns_evidence() -> None:
    lines = hubble_lines(FLOWS, {"203.0.113.10": "payment-gateway.demo.example"})
    first = json.loads(lines.splitlines()[0])
    assert first["flow"]["l4"]["TCP"]["flags"] == {"SYN": True, "ACK": True}
    chunks = list(HubbleSource().read(io.BytesIO(lines), "h.json"))
    flows = pa.concat_tables([c.flows for c in chunks])
    dns = pa.concat_tables([c.dns for c in chunks if c.dns is not None])
    assert flows.num_rows == 75 + 25  # each flow to the named address brings its answer
    assert dns.num_rows == 25
    assert set(dns["name"].to_pylist()) == {"payment-gateway.demo.example"}
    assert set(dns["client_ip"].to_pylist()) == {"10.0.0.2"}
    answers = pc.starts_with(flows["source_id"], "demo-dns-")
    mine = flows.filter(pc.invert(answers))
    assert sorted(mine.select(COLUMNS[:5]).to_pylist(), key=str) == sorted(
        FLOWS.select(COLUMNS[:5]).to_pylist(), key=str
    )
