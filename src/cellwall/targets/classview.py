"""The class-level view that label-based targets (Kubernetes, Cilium, Calico, AWS) compile.

Peers are label classes and unmanaged *regions*: the address space cut only at the CIDR
boundaries the policy names (workload addresses are selected by labels, not punched out).
For a class and a direction, :func:`permitted` gives, per peer, the atoms the class's mode
lets through (``allowed``; in selective mode also ``not-allowed``) together with the rules
that decide them, and :func:`services` turns an atom mask into port ranges per protocol.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from cellwall.model.policy import ICMP_PROTOS, PORT_PROTOS
from cellwall.policy.addresses import WIDTH
from cellwall.policy.ir import ALLOWED, NOT_ALLOWED
from cellwall.targets.plan import Estate

__all__ = ["Peer", "ServicePiece", "cidr_block", "permitted", "region_peers", "services"]

Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Peer:
    """A label class (``cls``) or an unmanaged region (``ranges`` of (family, first, last))."""

    cls: int | None
    ranges: tuple[tuple[int, int, int], ...] = ()
    endpoint: int = -1


@dataclass(frozen=True, slots=True)
class ServicePiece:
    """A protocol (None: every protocol) with a port or ICMP type range (None: all)."""

    proto: int | None
    lo: int | None
    hi: int | None
    codes: tuple[int, ...] = field(default=(), compare=False)  # the deciding rules


def region_peers(estate: Estate) -> list[Peer]:
    """The unmanaged regions: elementary intervals between the policy's CIDR cuts."""
    memo = estate.memo.get(("regions",))
    if isinstance(memo, list):
        return memo
    out: list[Peer] = []
    for fam in (4, 6):
        for first, last, sig in estate.ir.terms.regions(fam):
            ep = estate.ir.groups.signature_endpoint(sig)
            out.append(Peer(None, ((fam, first, last),), ep))
    estate.memo[("regions",)] = out
    return out


def permitted(
    estate: Estate, cls: int, direction: str, want: int | None = None
) -> list[tuple[Peer, Mask, npt.NDArray[np.int32]]]:
    """Per peer (classes first, then regions merged where they behave alike): the atoms
    that class ``cls``'s mode lets through (or, with ``want``, whose verdict is ``want``),
    and the deciding rule per atom."""
    ir = estate.ir
    mode = int(ir.class_mode[cls])
    regions = region_peers(estate)
    eps = np.asarray(list(range(ir.classes.count)) + [p.endpoint for p in regions], np.int32)
    rows = estate.decisions(cls, eps, direction)
    verdict = ir.verdict_of[rows + 1]
    ok = verdict == ALLOWED
    if mode == 1:
        ok |= verdict == NOT_ALLOWED
    if mode == 0:
        ok[:] = True
    if want is not None:
        ok = verdict == want
    out: list[tuple[Peer, Mask, npt.NDArray[np.int32]]] = []
    for c in range(ir.classes.count):
        out.append((Peer(c, (), c), ok[c], rows[c]))
    merged: dict[bytes, int] = {}
    for i, p in enumerate(regions):
        j = ir.classes.count + i
        key = ok[j].tobytes() + rows[j].tobytes()
        k = merged.get(key)
        if k is None:
            merged[key] = len(out)
            out.append((p, ok[j], rows[j]))
        else:
            old, m, r = out[k]
            out[k] = (Peer(None, old.ranges + p.ranges, -1), m, r)
    return out


def services(
    estate: Estate, mask: Mask, row: npt.NDArray[np.int32] | None = None
) -> list[ServicePiece] | None:
    """The atoms of ``mask`` as pieces (None: every atom, i.e. all traffic), each with the
    rules that decide it (from ``row``)."""
    if mask.all():
        return None
    raw = _pieces(estate, mask)
    if row is None:
        return [ServicePiece(p, a, b) for p, a, b, _ in raw]
    return [
        ServicePiece(p, a, b, tuple(sorted({int(c) for c in row[atoms] if c >= 0})))
        for p, a, b, atoms in raw
    ]


def _pieces(
    estate: Estate, mask: Mask
) -> list[tuple[int | None, int | None, int | None, list[int]]]:
    out: list[tuple[int | None, int | None, int | None, list[int]]] = []
    for slot in estate.ir.atoms.slots:
        if slot.proto is None:
            if mask[slot.base] or mask[slot.base + 1]:
                out.append((None, None, None, [slot.base, slot.base + 1]))  # unnamed protocols
            continue
        if slot.proto not in PORT_PROTOS + ICMP_PROTOS:
            if mask[slot.base] or mask[slot.base + 1]:
                out.append((slot.proto, None, None, [slot.base, slot.base + 1]))
            continue
        top = 256 if slot.proto in ICMP_PROTOS else 65536
        bounds = [*slot.cuts, top]
        n = len(slot.cuts)
        sub = mask[slot.base + 1 : slot.base + 1 + n]
        if sub.all():
            out.append((slot.proto, None, None, list(range(slot.base + 1, slot.base + 1 + n))))
            continue
        j = 0
        while j < n:
            if not sub[j]:
                j += 1
                continue
            k = j
            while k + 1 < n and sub[k + 1]:
                k += 1
            atoms = list(range(slot.base + 1 + j, slot.base + 2 + k))
            out.append((slot.proto, bounds[j], bounds[k + 1] - 1, atoms))
            j = k + 1
    return out


def _text(fam: int, v: int) -> str:
    return str(ipaddress.IPv4Address(v) if fam == 4 else ipaddress.IPv6Address(v))


def _summarize(fam: int, a: int, b: int) -> Iterator[str]:
    lo, hi = ipaddress.ip_address(_text(fam, a)), ipaddress.ip_address(_text(fam, b))
    for n in ipaddress.summarize_address_range(lo, hi):
        yield str(n)


def cidr_block(ranges: tuple[tuple[int, int, int], ...]) -> list[tuple[str, list[str]]]:
    """The ranges as (CIDR, except CIDRs) blocks: per family, the plain CIDR cover or one
    enclosing CIDR less the gaps, whichever is shorter."""
    out: list[tuple[str, list[str]]] = []
    for fam in (4, 6):
        rs = sorted((a, b) for f, a, b in ranges if f == fam)
        if not rs:
            continue
        plain = [c for a, b in rs for c in _summarize(fam, a, b)]
        lo, hi = rs[0][0], rs[-1][1]
        width = WIDTH[fam]
        prefix = width - max((lo ^ hi).bit_length(), 0)
        base = lo >> (width - prefix) << (width - prefix) if prefix < width else lo
        top = base + (1 << (width - prefix)) - 1
        gaps: list[tuple[int, int]] = []
        cur = base
        for a, b in rs:
            if a > cur:
                gaps.append((cur, a - 1))
            cur = b + 1
        if cur <= top:
            gaps.append((cur, top))
        excepts = [c for a, b in gaps for c in _summarize(fam, a, b)]
        if 1 + len(excepts) < len(plain):
            out.append((f"{_text(fam, base)}/{prefix}", excepts))
        else:
            out += [(c, []) for c in plain]
    return out


@dataclass(frozen=True, slots=True)
class Grant:
    """Peers let through on the same services (None: all traffic), and the rules that
    decide those atoms."""

    peers: tuple[Peer, ...]
    services: tuple[ServicePiece, ...] | None
    codes: tuple[int, ...]


def grants(estate: Estate, cls: int, direction: str, want: int | None = None) -> list[Grant]:
    """What class ``cls`` lets through in ``direction`` (or, with ``want``, what has that
    verdict), peers grouped by equal services."""
    by: dict[bytes, tuple[list[Peer], Mask, set[int], npt.NDArray[np.int32]]] = {}
    for peer, ok, row in permitted(estate, cls, direction, want):
        if not ok.any():
            continue
        key = ok.tobytes() + np.where(ok, row, -1).tobytes()
        peers, _, codes, _ = by.setdefault(key, ([], ok, set(), row))
        peers.append(peer)
        codes.update(int(c) for c in row[ok] if c >= 0)
    out = []
    for peers, ok, codes, row in by.values():
        svc = services(estate, ok, row)
        out.append(Grant(tuple(peers), None if svc is None else tuple(svc), tuple(sorted(codes))))
    return out


def isolated(estate: Estate, cls: int, direction: str) -> bool:
    """True when the class's mode blocks something in ``direction`` (else no object)."""
    return not all(ok.all() for _, ok, _ in permitted(estate, cls, direction))
