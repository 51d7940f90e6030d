"""Real connections between network namespaces: listeners, probes, one selector loop.

Everything runs in one process. A socket belongs to the namespace its thread was in when
it was made (:func:`cellwall.enforce.netns.entered`), so listeners for every workload and
probes from every workload share one ``selectors`` loop without a process per namespace.

- TCP and SCTP: a probe got through when its connect (its handshake) completes; a reset,
  an abort or silence is blocked.
- UDP: the listener echoes each datagram; a probe got through when the echo comes back.
- ICMP/ICMPv6: an echo request on a ping socket; through when the echo reply comes back.

Listeners are dual-stack (``::`` with ``IPV6_V6ONLY`` off), one per (namespace, protocol,
port). Probes run in waves of at most ``parallel`` sockets, each wave bounded by
``timeout`` seconds.
"""

from __future__ import annotations

import errno
import resource
import selectors
import socket
import struct
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cellwall.enforce.netns import entered

__all__ = [
    "STREAM_PROTOS",
    "Listeners",
    "Probe",
    "allow_ping",
    "probe_all",
    "raise_fd_limit",
    "sctp_supported",
]

_ICMP_ECHO = {4: 8, 6: 128}
SCTP = 132
#: Protocols probed with a connection handshake (TCP, SCTP).
STREAM_PROTOS = (6, SCTP)


@dataclass(frozen=True, slots=True)
class Probe:
    """From namespace ``ns`` to ``dst`` (one family) over ``proto`` (6, 17, 132, 1, 58)
    ``port``."""

    ns: str
    dst: str
    family: int
    proto: int
    port: int | None


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def sctp_supported() -> bool:
    """Whether this kernel makes SCTP sockets (the ``sctp`` module is loaded or loadable)."""
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM, SCTP).close()
    except OSError:
        return False
    return True


def _socket(family: int, proto: int) -> socket.socket:
    if proto in STREAM_PROTOS:
        return socket.socket(family, socket.SOCK_STREAM, proto)
    return socket.socket(family, socket.SOCK_DGRAM)


def allow_ping(ns: str) -> None:
    """Let ping sockets (unprivileged ICMP echo) be used in namespace ``ns``."""
    with entered(ns), open("/proc/sys/net/ipv4/ping_group_range", "w") as f:
        f.write("0 2147483647\n")


class Listeners:
    """Dual-stack TCP, UDP and SCTP listeners in many namespaces, served by one thread."""

    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._socks: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def listen(self, ns: str, proto: int, ports: Iterable[int]) -> None:
        with entered(ns):
            for port in ports:
                s = _socket(socket.AF_INET6, proto)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                s.bind(("::", port))
                if proto in STREAM_PROTOS:
                    s.listen(1024)
                s.setblocking(False)
                self._sel.register(s, selectors.EVENT_READ, proto)
                self._socks.append(s)

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._sel.select(0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    if key.data in STREAM_PROTOS:
                        conn, _ = sock.accept()
                        conn.close()
                    else:
                        data, peer = sock.recvfrom(2048)
                        sock.sendto(data, peer)
                except OSError:
                    continue

    def __enter__(self) -> Listeners:
        self._thread = threading.Thread(target=self._serve, name="lab-listeners", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for s in self._socks:
            self._sel.unregister(s)
            s.close()
        self._sel.close()


def _open(p: Probe) -> socket.socket:
    fam = socket.AF_INET if p.family == 4 else socket.AF_INET6
    with entered(p.ns):
        if p.proto in (1, 58):
            s = socket.socket(fam, socket.SOCK_DGRAM, p.proto)
        else:
            s = _socket(fam, p.proto)
    s.setblocking(False)
    return s


def _start(s: socket.socket, p: Probe) -> int:
    """Send the probe's first packet; the selector events to wait for."""
    if p.proto in (1, 58):
        s.sendto(struct.pack("!BBHHH", _ICMP_ECHO[p.family], 0, 0, 0, 1) + b"cw", (p.dst, 0))
        return selectors.EVENT_READ
    if p.proto == 17:
        s.connect((p.dst, p.port or 0))
        s.send(b"cw")
        return selectors.EVENT_READ
    code = s.connect_ex((p.dst, p.port or 0))
    if code not in (0, errno.EINPROGRESS):
        raise OSError(code, errno.errorcode.get(code, "connect"))
    return selectors.EVENT_WRITE


def _finished(s: socket.socket, p: Probe) -> bool:
    """Whether the probe got through, once its socket is ready."""
    if p.proto in STREAM_PROTOS:
        return s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    try:
        s.recv(2048)
    except OSError:  # ICMP unreachable turned into ECONNREFUSED
        return False
    return True


def _wave(probes: Sequence[Probe], timeout: float) -> list[bool]:
    sel = selectors.DefaultSelector()
    result = [False] * len(probes)
    socks: list[socket.socket] = []
    try:
        for i, p in enumerate(probes):
            s = _open(p)
            socks.append(s)
            try:
                sel.register(s, _start(s, p), i)
            except OSError:
                continue  # refused at once, or no route: blocked
        deadline = time.monotonic() + timeout
        while sel.get_map() and (left := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(left):
                i = int(key.data)
                result[i] = _finished(socks[i], probes[i])
                sel.unregister(key.fileobj)
    finally:
        sel.close()
        for s in socks:
            s.close()
    return result


def probe_all(probes: Sequence[Probe], *, timeout: float = 1.0, parallel: int = 400) -> list[bool]:
    """Whether each probe got through, in waves of ``parallel`` probes."""
    raise_fd_limit()
    out: list[bool] = []
    for i in range(0, len(probes), parallel):
        out += _wave(probes[i : i + parallel], timeout)
    return out
