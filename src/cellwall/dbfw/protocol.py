"""The PostgreSQL wire protocol v3: framing, the few messages the proxy reads, and builders.

The proxy does not decode most traffic. :class:`Framer` cuts a byte stream into messages;
messages of the *inspected* types are handed over whole (up to ``limit`` bytes), every other
message is passed through in pieces as its bytes arrive, so a 500 MB ``DataRow`` costs no
more memory than a small one. A length, a type byte or a body that breaks the protocol raises
:class:`ProtocolError`; the session then closes that one connection.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from cellwall.errors import InputError

__all__ = [
    "BACKEND_TYPES",
    "CANCEL_REQUEST",
    "FRONTEND_TYPES",
    "GSSENC_REQUEST",
    "PROTOCOL_3",
    "SSL_REQUEST",
    "ErrorFields",
    "Framer",
    "ProtocolError",
    "StartupPacket",
    "cstring",
    "error_response",
    "parse_error_fields",
    "parse_parse_message",
    "parse_query_message",
    "parse_sasl_mechanisms",
    "parse_startup",
    "ready_for_query",
    "sasl_mechanisms_message",
    "walk_backend",
    "walk_frontend",
]

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
PROTOCOL_3 = 3 << 16

#: The largest message the protocol allows (PostgreSQL's own limit is 1 GB).
MAX_ANY_MESSAGE = 1 << 30
#: A startup packet is small; PostgreSQL refuses those over 10 000 bytes.
MAX_STARTUP = 10_000

FRONTEND_TYPES = frozenset(b"QPBDESHCXdcfFp")
BACKEND_TYPES = frozenset(b"123ACDEGHIKNRSTVWZcdnstv")

_LEN = struct.Struct("!I")
_LEN_CODE = struct.Struct("!II")


class ProtocolError(InputError):
    """A message that breaks the PostgreSQL protocol; the connection that sent it is closed."""


def _table(types: frozenset[int]) -> bytes:
    return bytes(1 if i in types else 0 for i in range(256))


class Framer:
    """Cuts a stream into ``(type, payload, raw)`` pieces.

    ``payload`` is the message body for inspected types and ``None`` otherwise. ``raw`` is the
    bytes to forward unchanged: a whole message, or a piece of a passed-through one
    (continuation pieces have type ``-1``).
    """

    __slots__ = ("_buf", "_known", "_need", "inspect", "intact", "limit", "side", "skip")

    def __init__(self, known: frozenset[int], inspect: bytes, limit: int, side: str) -> None:
        self._known = _table(known)
        self.inspect = _table(frozenset(inspect))
        self.limit = limit
        self.side = side
        self._buf = bytearray()
        self._need = 0
        #: Bytes still to come of a passed-through message that the last chunk began.
        self.skip = 0
        #: Whether the pieces of the last ``feed`` were exactly its input, in order.
        self.intact = True

    def set_inspect(self, types: bytes) -> None:
        self.inspect = _table(frozenset(types))

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def idle(self) -> bool:
        """Whether no part of a message is held back (the next chunk starts afresh, after
        :attr:`skip` bytes): then a caller may walk a chunk itself and set :attr:`skip`."""
        return not self._buf

    def feed(self, data: bytes) -> list[tuple[int, bytes | None, bytes]]:
        out: list[tuple[int, bytes | None, bytes]] = []
        self.intact = not self._buf
        if self._buf:
            self._buf += data
            if len(self._buf) < self._need:
                return out
            data = bytes(self._buf)
            self._buf.clear()
            self._need = 0
        pos = 0
        n = len(data)
        if self.skip:
            k = min(self.skip, n)
            out.append((-1, None, data[:k]))
            self.skip -= k
            pos = k
        known, inspect, limit = self._known, self.inspect, self.limit
        while pos < n:
            if n - pos < 5:
                self._keep(data, pos, 5)
                break
            t = data[pos]
            length = _LEN.unpack_from(data, pos + 1)[0]
            if not known[t]:
                raise ProtocolError(f"unknown {self.side} message type {t!r}")
            if length < 4 or length > MAX_ANY_MESSAGE:
                raise ProtocolError(f"{self.side} message {chr(t)!r} has bad length {length}")
            end = pos + 1 + length
            if inspect[t]:
                if length - 4 > limit:
                    raise ProtocolError(
                        f"{self.side} message {chr(t)!r} of {length - 4} bytes is over "
                        f"the limit of {limit}"
                    )
                if end > n:
                    self._keep(data, pos, end - pos)
                    break
                out.append((t, data[pos + 5 : end], data[pos:end]))
            elif end > n:
                out.append((t, None, data[pos:]))
                self.skip = end - n
            else:
                out.append((t, None, data[pos:end]))
            pos = end
        return out

    def _keep(self, data: bytes, pos: int, need: int) -> None:
        self.intact = False
        self._buf += data[pos:]
        self._need = need


def _kinds(table: dict[bytes, int]) -> bytes:
    kinds = bytearray(256)
    for types, kind in table.items():
        for t in types:
            kinds[t] = kind
    return bytes(kinds)


# The fast walks below take a chunk that holds only messages the proxy passes through, and
# give up (``None``) on anything else, changing nothing: the caller then hands the chunk to
# its :class:`Framer`, which buffers, inspects, or raises :class:`ProtocolError`.

#: Client message kinds: 0 not walked (Query, Parse, unknown), 1 other, 2 Sync/FunctionCall,
#: 3 copy (CopyData, CopyDone and CopyFail leave the sync state alone).
_FRONTEND_KIND = _kinds({b"BDEHCXp": 1, b"SF": 2, b"dcf": 3})
#: Server message kinds: 0 not walked (ReadyForQuery, ErrorResponse, unknown), 1 other.
_BACKEND_KIND = _kinds({bytes(BACKEND_TYPES - frozenset(b"ZE")): 1})
_ERROR_KIND = _kinds({bytes(BACKEND_TYPES - frozenset(b"Z")): 1})


def walk_frontend(data: bytes, pos: int) -> tuple[int, int, int] | None:
    """Walk client messages from ``pos`` to the end of ``data``.

    Returns ``(syncs, unsynced, skip)``: the number of Sync and FunctionCall messages; 1 when
    the last message (not counting copy data) began an unsynced extended-query batch, 0 when
    it was a Sync, -1 when there was none; and the bytes still to come of the last message.
    ``None`` when the chunk holds a Query or a Parse, or anything broken or incomplete.
    """
    kinds, n = _FRONTEND_KIND, len(data)
    syncs, unsynced = 0, -1
    unpack = _LEN.unpack_from
    while pos < n:
        if n - pos < 5:
            return None
        kind = kinds[data[pos]]
        length = unpack(data, pos + 1)[0]
        if kind == 0 or length < 4 or length > MAX_ANY_MESSAGE:
            return None
        if kind == 2:
            syncs += 1
            unsynced = 0
        elif kind == 1:
            unsynced = 1
        pos += 1 + length
    return syncs, unsynced, pos - n


def walk_backend(data: bytes, pos: int, *, errors: bool) -> tuple[int, int, int] | None:
    """Walk server messages from ``pos`` to the end of ``data``.

    Returns ``(ready, status, skip)``: the number of ReadyForQuery messages, the status byte
    of the last (-1 when none), and the bytes still to come of the last message. ``None``
    when a ReadyForQuery is cut off or malformed, when anything is broken or incomplete, and,
    unless ``errors`` (pass ErrorResponses through), at an ErrorResponse.
    """
    kinds, n = _ERROR_KIND if errors else _BACKEND_KIND, len(data)
    ready, status = 0, -1
    unpack = _LEN.unpack_from
    while pos < n:
        if n - pos < 5:
            return None
        t = data[pos]
        length = unpack(data, pos + 1)[0]
        if t == 90:  # ReadyForQuery: its status byte must be in this chunk
            if length != 5 or pos + 6 > n:
                return None
            ready += 1
            status = data[pos + 5]
        elif kinds[t] == 0 or length < 4 or length > MAX_ANY_MESSAGE:
            return None
        pos += 1 + length
    return ready, status, pos - n


def cstring(data: bytes, pos: int) -> tuple[str, int]:
    """The NUL-terminated UTF-8 string at ``pos`` and the position after its NUL."""
    end = data.find(b"\0", pos)
    if end < 0:
        raise ProtocolError("a string is not NUL-terminated")
    try:
        return data[pos:end].decode("utf-8"), end + 1
    except UnicodeDecodeError:
        raise ProtocolError("a string is not valid UTF-8") from None


@dataclass(frozen=True, slots=True)
class StartupPacket:
    """The first message of a connection: its code, and the parameters of a 3.x startup."""

    code: int
    params: Mapping[str, str]
    raw: bytes

    @property
    def is_protocol_3(self) -> bool:
        return self.code >> 16 == 3


def parse_startup(raw: bytes) -> StartupPacket:
    """Read a whole length-prefixed startup packet (SSLRequest, CancelRequest or StartupMessage)."""
    if len(raw) < 8:
        raise ProtocolError("startup packet is too short")
    length, code = _LEN_CODE.unpack_from(raw, 0)
    if length != len(raw):
        raise ProtocolError("startup packet length does not match")
    if code in (SSL_REQUEST, GSSENC_REQUEST):
        if length != 8:
            raise ProtocolError("SSLRequest/GSSENCRequest must be 8 bytes")
        return StartupPacket(code, {}, raw)
    if code == CANCEL_REQUEST:
        if length < 16 or length > 16 + 256:
            raise ProtocolError("CancelRequest has a bad length")
        return StartupPacket(code, {}, raw)
    if code >> 16 != 3:
        raise ProtocolError(f"unsupported protocol version {code >> 16}.{code & 0xFFFF}")
    params: dict[str, str] = {}
    pos = 8
    while True:
        if pos >= length:
            raise ProtocolError("startup parameters are not terminated")
        if raw[pos] == 0:
            if pos != length - 1:
                raise ProtocolError("bytes after the startup parameters")
            break
        key, pos = cstring(raw, pos)
        value, pos = cstring(raw, pos)
        params[key] = value
    if "user" not in params:
        raise ProtocolError("the startup packet names no user")
    return StartupPacket(code, params, raw)


def startup_length(header: bytes) -> int:
    """The whole length of a startup packet from its first four bytes, checked."""
    length = _LEN.unpack_from(header, 0)[0]
    if length < 8 or length > MAX_STARTUP:
        raise ProtocolError(f"startup packet length {length} is out of range")
    return int(length)


def parse_query_message(payload: bytes) -> str:
    """The SQL text of a simple-query ``Q`` message."""
    text, end = cstring(payload, 0)
    if end != len(payload):
        raise ProtocolError("bytes after the query string")
    return text


def parse_parse_message(payload: bytes) -> tuple[str, str]:
    """``(statement name, SQL text)`` of an extended-protocol ``P`` message."""
    name, pos = cstring(payload, 0)
    text, pos = cstring(payload, pos)
    if len(payload) - pos < 2:
        raise ProtocolError("Parse message lacks its parameter count")
    count = struct.unpack_from("!H", payload, pos)[0]
    if len(payload) != pos + 2 + 4 * count:
        raise ProtocolError("Parse message parameter types do not match their count")
    return name, text


def parse_message(name: str, text: str) -> bytes:
    """A ``P`` message with no parameter types."""
    body = name.encode() + b"\0" + text.encode() + b"\0\0\0"
    return b"P" + _LEN.pack(len(body) + 4) + body


def query_message(text: str) -> bytes:
    body = text.encode() + b"\0"
    return b"Q" + _LEN.pack(len(body) + 4) + body


@dataclass(frozen=True, slots=True)
class ErrorFields:
    """The fields of an ``ErrorResponse`` or ``NoticeResponse`` by their one-letter codes."""

    fields: Mapping[str, str]

    @property
    def sqlstate(self) -> str:
        return self.fields.get("C", "")

    @property
    def message(self) -> str:
        return self.fields.get("M", "")


def parse_error_fields(payload: bytes) -> ErrorFields:
    fields: dict[str, str] = {}
    pos = 0
    while True:
        if pos >= len(payload):
            raise ProtocolError("error fields are not terminated")
        code = payload[pos]
        if code == 0:
            break
        value, pos = cstring(payload, pos + 1)
        fields[chr(code)] = value
    return ErrorFields(fields)


def error_response(
    sqlstate: str,
    message: str,
    *,
    severity: str = "ERROR",
    detail: str = "",
    hint: str = "",
) -> bytes:
    """A whole ``ErrorResponse`` message."""
    parts = [("S", severity), ("V", severity), ("C", sqlstate), ("M", message)]
    if detail:
        parts.append(("D", detail))
    if hint:
        parts.append(("H", hint))
    body = b"".join(k.encode() + v.replace("\0", " ").encode() + b"\0" for k, v in parts) + b"\0"
    return b"E" + _LEN.pack(len(body) + 4) + body


def ready_for_query(status: int) -> bytes:
    return b"Z\0\0\0\x05" + bytes([status])


AUTH_SASL = 10


def parse_sasl_mechanisms(payload: bytes) -> list[str]:
    """The mechanisms of an ``AuthenticationSASL`` body (after its 4-byte code)."""
    out: list[str] = []
    pos = 4
    while True:
        if pos >= len(payload):
            raise ProtocolError("SASL mechanism list is not terminated")
        if payload[pos] == 0:
            if pos != len(payload) - 1:
                raise ProtocolError("bytes after the SASL mechanism list")
            return out
        name, pos = cstring(payload, pos)
        out.append(name)


def sasl_mechanisms_message(mechanisms: list[str]) -> bytes:
    body = _LEN.pack(AUTH_SASL) + b"".join(m.encode() + b"\0" for m in mechanisms) + b"\0"
    return b"R" + _LEN.pack(len(body) + 4) + body


def auth_code(payload: bytes) -> int:
    if len(payload) < 4:
        raise ProtocolError("authentication message is too short")
    return int(_LEN.unpack_from(payload, 0)[0])
