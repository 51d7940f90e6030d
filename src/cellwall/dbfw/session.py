"""One client connection: TLS and startup negotiation, authentication relay, then the relay.

The startup phase is a coroutine that reads whole messages. After the server's first
``ReadyForQuery`` the session switches to callbacks: each chunk from either side is cut by a
:class:`~cellwall.dbfw.protocol.Framer`, only ``Query``/``Parse`` (client) and
``ReadyForQuery``/``ErrorResponse`` (server) are decoded, and the chunk is written on at once.
Most chunks take a faster path to the same result: when a chunk holds only whole messages that
need no decoding (Bind/Describe/Execute/Sync from a client; rows, completions and a whole
``ReadyForQuery`` from the server, and errors while no block is pending), it is walked header
to header (:func:`~cellwall.dbfw.protocol.walk_frontend`, ``walk_backend``) and written on as
it came, in one write; anything else, a ``Query`` or ``Parse`` above all, takes the Framer.
Flow control pauses the reading side while the other side's write buffer is full, so the
memory of a connection stays bounded.

Blocking (enforce mode). A blocked ``Query`` or ``Parse`` is replaced by a statement that
makes the *server* fail, ``SELECT "cw_blocked_<alert id>"``: the server raises the error,
aborts the transaction if one is open, skips to the next ``Sync``, and so client and server
agree on the transaction state. The session rewrites that one error into SQLSTATE 42501
naming cellwall and the alert. Only in a failed transaction with nothing in flight, where the
server could not change state anyway, does the session answer the client itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from cellwall.dbfw import protocol as p
from cellwall.dbfw.identity import ClientIdentity
from cellwall.dbfw.protocol import ProtocolError

if TYPE_CHECKING:
    from cellwall.dbfw.proxy import DbProxy

__all__ = ["Session", "SessionEnded", "Side"]

_TERMINATE = b"X\0\0\0\x04"
_SSL_REQUEST = b"\0\0\0\x08\x04\xd2\x16\x2f"
_AUTH_LIMIT = 1 << 16


class SessionEnded(Exception):
    """The session is over (a peer left, or authentication failed); not an error."""


class Side(asyncio.Protocol):
    """One leg of a session (client or server): buffers bytes while the session reads
    messages, then hands every chunk to ``on_data``."""

    def __init__(
        self, name: str, max_buffer: int, on_made: Callable[[Side], None] | None = None
    ) -> None:
        self.name = name
        self.on_made = on_made
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.on_data: Callable[[bytes], None] | None = None
        self.on_lost: Callable[[Side], None] | None = None
        self.peer: Side | None = None
        self.closed = False
        self.tls = False
        self.max_buffer = max_buffer
        self._waiter: asyncio.Future[None] | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=1 << 18)
        if self.on_made is not None:
            self.on_made(self)

    def data_received(self, data: bytes) -> None:
        if self.on_data is not None:
            self.on_data(data)
            return
        self.buf += data
        if len(self.buf) > self.max_buffer and self.transport is not None:
            self.transport.pause_reading()
            self.paused = True
        self._wake()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()
        if self.on_lost is not None:
            self.on_lost(self)

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            with contextlib.suppress(RuntimeError):
                self.peer.transport.resume_reading()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            if self.closed:
                raise SessionEnded(f"the {self.name} closed the connection")
            if self.paused and self.transport is not None:
                self.transport.resume_reading()
                self.paused = False
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    async def read_message(self, known: frozenset[int]) -> tuple[int, bytes, bytes]:
        header = await self.read(5)
        t = header[0]
        length = int.from_bytes(header[1:5], "big")
        if t not in known:
            raise ProtocolError(f"unexpected {self.name} message type {t!r} during startup")
        if length < 4 or length - 4 > _AUTH_LIMIT:
            raise ProtocolError(f"{self.name} startup message has bad length {length}")
        body = await self.read(length - 4)
        return t, body, header + body

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


@dataclass
class _Blocked:
    marker: str
    reply: bytes


@dataclass
class Session:
    """State of one client connection. ``proxy`` supplies config, firewall and counters."""

    proxy: DbProxy
    client: Side
    peer: str
    server: Side | None = None
    identity: ClientIdentity | None = None
    status: int = ord("I")
    inflight: int = 0
    unsynced: bool = False
    markers: dict[str, bytes] = field(default_factory=dict)
    done: asyncio.Future[None] | None = None

    # --- startup ------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.done = loop.create_future()
        self.client.on_lost = self._lost
        try:
            if await self._start():
                self._relay()
                await self.done
        finally:
            self._close()

    async def _start(self) -> bool:
        try:
            return await asyncio.wait_for(self._startup(), self.proxy.config.startup_timeout)
        except ProtocolError as exc:
            self.proxy.stats.protocol_errors += 1
            self._fatal("08P01", f"cellwall: {exc.message}")
        except SessionEnded:
            pass
        except TimeoutError:
            self._fatal("08006", "cellwall: the startup did not complete in time")
        except (OSError, ssl.SSLError) as exc:
            self._fatal("08006", f"cellwall: cannot reach the upstream server: {exc}")
        return False

    async def _read_startup(self) -> p.StartupPacket:
        head = await self.client.read(4)
        length = p.startup_length(head)
        return p.parse_startup(head + await self.client.read(length - 4))

    async def _startup(self) -> bool:
        cfg = self.proxy.config
        first = await self._read_startup()
        for _ in range(2):
            if first.code == p.SSL_REQUEST and not self.client.tls:
                ctx = self.proxy.server_tls
                self.client.write(b"S" if ctx else b"N")
                if ctx is not None:
                    await self._start_client_tls(ctx)
            elif first.code == p.GSSENC_REQUEST:
                self.client.write(b"N")
            else:
                break
            first = await self._read_startup()
        if first.code == p.CANCEL_REQUEST:
            await self.proxy.forward_cancel(first.raw)
            return False
        if not first.is_protocol_3:
            raise ProtocolError("expected a StartupMessage")
        if cfg.tls.require_client_tls and not self.client.tls:
            self._fatal(
                "28000",
                "cellwall: this proxy accepts TLS connections only",
                hint="connect with sslmode=require",
            )
            return False
        if first.params.get("replication", "false").lower() not in ("false", "off", "0", "no"):
            self._fatal("0A000", "cellwall: replication connections are not proxied")
            return False
        user = first.params["user"]
        app = first.params.get("application_name", "")
        ip = self.peer.rpartition(":")[0].strip("[]")
        self.identity = ClientIdentity(
            self.proxy.source_of(ip), user, first.params.get("database", user), app
        )
        self.server = await self.proxy.connect_upstream()
        self.server.on_lost = self._lost
        self.server.peer, self.client.peer = self.client, self.server
        self.server.write(first.raw)
        return await self._authenticate()

    async def _start_client_tls(self, ctx: ssl.SSLContext) -> None:
        if self.client.buf:
            raise ProtocolError("data arrived before the TLS handshake")
        loop = asyncio.get_running_loop()
        assert self.client.transport is not None
        tr = await loop.start_tls(self.client.transport, self.client, ctx, server_side=True)
        if tr is None:
            raise SessionEnded("the TLS handshake did not complete")
        self.client.transport = tr
        self.client.tls = True

    async def _authenticate(self) -> bool:
        assert self.server is not None
        while True:
            t, body, raw = await self.server.read_message(p.BACKEND_TYPES)
            if t == ord("R"):
                code = p.auth_code(body)
                if code == 0:
                    self.client.write(raw)
                    break
                if code == p.AUTH_SASL:
                    mechs = [m for m in p.parse_sasl_mechanisms(body) if not m.endswith("-PLUS")]
                    if not mechs:
                        raise ProtocolError("the server offers only SCRAM channel binding")
                    self.client.write(p.sasl_mechanisms_message(mechs))
                    await self._client_auth_response()
                elif code in (3, 5, 11):
                    self.client.write(raw)
                    await self._client_auth_response()
                elif code == 12:
                    self.client.write(raw)
                else:
                    self._fatal(
                        "0A000",
                        f"cellwall: authentication request {code} is not "
                        "supported (use SCRAM-SHA-256, md5, password or trust)",
                    )
                    return False
            elif t in (ord("v"), ord("N")):
                self.client.write(raw)
            elif t == ord("E"):
                self.client.write(raw)
                return False
            else:
                raise ProtocolError(f"unexpected server message {chr(t)!r} during authentication")
        return await self._until_ready()

    async def _client_auth_response(self) -> None:
        assert self.server is not None
        t, _, raw = await self.client.read_message(frozenset(b"pX"))
        if t == ord("X"):
            raise SessionEnded("the client gave up during authentication")
        self.server.write(raw)

    async def _until_ready(self) -> bool:
        assert self.server is not None and self.identity is not None
        while True:
            t, body, raw = await self.server.read_message(p.BACKEND_TYPES)
            self.client.write(raw)
            if t == ord("Z"):
                self.status = body[0] if body else ord("I")
                return True
            if t == ord("E"):
                return False
            if t == ord("S") and not self.identity.application:
                key, pos = p.cstring(body, 0)
                if key == "application_name":
                    value, _ = p.cstring(body, pos)
                    i = self.identity
                    self.identity = ClientIdentity(i.source, i.user, i.database, value)
            elif t not in (ord("S"), ord("K"), ord("N")):
                raise ProtocolError(f"unexpected server message {chr(t)!r} after authentication")

    # --- relay --------------------------------------------------------------------------

    def _relay(self) -> None:
        assert self.server is not None
        limit = self.proxy.config.max_message
        self.cf = p.Framer(p.FRONTEND_TYPES, b"QP", limit, "client")
        self.sf = p.Framer(p.BACKEND_TYPES, b"ZE", limit, "server")
        self.client.on_data = self._from_client
        self.server.on_data = self._from_server
        for side in (self.server, self.client):
            if side.buf:
                pending = bytes(side.buf)
                side.buf.clear()
                assert side.on_data is not None
                side.on_data(pending)
            if side.paused and side.transport is not None:
                side.transport.resume_reading()
                side.paused = False

    def _from_client(self, data: bytes) -> None:
        assert self.server is not None
        cf = self.cf
        if cf.idle:  # the fast path: a chunk of Bind/Execute/Sync... goes on as it came
            n = len(data)
            if cf.skip >= n:
                cf.skip -= n
                self.server.write(data)
                return
            walked = p.walk_frontend(data, cf.skip)
            if walked is not None:
                syncs, unsynced, cf.skip = walked
                if syncs:
                    self.inflight += syncs
                if unsynced >= 0:
                    self.unsynced = unsynced == 1
                self.server.write(data)
                return
        try:
            pieces = self.cf.feed(data)
            out: list[bytes] = []
            changed = False
            for t, payload, raw in pieces:
                if payload is None:
                    out.append(raw)
                    if t == 83 or t == 70:  # Sync, FunctionCall
                        self.inflight += 1
                        self.unsynced = False
                    elif t > 0 and t != 100 and t != 99 and t != 102:  # not CopyData/Done/Fail
                        self.unsynced = True
                    continue
                if t == 81:  # Query
                    new = self._screen(p.parse_query_message(payload), raw, None)
                    self.inflight += 1
                else:  # Parse
                    name, text = p.parse_parse_message(payload)
                    new = self._screen(text, raw, name)
                    self.unsynced = True
                changed = changed or new is not raw
                if new:
                    out.append(new)
                elif t == 81:
                    self.inflight -= 1
        except ProtocolError as exc:
            self.proxy.stats.protocol_errors += 1
            self._fatal("08P01", f"cellwall: {exc.message}")
            return
        if not changed and self.cf.intact:
            self.server.write(data)
        elif out:
            self.server.write(b"".join(out))

    def _screen(self, text: str, raw: bytes, statement: str | None) -> bytes:
        """``raw`` to forward it, a replacement to block it, or ``b""`` when answered here."""
        assert self.identity is not None
        self.proxy.stats.queries += 1
        decision = self.proxy.firewall.check(self.identity, text, self.peer)
        if not decision.block or decision.alert is None:
            return raw
        self.proxy.stats.blocked += 1
        alert = decision.alert
        reply = p.error_response(
            "42501",
            f"cellwall blocked this query (alert {alert.id}): {alert.summary()}",
            detail="; ".join(f"{h.indicator}: {h.evidence}" for h in alert.reasons)[:1000],
            hint="a reviewer can allow this query shape with `cellwall dbproxy review`",
        )
        if (
            statement is None
            and self.status == ord("E")
            and not self.inflight
            and not (self.unsynced)
        ):
            self.client.write(reply + p.ready_for_query(self.status))
            return b""
        marker = f"cw_blocked_{alert.id}"
        self.markers[marker] = reply
        sql = f'SELECT "{marker}"'
        return p.query_message(sql) if statement is None else p.parse_message(statement, sql)

    def _from_server(self, data: bytes) -> None:
        sf = self.sf
        if sf.idle:  # the fast path: find the status of the last ReadyForQuery, if any
            n = len(data)
            if sf.skip >= n:
                sf.skip -= n
                self.client.write(data)
                return
            walked = p.walk_backend(data, sf.skip, errors=not self.markers)
            if walked is not None:
                ready, status, sf.skip = walked
                if ready:
                    self.status = status
                    self.inflight = max(0, self.inflight - ready)
                self.client.write(data)
                return
        try:
            pieces = self.sf.feed(data)
            changed = False
            out: list[bytes] = []
            for t, payload, raw in pieces:
                if payload is not None:
                    if t == 90:  # ReadyForQuery
                        if len(payload) != 1:
                            raise ProtocolError("ReadyForQuery has a bad length")
                        self.status = payload[0]
                        if self.inflight:
                            self.inflight -= 1
                    elif self.markers:  # ErrorResponse while a block is pending
                        new = self._rewrite(payload)
                        if new is not None:
                            out.append(new)
                            changed = True
                            continue
                out.append(raw)
        except ProtocolError as exc:
            self.proxy.stats.protocol_errors += 1
            self._fatal("08P01", f"cellwall: malformed message from the server: {exc.message}")
            return
        if not changed and self.sf.intact:
            self.client.write(data)
        else:
            self.client.write(b"".join(out))

    def _rewrite(self, payload: bytes) -> bytes | None:
        message = p.parse_error_fields(payload).message
        for marker in self.markers:
            if marker in message:
                return self.markers.pop(marker)
        return None

    # --- ending -------------------------------------------------------------------------

    def _fatal(self, sqlstate: str, message: str, hint: str = "") -> None:
        self.client.write(p.error_response(sqlstate, message, severity="FATAL", hint=hint))
        if self.server is not None:
            self.server.write(_TERMINATE)
        self._close()

    def _lost(self, side: Side) -> None:
        self._close()

    def _close(self) -> None:
        self.client.close()
        if self.server is not None:
            self.server.close()
        if self.done is not None and not self.done.done():
            self.done.set_result(None)
