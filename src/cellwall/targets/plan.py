"""The target-independent plan: what each host lets in and out, from the IR.

An :class:`Estate` is a lowered policy over an inventory at one instant (an address belongs
to the workload whose lease covers that instant). The address space of each family is cut
into *elements*: every workload address on its own, and the unmanaged ranges between them,
cut at every CIDR boundary the policy names (so each element has one endpoint of the IR).

For a host, :meth:`Estate.plan` gives, per direction (``in``: the host is the server;
``out``: the host is the client), :class:`Entry` rows: a peer address range, a protocol
range, a port or ICMP type range (or none), and the deciding rule. Adjacent peers that are
decided alike are merged into one range. Only ``allowed`` and ``denied`` decisions are
listed; what no entry covers is ``not-allowed``. What the host does with each is its mode's
business (:class:`Action`): the plan is computed once per (label class, management role)
and shared by every host of that class.

The management tier is listed apart (:attr:`HostPlan.management`); it comes before every
rule. Narrowed services count as matching (the L4 view): a host never sees the facts.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property

import numpy as np
import numpy.typing as npt

from cellwall.inventory.classify import Net
from cellwall.model.inventory import Workload
from cellwall.model.policy import ICMP_PROTOS, MODES, PORT_PROTOS, Service
from cellwall.policy.addresses import net_span
from cellwall.policy.ir import ALLOWED, DENIED, MANAGEMENT_IDS, PolicyIR

__all__ = ["Action", "Entry", "Estate", "Host", "HostPlan", "MgmtRule", "action_for"]

I32 = npt.NDArray[np.int32]


@dataclass(frozen=True, slots=True)
class Entry:
    """Peers ``first``..``last`` (one family) on protocols ``proto_lo..proto_hi`` and, for
    TCP/UDP/SCTP ports or ICMP types, ``lo..hi`` (None: the whole protocol), decided by
    ``code`` (an index into :attr:`PolicyIR.rules`)."""

    family: int
    first: str
    last: str
    proto_lo: int
    proto_hi: int
    lo: int | None
    hi: int | None
    code: int

    @property
    def kind(self) -> str:
        """``ports``, ``icmp`` or ``proto``: which lookup key the entry belongs to."""
        if self.lo is None:
            return "proto"
        return "icmp" if self.proto_lo in ICMP_PROTOS else "ports"


@dataclass(frozen=True, slots=True)
class MgmtRule:
    """A management-tier rule on one host: peers (CIDRs; None = every workload address)
    on ``services``, in direction ``in`` or ``out``."""

    rule_id: str
    direction: str
    peers: tuple[str, ...] | None
    services: tuple[Service, ...]


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    cls: int
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Action:
    """What a host does with a decision: ``accept``, ``drop`` or ``log`` (log and accept),
    with a log tag (``drop`` or ``would``)."""

    verdict: str
    kind: str


def action_for(mode: str, verdict: int) -> Action:
    """The action of a host in ``mode`` for a verdict (CONTRACTS.md, Verdicts and modes):
    visibility logs would-be drops and accepts; selective drops ``denied``; full drops
    ``denied`` and ``not-allowed``."""
    name = ("allowed", "denied", "not-allowed")[verdict]
    if verdict == ALLOWED:
        return Action(name, "accept")
    blocks = mode == "full" or (mode == "selective" and verdict == DENIED)
    return Action(name, "drop" if blocks else "log")


@dataclass(frozen=True, slots=True)
class HostPlan:
    """One host's plan: its mode, entries per direction, and its management rules."""

    mode: str
    inbound: tuple[Entry, ...]
    outbound: tuple[Entry, ...]
    management: tuple[MgmtRule, ...]

    def codes(self) -> list[int]:
        """The rules that some entry uses, in rule order."""
        return sorted({e.code for e in (*self.inbound, *self.outbound)})


def _addr_int(ip: str) -> tuple[int, int]:
    a = ipaddress.ip_address(ip)
    return a.version, int(a)


def _addr_text(family: int, value: int) -> str:
    return str(ipaddress.IPv4Address(value) if family == 4 else ipaddress.IPv6Address(value))


def _net_range(n: Net) -> tuple[int, int, int]:
    """(family, first, last) of a parsed CIDR, in the family's own numbering."""
    return (n.family, *net_span(n))


@dataclass(frozen=True, slots=True)
class _Partition:
    """One family's address space as elements: ``starts[i]..ends[i]`` is endpoint
    ``endpoint[i]`` (a class id when managed)."""

    family: int
    starts: list[int]
    ends: list[int]
    endpoint: I32


class Estate:
    """A lowered policy over workloads at an instant, ready to plan any host."""

    def __init__(
        self, ir: PolicyIR, workloads: Sequence[Workload], at: datetime | None = None
    ) -> None:
        self.ir = ir
        self.at = at or datetime.now(UTC)
        wc = ir.classes.workload_class
        self.hosts: dict[str, Host] = {}
        owner: dict[tuple[int, int], int] = {}
        for w in sorted(workloads, key=lambda w: w.name):
            addrs = tuple(sorted({a.ip for a in w.addresses if a.covers(self.at)}))
            self.hosts[w.name] = Host(w.name, wc[w.name], addrs)
            for ip in addrs:
                owner.setdefault(_addr_int(ip), wc[w.name])
        self.owner = owner
        self.partitions = [self._partition(f) for f in (4, 6)]
        self._piece_cache: dict[int, list[tuple[int, int, int | None, int | None, int]]] = {}
        self._plans: dict[tuple[int, bool, bool], HostPlan] = {}
        self.memo: dict[tuple[object, ...], object] = {}  # targets' caches (rendered text)

    # -- the address space ---------------------------------------------------------------

    def _partition(self, family: int) -> _Partition:
        managed = {v: c for (fam, v), c in self.owner.items() if fam == family}
        extra = {x for v in managed for x in (v, v + 1)}
        starts, ends, eps = [], [], []
        for first, last, sig in self.ir.terms.regions(family, extra):
            starts.append(first)
            ends.append(last)
            cls = managed.get(first) if first == last else None
            eps.append(cls if cls is not None else self.ir.groups.signature_endpoint(sig))
        return _Partition(family, starts, ends, np.asarray(eps, np.int32))

    @cached_property
    def workload_addresses(self) -> dict[int, tuple[str, ...]]:
        """Per family, every workload address (sorted), for the management tier."""
        out: dict[int, list[tuple[int, str]]] = {4: [], 6: []}
        for fam, v in sorted(self.owner):
            out[fam].append((v, _addr_text(fam, v)))
        return {f: tuple(t for _, t in vs) for f, vs in out.items()}

    # -- plans ---------------------------------------------------------------------------

    def mode_of(self, host: str) -> str:
        return MODES[int(self.ir.class_mode[self.hosts[host].cls])]

    def _roles(self, host: Host) -> tuple[bool, bool]:
        m = self.ir.management
        parsed = [_addr_int(a) for a in host.addresses]

        def owns(nets: tuple[Net, ...]) -> bool:
            ranges = [_net_range(n) for n in nets]
            return any(f == g and lo <= v <= hi for g, v in parsed for f, lo, hi in ranges)

        return owns(m.admin), owns(m.controllers)

    def plan(self, name: str) -> HostPlan:
        """The plan of host ``name`` (cached per label class and management role)."""
        host = self.hosts[name]
        admin, controller = self._roles(host)
        key = (host.cls, admin, controller)
        found = self._plans.get(key)
        if found is None:
            found = self._plans[key] = HostPlan(
                MODES[int(self.ir.class_mode[host.cls])],
                self._entries(host.cls, "in"),
                self._entries(host.cls, "out"),
                self._management(admin, controller),
            )
        return found

    def _management(self, admin: bool, controller: bool) -> tuple[MgmtRule, ...]:
        s = self.ir.policy_set.settings.management
        a_id, c_id = MANAGEMENT_IDS
        out = []
        if s.admin_networks and s.services:
            out.append(MgmtRule(a_id, "in", s.admin_networks, s.services))
            if admin:
                out.append(MgmtRule(a_id, "out", None, s.services))
        if s.controllers and s.control_services:
            out.append(MgmtRule(c_id, "out", s.controllers, s.control_services))
            if controller:
                out.append(MgmtRule(c_id, "in", None, s.control_services))
        return tuple(out)

    def _entries(self, cls: int, direction: str) -> tuple[Entry, ...]:
        out: list[Entry] = []
        for part in self.partitions:
            out.extend(self._family_entries(part, cls, direction))
        return tuple(out)

    def decisions(self, cls: int, peers: I32, direction: str) -> npt.NDArray[np.int32]:
        """Deciding rule per (peer endpoint, atom) for class ``cls`` (-1: none)."""
        prof = self.profiles(cls, peers, direction)
        return np.asarray(self.ir.groups.with_narrowed[prof], np.int32)

    def profiles(self, cls: int, peers: I32, direction: str) -> I32:
        """The decision profile of each (peer endpoint, class ``cls``) pair."""
        g = self.ir.groups
        if direction == "in":
            gs = g.ep_src[peers]
            gd = np.full(len(peers), g.ep_dst[cls], np.int32)
        else:
            gs = np.full(len(peers), g.ep_src[cls], np.int32)
            gd = g.ep_dst[peers]
        return g.pair_profiles(gs.astype(np.int32), gd.astype(np.int32))

    def _family_entries(self, part: _Partition, cls: int, direction: str) -> list[Entry]:
        uniq, inv = np.unique(part.endpoint, return_inverse=True)
        prof = self.profiles(cls, uniq.astype(np.int32), direction)
        # equal profiles have equal decision rows: cut each distinct one into pieces once
        row_keys, row_of = np.unique(prof, return_inverse=True)
        table = self.ir.groups.with_narrowed
        pieces = [self._pieces_of(int(p), table[p]) for p in row_keys.tolist()]
        elem_row = row_of.reshape(-1)[inv.reshape(-1)]
        out = []
        change = np.flatnonzero(np.diff(elem_row)) + 1
        bounds = [0, *change.tolist(), len(elem_row)]
        for i, j in itertools.pairwise(bounds):
            ps = pieces[int(elem_row[i])]
            if not ps:
                continue
            first = _addr_text(part.family, part.starts[i])
            last = _addr_text(part.family, part.ends[j - 1])
            for plo, phi, lo, hi, code in ps:
                out.append(Entry(part.family, first, last, plo, phi, lo, hi, code))
        return out

    def _pieces_of(
        self, profile: int, row: I32
    ) -> list[tuple[int, int, int | None, int | None, int]]:
        """:meth:`_pieces` of a profile's row, computed once per profile."""
        found = self._piece_cache.get(profile)
        if found is None:
            found = self._piece_cache[profile] = self._pieces(row)
        return found

    def _pieces(self, row: I32) -> list[tuple[int, int, int | None, int | None, int]]:
        """(proto_lo, proto_hi, lo, hi, code) for the allowed and denied atoms of one row."""
        out: list[tuple[int, int, int | None, int | None, int]] = []
        named = {s.proto for s in self.ir.atoms.slots if s.proto is not None}
        for slot in self.ir.atoms.slots:
            if slot.proto is None:
                code = int(row[slot.base])
                if code >= 0:
                    out += [(a, b, None, None, code) for a, b in _complement(named)]
                continue
            if slot.proto not in PORT_PROTOS + ICMP_PROTOS:
                code = int(row[slot.base])
                if code >= 0:
                    out.append((slot.proto, slot.proto, None, None, code))
                continue
            top = 256 if slot.proto in ICMP_PROTOS else 65536
            bounds = [*slot.cuts, top]
            j = 0
            n = len(slot.cuts)
            while j < n:
                code = int(row[slot.base + 1 + j])
                k = j
                while k + 1 < n and int(row[slot.base + 2 + k]) == code:
                    k += 1
                if code >= 0:
                    out.append((slot.proto, slot.proto, bounds[j], bounds[k + 1] - 1, code))
                j = k + 1
        return out


def _complement(named: set[int]) -> list[tuple[int, int]]:
    """The protocol ranges (inclusive) of 0..255 outside ``named``."""
    out = []
    lo = 0
    for p in sorted(named):
        if p > lo:
            out.append((lo, p - 1))
        lo = p + 1
    if lo <= 255:
        out.append((lo, 255))
    return out
