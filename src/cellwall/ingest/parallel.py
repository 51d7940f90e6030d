"""Running an adapter's per-block work on a few threads, in order, with bounded memory.

Arrow and NumPy release the GIL for the heavy work, so the threads run in parallel. At most
``workers + 1`` blocks are in flight, so memory stays bounded by a few blocks.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from cellwall.errors import UsageError

__all__ = ["int_option", "ordered_map", "worker_count"]

T = TypeVar("T")
R = TypeVar("R")


def int_option(options: Mapping[str, str], key: str, default: int, fmt: str) -> int:
    """A positive integer format option, or a UsageError that names it."""
    text = options.get(key)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"option {key}={text!r} for the {fmt} format is not a positive integer")
    return value


def worker_count(options: Mapping[str, str], fmt: str) -> int:
    """The ``workers`` option; by default one thread per CPU, at most 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return int_option(options, "workers", max(1, min(cpus, 4)), fmt)


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``map(fn, items)`` on ``workers`` threads, results in input order, few in flight."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="cellwall-ingest") as pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) > workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
