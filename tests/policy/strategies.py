"""Hypothesis strategies: random inventories, policy sets, DNS evidence and conversations.

Everything is drawn from small vocabularies so that selectors, lists and services overlap
with the inventory often enough that rules actually fire: four label keys (app, role, env,
data) with two or three values each (plus ``loc``, which only ``same`` names), a handful of
IPv4 and IPv6 addresses shared between workloads (so that leases overlap and change hands),
unmanaged addresses inside and outside the IP lists, six moments in time for lease and DNS
bounds, and services built around a few ports, ICMP types and narrowing facts.

:func:`scenarios` draws one whole case: workloads, a policy set (scoped and unscoped
policies with modes, every selector term, every service form, all three actions, the
management tier), DNS evidence (random, and for the names that the policy asks for) and
conversations. Two in three conversations are *aimed* (:class:`Aims`): their ends are drawn
among the addresses that some rule's sides match at that moment and their service after
that rule's, so that rules actually decide; the rest are drawn at random. Facts for
narrowed services are present and agreeing, present and disagreeing, or missing.
:func:`wide_scenarios` adds sizes past one machine word: 70+ DNS names and rules, dozens of
workloads in many label classes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from hypothesis import strategies as st

from cellwall.model.inventory import AddressLease, Workload
from cellwall.model.labels import Labels
from cellwall.model.policy import (
    ACTIONS,
    MODES,
    IPList,
    LabelTerm,
    Management,
    Policy,
    PolicySet,
    Rule,
    Selector,
    Service,
    Settings,
)
from tests.policy.reference import End, canonical_dns, in_cidrs, owner_at, side_matches

__all__ = [
    "Scenario",
    "conversations",
    "dns_evidence",
    "inventories",
    "policy_sets",
    "scenarios",
    "wide_scenarios",
]

T = TypeVar("T")
Draw = st.DrawFn

T0 = datetime(2026, 11, 1, tzinfo=UTC)
#: Lease bounds and DNS validity are cut at these moments; conversations start at them, just
#: before them, or between them (half-open intervals are tested at their edges).
MOMENTS = tuple(T0 + timedelta(hours=h) for h in range(6))
US = timedelta(microseconds=1)

VOCAB: dict[str, tuple[str, ...]] = {
    "app": ("pay", "shop", "infra"),
    "role": ("web", "db", "dns"),
    "env": ("prod", "dev"),
    "data": ("pci", "none"),
}
KEYS = tuple(VOCAB)

#: Addresses that workloads may own (shared, so that leases overlap and change hands).
MANAGED = (
    "10.0.0.1",
    "10.0.0.2",
    "10.0.1.1",
    "10.0.1.2",
    "192.168.5.5",
    "fd00::1",
    "fd00::2",
    "fd00:1::1",
    "2001:db8::10",
)
#: Addresses that no workload ever owns: private, public, IPv4 and IPv6.
UNMANAGED = (
    "10.0.0.99",
    "10.9.0.1",
    "172.16.3.3",
    "192.168.5.200",
    "203.0.113.5",
    "8.8.8.8",
    "fd00::99",
    "fd00:9::1",
    "2001:db8::ff",
    "2606:4700::1111",
    # IPv4-mapped: an IPv6 address, not 10.0.0.1 (docs/policy.md); written canonically, as
    # the lake writes it (Python 3.11 prints ::ffff:a00:1, later versions ::ffff:10.0.0.1)
    str(ipaddress.ip_address("::ffff:10.0.0.1")),
)
#: The management tier's addresses (unmanaged unless a workload happens to own them).
ADMIN_NETS = ("10.255.0.0/24", "fd00:ff::/64")
ADMIN_IPS = ("10.255.0.7", "fd00:ff::7")
CONTROLLERS = ("10.255.1.10", "fd00:fe::10")
ALL_IPS = MANAGED + UNMANAGED + ADMIN_IPS + CONTROLLERS

FIXED_CIDRS = (
    "0.0.0.0/0",
    "::/0",
    "10.0.0.0/8",
    "10.0.0.0/24",
    "10.0.1.0/24",
    "192.168.0.0/16",
    "172.16.0.0/12",
    "203.0.113.0/24",
    "8.8.8.8/32",
    "fc00::/7",
    "fd00::/64",
    "fd00:9::/32",
    "2001:db8::/32",
    "2001:db8::ff/128",
    "10.255.0.0/16",
    "::ffff:0:0/96",
)

NAMES = (
    "api.example.com",
    "www.example.com",
    "example.com",
    "a.b.example.com",
    "db.internal",
    "x.example.org",
)
NAME_PATTERNS = (*NAMES, "*.example.com", "*.b.example.com", "*.internal", "*.org")

PORTS = (0, 22, 53, 80, 443, 5432, 8080, 8443, 9100, 65535)
PORT_RANGES = ((0, 1023), (1024, 65535), (8000, 8999), (0, 65535), (53, 53), (443, 8443))
ICMP_TYPES = (0, 3, 8, 11, 128, 129, 255)
ICMP_CODES = (0, 1, 4)
OTHER_PROTOS = (0, 47, 50, 255)
PROCESSES = ("nginx", "postgres", "java")
METHODS = ("GET", "POST", "DELETE")
PATH_PATTERNS = ("/api/.*", "/health", "/v[0-9]+/.*", ".*", "/a|/b")
PATHS = ("/api/x", "/health", "/healthz", "/v2/items", "/a", "/b", "/", "/api")


def _sample(values: Sequence[T]) -> st.SearchStrategy[T]:
    return st.sampled_from(tuple(values))


# ---------------------------------------------------------------------------------------------
# Inventories


@st.composite
def leases(draw: Draw) -> AddressLease:
    ip = draw(_sample(MANAGED + ADMIN_IPS[:1] + CONTROLLERS[:1]))
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return AddressLease(ip)  # for all time
    i = draw(st.integers(0, len(MOMENTS) - 1))
    j = draw(st.integers(i + 1, len(MOMENTS)))
    start = MOMENTS[i] if kind in (1, 3) else None
    until = MOMENTS[j] if kind in (2, 3) and j < len(MOMENTS) else None
    if start is None and until is None:
        until = MOMENTS[i]
    return AddressLease(ip, start, until)


@st.composite
def workloads(draw: Draw, name: str, locs: int = 2) -> Workload:
    labels = {}
    for key, values in VOCAB.items():
        if draw(st.integers(0, 4)) > 0:  # a key is sometimes missing
            labels[key] = draw(_sample(values))
    if draw(st.booleans()):  # a key that no selector names, only `same`
        labels["loc"] = f"loc{draw(st.integers(0, locs - 1))}"
    if draw(st.integers(0, 9)) == 0:
        labels = {}  # sometimes no labels at all
    # Rarely no address at all: such a workload still has a label class.
    addrs = draw(st.lists(leases(), min_size=0 if draw(st.integers(0, 9)) == 0 else 1, max_size=3))
    return Workload(name, labels=Labels.of(labels), addresses=tuple(addrs))


@st.composite
def inventories(draw: Draw, most: int = 10, locs: int = 2) -> list[Workload]:
    n = draw(st.integers(0, most)) or draw(st.integers(0, most))  # seldom none
    return [draw(workloads(f"w{i}", locs)) for i in range(n)]


# ---------------------------------------------------------------------------------------------
# Addresses, lists, DNS


@st.composite
def cidrs(draw: Draw) -> str:
    if draw(st.booleans()):
        return draw(_sample(FIXED_CIDRS))
    ip = ipaddress.ip_address(draw(_sample(ALL_IPS)))
    top = 32 if ip.version == 4 else 128
    prefix = draw(st.sampled_from((top, top - 1, top - 8, top - 16, top // 2, 0)))
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


@st.composite
def ip_lists(draw: Draw, name: str) -> IPList:
    ranges = draw(st.lists(cidrs(), max_size=3))
    excepts: list[str] = []
    with_except: bool = draw(st.booleans())
    if ranges and with_except:
        excepts = draw(st.lists(cidrs(), max_size=2))
    fqdns: list[str] = []
    if draw(st.integers(0, 2)) > 0:
        fqdns = draw(st.lists(_sample(NAME_PATTERNS), max_size=2))
    if not ranges and not fqdns:
        ranges = [draw(cidrs())]
    return IPList(name, cidrs=tuple(ranges), except_=tuple(excepts), fqdns=tuple(fqdns))


@st.composite
def dns_evidence(draw: Draw) -> list[tuple[datetime, datetime, str, str]]:
    """Rows ``(ts, valid_until, ip, name)``, mostly for unmanaged addresses."""
    rows = []
    for _ in range(draw(st.integers(0, 12))):
        ip = draw(_sample(UNMANAGED[:3] + UNMANAGED[5:8] + MANAGED[:2] + ADMIN_IPS[:1]))
        i = draw(st.integers(0, len(MOMENTS) - 2))
        j = draw(st.integers(i + 1, len(MOMENTS) - 1))
        rows.append((MOMENTS[i], MOMENTS[j], ip, draw(_sample(NAMES))))
    return rows


def _named_selectors(sel: Selector) -> list[Selector]:
    found = [sel] if sel.fqdn is not None else []
    for inner in sel.negations:
        found += _named_selectors(inner)
    return found


@st.composite
def evidence_for(draw: Draw, policy: PolicySet) -> list[tuple[datetime, datetime, str, str]]:
    """DNS rows for most of the names that the policy's selectors and lists ask for, so
    that name-based rules fire: a `*.` pattern gets a name below it, and a name that a
    selector ANDs with `cidrs` goes to an address in those ranges when there is one."""
    wanted: dict[str, set[str]] = {}  # pattern -> addresses that would suit it
    for _, rule in policy.rules():
        for sel in _named_selectors(rule.from_) + _named_selectors(rule.to):
            assert sel.fqdn is not None
            fits = {
                ip
                for ip in UNMANAGED
                if not sel.cidrs or (in_cidrs(ip, sel.cidrs) and not in_cidrs(ip, sel.except_))
            }
            wanted.setdefault(sel.fqdn, set()).update(fits or UNMANAGED)
    for lst in policy.iplists:
        for f in lst.fqdns:
            wanted.setdefault(f, set()).update(UNMANAGED)
    rows = []
    for pattern, fits in sorted(wanted.items()):
        if draw(st.integers(0, 3)) > 0:
            name = "x." + pattern[2:] if pattern.startswith("*.") else pattern
            ip = draw(_sample(sorted(fits)))
            i = draw(st.integers(0, 2))  # long-lived: most conversations see the answer
            j = draw(st.integers(4, len(MOMENTS) - 1))
            rows.append((MOMENTS[i], MOMENTS[j], ip, name))
    return rows


# ---------------------------------------------------------------------------------------------
# Selectors


@st.composite
def label_terms(draw: Draw) -> tuple[LabelTerm, ...]:
    keys = draw(st.lists(_sample(KEYS), min_size=1, max_size=2, unique=True))
    if len(keys) > 1 and draw(st.booleans()):
        keys = keys[:1]
    return tuple(
        LabelTerm(k, tuple(draw(st.lists(_sample(VOCAB[k]), min_size=1, max_size=2)))) for k in keys
    )


@st.composite
def address_selectors(draw: Draw, lists: Sequence[str]) -> Selector:
    kinds = ["cidrs", "fqdn"] + (["iplist"] if lists else [])
    chosen = draw(st.lists(_sample(kinds), min_size=1, max_size=2, unique=True))
    if draw(st.integers(0, 2)) > 0:
        chosen = chosen[:1]  # one kind alone, mostly: an AND of two seldom matches
    iplist = draw(_sample(lists)) if "iplist" in chosen else None
    ranges: tuple[str, ...] = ()
    excepts: tuple[str, ...] = ()
    if "cidrs" in chosen:
        ranges = tuple(draw(st.lists(cidrs(), min_size=1, max_size=2)))
        if draw(st.booleans()):
            excepts = tuple(draw(st.lists(cidrs(), min_size=1, max_size=2)))
    fqdn = draw(_sample(NAME_PATTERNS)) if "fqdn" in chosen else None
    return Selector(iplist=iplist, cidrs=ranges, except_=excepts, fqdn=fqdn)


@st.composite
def workload_selectors(
    draw: Draw, names: Sequence[str], lists: Sequence[str], depth: int = 0
) -> Selector:
    """Label terms, `not` (nested, or with an address-only inner) and `workload`, ANDed."""
    combos: tuple[tuple[str, ...], ...] = (
        ("labels",),
        ("labels",),
        ("labels",),
        ("not",),
        ("not",),
        ("workload",),
        ("labels", "not"),
        ("labels", "workload"),
        ("not", "workload"),
        ("labels", "not", "workload"),
    )
    chosen = list(draw(_sample(combos)))
    if depth >= 2 and "not" in chosen:
        chosen.remove("not")
        if not chosen:
            chosen = ["labels"]
    labels = draw(label_terms()) if "labels" in chosen else ()
    negations: tuple[Selector, ...] = ()
    if "not" in chosen:
        kind = draw(st.integers(0, 7))
        if kind <= 5:
            inner = draw(workload_selectors(names, lists, depth + 1))
        elif kind == 6:
            inner = draw(address_selectors(lists))
        else:
            inner = Selector(any=True)
        negations = (inner,)
    workload = draw(_sample((*names, "ghost"))) if "workload" in chosen else None
    return Selector(labels=labels, negations=negations, workload=workload)


@st.composite
def selectors(draw: Draw, names: Sequence[str], lists: Sequence[str]) -> Selector:
    kind = draw(st.integers(0, 9))
    if kind <= 5:
        return draw(workload_selectors(names, lists))
    if kind <= 7:
        return draw(address_selectors(lists))
    return Selector(any=True)


# ---------------------------------------------------------------------------------------------
# Services


@st.composite
def services(draw: Draw) -> Service:
    kind = draw(st.integers(0, 10))
    if kind <= 3:  # tcp, udp, sctp: all ports, one port, or a range
        proto = draw(st.sampled_from((6, 6, 17, 132)))
        shape = draw(st.integers(0, 2))
        if shape == 0:
            return Service(proto)
        if shape == 1:
            port = draw(_sample(PORTS))
            return Service(proto, port, port)
        lo, hi = draw(_sample(PORT_RANGES))
        return Service(proto, lo, hi)
    if kind <= 5:  # icmp, icmpv6: all, a type, or a type and a code
        proto = draw(st.sampled_from((1, 58)))
        shape = draw(st.integers(0, 2))
        if shape == 0:
            return Service(proto)
        icmp_type = draw(_sample(ICMP_TYPES))
        code = draw(_sample(ICMP_CODES)) if shape == 2 else None
        return Service(proto, icmp_type, icmp_type, icmp_code=code)
    if kind == 6:  # proto/N
        return Service(draw(_sample((*OTHER_PROTOS, 6, 1))))
    if kind == 7:  # any
        return Service()
    # narrowed: a process, HTTP methods and/or paths
    narrowed_proto: int | None = draw(st.sampled_from((6, 6, 17, None)))
    nlo: int | None = None
    nhi: int | None = None
    if narrowed_proto is not None and draw(st.booleans()):
        nlo, nhi = draw(_sample(((80, 80), (8080, 8080), (443, 443), (8000, 8999))))
    facts = draw(
        st.lists(_sample(("process", "methods", "paths")), min_size=1, max_size=3, unique=True)
    )
    return Service(
        narrowed_proto,
        nlo,
        nhi,
        process=draw(_sample(PROCESSES)) if "process" in facts else None,
        http_methods=tuple(draw(st.lists(_sample(METHODS), min_size=1, max_size=2)))
        if "methods" in facts
        else (),
        http_paths=tuple(draw(st.lists(_sample(PATH_PATTERNS), min_size=1, max_size=2)))
        if "paths" in facts
        else (),
    )


# ---------------------------------------------------------------------------------------------
# Policy sets


@st.composite
def policy_sets(draw: Draw, names: Sequence[str]) -> PolicySet:
    lists = [draw(ip_lists(f"list{i}")) for i in range(draw(st.integers(0, 3)))]
    list_names = [lst.name for lst in lists]
    rule_no = 0
    policies = []
    for p in range(draw(st.integers(1, 4))):
        scope = None
        if draw(st.integers(0, 2)) > 0:
            terms = draw(label_terms())
            scope = Selector(labels=terms[:1] if draw(st.booleans()) else terms)
        rules = []
        for _ in range(draw(st.integers(0, 5))):
            rule_no += 1
            rules.append(
                Rule(
                    id=f"r{rule_no}",
                    from_=draw(selectors(names, list_names)),
                    to=draw(selectors(names, list_names)),
                    services=tuple(draw(st.lists(services(), min_size=1, max_size=3))),
                    action=draw(_sample(ACTIONS)),
                    from_outside_scope=draw(st.integers(0, 3)) == 0,
                    same=tuple(
                        draw(st.lists(_sample((*KEYS, "loc")), max_size=2))
                        if draw(st.integers(0, 3)) == 0
                        else ()
                    ),
                )
            )
        mode = draw(st.one_of(st.none(), _sample(MODES)))
        # Names are drawn out of order so that sorting by name matters.
        policies.append(Policy(f"p{draw(st.integers(0, 99)):02d}-{p}", tuple(rules), scope, mode))
    management = Management()
    if draw(st.integers(0, 2)) > 0:
        management = Management(
            admin_networks=tuple(draw(st.lists(_sample(ADMIN_NETS), min_size=1, max_size=2))),
            services=tuple(draw(st.lists(services(), max_size=2))),
            controllers=tuple(draw(st.lists(_sample(CONTROLLERS), min_size=1, max_size=2))),
            control_services=tuple(draw(st.lists(services(), max_size=2))),
        )
    settings = Settings(default_mode=draw(_sample(MODES)), management=management)
    return PolicySet(policies=tuple(policies), iplists=tuple(lists), settings=settings)


# ---------------------------------------------------------------------------------------------
# Conversations


@st.composite
def moments(draw: Draw) -> datetime:
    base = draw(_sample((T0 - timedelta(hours=1), *MOMENTS, MOMENTS[-1] + timedelta(hours=1))))
    shift = draw(_sample((timedelta(0), timedelta(0), -US, timedelta(minutes=30))))
    result: datetime = base + shift
    return result


Aim = tuple[list[str], list[str], tuple[Service, ...]]


class Aims:
    """For each start time, the rules (and management rules) that some pair of addresses
    could match, with those addresses: conversations aimed at them make rules fire.
    Which addresses a side matches is judged by the reference's own selector code."""

    def __init__(
        self,
        known: Sequence[str],
        policy: PolicySet,
        workloads: Sequence[Workload],
        dns: Sequence[tuple[datetime, datetime, str, str]],
    ) -> None:
        self.pool = sorted({*known, *UNMANAGED, *ADMIN_IPS, *CONTROLLERS})
        self.policy, self.workloads, self.dns = policy, workloads, canonical_dns(dns)
        self._at: dict[datetime, list[Aim]] = {}

    def at(self, start: datetime) -> list[Aim]:
        if start not in self._at:
            self._at[start] = self._compute(start)
        return self._at[start]

    def _compute(self, start: datetime) -> list[Aim]:
        policy, pool, dns = self.policy, self.pool, self.dns
        ends = {ip: End(ip, owner_at(ip, start, self.workloads)) for ip in pool}
        aims: list[Aim] = []
        for pol, rule in policy.rules():
            from_scope = None if rule.from_outside_scope else pol.scope
            clients = [
                ip
                for ip in pool
                if side_matches(rule.from_, from_scope, ends[ip], policy, start, dns)
            ]
            servers = [
                ip for ip in pool if side_matches(rule.to, pol.scope, ends[ip], policy, start, dns)
            ]
            aims.append((clients, servers, rule.services))
        mgmt = policy.settings.management
        workloads = [ip for ip in pool if ends[ip].workload is not None]
        admins = [ip for ip in pool if in_cidrs(ip, mgmt.admin_networks)]
        controllers = [ip for ip in pool if in_cidrs(ip, mgmt.controllers)]
        aims.append((admins, workloads, mgmt.services))
        aims.append((workloads, controllers, mgmt.control_services))
        return [(c, s, svcs) for c, s, svcs in aims if c and s and svcs]


def _aimed_ends(draw: Draw, aims: Aims) -> tuple[str, str, datetime, Service] | None:
    """Ends, a start and a service aimed at a rule that can match at that start."""
    start = draw(moments())
    viable = aims.at(start)
    if not viable:
        return None
    clients, servers, services = draw(_sample(viable))
    return draw(_sample(clients)), draw(_sample(servers)), start, draw(_sample(services))


@st.composite
def conversations(
    draw: Draw,
    known: Sequence[str],
    policy: PolicySet,
    aims: Aims | None = None,
) -> dict[str, Any]:
    """One conversation: half of them aimed at a rule (see :func:`_aimed_ends`), the others
    between random addresses, mostly known ones, often on one of the policy's services."""
    aim = draw(st.integers(0, 2)) > 0
    aimed = _aimed_ends(draw, aims) if aims is not None and aim else None
    svc: Service | None
    if aimed is not None:
        client_ip, server_ip, start, svc = aimed
    else:
        pool = (*known, *known, *UNMANAGED, *ADMIN_IPS, *CONTROLLERS)
        client_ip = draw(_sample(pool))
        server_ip = draw(_sample(pool))
        start = draw(moments())
        all_services = [s for _, r in policy.rules() for s in r.services]
        mgmt = policy.settings.management
        all_services += [*mgmt.services, *mgmt.control_services]
        svc = None
        if all_services and draw(st.integers(0, 3)) > 0:
            svc = draw(_sample(all_services))
    if svc is not None and svc.proto is not None:
        proto = svc.proto
    else:
        proto = draw(_sample((6, 6, 17, 132, 1, 58, 47, 0)))
    server_port = client_port = -1
    icmp_code = None
    if proto in (6, 17, 132):
        if svc is not None and svc.lo is not None and svc.hi is not None and draw(st.booleans()):
            # Inside the range mostly, and just outside it at times.
            inside = (svc.lo, svc.hi, (svc.lo + svc.hi) // 2)
            edges = (max(svc.lo - 1, 0), min(svc.hi + 1, 65535))
            server_port = draw(_sample(inside * 3 + edges))
        elif draw(st.integers(0, 5)) > 0:
            server_port = draw(_sample(PORTS))
        client_port = draw(_sample((-1, 8, 40000)))
    elif proto in (1, 58):
        if svc is not None and svc.lo is not None and draw(st.integers(0, 3)) > 0:
            client_port = svc.lo
        elif draw(st.integers(0, 5)) > 0:
            client_port = draw(_sample(ICMP_TYPES))
        if draw(st.booleans()):
            icmp_code = (
                svc.icmp_code
                if svc is not None and svc.icmp_code is not None and draw(st.booleans())
                else draw(_sample(ICMP_CODES))
            )
    # Narrowing facts: each present and agreeing, present and disagreeing, or absent.
    process = draw(st.one_of(st.none(), _sample(PROCESSES)))
    if svc is not None and svc.process and draw(st.booleans()):
        process = svc.process
    method = draw(st.one_of(st.none(), _sample(METHODS)))
    if svc is not None and svc.http_methods and draw(st.booleans()):
        method = draw(_sample(svc.http_methods))
    path = draw(st.one_of(st.none(), _sample(PATHS)))
    return {
        "client_ip": client_ip,
        "server_ip": server_ip,
        "proto": proto,
        "server_port": server_port,
        "client_port": client_port,
        "start": start,
        "server_process": process,
        "http_method": method,
        "http_path": path,
        "icmp_code": icmp_code,
    }


@dataclass(frozen=True)
class Scenario:
    policy: PolicySet
    workloads: list[Workload]
    dns: list[tuple[datetime, datetime, str, str]]
    conversations: list[dict[str, Any]]


@st.composite
def scenarios(draw: Draw, max_conversations: int = 40) -> Scenario:
    inventory = draw(inventories())
    names = [w.name for w in inventory]
    policy = draw(policy_sets(names))
    dns = draw(dns_evidence()) + draw(evidence_for(policy))
    known = sorted({a.ip for w in inventory for a in w.addresses}) or list(MANAGED[:2])
    convs = draw(
        st.lists(
            conversations(known, policy, Aims(known, policy, inventory, dns)),
            min_size=5,
            max_size=max_conversations,
        )
    )
    return Scenario(policy, inventory, dns, convs)


#: Many distinct DNS names, more than fit in one 64-bit word of patterns.
WIDE_NAMES = tuple(f"h{i}.wide.example.net" for i in range(72))


@st.composite
def wide_scenarios(draw: Draw, max_conversations: int = 60) -> Scenario:
    """A scenario past the small sizes: dozens of workloads in many label classes, a policy
    with a rule per DNS name (72 names, some as `*.` patterns), an IP list of 36 names, and
    the ordinary random policies besides."""
    inventory = draw(inventories(most=40, locs=12))
    names = [w.name for w in inventory]
    base = draw(policy_sets(names))
    wide = IPList("wide", fqdns=WIDE_NAMES[::2])
    rules = []
    for i, name in enumerate(WIDE_NAMES):
        pattern = "*." + name.split(".", 1)[1] if i % 9 == 8 else name
        to = draw(selectors(names, ["wide"]))
        rules.append(
            Rule(
                f"n{i}",
                Selector(fqdn=pattern),
                to,
                (draw(services()),),
                action=draw(_sample(ACTIONS)),
            )
        )
    rules.append(Rule("wide-list", Selector(iplist="wide"), Selector(any=True), (Service(6),)))
    policy = PolicySet(
        policies=(*base.policies, Policy(f"p{draw(st.integers(0, 99)):02d}-names", tuple(rules))),
        iplists=(*base.iplists, wide),
        settings=base.settings,
    )
    dns = draw(dns_evidence())
    for _ in range(draw(st.integers(5, 20))):
        ip = draw(_sample(UNMANAGED))
        i = draw(st.integers(0, len(MOMENTS) - 2))
        j = draw(st.integers(i + 1, len(MOMENTS) - 1))
        dns.append((MOMENTS[i], MOMENTS[j], ip, draw(_sample(WIDE_NAMES))))
    known = sorted({a.ip for w in inventory for a in w.addresses}) or list(MANAGED[:2])
    convs = draw(
        st.lists(
            conversations(known, policy, Aims(known, policy, inventory, dns)),
            min_size=20,
            max_size=max_conversations,
        )
    )
    return Scenario(policy, inventory, dns, convs)
