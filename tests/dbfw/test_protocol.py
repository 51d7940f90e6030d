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


def _framer_view(
    f: Framer, chunk: bytes, side: str
) -> tuple[int, int, int, list[tuple[int, bytes | None, bytes]]]:
    """What a session learns from a chunk through the Framer: syncs (client) or
    ReadyForQuery count (server), the last unsynced flag or status, and the skip after it."""
    pieces = f.feed(chunk)
    count, last = 0, -1
    for t, payload, _ in pieces:
        if side == "client" and t in (ord("S"), ord("F")):
            count, last = count + 1, 0
        elif side == "client" and t > 0 and t not in b"dcf":
            last = 1
        elif side == "server" and t == ord("Z"):
            assert payload is not None
            count, last = count + 1, payload[0]
    return count, last, f.skip, pieces


def test_walks_agree_with_the_framer_on_a_typical_exchange() -> None:
    bind = msg(b"B", b"\0P0_1\0\0\0\0\x01\0\0\0\x0512345\0\0")
    request = bind + msg(b"D", b"P\0") + msg(b"E", b"\0\0\0\0\0") + msg(b"S", b"")
    assert p.walk_frontend(request, 0) == (1, 0, 0)
    assert p.walk_frontend(request[:-5], 0) == (0, 1, 0)
    reply = msg(b"2", b"") + msg(b"D", b"\0\x01\0\0\0\x010") + msg(b"C", b"SELECT 1\0")
    assert p.walk_backend(reply + msg(b"Z", b"T"), 0, errors=True) == (1, ord("T"), 0)
    # a DataRow that ends in what looks like a ReadyForQuery is still a DataRow
    fake = msg(b"D", b"\0\x01\0\0\0\x06Z\0\0\0\x05E")
    assert p.walk_backend(fake, 0, errors=True) == (0, -1, 0)
    # the first message of a chunk that continues past it: the rest is skipped next time
    assert p.walk_backend(reply + msg(b"D", b"x" * 100)[:20], 0, errors=True) == (0, -1, 85)


@pytest.mark.parametrize(
    ("side", "chunk", "why"),
    [
        ("client", msg(b"Q", b"SELECT 1\0"), "a Query is classified"),
        ("client", msg(b"S", b"") + msg(b"P", b"\0SELECT 1\0\0\0"), "a Parse is classified"),
        ("client", msg(b"S", b"")[:3], "an incomplete header"),
        ("client", b"\x07\0\0\0\x04", "an unknown type"),
        ("client", b"B\0\0\0\x02", "a bad length"),
        ("server", msg(b"Z", b"I")[:5], "a ReadyForQuery split from its status"),
        ("server", b"Z\0\0\0\x06II", "a ReadyForQuery of the wrong length"),
        ("server", msg(b"E", b"Mx\0\0"), "an ErrorResponse while one may be rewritten"),
    ],
)
def test_walks_leave_everything_else_to_the_framer(side: str, chunk: bytes, why: str) -> None:
    if side == "client":
        assert p.walk_frontend(chunk, 0) is None, why
    else:
        assert p.walk_backend(chunk, 0, errors=False) is None, why


_CLIENT_MSGS = st.sampled_from(
    [
        msg(b"B", b"\0s\0\0\0\0\0\0\0"),
        msg(b"E", b"\0\0\0\0\0"),
        msg(b"S", b""),
        msg(b"H", b""),
        msg(b"d", b"row\n"),
        msg(b"c", b""),
        msg(b"Q", b"SELECT 1\0"),
        msg(b"P", b"\0SELECT 1\0\0\0"),
        msg(b"d", b"z" * 300),
    ]
)
_SERVER_MSGS = st.sampled_from(
    [
        msg(b"2", b""),
        msg(b"D", b"\0\x01\0\0\0\x06Z\0\0\0\x05E"),
        msg(b"C", b"SELECT 1\0"),
        msg(b"Z", b"I"),
        msg(b"Z", b"T"),
        msg(b"E", b"SERROR\0Mboom\0\0"),
        msg(b"D", b"y" * 300),
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["client", "server", "server-errors"]),
    st.lists(_CLIENT_MSGS, max_size=12),
    st.lists(_SERVER_MSGS, max_size=12),
    st.lists(st.integers(1, 400), max_size=12),
)
def test_fuzz_walks_agree_with_the_framer(
    side: str, cmsgs: list[bytes], smsgs: list[bytes], cuts: list[int]
) -> None:
    """Cut a stream anywhere: where a walk answers, it says what the Framer would, and
    leaves it in the same state (so the session may use either, chunk by chunk). A walk that
    passes ErrorResponses through agrees with a Framer that does not inspect them."""
    client = side == "client"
    errors = side == "server-errors"
    stream = b"".join(cmsgs if client else smsgs)
    known, inspect = (p.FRONTEND_TYPES, b"QP") if client else (p.BACKEND_TYPES, b"ZE")
    f = Framer(known, b"Z" if errors else inspect, 1024, side)
    pos = 0
    for n in [*cuts, len(stream)]:
        chunk = stream[pos : pos + n]
        pos += n
        walked = None
        if f.idle and f.skip < len(chunk):  # as the session does
            walked = (
                p.walk_frontend(chunk, f.skip)
                if client
                else p.walk_backend(chunk, f.skip, errors=errors)
            )
        count, last, skip, pieces = _framer_view(f, chunk, "client" if client else "server")
        if walked is not None:
            assert walked == (count, last, skip)
            inspected = {t for t, payload, _ in pieces if payload is not None}
            assert inspected <= (set() if client else {ord("Z")})
