"""UDP datagrams out of pcap and pcapng captures, each with its exact byte offset.

The container formats are read directly (so that the offset of each datagram in the file
is exact and the stream is read once, in large blocks): classic pcap in either byte order
and either time resolution, and pcapng's enhanced, simple and obsolete packet blocks.
Frames may be Ethernet (with 802.1Q/802.1ad tags), BSD null/loopback, Linux cooked
(SLL, SLL2) or raw IP; IPv4 and IPv6 (with its common extension headers).

Each frame becomes a :class:`Frame`: a datagram with its source address, or the reason it
is not one (``not-udp`` is ordinary traffic in the capture; ``ip-fragment`` and
``truncated`` are export datagrams that cannot be read).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from functools import lru_cache, partial
from typing import BinaryIO, NamedTuple

__all__ = ["PCAPNG_MAGIC", "PCAP_MAGICS", "Frame", "is_capture", "iter_frames"]

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": "<",
    b"\xa1\xb2\xc3\xd4": ">",
    b"\x4d\x3c\xb2\xa1": "<",  # nanosecond resolution
    b"\xa1\xb2\x3c\x4d": ">",
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
BLOCK = 8 << 20
_IPV6_EXTENSIONS = (0, 43, 60)


class Frame(NamedTuple):
    """A UDP payload (``data``) from ``source``, or ``skip`` saying why there is none."""

    pos: int
    data: bytes = b""
    source: str = ""
    skip: str | None = None


def is_capture(head: bytes) -> bool:
    return head[:4] in PCAP_MAGICS or head[:4] == PCAPNG_MAGIC


class _Reader:
    """Exact reads from a stream, in large blocks, with the absolute offset."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.buf = b""
        self.at = 0  # offset of buf[0] in the input
        self.off = 0  # read position inside buf

    @property
    def pos(self) -> int:
        return self.at + self.off

    def fill(self, n: int) -> bool:
        """Whether ``n`` bytes are there from the read position (reading more if need be)."""
        while len(self.buf) - self.off < n:
            more = self.stream.read(max(BLOCK, n))
            if not more:
                return False
            self.at += self.off
            self.buf = self.buf[self.off :] + more
            self.off = 0
        return True

    def read(self, n: int) -> bytes | None:
        if not self.fill(n):
            return None
        out = self.buf[self.off : self.off + n]
        self.off += n
        return out


def iter_frames(stream: BinaryIO) -> Iterator[Frame]:
    """Every packet of a pcap or pcapng capture, as a datagram or a skip."""
    reader = _Reader(stream)
    magic = reader.read(4)
    if magic is None:
        return
    if magic == PCAPNG_MAGIC:
        yield from _pcapng(reader)
    else:
        yield from _pcap(reader, PCAP_MAGICS[magic])


def _pcap(reader: _Reader, order: str) -> Iterator[Frame]:
    head = reader.read(20)
    if head is None:
        return
    linktype = struct.unpack(order + "I", head[16:20])[0] & 0x0FFFFFFF
    record = struct.Struct(order + "IIII")
    while True:  # the records are walked in the reader's buffer, sliced only for the payload
        if len(reader.buf) - reader.off < 16 and not reader.fill(16):
            return
        at = reader.at + reader.off
        caplen = record.unpack_from(reader.buf, reader.off)[2]
        if len(reader.buf) - reader.off < 16 + caplen and not reader.fill(16 + caplen):
            yield Frame(at, skip="truncated")
            return
        buf, start = reader.buf, reader.off + 16
        reader.off = start + caplen
        fast = _fast(buf, start, caplen, at + 16) if linktype == 1 else None
        yield fast or _frame(buf[start : start + caplen], linktype, at + 16)


def _pcapng(reader: _Reader) -> Iterator[Frame]:
    order = "<"
    linktypes: list[int] = []
    first = True
    while True:
        at = reader.pos - (4 if first else 0)
        btype_raw = b"\x0a\x0d\x0d\x0a" if first else reader.read(4)
        first = False
        if btype_raw is None:
            return
        length_raw = reader.read(4)
        if length_raw is None:
            return
        if btype_raw == PCAPNG_MAGIC:
            bom = reader.read(4)
            if bom is None:
                return
            order = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            length = struct.unpack(order + "I", length_raw)[0]
            linktypes = []
            if reader.read(length - 12) is None:
                return
            continue
        btype, length = struct.unpack(order + "II", btype_raw + length_raw)
        if length < 12 or length % 4:
            yield Frame(at, skip="truncated")
            return
        body = reader.read(length - 8)
        if body is None:
            yield Frame(at, skip="truncated")
            return
        body = body[:-4]
        if btype == 1:
            linktypes.append(struct.unpack(order + "H", body[:2])[0])
        elif btype == 6 and len(body) >= 20:
            iface, _, _, caplen = struct.unpack(order + "IIII", body[:16])
            yield _frame(body[20 : 20 + caplen], _link(linktypes, iface), at + 28)
        elif btype == 3 and len(body) >= 4:
            yield _frame(body[4:], _link(linktypes, 0), at + 12)
        elif btype == 2 and len(body) >= 20:
            iface = struct.unpack(order + "H", body[:2])[0]
            caplen = struct.unpack(order + "I", body[12:16])[0]
            yield _frame(body[20 : 20 + caplen], _link(linktypes, iface), at + 28)


def _link(linktypes: list[int], iface: int) -> int:
    return linktypes[iface] if iface < len(linktypes) else 1


_FAST = struct.Struct(">12x2sBxH2xHxB2x4s4x4xH")  # Ethernet, IPv4 without options, UDP


@lru_cache(maxsize=1 << 16)
def _v4_name(address: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET, address)


#: :class:`Frame` from a tuple of its four fields, without NamedTuple's Python-level ``__new__``
_frame_of = partial(tuple.__new__, Frame)


def _fast(buf: bytes, start: int, size: int, pos: int) -> Frame | None:
    """The common case, Ethernet / IPv4 without options / UDP, in one unpack.

    The frame is the ``size`` bytes of ``buf`` from ``start``; only the payload is copied.
    """
    if size < 42:
        return None
    ethertype, vihl, total, frag, proto, src, udp_len = _FAST.unpack_from(buf, start)
    if ethertype != b"\x08\x00" or vihl != 0x45 or proto != 17 or frag & 0x3FFF:
        return None
    if udp_len < 8 or 34 + udp_len > min(size, 14 + total):
        return None
    frame: Frame = _frame_of(
        (pos + 42, buf[start + 42 : start + 34 + udp_len], _v4_name(src), None)
    )
    return frame


def _frame(data: bytes, linktype: int, pos: int) -> Frame:
    """Find the IP packet in a frame of this link type, then the UDP payload."""
    off: int | None
    if linktype == 1:  # Ethernet
        fast = _fast(data, 0, len(data), pos)
        if fast is not None:
            return fast
        off, ethertype = 14, data[12:14]
        while ethertype in (b"\x81\x00", b"\x88\xa8") and len(data) >= off + 4:
            ethertype = data[off + 2 : off + 4]
            off += 4
        if ethertype not in (b"\x08\x00", b"\x86\xdd"):
            return Frame(pos, skip="not-udp")
    elif linktype in (0, 108):  # BSD null / OpenBSD loop
        off = 4
    elif linktype in (12, 14, 101, 228, 229):  # raw IP
        off = 0
    elif linktype == 113:  # Linux cooked
        off = 16
    elif linktype == 276:  # Linux cooked v2
        off = 20
    else:
        return Frame(pos, skip="not-udp")
    return _ip(data, off, pos)


def _ip(data: bytes, off: int, pos: int) -> Frame:
    if len(data) < off + 20:
        return Frame(pos, skip="not-udp")
    version = data[off] >> 4
    if version == 4:
        ihl = (data[off] & 0x0F) * 4
        total = int.from_bytes(data[off + 2 : off + 4], "big")
        if int.from_bytes(data[off + 6 : off + 8], "big") & 0x3FFF:
            return (
                Frame(pos + off, skip="ip-fragment")
                if data[off + 9] == 17
                else Frame(pos, skip="not-udp")
            )
        if data[off + 9] != 17:
            return Frame(pos, skip="not-udp")
        source = socket.inet_ntop(socket.AF_INET, data[off + 12 : off + 16])
        return _udp(data, off + ihl, min(len(data), off + total), pos, source)
    if version == 6 and len(data) >= off + 40:
        nxt = data[off + 6]
        end = min(len(data), off + 40 + int.from_bytes(data[off + 4 : off + 6], "big"))
        source = socket.inet_ntop(socket.AF_INET6, data[off + 8 : off + 24])
        at = off + 40
        while nxt in _IPV6_EXTENSIONS and at + 2 <= end:
            nxt, at = data[at], at + 8 + data[at + 1] * 8
        if nxt == 44:
            return Frame(pos + off, skip="ip-fragment")
        if nxt != 17:
            return Frame(pos, skip="not-udp")
        return _udp(data, at, end, pos, source)
    return Frame(pos, skip="not-udp")


def _udp(data: bytes, off: int, end: int, pos: int, source: str) -> Frame:
    if end < off + 8:
        return Frame(pos + off, skip="truncated")
    length = int.from_bytes(data[off + 4 : off + 6], "big")
    stop = off + length
    if length < 8 or stop > end:
        return Frame(pos + off, skip="truncated")
    return Frame(pos + off + 8, data[off + 8 : stop], source)
