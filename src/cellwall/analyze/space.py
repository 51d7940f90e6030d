"""The analysis space: every endpoint that a policy (and the questions asked of it) can tell
apart, and what the policy allows between them, as boolean matrices.

Endpoints are *cells* first: the label classes of the inventory, split further by the
workloads that the questions name (``workload: NAME``), so every workload of a cell is judged
alike by every rule and every question. Then come *intervals*: the unmanaged address space
cut at every CIDR boundary that the policy, the questions, the management tier and the
private ranges name, so every address of an interval is judged alike. ``fqdn`` terms need DNS
evidence and match no interval (the observed-evidence checks cover them).

Verdicts are taken at L4: a narrowed service counts as matching, which is how a conversation
that lacks the narrowing's facts is judged. By the tiers of docs/policy.md, a (client,
server, atom) is *allowed* exactly when the management tier covers it, or some ``allow`` rule
matches it and no ``override-deny`` rule does. The set of pairs that a set of rules matches is
the union of the rules' rectangles (``from`` × ``to``; a ``same`` rule is one rectangle per
value), computed as one matrix product; atoms that the same ``override-deny`` rules cover are
handled together, so a whole matrix costs a few products, whatever the number of atoms.

Pairs are of distinct workloads: a cell of one workload does not reach itself.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from cellwall.analyze.atoms import Atom, atom_table
from cellwall.inventory.classify import PRIVATE
from cellwall.model.inventory import Workload
from cellwall.model.policy import PolicySet, Selector
from cellwall.policy.classes import ClassTable, pinned_names
from cellwall.policy.ir import MANAGEMENT_IDS, VERDICTS, PolicyIR, Side, _all_selectors

__all__ = ["Decision", "Interval", "Space"]

Mask = npt.NDArray[np.bool_]
_TOP = {4: 1 << 32, 6: 1 << 128}


@dataclass(frozen=True, slots=True)
class Interval:
    """A range of unmanaged addresses that every rule and question judges alike."""

    family: int
    first: str
    last: str
    private: bool

    def __str__(self) -> str:
        return self.first if self.first == self.last else f"{self.first}-{self.last}"


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict for one (client, server, atom), the deciding rule, and every matching
    rule in precedence order (the deciding one first)."""

    verdict: str
    rule: str | None
    rules: tuple[str, ...]
    unverified: bool = False


def _nets(texts: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(t, strict=False) for t in texts]


def _addr(family: int, value: int) -> str:
    return str(ipaddress.IPv4Address(value) if family == 4 else ipaddress.IPv6Address(value))


def _cidrs_of(ps: PolicySet, selectors: Iterable[Selector]) -> set[str]:
    out: set[str] = set(PRIVATE)
    for il in ps.iplists:
        out.update(il.cidrs, il.except_)
    for s in [*_all_selectors(ps), *selectors]:
        out.update(s.cidrs, s.except_)
    m = ps.settings.management
    out.update(m.admin_networks, m.controllers)
    return out


def _intervals(cidrs: Iterable[str]) -> list[Interval]:
    cuts: dict[int, set[int]] = {4: {0, _TOP[4]}, 6: {0, _TOP[6]}}
    for net in _nets(cidrs):
        start = int(net.network_address)
        cuts[net.version].update((start, start + net.num_addresses))
    private = _nets(PRIVATE)
    out = []
    for fam in (4, 6):
        for a, b in itertools.pairwise(sorted(cuts[fam])):
            first = ipaddress.ip_address(_addr(fam, a))
            inside = any(first.version == n.version and first in n for n in private)
            out.append(Interval(fam, str(first), _addr(fam, b - 1), inside))
    return out


def _in(ip: str, cidrs: Sequence[str], excepts: Sequence[str] = ()) -> bool:
    a = ipaddress.ip_address(ip)
    inside = any(a.version == n.version and a in n for n in _nets(cidrs))
    return inside and not any(a.version == n.version and a in n for n in _nets(excepts))


def _management_owners(ps: PolicySet, workloads: Sequence[Workload]) -> set[str]:
    """Workloads that own an address in the admin networks or the controllers: the
    management tier matches them by address, so each is a cell of its own."""
    m = ps.settings.management
    nets = [*m.admin_networks, *m.controllers]
    if not nets:
        return set()
    return {w.name for w in workloads if any(_in(a.ip, nets) for a in w.addresses)}


class Space:
    """A policy lowered over an inventory, with the endpoints that ``extra`` selectors
    (questions about the policy) need; see the module docstring."""

    def __init__(
        self, ps: PolicySet, workloads: Sequence[Workload], extra: Sequence[Selector] = ()
    ) -> None:
        self.policy_set = ps
        self.ir = ir = PolicyIR(ps, workloads)
        self.workloads = {w.name: w for w in workloads}
        pins = (
            pinned_names(_all_selectors(ps))
            | pinned_names(extra)
            | _management_owners(ps, workloads)
        )
        self.cells = ClassTable(workloads, pins)
        members: list[list[str]] = [[] for _ in range(self.cells.count)]
        for name, c in self.cells.workload_class.items():
            members[c].append(name)
        self.members = [sorted(m) for m in members]
        self.cell_ir = np.asarray(
            [ir.classes.workload_class[m[0]] for m in self.members], np.intp
        ).reshape(-1)
        self.intervals = _intervals(_cidrs_of(ps, extra))
        self.k, self.u = self.cells.count, len(self.intervals)
        self.n = self.k + self.u
        self.is_cell = np.arange(self.n) < self.k
        self.sizes = np.asarray([len(m) for m in self.members] + [0] * self.u, np.int64)
        sig = ir.terms.cidr_members(pa.array([i.first for i in self.intervals], pa.string()))
        self._sig = np.asarray(sig, bool).reshape(self.u, ir.terms.count)
        with ir.groups.lock:
            eps = [ir.groups.signature_endpoint(self._sig[i]) for i in range(self.u)]
        self.ir_endpoint = np.concatenate([self.cell_ir, np.asarray(eps, np.intp)])
        self.atoms: list[Atom] = atom_table(ir.atoms)
        rules = ir.rules
        self.src = np.asarray([self._side(r.src) for r in rules], bool).reshape(len(rules), self.n)
        self.dst = np.asarray([self._side(r.dst) for r in rules], bool).reshape(len(rules), self.n)
        self.cover = ir.all_atoms
        self.mode = np.concatenate([ir.class_mode[self.cell_ir], np.full(self.u, -1, np.int8)])
        self._rects: dict[tuple[int, ...], Mask] = {}
        self._blocks: dict[tuple[str, ...], list[Mask]] = {}

    # -- endpoints ----------------------------------------------------------------------

    def _side(self, side: Side) -> Mask:
        cells = side.classes[self.cell_ir]
        addrs: Mask = np.zeros(self.u, bool)
        if side.unmanaged is not None:
            addrs = np.asarray(self._sig[:, list(side.unmanaged)].all(axis=1), bool)
        return np.concatenate([cells, addrs])

    def select(self, sel: Selector) -> Mask:
        """The endpoints that ``sel`` matches, judged without any scope."""
        cells = self.cells.selector(sel)
        if sel.any:
            addrs = np.ones(self.u, bool)
        elif sel.address_terms and not sel.workload_terms:
            addrs = np.asarray([self._address_match(sel, i.first) for i in self.intervals], bool)
        else:
            addrs = np.zeros(self.u, bool)
        return np.concatenate([cells, addrs.reshape(self.u)])

    def _address_match(self, sel: Selector, ip: str) -> bool:
        if sel.fqdn is not None:
            return False
        if sel.iplist is not None:
            il = self.policy_set.iplist(sel.iplist)
            if il is None or not _in(ip, il.cidrs, il.except_):
                return False
        return not sel.cidrs or _in(ip, sel.cidrs, sel.except_)

    def name(self, e: int) -> str:
        """A readable name of an endpoint: its labels (or pinned workload), or its range."""
        return self.cells.name(e) if e < self.k else f"address {self.intervals[e - self.k]}"

    def example(self, e: int, other: str | None = None) -> str:
        """A concrete end: a workload of the cell (not ``other``), or the interval's first
        address."""
        if e >= self.k:
            return self.intervals[e - self.k].first
        names = [m for m in self.members[e] if m != other]
        return names[0] if names else self.members[e][0]

    def workload_cells(self, names: Iterable[str]) -> Mask:
        out = np.zeros(self.n, bool)
        for name in names:
            out[self.cells.workload_class[name]] = True
        return out

    # -- rectangles -----------------------------------------------------------------------

    def _same_blocks(self, keys: tuple[str, ...]) -> list[Mask]:
        found = self._blocks.get(keys)
        if found is None:
            codes = np.full((self.n, len(keys)), -1, np.int64)
            for j, key in enumerate(keys):
                col = self.cells.codes.get(key)
                if col is not None:
                    codes[: self.k, j] = col
            valid = (codes >= 0).all(axis=1)
            found = [valid & (codes == row).all(axis=1) for row in np.unique(codes[valid], axis=0)]
            self._blocks[keys] = found
        return found

    def rect(self, rules: Iterable[int]) -> Mask:
        """The (client, server) pairs that at least one of ``rules`` matches (any atom)."""
        key = tuple(sorted(set(rules)))
        found = self._rects.get(key)
        if found is not None:
            return found
        shapes: dict[bytes, tuple[Mask, Mask]] = {}
        for r in key:
            s, d = self.src[r], self.dst[r]
            same = self.ir.rules[r].same
            parts = [(s, d)] if not same else [(s & b, d & b) for b in self._same_blocks(same)]
            for ps_, pd in parts:
                if ps_.any() and pd.any():
                    shapes.setdefault(
                        np.packbits(ps_).tobytes() + np.packbits(pd).tobytes(), (ps_, pd)
                    )
        if not shapes:
            found = np.zeros((self.n, self.n), bool)
        else:
            s_m = np.asarray([a for a, _ in shapes.values()], np.float32)
            d_m = np.asarray([b for _, b in shapes.values()], np.float32)
            found = (s_m.T @ d_m) > 0.5
        self._rects[key] = found
        return found

    @cached_property
    def distinct(self) -> Mask:
        """Pairs of distinct ends: a cell of one workload does not pair with itself."""
        out = np.ones((self.n, self.n), bool)
        single = np.flatnonzero(self.sizes[: self.k] == 1)
        out[single, single] = False
        return out

    @cached_property
    def _by_action(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {"allow": [], "deny": [], "override-deny": []}
        for r in self.ir.rules:
            out[r.action].append(r.index)
        return out

    @cached_property
    def _management(self) -> tuple[Mask, Mask, Mask, Mask]:
        """(admin ends, controller ends, admin atoms, control atoms)."""
        m = self.policy_set.settings.management
        admin = np.zeros(self.n, bool)
        ctrl = np.zeros(self.n, bool)
        for c, names in enumerate(self.members):  # workloads owning a management address
            ips = [a.ip for n in names for a in self.workloads[n].addresses]
            admin[c] = bool(m.services) and any(_in(ip, m.admin_networks) for ip in ips)
            ctrl[c] = bool(m.control_services) and any(_in(ip, m.controllers) for ip in ips)
        for i, iv in enumerate(self.intervals):
            admin[self.k + i] = bool(m.services) and _in(iv.first, m.admin_networks)
            ctrl[self.k + i] = bool(m.control_services) and _in(iv.first, m.controllers)
        a_atoms = np.zeros(len(self.atoms), bool)
        c_atoms = np.zeros(len(self.atoms), bool)
        for _, mask in self.ir.management.admin_services:
            a_atoms |= mask
        for _, mask in self.ir.management.control_services:
            c_atoms |= mask
        return admin, ctrl, a_atoms, c_atoms

    def management_pairs(self, atoms: Mask) -> Mask:
        """The pairs that the management tier allows on some of ``atoms``."""
        admin, ctrl, a_atoms, c_atoms = self._management
        out = np.zeros((self.n, self.n), bool)
        if (a_atoms & atoms).any():
            out |= np.outer(admin, self.is_cell)
        if (c_atoms & atoms).any():
            out |= np.outer(self.is_cell, ctrl)
        return out

    def _patterns(self, atoms: Mask, blockers: list[int]) -> Iterator[tuple[list[int], Mask]]:
        """Atoms of ``atoms`` grouped by the ``blockers`` (and the management services) that
        cover them."""
        groups: dict[bytes, list[int]] = {}
        _, _, a_atoms, c_atoms = self._management
        rows = [self.cover[blockers]] if blockers else []
        cover = np.concatenate([*rows, a_atoms[None, :], c_atoms[None, :]])[:, atoms]
        idx = np.flatnonzero(atoms)
        for col, a in enumerate(idx.tolist()):
            groups.setdefault(np.packbits(np.asarray(cover[:, col], bool)).tobytes(), []).append(a)
        for found in groups.values():
            mask = np.zeros(len(self.atoms), bool)
            mask[found] = True
            first = found[0]
            yield [r for r in blockers if self.cover[r, first]], mask

    # -- what is allowed ------------------------------------------------------------------

    def allowed(self, atoms: Mask) -> Mask:
        """(client, server) pairs allowed on at least one of ``atoms``."""
        out = self.management_pairs(atoms)
        allow = self._by_action["allow"]
        for blockers, part in self._patterns(atoms, self._by_action["override-deny"]):
            allows = [r for r in allow if (self.cover[r] & part).any()]
            if allows:
                m = self.rect(allows)
                out |= m & ~self.rect(blockers) if blockers else m
        return out & self.distinct

    def _not_blocked_extra(self) -> tuple[Mask, Mask]:
        vis = self.mode <= 0  # visibility, or no mode (an unmanaged end)
        nonfull = self.mode <= 1
        return np.outer(vis, vis), np.outer(nonfull, nonfull)

    def permitted(self, atoms: Mask, effective: bool = False) -> Mask:
        """Pairs allowed on some atom; with ``effective``, pairs that enforcement under the
        modes would let through on some atom (allowed, or not blocked by either end)."""
        allowed = self.allowed(atoms)
        if not effective or not atoms.any():
            return allowed
        both_vis, both_nonfull = self._not_blocked_extra()
        not_denied = allowed.copy()
        blockers = self._by_action["override-deny"] + self._by_action["deny"]
        for found, _ in self._patterns(atoms, blockers):
            if not found:
                not_denied[:] = True
                break
            not_denied |= ~self.rect(found)
        return (allowed | both_vis | (both_nonfull & not_denied)) & self.distinct

    def per_atom(self, atoms: Mask, effective: bool = False) -> Iterator[tuple[Mask, Mask]]:
        """(atoms, pairs permitted on each of them), for atoms grouped by the rules that
        cover them."""
        rules = list(range(len(self.ir.rules)))
        for covering, part in self._patterns(atoms, rules):
            allows = [r for r in covering if self.ir.rules[r].action == "allow"]
            over = [r for r in covering if self.ir.rules[r].action == "override-deny"]
            deny = [r for r in covering if self.ir.rules[r].action == "deny"]
            mg = self.management_pairs(part)
            m = mg | (self.rect(allows) & ~self.rect(over))
            if effective:
                both_vis, both_nonfull = self._not_blocked_extra()
                denied = ~mg & (self.rect(over) | (self.rect(deny) & ~self.rect(allows)))
                m = m | both_vis | (both_nonfull & ~denied)
            yield part, m & self.distinct

    # -- one decision ---------------------------------------------------------------------

    def _same_ok(self, r: int, i: int, j: int) -> bool:
        keys = self.ir.rules[r].same
        return not keys or any(b[i] and b[j] for b in self._same_blocks(keys))

    def decide(self, i: int, j: int, atom: int) -> Decision:
        """The verdict of client ``i`` → server ``j`` on ``atom``, with the matching rules."""
        admin, ctrl, a_atoms, c_atoms = self._management
        mg = []
        if admin[i] and self.is_cell[j] and a_atoms[atom]:
            mg.append(MANAGEMENT_IDS[0])
        if self.is_cell[i] and ctrl[j] and c_atoms[atom]:
            mg.append(MANAGEMENT_IDS[1])
        ir = self.ir
        matched = [
            int(r)
            for r in ir.order.tolist()
            if self.src[r, i] and self.dst[r, j] and self.cover[r, atom] and self._same_ok(r, i, j)
        ]
        ids = tuple(mg + [ir.rules[r].id for r in matched])
        if mg:
            return Decision("allowed", mg[0], ids)
        if not matched:
            return Decision(VERDICTS[2], None, ids)
        first = ir.rules[matched[0]]
        unverified = not bool(ir.plain[first.index, atom])
        return Decision(VERDICTS[first.verdict], first.id, ids, unverified)

    def blocked(self, i: int, j: int, verdict: str) -> bool:
        """Whether enforcement under the modes blocks ``verdict`` between ``i`` and ``j``."""
        if verdict == "allowed":
            return False
        level = 1 if verdict == "denied" else 2
        return bool(self.mode[i] >= level or self.mode[j] >= level)
