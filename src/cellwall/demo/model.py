"""The value types of the demo estate: workloads, external ends, services, schedules, edges.

Every endpoint has an index: workloads come first (``0 .. W-1``), external ends (IP lists
of the internet, SaaS APIs, unmanaged internal addresses) follow (``W ..``). Times are
integer Unix seconds; addresses are IPv4 as integers.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "Edge",
    "Estate",
    "External",
    "Lease",
    "Mislabel",
    "Schedule",
    "Service",
    "Workload",
    "ip_text",
]

WorkloadKind = Literal["vm", "pod"]
ScheduleKind = Literal["steady", "daily", "weekly", "every"]


def ip_text(ip: int) -> str:
    return str(ipaddress.IPv4Address(ip))


@dataclass(frozen=True, slots=True)
class Lease:
    """An address a workload holds over ``[since, until)``; None means unbounded."""

    ip: int
    since: int | None = None
    until: int | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Workload:
    """A VM or pod. ``labels`` are the truth; ``claimed`` is what the inventory says."""

    index: int
    name: str
    owner: str
    kind: WorkloadKind
    labels: dict[str, str]
    claimed: dict[str, str]
    leases: tuple[Lease, ...]
    account: str
    eni: str

    @property
    def app(self) -> str:
        return self.labels["app"]

    @property
    def role(self) -> str:
        return self.labels["role"]

    @property
    def env(self) -> str:
        return self.labels["env"]

    @property
    def loc(self) -> str:
        return self.labels["loc"]


@dataclass(frozen=True, slots=True, eq=False)
class External:
    """An end that is no workload, named as the IP list that policy would use for it.

    ``ips`` are the concrete addresses that traffic uses (drawn with bias ``skew``: an
    index is ``floor(len(ips) * u ** skew)``), ``cidrs`` and ``except_`` define the list.
    """

    index: int
    name: str
    cidrs: tuple[str, ...]
    ips: tuple[int, ...]
    internal: bool
    purpose: str
    except_: tuple[str, ...] = ()
    skew: float = 1.0
    in_policy: bool = True


@dataclass(frozen=True, slots=True)
class Service:
    """A server port with the traffic shape of one request: median bytes each way, seconds."""

    name: str
    proto: int
    port: int
    zeek: str
    req: float
    resp: float
    dur: float
    sigma: float = 0.9

    @property
    def text(self) -> str:
        return f"{'udp' if self.proto == 17 else 'tcp'}/{self.port}"


@dataclass(frozen=True, slots=True)
class Schedule:
    """When an edge talks.

    - ``steady``: Poisson, ``rate`` conversations an hour at scale 1, shaped by the day
      when ``diurnal``;
    - ``daily`` at ``hour:minute`` UTC, ``weekly`` on ``weekday`` (Monday is 0), ``every``
      ``every_days`` days on the days whose day number is ``phase`` modulo ``every_days``;
      each firing makes ``runs`` conversations.
    """

    kind: ScheduleKind
    rate: float = 0.0
    diurnal: bool = False
    hour: int = 0
    minute: int = 0
    weekday: int = 0
    every_days: int = 1
    phase: int = 0
    runs: int = 1

    def describe(self) -> str:
        at = f"{self.hour:02d}:{self.minute:02d}Z"
        if self.kind == "steady":
            return f"steady {self.rate:g}/h" + (" diurnal" if self.diurnal else "")
        if self.kind == "daily":
            return f"daily at {at}"
        if self.kind == "weekly":
            days = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
            return f"weekly {days[self.weekday]} {at}"
        return f"every {self.every_days} days at {at}"


@dataclass(frozen=True, slots=True, eq=False)
class Edge:
    """One intended dependency: client endpoint to server endpoint on a service."""

    index: int
    client: int
    server: int
    service: Service
    schedule: Schedule
    purpose: str


@dataclass(frozen=True, slots=True)
class Mislabel:
    workload: str
    key: str
    claimed: str
    true: str


@dataclass(eq=False)
class Estate:
    """The whole synthetic estate over the span ``[start, end)`` (Unix seconds)."""

    start: int
    end: int
    workloads: list[Workload]
    externals: list[External]
    edges: list[Edge] = field(default_factory=list)
    mislabels: list[Mislabel] = field(default_factory=list)

    @property
    def endpoints(self) -> int:
        return len(self.workloads) + len(self.externals)

    def name(self, endpoint: int) -> str:
        """A workload's name, or an external end's IP list name."""
        if endpoint < len(self.workloads):
            return self.workloads[endpoint].name
        return self.externals[endpoint - len(self.workloads)].name

    def external(self, name: str) -> External:
        for ext in self.externals:
            if ext.name == name:
                return ext
        raise KeyError(name)

    def workload(self, name: str) -> Workload:
        for w in self.workloads:
            if w.name == name:
                return w
        raise KeyError(name)
