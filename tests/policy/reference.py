"""The reference evaluator: one conversation at a time, written straight from docs/policy.md.

It is deliberately slow and plain, so that it can be read against the "Meaning" section
sentence by sentence; the property tests hold the fast evaluator (``cellwall.policy.judge``)
to it. It must not import anything from ``cellwall.policy``.

A conversation is a dict with ``client_ip``, ``server_ip`` (canonical text), ``proto``,
``server_port`` and ``client_port`` (``-1`` = none; for ICMP and ICMPv6 ``client_port`` is the
ICMP type the client sent), ``start`` (aware, UTC), ``server_process``, ``http_method``,
``http_path`` and ``icmp_code`` (None = the fact is missing). DNS evidence is rows
``(ts, valid_until, ip, name)``: the address was named ``name`` over ``[ts, valid_until)``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cellwall.model.inventory import Workload
from cellwall.model.policy import PolicySet, Selector, Service

__all__ = [
    "MODE_STRICTNESS",
    "DnsRow",
    "End",
    "canonical_dns",
    "in_cidrs",
    "owner_at",
    "reference_judge",
    "side_matches",
    "workload_mode",
]

DnsRow = tuple[datetime, datetime, str, str]
Conversation = Mapping[str, Any]

MODE_STRICTNESS = {"visibility": 0, "selective": 1, "full": 2}
TCP, UDP, SCTP, ICMP, ICMPV6 = 6, 17, 132, 1, 58

# Tiers (docs/policy.md, "Verdicts and precedence").
TIER_MANAGEMENT, TIER_OVERRIDE_DENY, TIER_ALLOW, TIER_DENY = 0, 1, 2, 3
TIER_OF_ACTION = {"override-deny": TIER_OVERRIDE_DENY, "allow": TIER_ALLOW, "deny": TIER_DENY}
VERDICT_OF_TIER = {
    TIER_MANAGEMENT: "allowed",
    TIER_OVERRIDE_DENY: "denied",
    TIER_ALLOW: "allowed",
    TIER_DENY: "denied",
}


# ---------------------------------------------------------------------------------------------
# Who is at each end


def owner_at(ip: str, ts: datetime, workloads: Sequence[Workload]) -> Workload | None:
    """The workload that owned ``ip`` at ``ts``, or None (an unmanaged address).

    When several leases cover ``ts``: the lease that started last wins (no start = the
    earliest), then the one that ends first (no end = the latest), then the smaller name.
    """
    claims = []
    for w in workloads:
        for lease in w.addresses:
            if lease.ip == ip and lease.covers(ts):
                started = lease.start.timestamp() if lease.start is not None else float("-inf")
                ends = lease.until.timestamp() if lease.until is not None else float("inf")
                # Sort key: latest start first, then earliest end, then the smaller name.
                claims.append(((-started, ends, w.name), w))
    if not claims:
        return None
    claims.sort(key=lambda c: c[0])
    return claims[0][1]


@dataclass(frozen=True)
class End:
    """One end of a conversation: its address, and the workload that owned it (or None)."""

    ip: str
    workload: Workload | None


# ---------------------------------------------------------------------------------------------
# Addresses, names, selectors


def in_cidrs(ip: str, cidrs: Sequence[str]) -> bool:
    addr = ipaddress.ip_address(ip)
    for cidr in cidrs:
        net = ipaddress.ip_network(cidr, strict=False)
        if net.version == addr.version and addr in net:
            return True
    return False


def name_matches(name: str, pattern: str) -> bool:
    """``*.example.com`` matches every name below ``example.com``; otherwise equal names."""
    name = name.lower().rstrip(".")
    pattern = pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        return name.endswith(pattern[1:])
    return name == pattern


def canonical_dns(dns: Sequence[DnsRow]) -> list[DnsRow]:
    """The rows with canonical addresses and normalised names (lower case, no final dot)."""
    return [
        (ts, until, str(ipaddress.ip_address(ip)), name.lower().rstrip("."))
        for ts, until, ip, name in dns
    ]


def dns_named(ip: str, pattern: str, start: datetime, dns: Sequence[DnsRow]) -> bool:
    """DNS evidence (canonical rows) mapped ``ip`` to a name matching ``pattern`` at
    ``start``; any answer valid then counts, not only the newest."""
    for ts, valid_until, row_ip, name in dns:
        if row_ip == ip and ts <= start < valid_until and name_matches(name, pattern):
            return True
    return False


def check_selector(sel: Selector) -> None:
    workload_terms = bool(sel.labels or sel.negations or sel.workload is not None)
    address_terms = bool(sel.iplist is not None or sel.cidrs or sel.fqdn is not None)
    if sel.any and (workload_terms or address_terms or sel.except_):
        raise ValueError(f"{sel}: `any: true` stands alone")
    if workload_terms and address_terms:
        raise ValueError(f"{sel}: selector-mixed")
    if not (sel.any or workload_terms or address_terms):
        raise ValueError(f"{sel}: selector-empty")
    if sel.except_ and not sel.cidrs:
        raise ValueError(f"{sel}: `except` without `cidrs`")


def selector_matches(
    sel: Selector, end: End, policy: PolicySet, start: datetime, dns: Sequence[DnsRow]
) -> bool:
    """``sel`` matches ``end``, judged without any scope. A selector is an AND of its keys.

    The selectors that docs/policy.md calls errors (empty, mixed, `any` with other keys)
    are refused rather than given a meaning."""
    check_selector(sel)
    w = end.workload
    # Workload terms match workloads only.
    if sel.labels or sel.negations or sel.workload is not None:
        if w is None:
            return False
        for term in sel.labels:
            if term.key not in w.labels or w.labels[term.key] not in term.values:
                return False
        for inner in sel.negations:
            if selector_matches(inner, end, policy, start, dns):
                return False
        if sel.workload is not None and w.name != sel.workload:
            return False
    # Address terms match unmanaged addresses only.
    if sel.iplist is not None or sel.cidrs or sel.fqdn is not None:
        if w is not None:
            return False
        if sel.iplist is not None:
            lst = policy.iplist(sel.iplist)
            if lst is None:
                return False
            in_ranges = in_cidrs(end.ip, lst.cidrs) and not in_cidrs(end.ip, lst.except_)
            named = any(dns_named(end.ip, f, start, dns) for f in lst.fqdns)
            if not (in_ranges or named):
                return False
        if sel.cidrs and not (in_cidrs(end.ip, sel.cidrs) and not in_cidrs(end.ip, sel.except_)):
            return False
        if sel.fqdn is not None and not dns_named(end.ip, sel.fqdn, start, dns):
            return False
    # `any: true` matches every workload and every unmanaged address: no further condition.
    return True


def side_matches(
    sel: Selector,
    scope: Selector | None,
    end: End,
    policy: PolicySet,
    start: datetime,
    dns: Sequence[DnsRow],
) -> bool:
    """A rule's side in its policy: a side with label terms, `not` or `any` is ANDed with the
    policy's scope (``scope`` None = no scope applies)."""
    if not selector_matches(sel, end, policy, start, dns):
        return False
    label_based = bool(sel.labels or sel.negations or sel.any)
    if scope is not None and label_based:
        return selector_matches(scope, end, policy, start, dns)
    return True


def same_holds(keys: Sequence[str], client: End, server: End) -> bool:
    if not keys:
        return True
    a, b = client.workload, server.workload
    if a is None or b is None:
        return False
    return all(k in a.labels and k in b.labels and a.labels[k] == b.labels[k] for k in keys)


# ---------------------------------------------------------------------------------------------
# Services

VERIFIED, UNVERIFIED = "verified", "unverified"


def service_match(svc: Service, conv: Conversation) -> str | None:
    """VERIFIED, UNVERIFIED (matched only because a fact was missing) or None."""
    if svc.proto is not None and conv["proto"] != svc.proto:
        return None
    if svc.lo is not None and svc.hi is not None:
        # TCP, UDP, SCTP: the server's port; ICMP, ICMPv6: the type that the client sent.
        port_protos = (TCP, UDP, SCTP)
        value = conv["server_port"] if svc.proto in port_protos else conv["client_port"]
        if value is None or value < 0 or not svc.lo <= value <= svc.hi:
            return None
    missing = False
    # Each narrowing fact: when the conversation has it, it must agree; when it lacks it,
    # the service is judged without it.
    if svc.icmp_code is not None:
        code = conv.get("icmp_code")
        if code is None:
            missing = True
        elif code != svc.icmp_code:
            return None
    if svc.process:
        process = conv.get("server_process")
        if process is None:
            missing = True
        elif process != svc.process:
            return None
    if svc.http_methods:
        method = conv.get("http_method")
        if method is None:
            missing = True
        elif method.upper() not in svc.http_methods:
            return None
    if svc.http_paths:
        path = conv.get("http_path")
        if path is None:
            missing = True
        elif not any(re.fullmatch(p, path) for p in svc.http_paths):
            return None
    return UNVERIFIED if missing else VERIFIED


def services_match(services: Sequence[Service], conv: Conversation) -> str | None:
    """A rule matches when one of its services matches; *verified* when one matches with all
    its facts present."""
    results = [service_match(s, conv) for s in services]
    if VERIFIED in results:
        return VERIFIED
    if UNVERIFIED in results:
        return UNVERIFIED
    return None


# ---------------------------------------------------------------------------------------------
# Modes


def workload_mode(w: Workload, policy: PolicySet) -> str:
    """The strictest mode among the scoped policies whose scope ``w`` matches (a policy
    without a mode has the default mode); the default mode when none covers it."""
    default = policy.settings.default_mode
    modes = [
        p.mode if p.mode is not None else default
        for p in policy.policies
        if p.scope is not None and selector_matches(p.scope, End("", w), policy, datetime.min, ())
    ]
    if not modes:
        return default
    return max(modes, key=lambda m: MODE_STRICTNESS[m])


def mode_blocks(mode: str, verdict: str) -> bool:
    if mode == "full":
        return verdict in ("denied", "not-allowed")
    if mode == "selective":
        return verdict == "denied"
    return False


# ---------------------------------------------------------------------------------------------
# The verdict


def reference_judge(
    conv: Conversation,
    policy: PolicySet,
    workloads: Sequence[Workload],
    dns: Sequence[DnsRow] = (),
) -> tuple[str, str | None, bool, bool]:
    """(verdict, deciding rule id or None, unverified, blocked) for one conversation."""
    start: datetime = conv["start"]
    dns = canonical_dns(dns)
    client = End(conv["client_ip"], owner_at(conv["client_ip"], start, workloads))
    server = End(conv["server_ip"], owner_at(conv["server_ip"], start, workloads))

    # Candidates as (tier, rule order, rule id, how the services matched).
    candidates: list[tuple[int, int, str, str]] = []
    order = 0

    # The management tier, by address whoever owns it.
    mgmt = policy.settings.management
    how = services_match(mgmt.services, conv)
    if how is not None and in_cidrs(client.ip, mgmt.admin_networks) and server.workload is not None:
        candidates.append((TIER_MANAGEMENT, order, "management:admin", how))
    order += 1
    how = services_match(mgmt.control_services, conv)
    if how is not None and client.workload is not None and in_cidrs(server.ip, mgmt.controllers):
        candidates.append((TIER_MANAGEMENT, order, "management:control", how))
    order += 1

    # Then the policies sorted by name, each in written order.
    for pol in sorted(policy.policies, key=lambda p: p.name):
        for rule in pol.rules:
            order += 1
            how = services_match(rule.services, conv)
            if how is None:
                continue
            from_scope = None if rule.from_outside_scope else pol.scope
            if not side_matches(rule.from_, from_scope, client, policy, start, dns):
                continue
            if not side_matches(rule.to, pol.scope, server, policy, start, dns):
                continue
            if not same_holds(rule.same, client, server):
                continue
            candidates.append((TIER_OF_ACTION[rule.action], order, rule.id, how))

    if candidates:
        tier, _, rule_id, how = min(candidates)
        verdict: str = VERDICT_OF_TIER[tier]
        decider: str | None = rule_id
        unverified = how == UNVERIFIED
    else:
        verdict, decider, unverified = "not-allowed", None, False

    blocked = any(
        end.workload is not None and mode_blocks(workload_mode(end.workload, policy), verdict)
        for end in (client, server)
    )
    return verdict, decider, unverified, blocked
