"""The asyncio server: accepts clients, runs a :class:`~cellwall.dbfw.session.Session` per
connection, forwards cancel requests, and writes learned counts back every few seconds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from cellwall.dbfw.firewall import Firewall
from cellwall.dbfw.identity import SourceResolver
from cellwall.dbfw.session import _SSL_REQUEST, Session, SessionEnded, Side
from cellwall.dbfw.store import FingerprintStore
from cellwall.dbfw.tls import TLSConfig, UpstreamTLS
from cellwall.errors import UsageError

__all__ = ["DbProxy", "ProxyConfig", "ProxyStats", "parse_hostport"]


def parse_hostport(value: str, option: str) -> tuple[str, int]:
    """``HOST:PORT``, or a Unix socket directory as libpq's ``host=/dir``: ``/dir`` (port 5432)
    or ``/dir:PORT`` (the socket is ``/dir/.s.PGSQL.PORT``)."""
    if value.startswith("/"):
        path, sep, port = value.rpartition(":")
        if sep and port.isdigit() and 0 < int(port) <= 65535:
            return path, int(port)
        return value, 5432
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"{option} {value!r}: use HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    listen: tuple[str, int]
    upstream: tuple[str, int]
    tls: TLSConfig = field(default_factory=TLSConfig)
    #: The largest Query/Parse/ReadyForQuery/ErrorResponse the proxy buffers to read.
    max_message: int = 16 << 20
    startup_timeout: float = 30.0
    flush_interval: float = 5.0
    #: Share the listening port with other proxy processes (SO_REUSEPORT; ``--workers``).
    reuse_port: bool = False


@dataclass
class ProxyStats:
    sessions: int = 0
    active: int = 0
    queries: int = 0
    blocked: int = 0
    protocol_errors: int = 0
    cancels: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "sessions": self.sessions,
            "active": self.active,
            "queries": self.queries,
            "blocked": self.blocked,
            "protocol_errors": self.protocol_errors,
            "cancels": self.cancels,
        }


class DbProxy:
    def __init__(
        self,
        config: ProxyConfig,
        firewall: Firewall,
        *,
        store: FingerprintStore | None = None,
        sources: SourceResolver | None = None,
    ) -> None:
        self.config = config
        self.firewall = firewall
        self.store = store
        self.sources = sources if sources is not None else SourceResolver(())
        self.stats = ProxyStats()
        self.server_tls = config.tls.server_context()
        self.upstream_tls = config.tls.upstream_context()
        self._server: asyncio.Server | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._sessions: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def source_of(self, ip: str) -> str:
        return self.sources.source(ip)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.config.listen
        self._server = await loop.create_server(
            self._accept, host, port, reuse_address=True, reuse_port=self.config.reuse_port or None
        )
        if self.store is not None:
            self._flusher = asyncio.create_task(self._flush_loop())

    def _accept(self) -> Side:
        return Side("client", max_buffer=1 << 16, on_made=self._begin)

    def _begin(self, side: Side) -> None:
        if side.transport is None:
            return
        peer = side.transport.get_extra_info("peername")
        text = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        task = asyncio.create_task(self._serve(Session(self, side, text)))
        self._sessions.add(task)
        task.add_done_callback(self._sessions.discard)

    async def _serve(self, session: Session) -> None:
        self.stats.sessions += 1
        self.stats.active += 1
        try:
            await session.run()
        finally:
            self.stats.active -= 1

    async def connect_upstream(self) -> Side:
        loop = asyncio.get_running_loop()
        host, port = self.config.upstream
        if host.startswith("/"):  # a socket directory, as libpq's host=/dir
            transport, side = await loop.create_unix_connection(
                lambda: Side("server", max_buffer=1 << 16), f"{host}/.s.PGSQL.{port}"
            )
        else:
            transport, side = await loop.create_connection(
                lambda: Side("server", max_buffer=1 << 16), host, port
            )
        ctx, mode = self.upstream_tls, self.config.tls.upstream
        if ctx is not None:
            side.write(_SSL_REQUEST)
            answer = await side.read(1)
            if answer == b"S":
                if side.buf:
                    raise SessionEnded("the server sent data before the TLS handshake")
                name = self.config.tls.upstream_server_name or host
                tr = await loop.start_tls(transport, side, ctx, server_hostname=name)
                if tr is None:
                    raise SessionEnded("the upstream TLS handshake did not complete")
                side.transport = tr
                side.tls = True
            elif answer != b"N" or mode is not UpstreamTLS.PREFER:
                side.close()
                raise OSError(f"the server at {host}:{port} refused TLS")
        return side

    async def forward_cancel(self, raw: bytes) -> None:
        """Pass a CancelRequest on; the key in it is the server's own (BackendKeyData is
        relayed unchanged), so the proxy needs no table of sessions."""
        self.stats.cancels += 1
        with contextlib.suppress(OSError, SessionEnded):
            side = await self.connect_upstream()
            side.write(raw)
            side.close()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.flush_interval)
            await self.flush()

    async def flush(self) -> int:
        """Write learned counts to the workspace and pick up reviews, off the event loop."""
        if self.store is None:
            return 0
        batch = self.firewall.profiles.take()
        written = await asyncio.to_thread(self.store.record, batch) if batch else 0
        self.firewall.profiles.merge(await asyncio.to_thread(self.store.statuses))
        return written

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._sessions):
            task.cancel()
        if self._sessions:
            await asyncio.gather(*self._sessions, return_exceptions=True)
        await asyncio.sleep(0.05)  # let closed transports run their connection_lost
        if self._server is not None:
            await self._server.wait_closed()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()
        self.sources.close()

    async def serve(self, stop: asyncio.Event, on_ready: Callable[[DbProxy], None]) -> None:
        await self.start()
        on_ready(self)
        try:
            await stop.wait()
        finally:
            await self.close()
