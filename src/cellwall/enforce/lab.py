"""``cellwall lab verify``: the real-kernel proof that enforcement equals intent.

1. **Plan** (:func:`plan_lab`): one or two representative workloads per label class (two,
   when the class has them, so that traffic inside a class is probed between two hosts).
   ``sample`` keeps that many classes. Each representative keeps its IPv4 address; one
   without an IPv6 address gets a lab address (``fd00:ce11:1ab::N``), added to a rewritten
   inventory that both the compiler and the analyzer see. Then the *address ends*
   (:func:`cellwall.enforce.lab_ends.external_ends`): one unmanaged address per IP-list and
   CIDR term, one private and one public address in no list, one in each admin network and
   each controller; each is probed from and to one host of every class.
2. **Build** (:class:`Topology`): a namespace per representative and per address end, each
   with a veth into a bridge inside a lab namespace of its own. Nothing links the lab to the
   host's interfaces, so probe traffic cannot leave it.
3. **Apply** each host's compiled files (``nftables``, or ``iptables`` with ``ipset``:
   :mod:`cellwall.enforce.lab_targets`). Address ends run no ruleset: they are unmanaged.
4. **Listen** on every TCP, UDP and SCTP probe port (both ends of each port range the policy
   names, and one port just outside it) and **probe** every (client, server, service)
   triple with real connections over TCP, UDP, SCTP and ICMP echo, IPv4 and IPv6.
5. **Compare** what got through with :func:`cellwall.policy.judge.judge`'s ``blocked``.

A probe whose deciding rule the compiler reported unsupported is listed apart, never
counted as agreement; so is a probe the kernel cannot make (SCTP without the ``sctp``
module: *not probed*). A probe predicted allowed that did not get through is tried again
with a longer timeout before it counts as a disagreement.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import pyarrow as pa

from cellwall.enforce import netns
from cellwall.enforce.lab_plan import WORDS, LabHost, LabPlan, plan_lab, probe_points
from cellwall.enforce.lab_targets import Compiled, compile_hosts, lab_target
from cellwall.enforce.probe import (
    Listeners,
    Probe,
    allow_ping,
    probe_all,
    raise_fd_limit,
    sctp_supported,
)
from cellwall.model.inventory import Workload
from cellwall.model.policy import PolicySet

__all__ = [
    "PREFIX",
    "Compiled",
    "LabHost",
    "LabPlan",
    "LabResult",
    "Outcome",
    "Topology",
    "clean",
    "compile_hosts",
    "plan_lab",
    "probe_points",
    "run_lab",
    "verify_lab",
]

PREFIX = "cwlab"
SCTP = 132
NOT_PROBED_SCTP = (
    "SCTP: this kernel cannot make SCTP sockets (no sctp module; `modprobe sctp`), so SCTP "
    "probes are not probed"
)

Triple = tuple[LabHost, LabHost, Probe]


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
    probed: bool = True

    def to_dict(self) -> dict[str, Any]:
        seen = "blocked" if self.observed_blocked else "allowed"
        return {
            "client": self.client,
            "server": self.server,
            "service": self.service,
            "family": f"ipv{self.family}",
            "verdict": self.verdict,
            "rule_id": self.rule_id,
            "expected": "blocked" if self.expected_blocked else "allowed",
            "observed": seen if self.probed else "not probed",
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
    target: str = "nftables"
    ends: list[str] = field(default_factory=list)
    not_probed: list[Outcome] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.disagreements else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "hosts": self.hosts,
            "classes": self.classes,
            "ends": self.ends,
            "probes": self.probes,
            "agreed": self.agreed,
            "through": self.through,
            "disagreements": [o.to_dict() for o in self.disagreements],
            "unsupported": [o.to_dict() for o in self.unsupported],
            "unsupported_rules": self.unsupported_rules,
            "not_probed": [o.to_dict() for o in self.not_probed],
            "notes": self.notes,
            "seconds": round(self.seconds, 2),
        }

    def __str__(self) -> str:
        lines = [
            f"lab ({self.target}): {self.hosts} hosts for {self.classes} classes and "
            f"{len(self.ends)} address ends, {self.probes} probes, "
            f"{self.agreed} agreed ({self.through} got through), "
            f"{len(self.disagreements)} disagreements, "
            f"{len(self.unsupported)} under unsupported rules, "
            f"{len(self.not_probed)} not probed ({self.seconds:.1f} s)"
        ]
        lines += [f"DISAGREE {o}" for o in self.disagreements]
        for rule, why in sorted(self.unsupported_rules.items()):
            lines.append(f"unsupported rule {rule}: {why}")
        lines += [f"  under an unsupported rule: {o}" for o in self.unsupported[:50]]
        lines += [f"  not probed: {o}" for o in self.not_probed[:50]]
        if self.ends:
            lines.append("address ends: " + ", ".join(self.ends))
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


# -- the namespaces ------------------------------------------------------------------------


class Topology:
    """The lab's namespaces: ``PREFIX-lan`` with the bridge, ``PREFIX-N`` per host or end."""

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
            cmds = ["link set eth0 up"]
            if h.v6:
                cmds += [f"addr add {h.v6}/128 dev eth0 nodad", "route add ::/0 dev eth0"]
            if h.v4:
                cmds += [f"addr add {h.v4}/32 dev eth0", "route add 0.0.0.0/0 dev eth0"]
            netns.run(["ip", "-n", self.ns[h.name], "-batch", "-"], stdin="\n".join(cmds) + "\n")
            allow_ping(self.ns[h.name])

    def apply(self, compiled: Compiled) -> None:
        """Load each host's compiled files in its namespace (address ends get none)."""
        target = lab_target(compiled.target)
        for host, ns in self.ns.items():
            if host in compiled.files:
                target.load(ns, compiled.files[host])

    def close(self) -> None:
        netns.clean(f"{self.prefix}-")


# -- probing and judging -------------------------------------------------------------------


def _probes(plan: LabPlan, ns: Mapping[str, str]) -> list[Triple]:
    out = []
    for client, server in plan.pairs:
        for proto, port in plan.points:
            for fam in (4, 6):
                if (proto == 1 and fam == 6) or (proto == 58 and fam == 4):
                    continue
                dst = server.address(fam)
                if dst is None or client.address(fam) is None:
                    continue
                out.append((client, server, Probe(ns[client.name], dst, fam, proto, port)))
    return out


def _predict(plan: LabPlan, probes: Sequence[Triple]) -> pa.Table:
    from cellwall.policy.judge import judge

    convs = pa.table(
        {
            "client_ip": [c.address(p.family) or "" for c, _, p in probes],
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
    return WORDS[p.proto] + ("" if p.port is None else f"/{p.port}")


def _listen(
    plan: LabPlan, ns: Mapping[str, str], listeners: Listeners, protos: Sequence[int]
) -> None:
    for h in [*plan.hosts, *plan.ends]:
        for proto in protos:
            ports = [n for p, n in plan.points if p == proto and n is not None]
            if ports:
                listeners.listen(ns[h.name], proto, ports)


def _run_probes(
    plan: LabPlan,
    topo: Topology,
    probes: Sequence[Triple],
    blocked: Sequence[bool],
    timeout: float,
    parallel: int,
) -> list[bool]:
    """Whether each probe got through; one predicted allowed that did not is tried again
    with a longer timeout."""
    raise_fd_limit()  # a listener per (namespace, protocol, port)
    with Listeners() as listeners:
        _listen(plan, topo.ns, listeners, sorted({p for p, n in plan.points if n is not None}))
        seen = probe_all([p for *_, p in probes], timeout=timeout, parallel=parallel)
        doubt = [i for i, ok in enumerate(seen) if not ok and not blocked[i]]
        again = probe_all([probes[i][2] for i in doubt], timeout=max(1.0, timeout * 4))
        for i, ok in zip(doubt, again, strict=True):
            seen[i] = ok
    return seen


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
    lab_target(compiled.target).check()
    notes = list(plan.notes)
    unprobed: set[int] = set()
    if any(p == SCTP for p, _ in plan.points) and not sctp_supported():
        plan = replace(plan, points=[x for x in plan.points if x[0] != SCTP])
        unprobed.add(SCTP)
        notes.append(NOT_PROBED_SCTP)
    topo = Topology(prefix or f"{PREFIX}{os.getpid() % 100000}")
    try:
        topo.build([*plan.hosts, *plan.ends])
        topo.apply(compiled)
        probes = _probes(plan, topo.ns)
        verdicts = _predict(plan, probes).to_pylist()
        blocked = [bool(v["blocked"]) for v in verdicts]
        seen = _run_probes(plan, topo, probes, blocked, timeout, parallel)
    finally:
        topo.close()
    result = _compare(plan, compiled, probes, verdicts, seen, time.perf_counter() - started)
    result.notes = notes
    if unprobed:
        result.not_probed = _not_probed(plan, unprobed)
    return result


def _not_probed(plan: LabPlan, protos: set[int]) -> list[Outcome]:
    """The probes of ``protos`` that the kernel cannot make, with the judge's prediction."""
    points, _ = probe_points(plan.policy)
    skipped = replace(plan, points=[x for x in points if x[0] in protos])
    probes = _probes(skipped, {h.name: "-" for h in [*plan.hosts, *plan.ends]})
    verdicts = _predict(plan, probes).to_pylist()
    return [_outcome(t, v, False, probed=False) for t, v in zip(probes, verdicts, strict=True)]


def _outcome(
    triple: Triple, v: dict[str, Any], observed_blocked: bool, *, probed: bool = True
) -> Outcome:
    c, s, p = triple
    return Outcome(
        c.name,
        s.name,
        _service(p),
        p.family,
        v["verdict"],
        v["rule_id"],
        bool(v["blocked"]),
        observed_blocked,
        probed=probed,
    )


def _compare(
    plan: LabPlan,
    compiled: Compiled,
    probes: Sequence[Triple],
    verdicts: Sequence[dict[str, Any]],
    seen: Sequence[bool],
    seconds: float,
) -> LabResult:
    agreed, wrong, apart = 0, [], []
    for t, v, ok in zip(probes, verdicts, seen, strict=True):
        o = _outcome(t, v, not ok)
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
        target=compiled.target,
        ends=[e.name for e in plan.ends],
    )


Plant = Callable[[dict[str, dict[str, str]]], Mapping[str, Mapping[str, str]]]


def run_lab(
    policy: PolicySet,
    workloads: Sequence[Workload],
    *,
    sample: int | None = None,
    plant: Plant | None = None,
    timeout: float = 0.3,
    at: datetime | None = None,
    target: str = "nftables",
    ends: bool = True,
) -> LabResult:
    """Plan, compile with ``target`` (``nftables`` or ``iptables``), and verify. ``plant``
    may rewrite the compiled files first (per host, by kind: how the tests plant a wrong
    ruleset for the lab to catch). ``ends`` False leaves the address ends out."""
    lab_target(target)
    plan = plan_lab(policy, workloads, sample=sample, at=at, ends=ends)
    compiled = compile_hosts(
        plan.policy, plan.workloads, [h.name for h in plan.hosts], plan.at, target
    )
    if plant is not None:
        files = {h: dict(f) for h, f in compiled.files.items()}
        compiled = Compiled(compiled.target, plant(files), compiled.unsupported)
    return verify_lab(plan, compiled, timeout=timeout)


def clean() -> list[str]:
    """Remove every lab namespace left behind (``cellwall lab clean``)."""
    return netns.clean(PREFIX)
