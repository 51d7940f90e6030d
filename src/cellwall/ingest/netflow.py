"""NetFlow v5, v9 and IPFIX from captures (pcap, pcapng) and from raw datagram files.

- A **capture** holds the UDP datagrams an exporter sent; the exporter is each datagram's
  source address. ``lineage_pos`` is the byte offset of the record in the file (of the
  datagram, for rejects of a whole datagram).
- A **raw file** (``.bin``) holds one datagram's payload, or several IPFIX or v5 messages
  one after another (they carry their own lengths; a v9 message runs to the end of the
  file). Its exporter is the ``exporter`` option, else unnamed.

Options: ``exporter`` (for raw files), ``hold_seconds`` (how long, in export time, data
waits for its template; default 60) and ``max_pending`` (how many data sets may wait;
default 4096). Data still waiting at the end of the file is rejected ``no-template``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO, ClassVar

from cellwall.ingest.base import Chunk, FlowSource, register
from cellwall.ingest.netflow_pcap import is_capture, iter_frames
from cellwall.ingest.netflow_session import EXPORT_TIME, NetflowDecoder
from cellwall.ingest.netflow_templates import TemplateCache

__all__ = ["NetflowSource", "looks_like_datagram"]


def looks_like_datagram(head: bytes) -> bool:
    """Whether bytes start like a NetFlow v5, v9 or IPFIX message."""
    if len(head) < 20:
        return False
    version = int.from_bytes(head[:2], "big")
    count_or_length = int.from_bytes(head[2:4], "big")
    if version == 5:
        return 1 <= count_or_length <= 30 and len(head) >= 24 + 48 * count_or_length
    if version == 9:
        set_id = int.from_bytes(head[20:22], "big") if len(head) >= 24 else -1
        return set_id in (0, 1) or set_id >= 256
    if version == 10:
        return 16 < count_or_length <= len(head)
    return False


@register
class NetflowSource(FlowSource):
    """NetFlow v5/v9 and IPFIX export datagrams, captured (pcap/pcapng) or raw."""

    name: ClassVar[str] = "netflow"
    title: ClassVar[str] = "NetFlow v5/v9 and IPFIX (pcap, pcapng or raw datagrams)"
    unit: ClassVar[str] = "offset"

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return is_capture(head) or looks_like_datagram(head)

    def _decoder(self, file: str) -> NetflowDecoder:
        cache = TemplateCache(
            hold_seconds=float(self.options.get("hold_seconds", 60)),
            max_pending=int(self.options.get("max_pending", 4096)),
        )
        return NetflowDecoder(file, cache=cache)

    def read(self, stream: BinaryIO, file: str) -> Iterator[Chunk]:
        decoder = self._decoder(file)
        head = stream.read(4)
        rest = _Prepend(head, stream)
        if is_capture(head):
            feed = decoder.feed
            for pos, data, source, skip in iter_frames(rest):  # type: ignore[arg-type]
                if skip is None:
                    # The export time of the newest datagram is the clock of the hold.
                    feed(data, source, pos, EXPORT_TIME)
                else:
                    decoder.skip(pos, skip, _SKIPS.get(skip))
                if decoder.ready:
                    yield decoder.take()
        else:
            data = head + stream.read()
            decoder.feed(data, self.options.get("exporter", ""), 0, EXPORT_TIME)
        yield decoder.take(final=True)


_SKIPS = {
    "ip-fragment": "a fragment of an IP datagram (fragments are not reassembled)",
    "truncated": "the capture or the UDP header ends before the datagram does",
}


class _Prepend:
    """A stream with bytes already read put back in front."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self.head = head
        self.stream = stream

    def read(self, n: int = -1) -> bytes:
        if self.head:
            out, self.head = self.head, b""
            if n < 0:
                return out + self.stream.read()
            return out + self.stream.read(max(n - len(out), 0))
        return self.stream.read(n)
