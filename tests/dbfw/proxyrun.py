"""Run a :class:`~cellwall.dbfw.DbProxy` on its own event loop in a thread, for sync clients."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cellwall.dbfw import (
    AlertSink,
    Classifier,
    DbProxy,
    FingerprintStore,
    Firewall,
    Mode,
    Profiles,
    ProxyConfig,
    SourceResolver,
    TLSConfig,
    libinjection_detector,
)
from cellwall.workspace import Workspace


class RunningProxy:
    def __init__(self, proxy: DbProxy, loop: asyncio.AbstractEventLoop) -> None:
        self.proxy = proxy
        self.loop = loop

    @property
    def port(self) -> int:
        return self.proxy.port

    @property
    def firewall(self) -> Firewall:
        return self.proxy.firewall

    def set_mode(self, mode: Mode) -> None:
        self.loop.call_soon_threadsafe(setattr, self.proxy.firewall, "mode", mode)

    def flush(self) -> int:
        return asyncio.run_coroutine_threadsafe(self.proxy.flush(), self.loop).result(30)


@contextmanager
def running_proxy(
    upstream_port: int,
    *,
    mode: Mode = Mode.LEARN,
    ws: Workspace | None = None,
    tls: TLSConfig | None = None,
    alerts: Path | None = None,
    sources: SourceResolver | None = None,
    max_message: int = 16 << 20,
    upstream_host: str = "127.0.0.1",
) -> Iterator[RunningProxy]:
    store = FingerprintStore(ws.engine) if ws is not None else None
    profiles = Profiles(store.statuses() if store is not None else {})
    firewall = Firewall(mode, Classifier(libinjection_detector()), profiles, AlertSink(alerts))
    config = ProxyConfig(
        ("127.0.0.1", 0),
        (upstream_host, upstream_port),
        tls or TLSConfig(),
        max_message=max_message,
        flush_interval=0.5,
    )
    loop = asyncio.new_event_loop()
    proxy = DbProxy(config, firewall, store=store, sources=sources)
    stop = asyncio.Event()
    ready = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(proxy.serve(stop, lambda _: ready.set()))

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the proxy did not start")
    try:
        yield RunningProxy(proxy, loop)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()
        firewall.alerts.close()
