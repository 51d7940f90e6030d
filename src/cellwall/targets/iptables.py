"""iptables + ipset, per host, for hosts without nftables.

Three files per host: ``HOST.ipset`` (for ``ipset restore``), ``HOST.iptables`` and
``HOST.ip6tables`` (for ``iptables-restore`` / ``ip6tables-restore``; they own the ``filter``
table). Peers are ``hash:net`` sets, one per (direction, family, rule, service piece); the
chains ``CW-IN`` and ``CW-OUT`` hold one rule per set, so their length grows with the number
of distinct services, not of peers. Each rule's jump target counts and accepts
(``CW-A-n``) or counts, logs and drops (``CW-D-n``); a comment names the rule id.
iptables cannot look up (address, port) in one step, so this target is the slow one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import ClassVar

from cellwall.model.policy import ICMP_PROTOS, Service
from cellwall.targets.base import Artefact, Artefacts, Target, register
from cellwall.targets.nftables import host_file
from cellwall.targets.plan import Entry, Estate, HostPlan

__all__ = ["IptablesTarget", "render_host"]

_ND = ("router-solicitation", "router-advertisement", "neighbour-solicitation",
       "neighbour-advertisement")  # fmt: skip
_LOG = 20  # iptables log prefixes hold 29 characters


def _cidrs(first: str, last: str) -> Iterator[str]:
    a, b = ipaddress.ip_address(first), ipaddress.ip_address(last)
    for net in ipaddress.summarize_address_range(a, b):
        yield str(net)


def _settable(cidrs: list[str]) -> list[str]:
    """The CIDRs as a ``hash:net`` set holds them: it takes prefixes from /1, so a /0 is
    written as its two /1 halves."""
    out = []
    for c in cidrs:
        net = ipaddress.ip_network(c)
        out += [str(h) for h in net.subnets()] if net.prefixlen == 0 else [c]
    return out


def _service_args(proto: int, lo: int | None, hi: int | None, family: int) -> list[str]:
    """iptables match arguments for one protocol and port/type range (several for ICMP
    type ranges, which iptables matches one type at a time)."""
    if proto in ICMP_PROTOS:
        word = "icmp" if proto == 1 else "ipv6-icmp"
        if lo is None or hi is None or (lo, hi) == (0, 255):
            return [f"-p {word}"]
        opt = "--icmp-type" if family == 4 and proto == 1 else "--icmpv6-type"
        if (family == 4) != (proto == 1):
            return [f"-p {word}"]  # cross-family ICMP: no type match; see docs/targets.md
        return [f"-p {word} {opt} {t}" for t in range(lo, hi + 1)]
    if lo is None:
        return [f"-p {proto}"]
    ports = f"{lo}" if lo == hi else f"{lo}:{hi}"
    return [f"-p {proto} -m multiport --dports {ports}"]


def _mgmt_args(s: Service, family: int) -> list[str]:
    if s.proto is None:
        return [""]
    return _service_args(s.proto, s.lo, s.hi, family)


class _Renderer:
    def __init__(self, estate: Estate, plan: HostPlan) -> None:
        self.estate = estate
        self.plan = plan
        self.sets: list[str] = []
        self.rules: dict[int, list[str]] = {4: [], 6: []}
        self.named = {s.proto for s in estate.ir.atoms.slots if s.proto is not None}

    def add_set(self, name: str, family: int, cidrs: list[str]) -> None:
        fam = "inet" if family == 4 else "inet6"
        self.sets.append(f"create {name} hash:net family {fam} -exist")
        self.sets.append(f"flush {name}")
        self.sets += [f"add {name} {c}" for c in _settable(cidrs)]

    def target(self, code: int) -> str:
        r = self.estate.ir.rules[code]
        return f"CW-{'A' if r.verdict == 0 else 'D'}-{code}"

    def groups(self, direction: str, entries: tuple[Entry, ...]) -> None:
        by: dict[tuple[int, int, int, int, int | None, int | None], list[str]] = {}
        for e in entries:
            other = e.lo is None and not (e.proto_lo == e.proto_hi and e.proto_lo in self.named)
            key = (e.family, e.code, -1 if other else e.proto_lo, e.proto_hi, e.lo, e.hi)
            if other:
                key = (e.family, e.code, -1, -1, None, None)
            by.setdefault(key, []).extend(_cidrs(e.first, e.last))
        chain = "CW-IN" if direction == "in" else "CW-OUT"
        flag = "src" if direction == "in" else "dst"
        later: dict[int, list[str]] = {4: [], 6: []}
        for n, (key, cidrs) in enumerate(sorted(by.items(), key=repr)):
            fam, code, proto, _, lo, hi = key
            name = f"cw-{direction}{fam}-{n}"
            self.add_set(name, fam, sorted(set(cidrs)))
            rid = self.estate.ir.rules[code].id
            head = f'-A {chain} -m set --match-set {name} {flag} -m comment --comment "{rid}"'
            if proto < 0:
                later[fam].append(f"{head} -j {self.target(code)}")
                continue
            for args in _service_args(proto, lo, hi, fam):
                self.rules[fam].append(f"{head} {args} -j {self.target(code)}")
        for fam in (4, 6):
            if later[fam]:  # named protocols that no entry matched are not-allowed
                for p in sorted(self.named):
                    self.rules[fam].append(f"-A {chain} -p {p} -j CW-NA-{direction.upper()}")
                self.rules[fam].extend(later[fam])

    def management(self) -> None:
        for i, m in enumerate(self.plan.management):
            peers = m.peers
            if peers is None:
                addrs = self.estate.workload_addresses
                peers = (*addrs[4], *addrs[6])
            chain, flag = ("CW-IN", "src") if m.direction == "in" else ("CW-OUT", "dst")
            for fam in (4, 6):
                cidrs = [c for c in peers if (":" in c) == (fam == 6)]
                if not cidrs:
                    continue
                name = f"cw-mgmt{i}-{m.direction}{fam}"
                self.add_set(name, fam, [str(ipaddress.ip_network(c)) for c in cidrs])
                for s in m.services:
                    for args in _mgmt_args(s, fam):
                        self.rules[fam].append(
                            f"-A {chain} -m set --match-set {name} {flag} {args} -m comment "
                            f'--comment "{m.rule_id}" -j ACCEPT'.replace("  ", " ")
                        )

    def table(self, fam: int) -> str:
        ir = self.estate.ir
        lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
        codes = self.plan.codes()
        chains = ["CW-IN", "CW-OUT", "CW-NA-IN", "CW-NA-OUT", *(self.target(c) for c in codes)]
        lines += [f":{c} - [0:0]" for c in chains]
        lines += ["-A INPUT -j CW-IN", "-A OUTPUT -j CW-OUT"]
        for c in codes:
            r = ir.rules[c]
            t = self.target(c)
            if r.verdict == 0:
                lines.append(f'-A {t} -m comment --comment "{r.id}" -j ACCEPT')
                continue
            tag = "would" if self.plan.mode == "visibility" else "drop"
            lines.append(f'-A {t} -j LOG --log-prefix "cw:{tag}:{r.id[:_LOG]} "')
            lines.append(f"-A {t} -j {'ACCEPT' if tag == 'would' else 'DROP'}")
        for d in ("IN", "OUT"):
            tag = "drop" if self.plan.mode == "full" else "would"
            lines.append(f'-A CW-NA-{d} -j LOG --log-prefix "cw:{tag}:not-allowed "')
            lines.append(f"-A CW-NA-{d} -j {'DROP' if tag == 'drop' else 'ACCEPT'}")
        for chain, io in (("CW-IN", "-i"), ("CW-OUT", "-o")):
            lines.append(f"-A {chain} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT")
            lines.append(f"-A {chain} {io} lo -j ACCEPT")
            if fam == 6:
                lines += [f"-A {chain} -p ipv6-icmp --icmpv6-type {t} -j ACCEPT" for t in _ND]
        lines += self.rules[fam]
        lines += ["-A CW-IN -j CW-NA-IN", "-A CW-OUT -j CW-NA-OUT", "COMMIT"]
        return "\n".join(lines) + "\n"

    def render(self) -> tuple[str, str, str]:
        self.management()
        self.groups("in", self.plan.inbound)
        self.groups("out", self.plan.outbound)
        return "\n".join(self.sets) + "\n", self.table(4), self.table(6)


def render_host(estate: Estate, host: str) -> tuple[str, str, str]:
    """(ipset restore file, iptables-restore file, ip6tables-restore file) for one host."""
    plan = estate.plan(host)
    key = ("iptables", id(plan))
    found = estate.memo.get(key)
    if not isinstance(found, tuple):
        found = estate.memo[key] = _Renderer(estate, plan).render()
    return found


@register
class IptablesTarget(Target):
    name: ClassVar[str] = "iptables"
    per_host: ClassVar[bool] = True
    capabilities: ClassVar[frozenset[str]] = frozenset({"deny", "workload", "icmp", "other-proto"})
    description: ClassVar[str] = "iptables-restore and ipset restore files per host"

    def compile(self, estate: Estate, host: str | None) -> Artefacts:
        out = Artefacts(self.name, unsupported=self.gaps(estate.ir))
        for name in [host] if host is not None else sorted(estate.hosts):
            sets, v4, v6 = render_host(estate, name)
            out.files.append(Artefact(host_file(name, ".ipset"), sets, name))
            out.files.append(Artefact(host_file(name, ".iptables"), v4, name))
            out.files.append(Artefact(host_file(name, ".ip6tables"), v6, name))
        return out
