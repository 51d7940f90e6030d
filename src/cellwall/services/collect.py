"""The live NetFlow v5/v9/IPFIX collector: UDP datagrams in, committed batches in the lake.

Two threads share the work:

- the **receiver** reads the socket (with a large ``SO_RCVBUF``) into a bounded queue. When
  the queue is full the datagram is dropped and counted (``dropped_queue_full``): memory
  stays bounded under overload, and nothing is lost silently.
- the **decoder** (the caller's thread) parses datagrams as they come, and commits a batch
  when it holds ``batch_records`` records or is ``batch_seconds`` old. Each batch is one
  lake transaction (staged, then committed under the workspace's writer lock), so a crash
  loses at most the batch in progress and never leaves a partial one.

``stop()`` (SIGTERM, SIGINT) ends the receiver, decodes what is queued, gives up on data
still waiting for a template (counted ``no-template``), commits, and returns.

In the lake, ``lineage_file`` is the listen URL and ``lineage_pos`` is the byte offset of
the record in the stream of datagrams received since the collector started.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cellwall.errors import UsageError
from cellwall.ingest.base import Chunk
from cellwall.ingest.netflow_session import NetflowDecoder
from cellwall.ingest.netflow_templates import TemplateCache
from cellwall.lake.layout import LakeLayout
from cellwall.lake.manifest import Manifest
from cellwall.lake.writer import StagedIngest, recover
from cellwall.services.ingest import _guard
from cellwall.state.audit import AuditLog, current_actor
from cellwall.workspace import Workspace

__all__ = ["CollectSettings", "Collector", "parse_listen"]

MAX_DATAGRAM = 65_535
Report = Callable[[dict[str, Any]], None]


def parse_listen(url: str) -> tuple[str, int]:
    """``udp://HOST:PORT`` (IPv6 hosts in brackets) into a host and a port."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "udp" or not parts.hostname or port is None:
        raise UsageError(f"--listen {url!r}: write udp://HOST:PORT", hint="e.g. udp://0.0.0.0:2055")
    return parts.hostname, port


@dataclass
class CollectSettings:
    listen: str
    batch_records: int = 100_000
    batch_seconds: float = 5.0
    queue_datagrams: int = 65_536
    rcvbuf: int = 64 << 20
    hold_seconds: float = 60.0
    report_seconds: float = 2.0


@dataclass
class _Counters:
    received: int = 0
    received_bytes: int = 0
    dropped_queue_full: int = 0
    batches: int = 0
    stored: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    ignored: Counter[str] = field(default_factory=Counter)


class Collector:
    """One listening socket feeding one lake. ``run()`` blocks until ``stop()``."""

    def __init__(self, ws: Workspace, settings: CollectSettings, actor: str | None = None) -> None:
        self.ws = ws
        self.settings = settings
        self.actor = actor
        host, port = parse_listen(settings.listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, settings.rcvbuf)
        self.sock.settimeout(0.2)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise UsageError(f"--listen {settings.listen}: cannot bind: {exc.strerror}") from None
        self.address = self.sock.getsockname()
        self.queue: queue.Queue[tuple[bytes, str, float]] = queue.Queue(settings.queue_datagrams)
        self.decoder = NetflowDecoder(
            settings.listen, cache=TemplateCache(hold_seconds=settings.hold_seconds)
        )
        self.counters = _Counters()
        self.layout = LakeLayout(ws.lake)
        self._stop = threading.Event()
        self._offset = 0
        self.started = time.time()

    @property
    def rcvbuf(self) -> int:
        return int(self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))

    def stop(self) -> None:
        self._stop.set()

    # -- receiving -------------------------------------------------------------------------

    def receive(self) -> None:
        """The receiver loop: socket to queue, counting what a full queue drops."""
        buf = bytearray(MAX_DATAGRAM)
        c = self.counters
        while not self._stop.is_set():
            try:
                n, addr = self.sock.recvfrom_into(buf)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                raise
            c.received += 1
            c.received_bytes += n
            try:
                self.queue.put_nowait((bytes(buf[:n]), addr[0], time.time()))
            except queue.Full:
                c.dropped_queue_full += 1

    # -- decoding and committing -----------------------------------------------------------

    def run(self, report: Report | None = None) -> dict[str, Any]:
        """Collect until stopped; returns the final counters."""
        with self.ws.writer_lock(timeout=30):
            recover(self.layout, Manifest(self.ws.engine))
        receiver = threading.Thread(target=self.receive, name="cellwall-recv", daemon=True)
        receiver.start()
        last_commit = last_report = time.monotonic()
        try:
            while not self._stop.is_set():
                self._drain(timeout=0.1)
                now = time.monotonic()
                due = now - last_commit >= self.settings.batch_seconds
                if self.decoder.collected >= self.settings.batch_records or due:
                    self.decoder.expire(time.time())
                    self._commit(self.decoder.take())
                    last_commit = now
                if report is not None and now - last_report >= self.settings.report_seconds:
                    report(self.snapshot())
                    last_report = now
        finally:
            self._stop.set()
            receiver.join()
            self.sock.close()
            self._drain(timeout=0)
            self._commit(self.decoder.take(final=True))
            AuditLog(self.ws.engine).record(
                current_actor(self.actor), "collect", self.settings.listen, "ok", self.snapshot()
            )
        return self.snapshot()

    def _drain(self, timeout: float) -> None:
        """Decode queued datagrams until the queue is empty (waiting ``timeout`` for one)."""
        try:
            item = self.queue.get(timeout=timeout) if timeout else self.queue.get_nowait()
        except queue.Empty:
            return
        while True:
            data, exporter, arrived = item
            self.decoder.feed(data, exporter, self._offset, arrived)
            self._offset += len(data)
            if self.decoder.collected >= self.settings.batch_records:
                return
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return

    def _commit(self, chunk: Chunk) -> None:
        flows = _guard(chunk)
        c = self.counters
        c.ignored.update(chunk.ignored)
        if flows.num_rows == 0 and not len(chunk.rejects):
            return
        staged = StagedIngest(self.layout)
        try:
            staged.write_flows(flows)
            staged.write_rejects(chunk.rejects)
            key = f"collect:{self.settings.listen}:{uuid.uuid4().hex}"
            counts = {
                "read": chunk.read,
                "stored": staged.stored,
                "quarantined": dict(staged.quarantined),
                "ignored": dict(chunk.ignored),
            }
            with self.ws.writer_lock(timeout=30):
                staged.commit(
                    Manifest(self.ws.engine),
                    path=self.settings.listen,
                    fmt="netflow",
                    raw_key=key,
                    content_key=key,
                    counts=counts,
                )
        except BaseException:
            staged.abort()
            raise
        c.batches += 1
        c.stored += staged.stored
        c.quarantined.update(staged.quarantined)

    def snapshot(self) -> dict[str, Any]:
        c = self.counters
        d = self.decoder.stats
        return {
            "listen": self.settings.listen,
            "seconds": round(time.time() - self.started, 3),
            "datagrams_received": c.received,
            "bytes_received": c.received_bytes,
            "datagrams_dropped_queue_full": c.dropped_queue_full,
            "queue_depth": self.queue.qsize(),
            "records_received": d.records,
            "records_decoded": d.decoded,
            "records_in_batch": self.decoder.collected,
            "sets_waiting_for_template": self.decoder.cache.waiting,
            "records_rejected": dict(sorted(d.rejected.items())),
            "options_records": d.options_records,
            "batches_committed": c.batches,
            "stored": c.stored,
            "quarantined": dict(sorted(c.quarantined.items())),
        }
