"""``cellwall lab verify``: the real-kernel proof that enforcement equals intent.

1. **Plan** (:func:`plan_lab`): one or two representative workloads per label class (two,
   when the class has them, so that traffic inside a class is probed between two hosts).
   ``sample`` keeps that many classes. Each representative keeps its IPv4 address; one
   without an IPv6 address gets a lab address (``fd00:ce11:1ab::N``), added to a rewritten
   inventory that both the compiler and the analyzer see.
2. **Build** (:class:`Topology`): a namespace per representative, each with a veth into a
   bridge inside a lab namespace of its own. Nothing links the lab to the host's
   interfaces, so probe traffic cannot leave it.
3. **Apply** each host's compiled nftables (``cellwall compile --target nftables``).
4. **Listen** on every TCP and UDP probe port (both ends of each port range the policy
   names, and one port just outside it) and **probe** every (client class, server class,
   service) triple with real connections over TCP, UDP and ICMP echo, IPv4 and IPv6.
5. **Compare** what got through with :func:`cellwall.policy.judge.judge`'s ``blocked``.

A probe whose deciding rule the compiler reported unsupported is listed apart, never
counted as agreement. A probe predicted allowed that did not get through is tried again
with a longer timeout before it counts as a disagreement.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from cellwall.enforce import netns
from cellwall.enforce.nft import Nft
from cellwall.enforce.probe import Listeners, Probe, allow_ping, probe_all
from cellwall.model.inventory import AddressLease, Workload
from cellwall.model.policy import PolicySet, Service

__all__ = [
    "PREFIX",
    "LabHost",
    "LabPlan",
    "LabResult",
    "Outcome",
    "Topology",
    "compile_hosts",
    "plan_lab",
    "probe_points",
    "run_lab",
    "verify_lab",
]

PREFIX = "cwlab"
LAB_V6 = "fd00:ce11:1ab::"
#: The port probed for a rule that allows a whole protocol, and as a port no rule names.
SPARE_PORT = 61999
_WORDS = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}


@dataclass(frozen=True, slots=True)
class LabHost:
    name: str
    cls: int
    v4: str | None
    v6: str


@dataclass
class LabPlan:
    """The representatives, the rewritten inventory, the probe points and the pairs."""

    policy: PolicySet
    workloads: list[Workload]
    hosts: list[LabHost]
    points: list[tuple[int, int | None]]
    pairs: list[tuple[LabHost, LabHost]]
    classes: int
    at: datetime
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Compiled:
    rulesets: Mapping[str, str]
    unsupported: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Outcome:
    client: str
    server: str
    service: str
    family: int
    verdict: str
    rule_id: str | None
    expected_blocked: bool
    observed_blocked: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "server": self.server,
            "service": self.service,
            "family": f"ipv{self.family}",
            "verdict": self.verdict,
            "rule_id": self.rule_id,
            "expected": "blocked" if self.expected_blocked else "allowed",
            "observed": "blocked" if self.observed_blocked else "allowed",
        }

    def __str__(self) -> str:
        d = self.to_dict()
        return (
            f"{self.client} → {self.server} {self.service} {d['family']}: expected "
            f"{d['expected']} ({self.verdict}, rule {self.rule_id or '-'}), "
            f"observed {d['observed']}"
        )


@dataclass
class LabResult:
    hosts: int
    classes: int
    probes: int
    agreed: int
    through: int
    disagreements: list[Outcome]
    unsupported: list[Outcome]
    unsupported_rules: dict[str, str]
    notes: list[str]
    seconds: float

    @property
    def exit_code(self) -> int:
        return 1 if self.disagreements else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "hosts": self.hosts,
            "classes": self.classes,
            "probes": self.probes,
            "agreed": self.agreed,
            "through": self.through,
            "disagreements": [o.to_dict() for o in self.disagreements],
            "unsupported": [o.to_dict() for o in self.unsupported],
            "unsupported_rules": self.unsupported_rules,
            "notes": self.notes,
            "seconds": round(self.seconds, 2),
        }

    def __str__(self) -> str:
        lines = [
            f"lab: {self.hosts} hosts for {self.classes} classes, {self.probes} probes, "
            f"{self.agreed} agreed ({self.through} got through), "
            f"{len(self.disagreements)} disagreements, "
            f"{len(self.unsupported)} under unsupported rules ({self.seconds:.1f} s)"
        ]
        lines += [f"DISAGREE {o}" for o in self.disagreements]
        for rule, why in sorted(self.unsupported_rules.items()):
            lines.append(f"unsupported rule {rule}: {why}")
        lines += [f"  under an unsupported rule: {o}" for o in self.unsupported[:50]]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


# -- planning ------------------------------------------------------------------------------


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
    """(protocol, port) points to probe: both ends of every TCP/UDP range and one port past
    it, a spare port, and ICMP/ICMPv6 echo; with notes on what cannot be probed."""
    m = policy.settings.management
    services: list[Service] = [s for _, r in policy.rules() for s in r.services]
    services += [*m.services, *m.control_services]
    ports: dict[int, set[int]] = {6: {SPARE_PORT}, 17: {SPARE_PORT}}
    notes = set()
    for s in services:
        for proto in [s.proto] if s.proto is not None else [6, 17]:
            if proto not in ports:
                if proto not in (1, 58):
                    notes.add(f"protocol {_WORDS.get(proto, proto)} is not probed")
                continue
            if s.lo is None or s.hi is None:
                continue
            past = s.hi + 1 if s.hi < 65535 else s.lo - 1
            ports[proto].update(p for p in (s.lo, s.hi, past) if p > 0)
    points: list[tuple[int, int | None]] = [(p, n) for p in (6, 17) for n in sorted(ports[p])]
    return [*points, (1, None), (58, None)], sorted(notes)


def plan_lab(
    policy: PolicySet,
    workloads: Sequence[Workload],
    *,
    sample: int | None = None,
    at: datetime | None = None,
) -> LabPlan:
    when = at or datetime.now(UTC)
    by_class = _representatives(policy, workloads, when)
    total = len(by_class)
    points, notes = probe_points(policy)
    if sample is not None and sample < total:
        firsts = {c: ws[0] for c, ws in by_class.items()}
        busy = _busy_pairs(policy, workloads, firsts, points, when)
        by_class = _sample(by_class, busy, sample)
        notes.append(f"sampled {sample} of {total} classes")
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
    pairs = []
    for ca, client in sorted(hosts.items()):
        for cb, server in sorted(hosts.items()):
            if ca != cb:
                pairs.append((client[0], server[0]))
            elif len(server) > 1:
                pairs.append((client[0], server[1]))
    flat = [h for hs in hosts.values() for h in hs]
    return LabPlan(policy, list(rewritten.values()), flat, points, pairs, total, when, notes)


# -- compiling -----------------------------------------------------------------------------


def compile_hosts(
    policy: PolicySet, workloads: Sequence[Workload], hosts: Sequence[str], at: datetime
) -> Compiled:
    """Each host's nftables ruleset, and the rules the compiler reported unsupported."""
    from cellwall.services.compile import make_estate
    from cellwall.targets.nftables import NftablesTarget

    estate = make_estate(policy, workloads, at)
    target = NftablesTarget()
    rulesets: dict[str, str] = {}
    unsupported: dict[str, str] = {}
    for h in hosts:
        art = target.compile(estate, h)
        rulesets.update({a.host: a.text for a in art.files if a.host is not None})
        for u in art.unsupported:
            unsupported.setdefault(u.rule_id, u.reason)
    return Compiled(rulesets, unsupported)


# -- the namespaces ------------------------------------------------------------------------


class Topology:
    """The lab's namespaces: ``PREFIX-lan`` with the bridge, ``PREFIX-N`` per host."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.lan = f"{prefix}-lan"
        self.ns: dict[str, str] = {}

    def build(self, hosts: Sequence[LabHost]) -> None:
        netns.add(self.lan)
        lan = ["link add br0 type bridge", "link set br0 up"]
        for i, h in enumerate(hosts):
            ns = self.ns[h.name] = f"{self.prefix}-{i}"
            netns.add(ns)
            lan += [
                f"link add p{i} type veth peer name eth0 netns {ns}",
                f"link set p{i} master br0",
                f"link set p{i} up",
            ]
        netns.run(["ip", "-n", self.lan, "-batch", "-"], stdin="\n".join(lan) + "\n")
        for h in hosts:
            cmds = ["link set eth0 up", f"addr add {h.v6}/128 dev eth0 nodad"]
            cmds.append("route add ::/0 dev eth0")
            if h.v4:
                cmds += [f"addr add {h.v4}/32 dev eth0", "route add 0.0.0.0/0 dev eth0"]
            netns.run(["ip", "-n", self.ns[h.name], "-batch", "-"], stdin="\n".join(cmds) + "\n")
            allow_ping(self.ns[h.name])

    def apply(self, rulesets: Mapping[str, str]) -> None:
        for host, ns in self.ns.items():
            if host in rulesets:
                Nft(ns).replace_table(rulesets[host])

    def close(self) -> None:
        netns.clean(f"{self.prefix}-")


# -- probing and judging -------------------------------------------------------------------


def _probes(plan: LabPlan, ns: Mapping[str, str]) -> list[tuple[LabHost, LabHost, Probe]]:
    out = []
    for client, server in plan.pairs:
        for proto, port in plan.points:
            for fam in (4, 6):
                if (proto == 1 and fam == 6) or (proto == 58 and fam == 4):
                    continue
                dst = server.v4 if fam == 4 else server.v6
                if dst is None or (fam == 4 and client.v4 is None):
                    continue
                out.append((client, server, Probe(ns[client.name], dst, fam, proto, port)))
    return out


def _predict(plan: LabPlan, probes: Sequence[tuple[LabHost, LabHost, Probe]]) -> pa.Table:
    from cellwall.policy.judge import judge

    def src(c: LabHost, p: Probe) -> str:
        return (c.v4 if p.family == 4 else c.v6) or ""

    convs = pa.table(
        {
            "client_ip": [src(c, p) for c, _, p in probes],
            "server_ip": [p.dst for _, _, p in probes],
            "proto": pa.array([p.proto for _, _, p in probes], pa.uint8()),
            "server_port": pa.array(
                [p.port if p.port is not None else -1 for *_, p in probes], pa.int32()
            ),
            "client_port": pa.array(
                [(8 if p.proto == 1 else 128) if p.port is None else -1 for *_, p in probes],
                pa.int32(),
            ),
            "start": pa.array([plan.at] * len(probes), pa.timestamp("us", tz="UTC")),
        }
    )
    return judge(convs, plan.policy, plan.workloads)


def _service(p: Probe) -> str:
    return _WORDS[p.proto] + ("" if p.port is None else f"/{p.port}")


def _listen(plan: LabPlan, ns: Mapping[str, str], listeners: Listeners) -> None:
    for h in plan.hosts:
        for proto in (6, 17):
            ports = [n for p, n in plan.points if p == proto and n is not None]
            listeners.listen(ns[h.name], proto, ports)


def verify_lab(
    plan: LabPlan,
    compiled: Compiled,
    *,
    prefix: str | None = None,
    timeout: float = 0.3,
    parallel: int = 1000,
) -> LabResult:
    """Build the lab, apply ``compiled``, probe, compare; the namespaces are always removed."""
    started = time.perf_counter()
    topo = Topology(prefix or f"{PREFIX}{os.getpid() % 100000}")
    try:
        topo.build(plan.hosts)
        topo.apply(compiled.rulesets)
        probes = _probes(plan, topo.ns)
        verdicts = _predict(plan, probes).to_pylist()
        with Listeners() as listeners:
            _listen(plan, topo.ns, listeners)
            seen = probe_all([p for *_, p in probes], timeout=timeout, parallel=parallel)
            doubt = [i for i, ok in enumerate(seen) if not ok and not verdicts[i]["blocked"]]
            again = probe_all([probes[i][2] for i in doubt], timeout=max(1.0, timeout * 4))
            for i, ok in zip(doubt, again, strict=True):
                seen[i] = ok
    finally:
        topo.close()
    return _compare(plan, compiled, probes, verdicts, seen, time.perf_counter() - started)


def _compare(
    plan: LabPlan,
    compiled: Compiled,
    probes: Sequence[tuple[LabHost, LabHost, Probe]],
    verdicts: Sequence[dict[str, Any]],
    seen: Sequence[bool],
    seconds: float,
) -> LabResult:
    agreed, wrong, apart = 0, [], []
    for (c, s, p), v, ok in zip(probes, verdicts, seen, strict=True):
        o = Outcome(
            c.name,
            s.name,
            _service(p),
            p.family,
            v["verdict"],
            v["rule_id"],
            bool(v["blocked"]),
            not ok,
        )
        if o.rule_id in compiled.unsupported:
            apart.append(o)
        elif o.expected_blocked == o.observed_blocked:
            agreed += 1
        else:
            wrong.append(o)
    return LabResult(
        hosts=len(plan.hosts),
        classes=len({h.cls for h in plan.hosts}),
        probes=len(probes),
        agreed=agreed,
        through=sum(1 for ok in seen if ok),
        disagreements=wrong,
        unsupported=apart,
        unsupported_rules=dict(compiled.unsupported),
        notes=plan.notes,
        seconds=seconds,
    )


def run_lab(
    policy: PolicySet,
    workloads: Sequence[Workload],
    *,
    sample: int | None = None,
    plant: Callable[[dict[str, str]], dict[str, str]] | None = None,
    timeout: float = 0.3,
    at: datetime | None = None,
) -> LabResult:
    """Plan, compile with the nftables target, and verify. ``plant`` may rewrite the
    compiled rulesets first (how the tests plant a wrong ruleset for the lab to catch)."""
    plan = plan_lab(policy, workloads, sample=sample, at=at)
    compiled = compile_hosts(plan.policy, plan.workloads, [h.name for h in plan.hosts], plan.at)
    if plant is not None:
        compiled = Compiled(plant(dict(compiled.rulesets)), compiled.unsupported)
    return verify_lab(plan, compiled, timeout=timeout)


def clean() -> list[str]:
    """Remove every lab namespace left behind (``cellwall lab clean``)."""
    return netns.clean(PREFIX)
