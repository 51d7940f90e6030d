"""The brute-force reference for the analyses: enumerate every pair of ends and every probe
service, and judge each conversation with the per-conversation reference evaluator
(tests/policy/reference.py). Nothing from ``cellwall.analyze`` is used here.

Ends are a stand-in for each workload (its name and labels, one address of its own for all
time) and a few unmanaged addresses. Probes are, per protocol (TCP, UDP, SCTP, ICMP, ICMPv6
and every protocol the policy names), the port (or ICMP type) 0, every range's first port and
the port after its last, and "no port"; plus one protocol that the policy never names. So
every service atom of every policy gets at least one probe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cellwall.model.inventory import Workload
from cellwall.model.policy import ICMP_PROTOS, PORT_PROTOS, PolicySet, Selector
from tests.policy.reference import End, reference_judge, selector_matches

__all__ = ["AT", "Brute", "Probe", "brute", "probes", "stand_ins"]

AT = datetime(2026, 11, 1, tzinfo=UTC)
PROTOS = (6, 17, 132, 1, 58, 47)


@dataclass(frozen=True)
class Probe:
    proto: int
    port: int  # -1: none; the server's port, or the ICMP type the client sent

    def conversation(self, client: str, server: str) -> dict[str, object]:
        icmp = self.proto in ICMP_PROTOS
        return {
            "client_ip": client,
            "server_ip": server,
            "proto": self.proto,
            "server_port": -1 if icmp else self.port,
            "client_port": self.port if icmp else 40000,
            "start": AT,
            "server_process": None,
            "http_method": None,
            "http_path": None,
            "icmp_code": None,
        }


def probes(ps: PolicySet) -> list[Probe]:
    m = ps.settings.management
    services = [*m.services, *m.control_services, *(s for _, r in ps.rules() for s in r.services)]
    out: set[Probe] = set()
    named = {s.proto for s in services if s.proto is not None}
    other = next(p for p in (47, 50, 2, 3, 4, 5) if p not in named)
    for proto in sorted(set(PROTOS[:5]) | named | {other}):
        top = 256 if proto in ICMP_PROTOS else 65536
        ports = {-1, 0} if proto in PORT_PROTOS + ICMP_PROTOS else {-1}
        for s in services:
            if s.proto == proto and s.lo is not None and s.hi is not None:
                ports.update(p for p in (s.lo, s.hi + 1) if p < top)
        out.update(Probe(proto, p) for p in ports)
    return sorted(out, key=lambda p: (p.proto, p.port))


def stand_ins(workloads: Sequence[Workload]) -> list[Workload]:
    """Each workload with one address of its own, for all time (198.18.0.0/15)."""
    return [
        Workload.of(w.name, labels=w.labels, addresses=[f"198.18.{i // 250}.{i % 250 + 1}"])
        for i, w in enumerate(sorted(workloads, key=lambda w: w.name))
    ]


@dataclass
class Brute:
    """Verdicts for every (client end, server end, probe); ends are workload names or
    unmanaged addresses."""

    ends: list[str]
    ips: dict[str, str]
    workloads: dict[str, Workload]
    probes: list[Probe]
    verdict: dict[tuple[str, str, Probe], tuple[str, str | None, bool, bool]] = field(
        default_factory=dict
    )

    def allowed(self, a: str, b: str, *, effective: bool = False) -> bool:
        return any(self.ok(a, b, p, effective) for p in self.probes)

    def ok(self, a: str, b: str, p: Probe, effective: bool) -> bool:
        verdict, _, _, blocked = self.verdict[a, b, p]
        return (not blocked) if effective else verdict == "allowed"

    def matches(self, sel: Selector, ps: PolicySet, end: str) -> bool:
        w = self.workloads.get(end)
        return selector_matches(sel, End(self.ips[end], w), ps, AT, ())

    def layers(
        self, start: set[str], hops: int, probes: Sequence[Probe] | None = None
    ) -> list[set[str]]:
        """The ends first reached at each hop from ``start`` (which may be reached again
        from another start); every hop after the first leaves from a workload."""
        use = self.probes if probes is None else probes
        frontier: set[str] = set(start)
        reached: set[str] = set()
        out = []
        for _ in range(hops):
            nxt = {
                b
                for a in frontier
                for b in self.ends
                if b != a
                and b not in reached
                and (a, b, use[0]) in self.verdict
                and any(self.ok(a, b, p, False) for p in use)
            }
            reached |= nxt
            out.append(nxt)
            frontier = {b for b in nxt if b in self.workloads}
        return out


def brute(ps: PolicySet, workloads: Sequence[Workload], unmanaged: Sequence[str]) -> Brute:
    ws = stand_ins(workloads)
    ips = {w.name: w.addresses[0].ip for w in ws} | {ip: ip for ip in unmanaged}
    result = Brute([*ips], ips, {w.name: w for w in ws}, probes(ps))
    for a in result.ends:
        for b in result.ends:
            if a == b or (a not in result.workloads and b not in result.workloads):
                continue
            for p in result.probes:
                conv = p.conversation(ips[a], ips[b])
                result.verdict[a, b, p] = reference_judge(conv, ps, ws)
    return result
