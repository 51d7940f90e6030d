"""Service atoms seen from the analyses: which atoms a service touches, and atoms as text.

The IR cuts the service space at every boundary the policy names (:mod:`cellwall.policy.
service_atoms`), so each atom is judged alike on all its ports. A service that an analysis
asks about (an invariant's, or ``--service``) may cut across an atom; it *touches* an atom
when they share at least one port. Because an atom is uniform, "allowed on some port of the
service" is "allowed on some touched atom", and "allowed on every port" is "allowed on every
touched atom": both are exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cellwall.model.policy import ICMP_PROTOS, PORT_PROTOS, PROTO_NAMES, Service
from cellwall.policy.service_atoms import ServiceAtoms

__all__ = ["Atom", "atom_table", "probe", "services_text", "touched"]

Mask = npt.NDArray[np.bool_]
_NAMES = {v: k for k, v in PROTO_NAMES.items()}


@dataclass(frozen=True, slots=True)
class Atom:
    """One atom: its protocol (None: every protocol the policy never names) and its port or
    ICMP type range (``lo == hi == -1``: conversations without one)."""

    index: int
    proto: int | None
    lo: int
    hi: int

    @property
    def name(self) -> str:
        if self.proto is None:
            return "other"
        return _NAMES.get(self.proto, f"proto/{self.proto}")


def atom_table(atoms: ServiceAtoms) -> list[Atom]:
    out: list[Atom] = []
    for slot in atoms.slots:
        top = 256 if slot.proto in ICMP_PROTOS else 65536
        out.append(Atom(slot.base, slot.proto, -1, -1))
        bounds = [*slot.cuts, top]
        for j, lo in enumerate(slot.cuts):
            out.append(Atom(slot.base + 1 + j, slot.proto, lo, bounds[j + 1] - 1))
    return out


def _touches(svc: Service, atom: Atom, named: set[int]) -> bool:
    if svc.proto is None:
        return True
    if atom.proto is None:
        if svc.proto in named:
            return False
        return svc.lo is None or atom.lo >= 0
    if atom.proto != svc.proto:
        return False
    if svc.lo is None or svc.hi is None:
        return True
    return atom.lo >= 0 and atom.lo <= svc.hi and svc.lo <= atom.hi


def touched(table: list[Atom], services: Iterable[Service]) -> Mask:
    """The atoms that share a port with one of ``services`` (every atom when none)."""
    items = list(services)
    if not items:
        return np.ones(len(table), bool)
    named = {a.proto for a in table if a.proto is not None}
    return np.asarray([any(_touches(s.l4(), a, named) for s in items) for a in table], bool)


def probe(atom: Atom, services: Iterable[Service] = ()) -> str:
    """One concrete service inside the atom (and inside the first touching service)."""
    lo = atom.lo
    named = {atom.proto} if atom.proto is not None else set()
    for s in services:
        if _touches(s.l4(), atom, named) and s.lo is not None and atom.lo >= 0:
            lo = max(lo, s.lo)
            break
    if atom.proto is None:
        return "other"
    if lo < 0 or atom.proto not in PORT_PROTOS + ICMP_PROTOS:
        return atom.name
    return f"{atom.name}/{lo}"


def services_text(table: list[Atom], mask: Mask) -> list[str]:
    """The atoms of ``mask`` as service strings, neighbouring atoms merged into ranges."""
    if mask.all():
        return ["any"]
    out: list[str] = []
    i = 0
    while i < len(table):
        n = 1
        while i + n < len(table) and table[i + n].proto == table[i].proto and table[i + n].lo >= 0:
            n += 1
        slot = table[i : i + n]
        out += _slot_text(slot, mask[i : i + n])
        i += n
    return out


def _slot_text(slot: list[Atom], mask: Mask) -> list[str]:
    name = slot[0].name
    if mask.all():
        return [name]
    out = [f"{name} (no port)"] if mask[0] else []
    j = 1
    while j < len(slot):
        if not mask[j]:
            j += 1
            continue
        k = j
        while k + 1 < len(slot) and mask[k + 1]:
            k += 1
        lo, hi = slot[j].lo, slot[k].hi
        ranged = slot[0].proto in PORT_PROTOS + ICMP_PROTOS
        if not ranged:
            out.append(name)
        else:
            out.append(f"{name}/{lo}" if lo == hi else f"{name}/{lo}-{hi}")
        j = k + 1
    return out
