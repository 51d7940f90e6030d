"""NetFlow v5: a fixed header and fixed 48-byte records, read as one more template.

The v5 record is described with the same information elements as v9, so that one decoder
serves all three versions: ``srcaddr`` is 8, ``dPkts`` is 2, ``First`` is 22 and so on.
The header's ``sampling_interval`` keeps the mode in its two top bits and the interval in
the other 14; an interval of 0 means unsampled.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cellwall.ingest.netflow_templates import Field, Template

__all__ = ["HEADER", "RECORD_LENGTH", "V5_TEMPLATE", "V5Header", "parse_header"]

HEADER = struct.Struct(">HHIIIIBBH")
RECORD_LENGTH = 48
PAD = 210  # IANA paddingOctets
V5_TEMPLATE = Template(
    tid=5,
    fields=tuple(
        Field(ie, length)
        for ie, length in (
            (8, 4),  # srcaddr
            (12, 4),  # dstaddr
            (15, 4),  # nexthop
            (10, 2),  # input
            (14, 2),  # output
            (2, 4),  # dPkts
            (1, 4),  # dOctets
            (22, 4),  # First
            (21, 4),  # Last
            (7, 2),  # srcport
            (11, 2),  # dstport
            (PAD, 1),
            (6, 1),  # tcp_flags
            (4, 1),  # prot
            (5, 1),  # tos
            (16, 2),  # src_as
            (17, 2),  # dst_as
            (9, 1),  # src_mask
            (13, 1),  # dst_mask
            (PAD, 2),
        )
    ),
)


@dataclass(frozen=True, slots=True)
class V5Header:
    count: int
    uptime_ms: int
    export_ms: int
    engine: int
    sampling: int


def parse_header(data: bytes | memoryview) -> V5Header:
    """The header of a v5 datagram (the caller has checked that 24 bytes are there)."""
    _, count, uptime, secs, nsecs, _, engine_type, engine_id, sampling = HEADER.unpack_from(data)
    return V5Header(
        count=count,
        uptime_ms=uptime,
        export_ms=secs * 1000 + nsecs // 1_000_000,
        engine=(engine_type << 8) | engine_id,
        sampling=sampling & 0x3FFF,
    )
