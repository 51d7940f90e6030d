"""Service atoms: the service space cut at every boundary a policy uses.

Each protocol that a policy names gets a *slot*; each slot's ports (or ICMP types) are cut at
every range boundary of every service of that protocol, so that each piece (*atom*) is either
wholly inside or wholly outside every service. One more atom per slot holds conversations
without a port, and one slot holds every protocol that the policy never names. A service is
then a set of atoms (a boolean mask), and a conversation's atom is two array lookups:
``table[slot_of[proto] * WIDTH + port + 1]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cellwall.model.policy import ICMP_PROTOS, PORT_PROTOS, PROTO_NAMES, Service

__all__ = ["WIDTH", "ServiceAtoms"]

WIDTH = 65537  # port -1 (none) .. 65535
I32 = npt.NDArray[np.int32]
_NAMES = {v: k for k, v in PROTO_NAMES.items()}


@dataclass(frozen=True)
class _Slot:
    proto: int | None  # None: every protocol the policy does not name
    cuts: tuple[int, ...]  # atom i covers [cuts[i], cuts[i+1]); the no-port atom comes first
    base: int  # index of this slot's no-port atom


class ServiceAtoms:
    """The atoms of a set of services, and the lookup from (proto, port) to atom."""

    def __init__(self, services: Iterable[Service]) -> None:
        cuts: dict[int, set[int]] = {}
        for s in services:
            if s.proto is None:
                continue
            bounds = cuts.setdefault(s.proto, {0})
            if s.lo is not None and s.hi is not None:
                bounds.update((s.lo, s.hi + 1))
        slots: list[_Slot] = []
        base = 0
        for proto in sorted(cuts):
            top = 256 if proto in ICMP_PROTOS else 65536
            edges = tuple(sorted(b for b in cuts[proto] if b < top))
            slots.append(_Slot(proto, edges, base))
            base += 1 + len(edges)
        slots.append(_Slot(None, (0,), base))
        base += 2  # no port, and any port
        self.slots = tuple(slots)
        self.count = base
        self._slot_of = np.full(256, len(slots) - 1, np.int32)
        for i, slot in enumerate(slots[:-1]):
            assert slot.proto is not None
            self._slot_of[slot.proto] = i
        self.table = self._build_table()

    def _build_table(self) -> I32:
        table = np.empty(len(self.slots) * WIDTH, np.int32)
        ports = np.arange(-1, 65536, dtype=np.int64)
        for i, slot in enumerate(self.slots):
            within = np.searchsorted(np.asarray(slot.cuts, np.int64), ports, side="right")
            if slot.proto in ICMP_PROTOS:
                within[ports >= 256] = 0  # not an ICMP type: judged as having none
            table[i * WIDTH : (i + 1) * WIDTH] = slot.base + within
        return table

    def atoms_of(self, proto: npt.NDArray[np.integer], port: npt.NDArray[np.integer]) -> I32:
        """The atom of each (protocol, port); port -1 means the conversation has none."""
        slot = self._slot_of[proto.astype(np.intp, copy=False)]
        key = slot.astype(np.int64) * WIDTH + port.astype(np.int64) + 1
        return self.table[key]

    def mask(self, service: Service) -> npt.NDArray[np.bool_]:
        """The atoms that ``service`` (at L4) covers."""
        out = np.zeros(self.count, bool)
        for slot in self.slots:
            if service.proto is not None and slot.proto != service.proto:
                continue
            if service.lo is None or service.hi is None:
                out[slot.base : slot.base + 1 + len(slot.cuts)] = True
                continue
            for j, lo in enumerate(slot.cuts):
                if service.lo <= lo <= service.hi:
                    out[slot.base + 1 + j] = True
        return out

    def describe(self, atom: int) -> str:
        """A service string for one atom (``tcp/80-89``, ``udp``, ``other``)."""
        for slot in reversed(self.slots):
            if atom >= slot.base:
                break
        j = atom - slot.base
        if slot.proto is None:
            return "other"
        name = _NAMES.get(slot.proto, f"proto/{slot.proto}")
        if j == 0:
            return f"{name} (no port)"
        if slot.proto not in PORT_PROTOS + ICMP_PROTOS:
            return name
        top = 256 if slot.proto in ICMP_PROTOS else 65536
        lo = slot.cuts[j - 1]
        hi = (slot.cuts[j] if j < len(slot.cuts) else top) - 1
        return f"{name}/{lo}" if lo == hi else f"{name}/{lo}-{hi}"
