"""Hypothesis against the NetFlow decoders: damaged datagrams are counted, never a crash."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellwall.ingest.netflow_session import EXPORT_TIME, NetflowDecoder
from tests.ingest.test_netflow_templates import (
    TEMPLATE,
    data_set,
    ipfix,
    record,
    template_set,
    v9,
)

BIN = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "flows" / "netflow" / "bin"
GOOD = (BIN / "PACKET_IPFIX_TEMPLATE.bin").read_bytes()  # its templates and its data
V5 = (BIN / "PACKET_V5.bin").read_bytes()
V9 = (BIN / "PACKET_V9_TEMPLATE.bin").read_bytes()
REASONS = {
    "truncated", "bad-length", "bad-version", "bad-template", "no-template", "bad-time",
    "missing-field",
}  # fmt: skip
FUZZ = settings(
    max_examples=int(os.environ.get("NETFLOW_FUZZ", "150")),  # more: NETFLOW_FUZZ=3000
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def tuples(decoder: NetflowDecoder, datagrams: list[bytes]) -> list[tuple[object, ...]]:
    pos = 0
    for d in datagrams:
        decoder.feed(d, "198.51.100.1", pos)
        pos += len(d)
    chunk = decoder.take(final=True)
    assert set(chunk.rejects.counts()) <= REASONS
    cols = ["lineage_pos", "src_ip", "dst_ip", "src_port", "dst_port", "proto"]
    return sorted(tuple(r.values()) for r in chunk.flows.select(cols).to_pylist())


def baseline(datagrams: list[bytes], skip: int) -> list[tuple[object, ...]]:
    """The flows of the good datagrams alone, at their offsets in the fuzzed sequence."""
    decoder = NetflowDecoder("f")
    pos, out = 0, []
    for i, d in enumerate(datagrams):
        if i != skip:
            decoder.feed(d, "198.51.100.1", pos)
        pos += len(d)
    chunk = decoder.take(final=True)
    cols = ["lineage_pos", "src_ip", "dst_ip", "src_port", "dst_port", "proto"]
    out = sorted(tuple(r.values()) for r in chunk.flows.select(cols).to_pylist())
    return out


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    base = bytearray(draw(st.sampled_from([GOOD, V5, V9])))
    for _ in range(draw(st.integers(0, 6))):
        i = draw(st.integers(0, len(base) - 1))
        base[i] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(base)))
    return bytes(base[:cut]) if draw(st.booleans()) else bytes(base)


@FUZZ
@given(damaged())
def test_a_damaged_datagram_never_costs_its_neighbours(bad: bytes) -> None:
    datagrams = [GOOD, bad, GOOD, V5]
    got = tuples(NetflowDecoder("f"), datagrams)
    want = baseline(datagrams, skip=1)
    good_ranges = [(0, len(GOOD)), (len(GOOD) + len(bad), 2 * len(GOOD) + len(bad) + len(V5))]
    kept = [t for t in got if any(a <= int(t[0]) < b for a, b in good_ranges)]  # type: ignore[call-overload]
    assert kept == want and len(want) == 19 + 19 + 3


fields = st.lists(
    st.tuples(st.integers(0, 400), st.sampled_from([0, 1, 2, 3, 4, 5, 8, 16, 0xFFFF])),
    min_size=0,
    max_size=12,
)


@FUZZ
@given(fields, st.binary(max_size=300), st.integers(0, 0xFFFF))
def test_any_template_and_any_data_end_in_flows_or_counted_rejects(
    spec: list[tuple[int, int]], body: bytes, tid: int
) -> None:
    datagram = ipfix(template_set(tid=tid, fields=spec), data_set([body], tid=max(tid, 256)))
    decoder = NetflowDecoder("f")
    decoder.feed(datagram, "x", 0)
    decoder.feed(GOOD, "x", len(datagram))
    chunk = decoder.take(final=True)
    assert set(chunk.rejects.counts()) <= REASONS
    assert chunk.flows.num_rows >= 19


@FUZZ
@given(st.binary(min_size=0, max_size=200), st.sampled_from([5, 9, 10, 1, 7, 0xFFFF]))
def test_random_bytes_behind_any_version(tail: bytes, version: int) -> None:
    decoder = NetflowDecoder("f")
    decoder.feed(struct.pack(">H", version) + tail, "x", 0)
    decoder.feed(V5, "y", 300)
    chunk = decoder.take(final=True)
    assert set(chunk.rejects.counts()) <= REASONS
    assert chunk.flows.num_rows >= 3


def _chunk_of(datagrams: list[bytes], short: bool) -> tuple[object, ...]:
    """Everything a decoder hands out for the datagrams: its chunk, counters and stats."""
    decoder = NetflowDecoder("f")
    if not short:  # the long way only: every message through its header, set by set
        decoder._one_data_set = lambda *args: False  # type: ignore[method-assign]
    pos = 0
    for d in datagrams:
        decoder.feed(d, "198.51.100.1", pos, EXPORT_TIME)
        pos += len(d)
    chunk = decoder.take(final=True)
    stats = decoder.stats.to_dict(decoder.cache.waiting)
    return chunk.flows.to_pylist(), chunk.rejects.table().to_pylist(), dict(chunk.ignored), stats


@st.composite
def data_only(draw: st.DrawFn) -> bytes:
    """A datagram of one data set (the short way's case), maybe damaged, maybe of v9."""
    records = [record(sport=draw(st.integers(0, 65535))) for _ in range(draw(st.integers(0, 4)))]
    pad = b"\0" * draw(st.sampled_from([0, 0, 3]))
    body = data_set(records) + pad
    base = bytearray(
        ipfix(body, domain=draw(st.sampled_from([7, 8])))
        if draw(st.booleans())
        else v9(data_set(records, tid=TEMPLATE) + pad, domain=draw(st.sampled_from([0, 1])))
    )
    for _ in range(draw(st.integers(0, 2))):
        i = draw(st.integers(0, len(base) - 1))
        base[i] = draw(st.integers(0, 255))
    return bytes(base[: draw(st.integers(0, len(base)))]) if draw(st.booleans()) else bytes(base)


@FUZZ
@given(st.lists(data_only(), max_size=8), st.integers(0, 8))
def test_the_short_way_for_one_data_set_gives_what_the_long_way_does(
    datagrams: list[bytes], at: int
) -> None:
    """Templates (v9 and IPFIX, two domains) arrive among data-only datagrams, some damaged:
    the short way for a datagram of one data set is the long way, made short."""
    templates = [
        ipfix(template_set(), domain=7),
        v9(template_set(set_id=0), domain=0),
    ]
    stream = datagrams[:at] + templates + datagrams[at:]
    assert _chunk_of(stream, short=True) == _chunk_of(stream, short=False)
