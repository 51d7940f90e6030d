"""AWS security groups as Terraform JSON: one group per label class.

Security groups only allow and are stateful. Each class gets a group (``HOSTS`` must attach
it to the class's instances); its rules are what the mode lets through: peer classes as
``referenced_security_group_id``, unmanaged regions as CIDRs. A class whose mode blocks
nothing (visibility) gets a group that allows everything, so that the groups that name it
as a peer reference a declared group. Ports
of one peer are merged into ranges, CIDRs are summarised; both merges are exact. A group
holds at most :data:`RULE_LIMIT` rules per direction (the default quota); where a group needs
more, the report says so and names the group (the group is still written, whole).
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, ClassVar

from cellwall.model.policy import Service
from cellwall.targets.base import Artefact, Artefacts, Target, Unsupported, register
from cellwall.targets.classview import Grant, Peer, cidr_block, grants, isolated, permitted
from cellwall.targets.k8s import host_classes, object_name
from cellwall.targets.plan import Estate

__all__ = ["RULE_LIMIT", "AwsSgTarget"]

RULE_LIMIT = 60


def _resource_name(estate: Estate, cls: int) -> str:
    return object_name(estate, cls).replace("-", "_")


def _rules(estate: Estate, cls: int, direction: str) -> tuple[list[dict[str, Any]], set[int]]:
    """The rule resources of one direction, and the rules deciding ICMP type ranges or
    unnamed protocols that were left out (-1: not-allowed traffic)."""
    out: list[dict[str, Any]] = _management(estate, cls, direction)
    lost: set[int] = set()
    for g in sorted(grants(estate, cls, direction), key=repr):
        ids = ",".join(estate.ir.rules[c].id for c in g.codes) or "not-allowed"
        pieces: list[tuple[str, int | None, int | None]] = []
        for s in g.services or ():
            if s.proto is None or (s.proto in (1, 58) and s.lo is not None and s.lo != s.hi):
                lost.update(s.codes or (-1,))
                continue
            proto = str(s.proto)
            if s.proto in (1, 58) and s.lo is not None:
                pieces.append((proto, s.lo, -1))
            else:
                pieces.append((proto, s.lo if s.lo is not None else None, s.hi))
        if g.services is None:
            pieces = [("-1", None, None)]
        for p in g.peers:
            if p.cls is not None:
                ref = f"${{aws_security_group.{_resource_name(estate, p.cls)}.id}}"
                peers = [{"referenced_security_group_id": ref}]
            else:
                holes = _holes(estate, cls, direction, g)
                peers = [
                    {"cidr_ipv6" if ":" in c else "cidr_ipv4": c}
                    for cidr, exc in cidr_block(p.ranges)
                    for c in _punched(cidr, exc, holes)
                ]
            for peer in peers:
                for proto, lo, hi in pieces:
                    r: dict[str, Any] = {"ip_protocol": proto, **peer, "description": ids[:255]}
                    if lo is not None:
                        r["from_port"], r["to_port"] = lo, hi
                    out.append(r)
    return out, lost


def _management(estate: Estate, cls: int, direction: str) -> list[dict[str, Any]]:
    """The management tier: admin networks → the group (ingress), the group → controllers
    (egress); and where the class's instances are in the admin networks (are controllers),
    the group → every workload address on the admin services (every workload address → the
    group on the control services): :func:`_roaming`."""
    s = estate.ir.policy_set.settings.management
    nets, svcs = (
        (s.admin_networks, s.services) if direction == "in" else (s.controllers, s.control_services)
    )
    rid = "management:admin" if direction == "in" else "management:control"
    peers: list[dict[str, Any]] = [{"cidr_ipv6" if ":" in c else "cidr_ipv4": c} for c in nets]
    roaming = _roaming(estate, cls, direction)
    if roaming is not None:
        rid_all, svcs_all, _ = roaming
        refs = _workload_cidrs(estate, s.admin_networks if direction == "out" else s.controllers)
        pairs = [(p, svcs, rid) for p in peers] + [(p, svcs_all, rid_all) for p in refs]
    else:
        pairs = [(p, svcs, rid) for p in peers]
    out: list[dict[str, Any]] = []
    for peer, services, desc in pairs:
        for x in services:
            r: dict[str, Any] = {
                "ip_protocol": "-1" if x.proto is None else str(x.proto),
                **peer,
                "description": desc,
            }
            if x.lo is not None:
                r["from_port"], r["to_port"] = x.lo, x.hi
            out.append(r)
    return out


def _workload_cidrs(estate: Estate, nets: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every workload address of the families of ``nets``, summarised: the peers of an
    admin host's (a controller's) management rule, which the analyzer applies by address."""
    fams = {ipaddress.ip_network(n).version for n in nets}
    out: list[dict[str, Any]] = []
    for fam in sorted(fams):
        addrs = [ipaddress.ip_network(a) for a in estate.workload_addresses[fam]]
        for n in ipaddress.collapse_addresses(addrs):  # type: ignore[type-var]
            out.append({"cidr_ipv6" if fam == 6 else "cidr_ipv4": str(n)})
    return out


def _roaming(
    estate: Estate, cls: int, direction: str
) -> tuple[str, tuple[Service, ...], bool] | None:
    """The management rule that lets the class's instances reach (be reached from) every
    workload in ``direction`` (an admin host's outbound, a controller's inbound): its id,
    services, and whether only some of the class's instances have it (then the group,
    shared by the class, is looser for the others). None when no instance has it."""
    found = []
    hosts = [h for h in estate.hosts.values() if h.cls == cls and h.addresses]
    for h in hosts:
        found += [
            m
            for m in estate.plan(h.name).management
            if m.peers is None and m.direction == direction
        ]
    if not found:
        return None
    with_it = {
        h.name
        for h in hosts
        if any(m.peers is None and m.direction == direction for m in estate.plan(h.name).management)
    }
    return found[0].rule_id, found[0].services, len(with_it) < len(hosts)


def roaming_gaps(estate: Estate, cls: int) -> list[Unsupported]:
    """An :class:`Unsupported` for a management rule the class's group grants to all of
    its instances although only some are admin hosts or controllers."""
    out = []
    for d in ("in", "out"):
        r = _roaming(estate, cls, d)
        if r is not None and r[2]:
            out.append(
                Unsupported(
                    r[0],
                    f"{object_name(estate, cls)}: some instances are "
                    f"{'controllers' if d == 'in' else 'in the admin networks'}; the group "
                    "is shared by the class, so its other instances get that access too",
                )
            )
    return out


def _open() -> tuple[list[dict[str, Any]], set[int]]:
    """The rules of a group whose class's mode blocks nothing: every address, every
    protocol (the group exists so that other groups can reference it)."""
    desc = "not filtered: the class's mode blocks nothing"
    return [
        {"ip_protocol": "-1", "cidr_ipv4": "0.0.0.0/0", "description": desc},
        {"ip_protocol": "-1", "cidr_ipv6": "::/0", "description": desc},
    ], set()


def _holes(estate: Estate, cls: int, direction: str, g: Grant) -> list[tuple[int, int]]:
    """(family, address) of the instances a CIDR rule of ``g`` must not match. A CIDR also
    matches instances, which the policy judges by their class: every instance of a class
    that ``cls`` does not let through on all of ``g``'s traffic is cut out of ``g``'s
    CIDRs (its own group reference decides its traffic)."""
    key = ("aws-holes", cls, direction)
    masks = estate.memo.get(key)
    if not isinstance(masks, dict):
        masks = estate.memo[key] = {p: ok for p, ok, _ in permitted(estate, cls, direction)}
    mask = next(masks[p] for p in g.peers)
    short = {c for c in range(estate.ir.classes.count) if (mask & ~masks[Peer(c, (), c)]).any()}
    out = []
    for h in estate.hosts.values():
        if h.cls in short:
            for ip in h.addresses:
                a = ipaddress.ip_address(ip)
                out.append((a.version, int(a)))
    return sorted(set(out))


def _punched(cidr: str, exc: list[str], holes: list[tuple[int, int]]) -> list[str]:
    """``cidr`` less the ``exc`` CIDRs and the ``holes`` addresses, as plain CIDRs."""
    n = ipaddress.ip_network(cidr)
    lo, hi = int(n.network_address), int(n.broadcast_address)
    inside = [v for f, v in holes if f == n.version and lo <= v <= hi]
    if not inside:
        return [cidr] if not exc else _minus(cidr, exc)
    cuts = [(v, v) for v in inside]
    for e in map(ipaddress.ip_network, exc):
        cuts.append((int(e.network_address), int(e.broadcast_address)))
    out: list[str] = []
    cur = lo
    make = ipaddress.IPv4Address if n.version == 4 else ipaddress.IPv6Address
    for a, b in sorted(cuts):
        if a > cur:
            out += map(str, ipaddress.summarize_address_range(make(cur), make(a - 1)))
        cur = max(cur, b + 1)
    if cur <= hi:
        out += map(str, ipaddress.summarize_address_range(make(cur), make(hi)))
    return out


def _minus(cidr: str, exc: list[str]) -> list[str]:
    nets: list[Any] = [ipaddress.ip_network(cidr)]
    for e in exc:
        en = ipaddress.ip_network(e)
        nxt: list[Any] = []
        for n in nets:
            if n.overlaps(en):
                nxt += list(n.address_exclude(en)) if n != en else []
            else:
                nxt.append(n)
        nets = nxt
    return [str(n) for n in sorted(nets, key=lambda n: (n.version, int(n.network_address)))]


def group_doc(estate: Estate, cls: int) -> tuple[dict[str, Any], list[str], set[int]]:
    """The Terraform JSON of one class's group, the limit notes, and whether traffic was
    left out."""
    name = _resource_name(estate, cls)
    label = str(estate.ir.classes.labels(cls))
    res: dict[str, Any] = {
        "aws_security_group": {
            name: {
                "name": object_name(estate, cls),
                "description": f"cellwall class {label}"[:255],
                "vpc_id": "${var.vpc_id}",
            }
        }
    }
    notes: list[str] = []
    lost: set[int] = set()
    open_class = not (isolated(estate, cls, "in") or isolated(estate, cls, "out"))
    for d, kind in (("in", "ingress"), ("out", "egress")):
        rules, l2 = _open() if open_class else _rules(estate, cls, d)
        lost |= l2
        if len(rules) > RULE_LIMIT:
            notes.append(
                f"{object_name(estate, cls)}: {len(rules)} {kind} rules exceed the limit of "
                f"{RULE_LIMIT} per group; raise the quota or split the class"
            )
        key = f"aws_vpc_security_group_{kind}_rule"
        for i, r in enumerate(rules):
            res.setdefault(key, {})[f"{name}_{kind}_{i}"] = {
                "security_group_id": f"${{aws_security_group.{name}.id}}",
                **r,
            }
    return {"resource": res}, notes, lost


@register
class AwsSgTarget(Target):
    name: ClassVar[str] = "aws-sg"
    per_host: ClassVar[bool] = False
    capabilities: ClassVar[frozenset[str]] = frozenset({"deny", "icmp", "other-proto"})
    description: ClassVar[str] = "AWS security groups (Terraform JSON), one per label class"

    def compile(self, estate: Estate, host: str | None) -> Artefacts:
        out = Artefacts(self.name, unsupported=self.gaps(estate.ir))
        variables = {"variable": {"vpc_id": {"type": "string"}}}
        out.files.append(Artefact("variables.tf.json", json.dumps(variables, indent=2) + "\n"))
        for cls in host_classes(estate, host):
            # every class gets a group, even one that blocks nothing: others reference it
            doc, notes, lost = group_doc(estate, cls)
            name = object_name(estate, cls)
            out.files.append(Artefact(f"{name}.tf.json", json.dumps(doc, indent=2) + "\n"))
            out.notes.extend(notes)
            out.unsupported.extend(roaming_gaps(estate, cls))
            for c in sorted(lost):
                rid = estate.ir.rules[c].id if c >= 0 else "(not-allowed)"
                out.unsupported.append(
                    Unsupported(
                        rid,
                        "ICMP type ranges and unnamed protocols cannot be listed "
                        "in a security group rule; that traffic is left out (blocked)",
                    )
                )
        return out
