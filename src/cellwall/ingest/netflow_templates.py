"""NetFlow v9 / IPFIX templates: their layout, and the cache that keeps them per exporter.

A template is kept per ``(exporter, observation domain, template id)``: the exporter is
the address the datagrams came from (or a name given for raw files), the domain is the v9
``source id`` or the IPFIX ``observation domain id``. A template that is sent again with the
same fields is the same template (refresh); with other fields it replaces the old one from
then on. IPFIX withdraws a template with a field count of zero.

Data sets whose template is not known yet are held, per key, for a bounded time and in a
bounded number; when the template arrives they are decoded with it. What is never claimed
is given back by :meth:`TemplateCache.expire` so that the caller can count it
``no-template``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "VARIABLE",
    "Field",
    "Pending",
    "Segment",
    "Segments",
    "Template",
    "TemplateCache",
    "TemplateKey",
]

VARIABLE = 0xFFFF  # IPFIX: a variable-length field
TemplateKey = tuple[str, int, int]  # exporter, domain, template id
DomainKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Field:
    """One field specifier: information element id, length, enterprise number (0 = IANA)."""

    ie: int
    length: int
    enterprise: int = 0


@dataclass(eq=False)
class Template:
    """A data or options template. ``scope`` counts the leading scope fields of options."""

    tid: int
    fields: tuple[Field, ...]
    options: bool = False
    scope: int = 0
    _dtype: np.dtype | None = field(default=None, repr=False)  # type: ignore[type-arg]
    #: whether some field has a variable length (IPFIX)
    variable: bool = field(init=False)
    #: bytes per record; for variable-length templates, the fixed part only
    record_length: int = field(init=False)
    #: a data template of fixed-length records: its data sets are collected as they are
    plain: bool = field(init=False)

    def __post_init__(self) -> None:
        self.variable = any(f.length == VARIABLE for f in self.fields)
        self.record_length = sum(f.length for f in self.fields if f.length != VARIABLE)
        self.plain = not self.variable and not self.options and self.record_length > 0

    def same_layout(self, other: Template) -> bool:
        return (self.fields, self.options, self.scope) == (other.fields, other.options, other.scope)


@dataclass(slots=True)
class Segment:
    """The records of one data set, with what its datagram header said about them.

    ``export_ms`` is the header's export time in ms since the epoch; ``uptime_ms`` is the
    v5/v9 ``sysUptime`` (None for IPFIX); ``pos`` is the byte offset of the first record
    in the input; ``rate`` the sampling rate known for the domain when it arrived (0 when
    none is), ``init_ms`` the exporter's boot time (IPFIX options) known then.
    """

    body: bytes
    export_ms: int
    uptime_ms: int | None
    pos: int
    rate: int
    domain: DomainKey
    init_ms: int | None = None


class Segments:
    """The data sets collected for one template, column by column (a :class:`Segment` each).

    The decoder appends to the columns directly, so a data set costs no object of its own.
    """

    __slots__ = ("bodies", "export_ms", "init_ms", "pos", "rate", "uptime_ms")

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.export_ms: list[int] = []
        self.uptime_ms: list[int | None] = []
        self.pos: list[int] = []
        self.rate: list[int] = []
        self.init_ms: list[int | None] = []

    def add(self, s: Segment) -> None:
        self.bodies.append(s.body)
        self.export_ms.append(s.export_ms)
        self.uptime_ms.append(s.uptime_ms)
        self.pos.append(s.pos)
        self.rate.append(s.rate)
        self.init_ms.append(s.init_ms)

    def __len__(self) -> int:
        return len(self.bodies)


@dataclass(slots=True)
class Pending:
    """A data set waiting for its template."""

    key: TemplateKey
    segment: Segment
    stamp: float


class TemplateCache:
    """Templates, sampling rates and init times per exporter and domain; held data sets.

    ``hold_seconds`` bounds how long a data set waits for its template, measured on the
    caller's clock (the export time for files, the arrival time for the collector);
    ``max_pending`` bounds how many wait at once (the oldest is given up first).
    """

    def __init__(self, hold_seconds: float = 60.0, max_pending: int = 4096) -> None:
        self.hold_seconds = hold_seconds
        self.max_pending = max_pending
        self.templates: dict[TemplateKey, Template] = {}
        self.sampling: dict[DomainKey, int] = {}
        self.init_ms: dict[DomainKey, int] = {}
        self._pending: OrderedDict[int, Pending] = OrderedDict()
        self._seq = 0

    def get(self, key: TemplateKey) -> Template | None:
        return self.templates.get(key)

    def learn(self, key: TemplateKey, template: Template) -> Template:
        """Add or refresh a template; returns the one in force (the old one if unchanged)."""
        old = self.templates.get(key)
        if old is not None and (old is template or old.same_layout(template)):
            return old
        self.templates[key] = template
        return template

    def withdraw(self, key: TemplateKey) -> bool:
        return self.templates.pop(key, None) is not None

    def withdraw_all(self, exporter: str, domain: int, options: bool) -> int:
        gone = [
            k
            for k, t in self.templates.items()
            if k[0] == exporter and k[1] == domain and t.options == options
        ]
        for k in gone:
            del self.templates[k]
        return len(gone)

    @property
    def waiting(self) -> int:
        return len(self._pending)

    def hold(self, key: TemplateKey, segment: Segment, stamp: float) -> list[Pending]:
        """Hold a data set; returns those pushed out because the hold is full."""
        self._seq += 1
        self._pending[self._seq] = Pending(key, segment, stamp)
        out: list[Pending] = []
        while len(self._pending) > self.max_pending:
            out.append(self._pending.popitem(last=False)[1])
        return out

    def claim(self, key: TemplateKey) -> list[Segment]:
        """Take the held data sets of a template that has just arrived, oldest first."""
        hits = [s for s, p in self._pending.items() if p.key == key]
        return [self._pending.pop(s).segment for s in hits]

    def expire(self, now: float | None = None) -> list[Pending]:
        """Give up the data sets held longer than the hold (all of them if ``now`` is None)."""
        if now is None:
            out = list(self._pending.values())
            self._pending.clear()
            return out
        out = []
        for seq in list(self._pending):
            p = self._pending[seq]
            if now - p.stamp <= self.hold_seconds:
                break
            out.append(self._pending.pop(seq))
        return out

    def __iter__(self) -> Iterator[TemplateKey]:
        return iter(self.templates)
