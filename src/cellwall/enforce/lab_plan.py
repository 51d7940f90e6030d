"""Planning a lab: the representatives, the address ends, the probe points and the pairs.

:func:`plan_lab` keeps one or two workloads per label class (a sample of classes when asked,
busy ones first), gives each an IPv6 address when it has none (``fd00:ce11:1ab::N``, in a
rewritten inventory that both the compiler and the analyzer see), adds the address ends of
:mod:`cellwall.enforce.lab_ends`, and lists the (client, server) pairs to probe: every class
to every other, inside a class between two hosts, and one host of every class to and from
every address end. :func:`probe_points` gives the (protocol, port) points.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pyarrow as pa

from cellwall.enforce.lab_ends import external_ends
from cellwall.model.inventory import AddressLease, Workload
from cellwall.model.policy import PolicySet, Service

__all__ = ["LAB_V6", "SPARE_PORT", "LabHost", "LabPlan", "plan_lab", "probe_points"]

LAB_V6 = "fd00:ce11:1ab::"
#: The port probed for a rule that allows a whole protocol, and as a port no rule names.
SPARE_PORT = 61999
WORDS = {6: "tcp", 17: "udp", 132: "sctp", 1: "icmp", 58: "icmpv6"}
SCTP = 132


@dataclass(frozen=True, slots=True)
class LabHost:
    """A namespace of the lab: a workload (``kind`` ``workload``, its class ``cls``) or an
    address end (``kind`` of :class:`~cellwall.enforce.lab_ends.End`, ``cls`` -1)."""

    name: str
    cls: int
    v4: str | None
    v6: str | None
    kind: str = "workload"

    def address(self, family: int) -> str | None:
        return self.v4 if family == 4 else self.v6


@dataclass
class LabPlan:
    """The representatives, the address ends, the rewritten inventory, the probe points
    and the (client, server) pairs."""

    policy: PolicySet
    workloads: list[Workload]
    hosts: list[LabHost]
    points: list[tuple[int, int | None]]
    pairs: list[tuple[LabHost, LabHost]]
    classes: int
    at: datetime
    notes: list[str] = field(default_factory=list)
    ends: list[LabHost] = field(default_factory=list)


def _addr(w: Workload, at: datetime, version: int) -> str | None:
    for a in w.addresses:
        if a.covers(at) and (":" in a.ip) == (version == 6):
            return a.ip
    return None


def _representatives(
    policy: PolicySet, workloads: Sequence[Workload], at: datetime
) -> dict[int, list[Workload]]:
    """Up to two workloads (with an address at ``at``) per label class."""
    from cellwall.policy.ir import PolicyIR

    wc = PolicyIR(policy, workloads).classes.workload_class
    by_class: dict[int, list[Workload]] = {}
    for w in sorted(workloads, key=lambda w: w.name):
        if _addr(w, at, 4) or _addr(w, at, 6):
            members = by_class.setdefault(wc[w.name], [])
            if len(members) < 2:
                members.append(w)
    return by_class


def _busy_pairs(
    policy: PolicySet,
    workloads: Sequence[Workload],
    reps: Mapping[int, Workload],
    points: Sequence[tuple[int, int | None]],
    at: datetime,
) -> list[tuple[int, int]]:
    """Class pairs that some rule decides on a probe point (allowed or denied), judged on
    one IPv4 address per class."""
    from cellwall.policy.judge import judge

    ips = {c: _addr(w, at, 4) for c, w in reps.items()}
    classes = [c for c, ip in ips.items() if ip]
    rows = [(a, b, p, n) for a in classes for b in classes if a != b for p, n in points[:-2]]
    if not rows:
        return []
    convs = pa.table(
        {
            "client_ip": [ips[a] for a, *_ in rows],
            "server_ip": [ips[b] for _, b, *_ in rows],
            "proto": pa.array([p for *_, p, _ in rows], pa.uint8()),
            "server_port": pa.array([n for *_, n in rows], pa.int32()),
            "client_port": pa.array([-1] * len(rows), pa.int32()),
            "start": pa.array([at] * len(rows), pa.timestamp("us", tz="UTC")),
        }
    )
    decided = judge(convs, policy, workloads)["rule_id"].to_pylist()
    return sorted({(a, b) for (a, b, *_), rule in zip(rows, decided, strict=True) if rule})


def _sample(
    by_class: dict[int, list[Workload]], busy: Sequence[tuple[int, int]], sample: int
) -> dict[int, list[Workload]]:
    """``sample`` classes: the ends of randomly chosen busy pairs first (so allowed and
    denied paths are exercised), then other classes at random."""
    rng = random.Random(0)
    keep: list[int] = []
    for a, b in rng.sample(list(busy), len(busy)):
        for c in (a, b):
            if c not in keep and len(keep) < sample:
                keep.append(c)
    rest = [c for c in sorted(by_class) if c not in keep]
    keep += rng.sample(rest, max(0, sample - len(keep)))
    return {c: by_class[c] for c in sorted(keep)}


def probe_points(policy: PolicySet) -> tuple[list[tuple[int, int | None]], list[str]]:
    """(protocol, port) points to probe: both ends of every TCP/UDP/SCTP range and one port
    past it, a spare port, and ICMP/ICMPv6 echo; with notes on what cannot be probed. SCTP
    is probed only when the policy names it."""
    m = policy.settings.management
    services: list[Service] = [s for _, r in policy.rules() for s in r.services]
    services += [*m.services, *m.control_services]
    ports: dict[int, set[int]] = {6: {SPARE_PORT}, 17: {SPARE_PORT}}
    if any(s.proto == SCTP for s in services):
        ports[SCTP] = {SPARE_PORT}
    notes = set()
    for s in services:
        for proto in [s.proto] if s.proto is not None else list(ports):
            if proto not in ports:
                if proto not in (1, 58):
                    notes.add(f"protocol {WORDS.get(proto, proto)} is not probed")
                continue
            if s.lo is None or s.hi is None:
                continue
            past = s.hi + 1 if s.hi < 65535 else s.lo - 1
            ports[proto].update(p for p in (s.lo, s.hi, past) if p > 0)
    points: list[tuple[int, int | None]] = [(p, n) for p in ports for n in sorted(ports[p])]
    return [*points, (1, None), (58, None)], sorted(notes)


def _hosts(
    by_class: Mapping[int, list[Workload]], workloads: Sequence[Workload], when: datetime
) -> tuple[dict[int, list[LabHost]], list[Workload]]:
    """The lab hosts per class, and the inventory with lab IPv6 addresses added."""
    hosts: dict[int, list[LabHost]] = {}
    rewritten = {w.name: w for w in workloads}
    n = 0
    for cls, members in sorted(by_class.items()):
        for w in members:
            n += 1
            v6 = _addr(w, when, 6)
            if v6 is None:
                v6 = f"{LAB_V6}{n:x}"
                rewritten[w.name] = replace(w, addresses=(*w.addresses, AddressLease(v6)))
            hosts.setdefault(cls, []).append(LabHost(w.name, cls, _addr(w, when, 4), v6))
    return hosts, list(rewritten.values())


def plan_lab(
    policy: PolicySet,
    workloads: Sequence[Workload],
    *,
    sample: int | None = None,
    at: datetime | None = None,
    ends: bool = True,
) -> LabPlan:
    """The lab's plan; ``ends`` False probes workloads only."""
    when = at or datetime.now(UTC)
    by_class = _representatives(policy, workloads, when)
    total = len(by_class)
    points, notes = probe_points(policy)
    if sample is not None and sample < total:
        firsts = {c: ws[0] for c, ws in by_class.items()}
        busy = _busy_pairs(policy, workloads, firsts, points, when)
        by_class = _sample(by_class, busy, sample)
        notes.append(f"sampled {sample} of {total} classes")
    hosts, rewritten = _hosts(by_class, workloads, when)
    pairs = []
    for ca, client in sorted(hosts.items()):
        for cb, server in sorted(hosts.items()):
            if ca != cb:
                pairs.append((client[0], server[0]))
            elif len(server) > 1:
                pairs.append((client[0], server[1]))
    others: list[LabHost] = []
    if ends:
        taken = {a.ip for w in rewritten for a in w.addresses}
        found, end_notes = external_ends(policy, taken)
        notes += end_notes
        others = [LabHost(e.name, -1, e.v4, e.v6, e.kind) for e in found]
        for first, *_ in sorted(hosts.values(), key=lambda hs: hs[0].cls):
            for e in others:
                pairs += [(first, e), (e, first)]
    flat = [h for hs in hosts.values() for h in hs]
    return LabPlan(policy, rewritten, flat, points, pairs, total, when, notes, others)
