"""Workloads and the addresses they own over time, as canonical, immutable values.

An :class:`AddressLease` says that a workload owns one IP address over the half-open interval
``[start, until)`` in UTC; ``None`` on either side means unbounded. A :class:`Workload` has a
name, an optional owner, :class:`~cellwall.model.labels.Labels`, its leases (sorted), a kind
(``workload``, ``pod``, ``service``, ``instance``, ``deployment`` ...) and where it came from
(an :class:`Origin`). Equality follows the canonical form and ignores the origin: the same
workload read from YAML and from CSV is equal.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cellwall.model.labels import Labels

__all__ = ["AddressLease", "Origin", "Workload", "check_workload_name", "utc"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_NAME = 253


def utc(ts: datetime) -> datetime:
    """``ts`` in UTC; a naive datetime is rejected (ValueError) rather than guessed."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"time {ts.isoformat()} has no UTC offset")
    return ts.astimezone(UTC)


def check_workload_name(name: object) -> str:
    """Return ``name`` when it is usable as a workload name; raise ValueError otherwise."""
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"workload name {name!r} is empty or has surrounding spaces")
    if _CONTROL.search(name) or len(name) > MAX_NAME:
        raise ValueError(f"workload name {name!r} has control characters or is too long")
    return name


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a value was read: a file (or source name) and, when known, line and column."""

    file: str
    line: int | None = None
    col: int | None = None

    def __str__(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(str(self.line))
            if self.col is not None:
                parts.append(str(self.col))
        return ":".join(parts)


@dataclass(frozen=True, slots=True)
class AddressLease:
    """One IP address owned over ``[start, until)``; ``None`` means unbounded on that side.

    ``ip`` is canonicalised (``10.001.0.1`` is rejected, ``2001:DB8::1`` becomes
    ``2001:db8::1``) and times are converted to UTC.
    """

    ip: str
    start: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        try:
            canonical = str(ipaddress.ip_address(self.ip))
        except ValueError:
            raise ValueError(f"{self.ip!r} is not an IP address") from None
        object.__setattr__(self, "ip", canonical)
        if self.start is not None:
            object.__setattr__(self, "start", utc(self.start))
        if self.until is not None:
            object.__setattr__(self, "until", utc(self.until))
        if self.start is not None and self.until is not None and self.start >= self.until:
            raise ValueError(
                f"{self.ip}: interval [{self.start.isoformat()}, {self.until.isoformat()}) is "
                "empty; `from` must be before `until`"
            )

    def sort_key(self) -> tuple[str, float, float]:
        """Order by address, then interval; an unbounded side sorts as -inf / +inf."""
        s = self.start.timestamp() if self.start else float("-inf")
        u = self.until.timestamp() if self.until else float("inf")
        return (self.ip, s, u)

    def covers(self, ts: datetime) -> bool:
        """True when ``ts`` (timezone-aware) falls in ``[start, until)``."""
        ts = utc(ts)
        return (self.start is None or self.start <= ts) and (self.until is None or ts < self.until)

    def __str__(self) -> str:
        if self.start is None and self.until is None:
            return self.ip
        s = _iso(self.start) if self.start else ""
        u = _iso(self.until) if self.until else ""
        return f"{self.ip}@{s}..{u}"


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Workload:
    """Something with an identity that owns addresses for a time, with labels and an owner."""

    name: str
    owner: str | None = None
    labels: Labels = field(default_factory=Labels)
    addresses: tuple[AddressLease, ...] = ()
    source: Origin = field(default=Origin("<memory>"), compare=False)
    kind: str = "workload"

    def __post_init__(self) -> None:
        check_workload_name(self.name)
        if self.owner is not None:
            check_workload_name(self.owner)
        if not self.kind or not self.kind.isidentifier():
            raise ValueError(f"workload kind {self.kind!r} must be a plain word")
        leases = tuple(sorted(set(self.addresses), key=AddressLease.sort_key))
        object.__setattr__(self, "addresses", leases)

    @classmethod
    def of(
        cls,
        name: str,
        *,
        owner: str | None = None,
        labels: dict[str, str] | Labels | None = None,
        addresses: Iterable[AddressLease | str] = (),
        source: Origin | None = None,
        kind: str = "workload",
    ) -> Workload:
        """A convenience constructor: plain strings are leases for all time."""
        lbls = labels if isinstance(labels, Labels) else Labels.of(labels or {})
        leases = tuple(a if isinstance(a, AddressLease) else AddressLease(a) for a in addresses)
        return cls(name, owner, lbls, leases, source or Origin("<memory>"), kind)

    def ips(self) -> tuple[str, ...]:
        """The distinct addresses, whatever their intervals."""
        return tuple(sorted({a.ip for a in self.addresses}))

    def owns(self, ip: str, ts: datetime) -> bool:
        return any(a.ip == ip and a.covers(ts) for a in self.addresses)
