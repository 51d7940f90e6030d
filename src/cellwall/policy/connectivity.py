"""Canonical connectivity: what a lowered policy allows and denies, as a set of triples.

The address space is cut into *regions* of equal behaviour: a managed region is a set of
workloads, an unmanaged region a set of IP ranges (cut at every CIDR boundary the policy
names). Regions are merged whenever their verdicts agree everywhere, separately for the
client side and the server side, so that two policies that mean the same thing give the
same regions, whatever their rule ids, rule order within a tier, or how they split ports
and selectors. Each triple is (client region, server region, service range, verdict), with
services merged into maximal ranges per protocol; ``not-allowed`` is what no triple covers.

``fqdn`` terms need DNS evidence and are left out of the unmanaged regions; the management
tier is reported apart (:attr:`PolicyIR.management`). Narrowed services count as matching
(the L4 view); triples that a narrowing can change carry ``narrowed=True``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cellwall.model.policy import ICMP_PROTOS, PORT_PROTOS, PROTO_NAMES
from cellwall.policy.ir import ALLOWED, DENIED, VERDICTS, PolicyIR

__all__ = ["Connectivity", "Region", "Triple", "connectivity"]

_SPACE = 1 << 128
_NAMES = {v: k for k, v in PROTO_NAMES.items()}


@dataclass(frozen=True, order=True)
class Region:
    """A set of workloads, or of IP ranges (``(family, first, last)`` as text)."""

    workloads: tuple[str, ...] = ()
    ranges: tuple[tuple[int, str, str], ...] = ()

    def __str__(self) -> str:
        parts = list(self.workloads[:3]) + [f"{a}-{b}" for _, a, b in self.ranges[:3]]
        more = len(self.workloads) + len(self.ranges) - len(parts)
        return "{" + ", ".join(parts) + (f", +{more}" if more > 0 else "") + "}"


@dataclass(frozen=True, order=True)
class Triple:
    client: Region
    server: Region
    service: str
    verdict: str
    narrowed: bool = False


@dataclass(frozen=True)
class Connectivity:
    triples: frozenset[Triple]

    def allowed(self) -> list[Triple]:
        return sorted(t for t in self.triples if t.verdict == "allowed")

    def denied(self) -> list[Triple]:
        return sorted(t for t in self.triples if t.verdict == "denied")


def _text(fam: int, value: int) -> str:
    return str(ipaddress.IPv4Address(value) if fam == 4 else ipaddress.IPv6Address(value))


def _unmanaged_endpoints(ir: PolicyIR) -> list[tuple[int, tuple[int, str, str]]]:
    out = []
    for fam in (4, 6):
        for first, last, sig in ir.terms.regions(fam):
            ep = ir.groups.signature_endpoint(sig)
            out.append((ep, (fam, _text(fam, first), _text(fam, last))))
    return out


def _services(
    ir: PolicyIR, row: npt.NDArray[np.int8], flags: npt.NDArray[np.bool_]
) -> Iterable[tuple[str, int, bool]]:
    """(service text, verdict, narrowed) for one endpoint pair's atoms, merged into ranges."""
    for slot in ir.atoms.slots:
        n = len(slot.cuts)
        atoms = row[slot.base : slot.base + 1 + n].astype(np.int16) * 2
        atoms += flags[slot.base : slot.base + 1 + n]
        if slot.proto is None:
            if atoms[0] == atoms[1]:
                yield "other", int(atoms[0]) // 2, bool(atoms[0] % 2)
            continue
        name = _NAMES.get(slot.proto, f"proto/{slot.proto}")
        ranged = slot.proto in PORT_PROTOS + ICMP_PROTOS
        if not ranged or (atoms == atoms[0]).all():
            yield name, int(atoms[0]) // 2, bool(atoms[0] % 2)
            continue
        top = 256 if slot.proto in ICMP_PROTOS else 65536
        bounds = [*slot.cuts, top]
        j = 1
        while j <= n:
            k = j
            while k < n and atoms[k + 1] == atoms[j]:
                k += 1
            lo, hi = bounds[j - 1], bounds[k] - 1
            text = f"{name}/{lo}" if lo == hi else f"{name}/{lo}-{hi}"
            yield text, int(atoms[j]) // 2, bool(atoms[j] % 2)
            j = k + 1


def connectivity(ir: PolicyIR) -> Connectivity:
    """The canonical connectivity of ``ir`` (see the module docstring)."""
    g = ir.groups
    unmanaged = _unmanaged_endpoints(ir)
    c = ir.classes
    members: dict[int, list[str]] = {}
    for name, cls in c.workload_class.items():
        members.setdefault(cls, []).append(name)
    eps = list(range(c.count)) + [ep for ep, _ in unmanaged]
    regions = [Region(workloads=tuple(sorted(members.get(i, [])))) for i in range(c.count)]
    regions += [Region(ranges=(r,)) for _, r in unmanaged]
    gs = g.ep_src[np.asarray(eps, np.intp)] if eps else np.zeros(0, np.int32)
    gd = g.ep_dst[np.asarray(eps, np.intp)] if eps else np.zeros(0, np.int32)
    us, ud = np.unique(gs), np.unique(gd)
    pairs_s = np.repeat(us, len(ud)).astype(np.int32)
    pairs_d = np.tile(ud, len(us)).astype(np.int32)
    prof = g.pair_profiles(pairs_s, pairs_d) if len(pairs_s) else np.zeros(0, np.int32)
    plain = g.with_narrowed[prof] if len(prof) else np.zeros((0, ir.atoms.count), np.int32)
    need = g.need[prof] if len(prof) else np.zeros((0, ir.atoms.count), bool)
    verdict = ir.verdict_of[plain + 1].reshape(len(us), len(ud), ir.atoms.count)
    need = need.reshape(len(us), len(ud), ir.atoms.count)
    si = np.searchsorted(us, gs)
    di = np.searchsorted(ud, gd)
    # merge regions whose rows (as client) or columns (as server) agree everywhere
    src_regions = _merge(regions, si, verdict, need, axis=0)
    dst_regions = _merge(regions, di, verdict, need, axis=1)
    triples = set()
    for s_region, s_idx in src_regions:
        for d_region, d_idx in dst_regions:
            for svc, v, narrowed in _services(ir, verdict[s_idx, d_idx], need[s_idx, d_idx]):
                if v in (ALLOWED, DENIED):
                    triples.add(Triple(s_region, d_region, svc, VERDICTS[v], narrowed))
    return Connectivity(frozenset(triples))


def _merge(
    regions: list[Region],
    index: npt.NDArray[np.intp],
    verdict: npt.NDArray[np.int8],
    need: npt.NDArray[np.bool_],
    axis: int,
) -> list[tuple[Region, int]]:
    """Regions with equal behaviour merged: (merged region, its group index on that side)."""
    by_key: dict[bytes, tuple[list[str], list[tuple[int, str, str]], int]] = {}
    for r, i in zip(regions, index.tolist(), strict=True):
        view = verdict[i] if axis == 0 else verdict[:, i]
        flags = need[i] if axis == 0 else need[:, i]
        key = view.tobytes() + np.packbits(flags).tobytes()
        w, rg, _ = by_key.setdefault(key, ([], [], i))
        w.extend(r.workloads)
        rg.extend(r.ranges)
    return [(Region(tuple(sorted(w)), tuple(sorted(rg))), i) for w, rg, i in by_key.values()]
