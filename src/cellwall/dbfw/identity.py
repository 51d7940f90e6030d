"""Who is asking: the source workload (from the inventory), the database user, the database
and ``application_name``.

Without an inventory, or for an address that no workload owns, the source is the address.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cellwall.model.inventory import Workload

__all__ = ["ClientIdentity", "SourceResolver"]


@dataclass(frozen=True, slots=True, order=True)
class ClientIdentity:
    """The key of an allow-list: source workload (or address), user, database, application."""

    source: str
    user: str
    database: str
    application: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "source": self.source,
            "user": self.user,
            "database": self.database,
            "application": self.application,
        }

    def __str__(self) -> str:
        app = f" ({self.application})" if self.application else ""
        return f"{self.source} as {self.user}@{self.database}{app}"


class SourceResolver:
    """Maps a client address to the workload that owns it now, through the inventory's
    :class:`~cellwall.inventory.Resolver`; answers are cached for ``ttl`` seconds."""

    def __init__(
        self,
        workloads: Iterable[Workload],
        *,
        ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._workloads = list(workloads)
        self._resolver: Any = None
        self._cache: dict[str, tuple[float, str]] = {}
        self._ttl = ttl
        self._clock = clock

    @property
    def has_inventory(self) -> bool:
        return bool(self._workloads)

    def source(self, ip: str, at: datetime | None = None) -> str:
        if not self._workloads:
            return ip
        now = self._clock()
        hit = self._cache.get(ip)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        name = self._lookup(ip, at or datetime.now(UTC))
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[ip] = (now, name)
        return name

    def _lookup(self, ip: str, at: datetime) -> str:
        import pyarrow as pa

        from cellwall.inventory import Resolver

        if self._resolver is None:
            self._resolver = Resolver(self._workloads)
        owner = self._resolver.owners(pa.array([ip]), pa.array([at], pa.timestamp("us", "UTC")))
        value = owner[0].as_py()
        return str(value) if value is not None else ip

    def close(self) -> None:
        if self._resolver is not None:
            self._resolver.close()
            self._resolver = None
