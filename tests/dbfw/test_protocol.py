"""The wire-protocol codec: framing, the messages it reads, and fuzzing of both."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellwall.dbfw import protocol as p
from cellwall.dbfw.protocol import Framer, ProtocolError


def msg(t: bytes, body: bytes) -> bytes:
    return t + struct.pack("!I", len(body) + 4) + body


def client_framer(limit: int = 1024) -> Framer:
    return Framer(p.FRONTEND_TYPES, b"QP", limit, "client")


def test_inspected_messages_come_whole_and_others_pass_through() -> None:
    stream = msg(b"Q", b"SELECT 1\0") + msg(b"B", b"x" * 10) + msg(b"S", b"")
    pieces = client_framer().feed(stream)
    assert [(t, payload) for t, payload, _ in pieces] == [
        (ord("Q"), b"SELECT 1\0"),
        (ord("B"), None),
        (ord("S"), None),
    ]
    assert b"".join(raw for *_, raw in pieces) == stream


def test_split_at_every_byte_gives_the_same_messages() -> None:
    stream = msg(b"P", b"s1\0SELECT $1\0\0\x01\0\0\0\x17") + msg(b"d", b"y" * 300)
    f = client_framer()
    pieces = [piece for i in range(len(stream)) for piece in f.feed(stream[i : i + 1])]
    assert b"".join(raw for *_, raw in pieces) == stream
    body = b"s1\0SELECT $1\0\0\x01\0\0\0\x17"
    assert [payload for _, payload, _ in pieces if payload is not None] == [body]


def test_a_passed_through_message_is_not_buffered_whole() -> None:
    f = client_framer(limit=16)
    big = msg(b"d", b"z" * 100_000)
    first = f.feed(big[:1000])
    assert f.buffered == 0 and b"".join(r for *_, r in first) == big[:1000]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"Z\0\0\0\x05I", "unknown client message"),
        (b"Q\0\0\0\x02", "bad length"),
        (msg(b"Q", b"x" * 2000), "over the limit"),
    ],
)
def test_broken_framing_is_a_protocol_error(data: bytes, why: str) -> None:
    with pytest.raises(ProtocolError):
        client_framer().feed(data)


def test_query_and_parse_bodies_are_checked() -> None:
    assert p.parse_query_message(b"SELECT 1\0") == "SELECT 1"
    assert p.parse_parse_message(b"s\0SELECT $1\0\0\x01\0\0\0\x17") == ("s", "SELECT $1")
    for bad in (b"SELECT 1", b"SELECT 1\0junk"):
        with pytest.raises(ProtocolError):
            p.parse_query_message(bad)
    with pytest.raises(ProtocolError):
        p.parse_parse_message(b"s\0SELECT $1\0\0\x02\0\0\0\x17")


def test_startup_packet_and_requests() -> None:
    body = struct.pack("!I", p.PROTOCOL_3) + b"user\0bob\0database\0shop\0\0"
    raw = struct.pack("!I", len(body) + 4) + body
    sp = p.parse_startup(raw)
    assert sp.is_protocol_3 and sp.params == {"user": "bob", "database": "shop"}
    assert p.parse_startup(struct.pack("!II", 8, p.SSL_REQUEST)).code == p.SSL_REQUEST
    cancel = struct.pack("!IIII", 16, p.CANCEL_REQUEST, 42, 7)
    assert p.parse_startup(cancel).code == p.CANCEL_REQUEST
    for bad in (raw[:-1], struct.pack("!II", 8, 2 << 16), raw.replace(b"user", b"usex")):
        with pytest.raises(ProtocolError):
            p.parse_startup(struct.pack("!I", len(bad)) + bad[4:])


def test_error_response_round_trip_and_sasl_filtering() -> None:
    e = p.error_response("42501", "cellwall blocked", detail="d", hint="h")
    fields = p.parse_error_fields(e[5:])
    assert (fields.sqlstate, fields.message, fields.fields["H"]) == (
        "42501",
        "cellwall blocked",
        "h",
    )
    sasl = p.sasl_mechanisms_message(["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"])
    assert p.parse_sasl_mechanisms(sasl[5:]) == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
    assert p.ready_for_query(ord("T")) == b"Z\0\0\0\x05T"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(1, 64), max_size=20))
def test_fuzz_framer_raises_only_protocol_errors_and_loses_nothing(
    data: bytes, cuts: list[int]
) -> None:
    for side, known, inspect in (
        ("client", p.FRONTEND_TYPES, b"QP"),
        ("server", p.BACKEND_TYPES, b"ZE"),
    ):
        f = Framer(known, inspect, 256, side)
        got = bytearray()
        pos = 0
        try:
            for n in [*cuts, len(data)]:
                for t, payload, raw in f.feed(data[pos : pos + n]):
                    got += raw
                    if payload is not None and t == ord("Q"):
                        p.parse_query_message(payload)
                    elif payload is not None and t == ord("P"):
                        p.parse_parse_message(payload)
                    elif payload is not None and t == ord("E"):
                        p.parse_error_fields(payload)
                pos += n
        except ProtocolError:
            continue
        assert bytes(got) + data[len(got) :] == data
        assert len(got) + f.buffered == len(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_startup_and_auth_parsers(data: bytes) -> None:
    for parse in (p.parse_startup, p.parse_sasl_mechanisms, p.parse_error_fields):
        with contextlib.suppress(ProtocolError):
            parse(data)
