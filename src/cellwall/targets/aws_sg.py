"""AWS security groups as Terraform JSON: one group per label class.

Security groups only allow and are stateful. Each class whose mode blocks something gets a
group (``HOSTS`` must attach it to the class's instances); its rules are what the mode lets
through: peer classes as ``referenced_security_group_id``, unmanaged regions as CIDRs. Ports
of one peer are merged into ranges, CIDRs are summarised; both merges are exact. A group
holds at most :data:`RULE_LIMIT` rules per direction (the default quota); where a group needs
more, the report says so and names the group (the group is still written, whole).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from cellwall.targets.base import Artefact, Artefacts, Target, Unsupported, register
from cellwall.targets.classview import cidr_block, grants, isolated
from cellwall.targets.k8s import host_classes, object_name
from cellwall.targets.plan import Estate

__all__ = ["RULE_LIMIT", "AwsSgTarget"]

RULE_LIMIT = 60


def _resource_name(estate: Estate, cls: int) -> str:
    return object_name(estate, cls).replace("-", "_")


def _rules(estate: Estate, cls: int, direction: str) -> tuple[list[dict[str, Any]], set[int]]:
    """The rule resources of one direction, and the rules deciding ICMP type ranges or
    unnamed protocols that were left out (-1: not-allowed traffic)."""
    out: list[dict[str, Any]] = _management(estate, direction)
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
                peers = [
                    {"cidr_ipv6" if ":" in c else "cidr_ipv4": c}
                    for cidr, exc in cidr_block(p.ranges)
                    for c in ([cidr] if not exc else _minus(cidr, exc))
                ]
            for peer in peers:
                for proto, lo, hi in pieces:
                    r: dict[str, Any] = {"ip_protocol": proto, **peer, "description": ids[:255]}
                    if lo is not None:
                        r["from_port"], r["to_port"] = lo, hi
                    out.append(r)
    return out, lost


def _management(estate: Estate, direction: str) -> list[dict[str, Any]]:
    s = estate.ir.policy_set.settings.management
    nets, svcs = (
        (s.admin_networks, s.services) if direction == "in" else (s.controllers, s.control_services)
    )
    out: list[dict[str, Any]] = []
    rid = "management:admin" if direction == "in" else "management:control"
    for c in nets:
        for x in svcs:
            r: dict[str, Any] = {
                "ip_protocol": "-1" if x.proto is None else str(x.proto),
                "cidr_ipv6" if ":" in c else "cidr_ipv4": c,
                "description": rid,
            }
            if x.lo is not None:
                r["from_port"], r["to_port"] = x.lo, x.hi
            out.append(r)
    return out


def _minus(cidr: str, exc: list[str]) -> list[str]:
    import ipaddress

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
    for d, kind in (("in", "ingress"), ("out", "egress")):
        rules, l2 = _rules(estate, cls, d)
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
            if not (isolated(estate, cls, "in") or isolated(estate, cls, "out")):
                continue
            doc, notes, lost = group_doc(estate, cls)
            name = object_name(estate, cls)
            out.files.append(Artefact(f"{name}.tf.json", json.dumps(doc, indent=2) + "\n"))
            out.notes.extend(notes)
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
