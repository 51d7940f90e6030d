"""Several proxy processes on one port: the kernel spreads new connections over them.

Each worker is a whole proxy (its own event loop, allow-list and sessions) listening with
SO_REUSEPORT. They share the workspace: learned counts are added up in the store, reviews
reach each one at its next flush, and alerts append to one file, a line a write. The parent
starts them, waits until every one listens, forwards SIGINT and SIGTERM, and adds up their
counters. One worker failing stops the others.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
from collections import Counter
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

from cellwall.errors import UsageError

__all__ = ["Job", "run_workers"]


class Job(Protocol):
    """One proxy process's work: serve until told to stop, calling ``on_ready`` with the
    proxy once it listens; its counters."""

    def serve(self, on_ready: Callable[[Any], None]) -> dict[str, Any]: ...


def _child(job: Job, conn: Connection) -> None:
    try:
        stats = job.serve(lambda proxy: conn.send(("ready", proxy.port)))
        conn.send(("done", stats))
    except BaseException as exc:  # reported to the parent, which stops the others
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def run_workers(job: Job, n: int, on_ready: Callable[[int], None]) -> dict[str, Any]:
    """Run ``n`` workers of ``job`` until SIGINT or SIGTERM; the sum of their counters."""
    ctx = multiprocessing.get_context("spawn")
    pipes: dict[Connection, multiprocessing.process.BaseProcess] = {}
    for i in range(n):
        receive, send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_child, args=(job, send), name=f"cellwall-dbproxy-{i + 1}")
        child.start()
        send.close()
        pipes[receive] = child
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    totals: Counter[str] = Counter()
    sessions: list[int] = []
    errors: list[str] = []
    ready, told = 0, False
    try:
        while pipes:
            if (stop.is_set() or errors) and not told:
                for running in pipes.values():
                    if running.is_alive():
                        running.terminate()  # SIGTERM: the worker closes cleanly
                told = True
            for conn in wait(list(pipes), timeout=0.2):
                assert isinstance(conn, Connection)
                try:
                    kind, value = conn.recv()
                except EOFError:
                    ended = pipes.pop(conn)
                    ended.join()
                    if ended.exitcode:
                        errors.append(f"{ended.name} exited with code {ended.exitcode}")
                    continue
                if kind == "ready":
                    ready += 1
                    if ready == n:
                        on_ready(int(value))
                elif kind == "done":
                    totals.update({k: int(v) for k, v in value.items()})
                    sessions.append(int(value.get("sessions", 0)))
                else:
                    errors.append(f"{pipes[conn].name}: {value}")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if errors:
        raise UsageError("the proxy workers stopped: " + "; ".join(errors))
    return {**dict(totals), "workers": n, "sessions_by_worker": sessions}
