"""Flows as exporters send them: NetFlow v9 and IPFIX datagrams in a pcap, Hubble lines.

The demo's other telemetry stage writes a slice of the lake in these forms and ingests it
back; the NetFlow benchmark builds its export stream with the same code. The datagrams are
laid out as softflowd lays them out: one template (resent every ``template_every``
datagrams), 30 records per data set, a classic pcap of Ethernet/IPv4/UDP frames to port
2055. The records are built column-wise with NumPy; the Hubble lines one by one with
``json`` (the demo writes a slice of some thousands).

=========  =================================================================================
v9         softflowd's IPv4 template with 8-byte counters; times are ``sysUpTime``
           milliseconds (IE 22/21)
IPFIX      the same fields with absolute times (``flowStart/EndMilliseconds``, IE 152/153),
           so that no boot time is needed to read them
Hubble     ``hubble observe -o jsonpb`` lines: ``FORWARDED`` TCP/UDP flows from the node
           ``demo-node``, and DNS responses (``l7.dns``) that name external addresses
=========  =================================================================================
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "IPFIX_FIELDS",
    "RECORD",
    "V9_FIELDS",
    "export_datagrams",
    "hubble_lines",
    "netflow_records",
    "pcap",
    "softflowd_layout",
]

#: softflowd's IPv4 template: the names of its record's fields and their information elements
_SOFTFLOWD = (("src", 8), ("dst", 12), ("first", 22), ("last", 21), ("bytes", 1),
              ("packets", 2), ("inp", 10), ("out", 14), ("dir", 61), ("reason", 136),
              ("sport", 7), ("dport", 11), ("proto", 4), ("flags", 6), ("ipv", 60),
              ("tos", 5))  # fmt: skip
_WIDTH = {"sport": 2, "dport": 2, "dir": 1, "reason": 1, "proto": 1, "flags": 1, "ipv": 1,
          "tos": 1}  # fmt: skip


def softflowd_layout(counter_bytes: int) -> tuple[list[tuple[int, int]], np.dtype[Any]]:
    """softflowd's IPv4 template (information element, length) and its record dtype, with
    byte and packet counters of ``counter_bytes`` (softflowd sends 4)."""
    widths = [
        counter_bytes if name in ("bytes", "packets") else _WIDTH.get(name, 4)
        for name, _ in _SOFTFLOWD
    ]
    fields = [(ie, w) for (_, ie), w in zip(_SOFTFLOWD, widths, strict=True)]
    dtype = np.dtype(
        [
            (name, f">u{w}" if w > 1 else "u1")
            for (name, _), w in zip(_SOFTFLOWD, widths, strict=True)
        ]
    )
    return fields, dtype


#: v9 here: softflowd's template with 8-byte counters (a long flow of the demo carries more
#: than 4 GiB)
V9_FIELDS, RECORD = softflowd_layout(8)
#: IPFIX: absolute start and end (8 bytes each) in place of the uptime-relative pair
IPFIX_FIELDS = [(8, 4), (12, 4), (152, 8), (153, 8), (1, 8), (2, 8), (7, 2), (11, 2), (4, 1),
                (6, 1)]  # fmt: skip
IPFIX_RECORD = np.dtype(
    [("src", ">u4"), ("dst", ">u4"), ("start", ">u8"), ("end", ">u8"), ("bytes", ">u8"),
     ("packets", ">u8"), ("sport", ">u2"), ("dport", ">u2"), ("proto", "u1"), ("flags", "u1")]
)  # fmt: skip
TEMPLATE_ID = 1024
RECORDS_PER_DATAGRAM = 30
_MS = 1000


def _v4_ints(column: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.uint32]:
    """IPv4 text to integers, parsed once per distinct address."""
    encoded = pc.dictionary_encode(column).combine_chunks()
    values = [
        sum(int(octet) << shift for octet, shift in zip(ip.split("."), (24, 16, 8, 0), strict=True))
        for ip in encoded.dictionary.to_pylist()
    ]
    return np.asarray(values, np.uint32)[np.asarray(encoded.indices, np.int64)]


def _ms(column: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.int64]:
    us = pc.cast(column, pa.timestamp("us", "UTC")).cast(pa.int64())
    return np.asarray(us, np.int64) // _MS


def netflow_records(flows: pa.Table, *, ipfix: bool, uptime_ms: int, export_ms: int) -> bytes:
    """The IPv4 TCP/UDP flows of ``flows`` as data records of the v9 or IPFIX template.

    ``flows`` has the flow schema's ``src_ip``, ``dst_ip``, ``src_port``, ``dst_port``,
    ``proto``, ``bytes``, ``packets``, ``start``, ``end`` and ``tcp_flags``, all IPv4; v9
    times are counted back from ``export_ms`` on a ``sysUpTime`` of ``uptime_ms``.
    """
    n = flows.num_rows
    rec = np.zeros(n, IPFIX_RECORD if ipfix else RECORD)
    rec["src"] = _v4_ints(flows["src_ip"])
    rec["dst"] = _v4_ints(flows["dst_ip"])
    rec["bytes"] = np.asarray(flows["bytes"].fill_null(0), np.uint64)
    rec["packets"] = np.asarray(flows["packets"].fill_null(0), np.uint64)
    rec["sport"] = np.asarray(flows["src_port"].fill_null(0), np.uint16)
    rec["dport"] = np.asarray(flows["dst_port"].fill_null(0), np.uint16)
    rec["proto"] = np.asarray(flows["proto"], np.uint8)
    rec["flags"] = np.asarray(flows["tcp_flags"].fill_null(0), np.uint16) & 0xFF
    start, end = _ms(flows["start"]), _ms(flows["end"].fill_null(flows["start"]))
    if ipfix:
        rec["start"], rec["end"] = start, end
    else:
        rec["first"] = uptime_ms - (export_ms - start)
        rec["last"] = uptime_ms - (export_ms - end)
        rec["ipv"] = 4
    return rec.tobytes()


def _template(ipfix: bool) -> bytes:
    fields = IPFIX_FIELDS if ipfix else V9_FIELDS
    body = struct.pack(">HH", TEMPLATE_ID, len(fields)) + b"".join(
        struct.pack(">HH", ie, length) for ie, length in fields
    )
    return struct.pack(">HH", 2 if ipfix else 0, len(body) + 4) + body


def export_datagrams(
    data: bytes,
    *,
    ipfix: bool,
    export_s: int,
    uptime_ms: int,
    template_every: int = 20,
    domain: int = 1,
) -> list[bytes]:
    """Records (as :func:`netflow_records` gives them) cut into export datagrams."""
    size = (IPFIX_RECORD if ipfix else RECORD).itemsize
    step = size * RECORDS_PER_DATAGRAM
    template = _template(ipfix)
    out = []
    for i, at in enumerate(range(0, len(data), step)):
        body = data[at : at + step]
        with_template = i % template_every == 0
        sets = (
            (template if with_template else b"")
            + struct.pack(">HH", TEMPLATE_ID, len(body) + 4)
            + body
        )
        if ipfix:
            head = struct.pack(">HHIII", 10, 16 + len(sets), export_s, i, domain)
        else:
            count = len(body) // size + with_template
            head = struct.pack(">HHIIII", 9, count, uptime_ms, export_s, i, domain)
        out.append(head + sets)
    return out


def pcap(datagrams: Iterable[bytes], exporter: bytes = bytes([192, 0, 2, 1])) -> bytes:
    """A classic pcap of the datagrams: Ethernet / IPv4 / UDP from ``exporter`` to 2055."""
    parts = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    eth = b"\x00" * 12 + b"\x08\x00"
    for i, d in enumerate(datagrams):
        udp = struct.pack(">HHHH", 40000, 2055, 8 + len(d), 0) + d
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                         exporter, bytes([192, 0, 2, 9])) + udp  # fmt: skip
        frame = eth + ip
        parts.append(struct.pack("<IIII", i // 1000, i % 1000, len(frame), len(frame)) + frame)
    return b"".join(parts)


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def hubble_lines(flows: pa.Table, names: dict[str, str]) -> bytes:
    """The TCP/UDP flows as ``hubble observe -o jsonpb`` lines, each followed by a DNS
    response for its destination when ``names`` names it (query, the address, 300 s)."""
    rows = flows.select(
        ["start", "src_ip", "dst_ip", "src_port", "dst_port", "proto", "tcp_flags"]
    ).to_pylist()
    out = []
    for i, r in enumerate(rows):
        when = _rfc3339(r["start"])
        l4_name = "TCP" if r["proto"] == 6 else "UDP"
        l4: dict[str, object] = {"source_port": r["src_port"], "destination_port": r["dst_port"]}
        if l4_name == "TCP":
            flags = r["tcp_flags"] or 0
            l4["flags"] = {
                k: True for k, bit in (("SYN", 2), ("ACK", 16), ("FIN", 1)) if flags & bit
            }
        flow = {
            "time": when,
            "uuid": f"demo-{i:08d}",
            "verdict": "FORWARDED",
            "IP": {"source": r["src_ip"], "destination": r["dst_ip"], "ipVersion": "IPv4"},
            "l4": {l4_name: l4},
            "node_name": "demo-node",
            "traffic_direction": "EGRESS",
            "is_reply": False,
        }
        out.append(json.dumps({"flow": flow, "node_name": "demo-node", "time": when}))
        name = names.get(r["dst_ip"])
        if name is not None:
            dns = {
                "time": when,
                "uuid": f"demo-dns-{i:08d}",
                "verdict": "FORWARDED",
                "IP": {"source": "10.0.0.2", "destination": r["src_ip"], "ipVersion": "IPv4"},
                "l4": {"UDP": {"source_port": 53, "destination_port": 40000}},
                "node_name": "demo-node",
                "is_reply": True,
                "l7": {"type": "RESPONSE", "dns": {"query": name + ".", "ips": [r["dst_ip"]],
                                                   "ttl": 300, "rcode": 0}},
            }  # fmt: skip
            out.append(json.dumps({"flow": dns, "node_name": "demo-node", "time": when}))
    return ("\n".join(out) + "\n").encode() if out else b""
