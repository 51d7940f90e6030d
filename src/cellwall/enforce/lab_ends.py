"""The lab's non-workload ends: addresses that stand for IP lists, the unmanaged space and
the management tier.

Workloads are not the only peers a host's ruleset decides on. :func:`external_ends` picks,
from the address space cut at every CIDR boundary the policy names
(:meth:`cellwall.policy.addresses.AddressTerms.regions`), one address per *signature* (the
set of IP-list and CIDR terms that hold it) and per side of the private/public line, in each
family: so every IP list and ``cidrs`` term the policy references gets an address, and so do
one unmanaged private and one public ("internet") address in no list. It adds an address in
each admin network and each controller (the management tier of the policy's settings). No
chosen address belongs to a workload, so the judge sees every one of them as unmanaged, the
way the compiled rulesets do.

An end is named after the IP lists that hold its address (``iplist:corp-vpn+internet``),
``cidrs`` for a rule's own CIDR term, ``unmanaged-private`` / ``unmanaged-public`` for none,
and ``admin:CIDR`` / ``controller:CIDR`` for the management tier.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from cellwall.model.policy import PolicySet

__all__ = ["MAX_ENDS", "End", "external_ends", "usable"]

#: At most this many address ends (a policy with many CIDR terms is sampled, in order).
MAX_ENDS = 40

_PRIVATE = [
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
]
_AVOID = [ipaddress.ip_network(n) for n in ("0.0.0.0/8", "100.64.0.0/10", "::/8")]
# documentation and test addresses, tried when a region's own candidates are unusable
_FIXED = {
    4: ("198.51.100.77", "203.0.113.77", "192.0.2.77", "8.8.4.77"),
    6: ("2001:db8::77", "2001:db8:ffff::77", "2a00:77::77", "fd77::77"),
}

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class End:
    """A non-workload end: a name, a kind (``iplist``, ``unmanaged``, ``admin``,
    ``controller``) and at most one address per family."""

    name: str
    kind: str
    v4: str | None
    v6: str | None


def usable(a: Address) -> bool:
    """An address a namespace can hold and be probed on: unicast, not loopback, link-local,
    reserved, "this network", shared or an IPv4-mapped form."""
    if a.is_multicast or a.is_loopback or a.is_link_local or a.is_unspecified or a.is_reserved:
        return False
    return not any(a.version == n.version and a in n for n in _AVOID)


def _private(a: Address) -> bool:
    return any(a.version == n.version and a in n for n in _PRIVATE)


def _pick(family: int, first: int, last: int, taken: Collection[str]) -> str | None:
    """A usable address in ``first..last`` (of ``family``) that no workload holds."""
    size = last - first + 1
    offsets = [o for o in (size // 2 + 77, 77, 1, 0, size - 2) if 0 <= o < size]
    values = [first + o for o in offsets]
    values += [v for v in map(int, map(ipaddress.ip_address, _FIXED[family])) if first <= v <= last]
    for v in values:
        a = ipaddress.IPv4Address(v) if family == 4 else ipaddress.IPv6Address(v)
        if usable(a) and str(a) not in taken:
            return str(a)
    return None


def _contains(cidrs: Iterable[str], a: Address) -> bool:
    return any(a.version == n.version and a in n for n in (ipaddress.ip_network(c) for c in cidrs))


def _name(ps: PolicySet, a: Address, in_terms: bool) -> tuple[str, str]:
    """(name, kind) of an unmanaged address: the IP lists that hold it, else its side."""
    lists = [
        il.name for il in ps.iplists if _contains(il.cidrs, a) and not _contains(il.except_, a)
    ]
    if in_terms and any(
        _contains(inc, a) and not _contains(exc, a) for inc, exc in _cidr_terms(ps)
    ):
        lists.append("cidrs")
    if lists:
        return "iplist:" + "+".join(sorted(lists)), "iplist"
    if in_terms:  # a term of DNS names only, or one the lists above already name
        return "iplist:other", "iplist"
    return ("unmanaged-private" if _private(a) else "unmanaged-public"), "unmanaged"


def _cidr_terms(ps: PolicySet) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """(cidrs, except) of every ``cidrs`` selector in the rules, negations included."""
    out = []
    for _, rule in ps.rules():
        stack = [rule.from_, rule.to]
        while stack:
            sel = stack.pop()
            stack.extend(sel.negations)
            if sel.cidrs:
                out.append((sel.cidrs, sel.except_))
    return out


def _term_ends(ps: PolicySet, taken: Collection[str]) -> list[End]:
    from cellwall.policy.ir import PolicyIR

    terms = PolicyIR(ps, []).terms
    found: dict[tuple[bytes, bool], dict[int, str]] = {}
    for fam in (4, 6):
        for first, last, sig in terms.regions(fam):
            for lo, hi in _halves(fam, first, last):
                ip = _pick(fam, lo, hi, taken)
                if ip is None:
                    continue
                key = (sig.tobytes() if sig.any() else b"", _private(ipaddress.ip_address(ip)))
                found.setdefault(key, {}).setdefault(fam, ip)
    ends: dict[str, End] = {}
    for (sig_key, _), ips in sorted(found.items()):
        a = ipaddress.ip_address(ips.get(4) or ips[6])
        name, kind = _name(ps, a, bool(sig_key))
        while name in ends:
            name += "'"
        ends[name] = End(name, kind, ips.get(4), ips.get(6))
    return list(ends.values())


def _halves(family: int, first: int, last: int) -> list[tuple[int, int]]:
    """The region cut at the private ranges, so that each side gets its own address."""
    cuts = {first, last + 1}
    for n in _PRIVATE:
        if n.version == family:
            lo, hi = int(n.network_address), int(n.broadcast_address)
            cuts.update(c for c in (lo, hi + 1) if first < c <= last)
    bounds = sorted(cuts)
    return [(a, b - 1) for a, b in itertools.pairwise(bounds)]


def _management_ends(ps: PolicySet, taken: Collection[str]) -> tuple[list[End], list[str]]:
    m = ps.settings.management
    ends, notes = [], []
    for kind, nets in (("admin", m.admin_networks), ("controller", m.controllers)):
        for cidr in nets:
            n = ipaddress.ip_network(cidr)
            ip = _pick(n.version, int(n.network_address), int(n.broadcast_address), taken)
            if ip is None:
                notes.append(f"{kind} {cidr}: every address is a workload's; probed as workloads")
                continue
            v4, v6 = (ip, None) if n.version == 4 else (None, ip)
            ends.append(End(f"{kind}:{cidr}", kind, v4, v6))
    return ends, notes


def external_ends(
    ps: PolicySet, taken: Collection[str], limit: int = MAX_ENDS
) -> tuple[list[End], list[str]]:
    """The non-workload ends of a lab, and notes. ``taken``: every workload address."""
    terms = _term_ends(ps, taken)
    mgmt, notes = _management_ends(ps, taken)
    ends = [*mgmt, *terms]
    if len(ends) > limit:
        notes.append(f"kept {limit} of {len(ends)} address ends")
        ends = ends[:limit]
    return ends, notes
