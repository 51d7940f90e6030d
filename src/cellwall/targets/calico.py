"""Calico GlobalNetworkPolicy: per label class, ordered tiers with Allow, Deny and Log.

Each class whose mode blocks something gets one object per tier, ``order`` giving the
precedence of CONTRACTS.md: ``mgmt`` (order 10: the management tier), ``deny`` (order 20:
``denied`` traffic, Deny in selective and full mode, Log then Allow in visibility mode),
``allow`` (order 30: ``allowed`` traffic) and ``default`` (order 40: what no rule decides,
Deny in full mode, Log then Allow otherwise). Selectors are Calico label expressions that
match exactly the class; unmanaged regions are ``nets`` / ``notNets`` with
``notSelector: all()`` (a net also holds endpoints, which their class decides). The
management tier also lets an endpoint inside the admin networks reach every endpoint on the
admin services, and every endpoint reach an endpoint that is a controller on the control
services, as the analyzer does.
"""

from __future__ import annotations

from typing import Any, ClassVar

from cellwall.model.policy import Service
from cellwall.policy.ir import ALLOWED, DENIED
from cellwall.targets.base import Artefact, Artefacts, Target, register
from cellwall.targets.classview import Grant, Peer, ServicePiece, cidr_block, grants
from cellwall.targets.k8s import dump, host_classes, object_name
from cellwall.targets.plan import Estate

__all__ = ["CalicoTarget", "calico_selector"]

_PROTO = {6: "TCP", 17: "UDP", 132: "SCTP", 1: "ICMP", 58: "ICMPv6"}
ORDERS = {"mgmt": 10, "deny": 20, "allow": 30, "default": 40}


def calico_selector(estate: Estate, cls: int) -> str:
    """A Calico selector expression matching exactly class ``cls``."""
    ct = estate.ir.classes
    labels = ct.labels(cls)
    keys = sorted({k for c in range(ct.count) for k in ct.labels(c)})
    parts = []
    for k in keys:
        v = labels.get(k)
        parts.append(f"{k} == '{v}'" if v is not None else f"!has({k})")
    return " && ".join(parts) or "all()"


def _entities(estate: Estate, p: Peer) -> list[dict[str, Any]]:
    if p.cls is not None:
        return [{"selector": calico_selector(estate, p.cls)}]
    out: list[dict[str, Any]] = []
    for cidr, exc in cidr_block(p.ranges):
        ent: dict[str, Any] = {"nets": [cidr]}
        if exc:
            ent["notNets"] = exc
        # nets also match endpoints, which the policy judges by their class (their own
        # selector rules): a region is the unmanaged addresses in it only
        ent["notSelector"] = "all()"
        out.append(ent)
    return out


def _service_rules(svc: tuple[ServicePiece, ...] | None) -> list[dict[str, Any]]:
    """(protocol, destination ports / ICMP) fragments, one per piece."""
    if svc is None:
        return [{}]
    out: list[dict[str, Any]] = []
    for s in svc:
        if s.proto is None:
            out.append({"notProtocol": "TCP"} if False else {"_other": True})
            continue
        frag: dict[str, Any] = {"protocol": _PROTO.get(s.proto, s.proto)}
        if s.lo is not None and s.proto in (1, 58):
            frag["icmp"] = {"type": s.lo} if s.lo == s.hi else {}
        elif s.lo is not None:
            frag["ports"] = [s.lo if s.lo == s.hi else f"{s.lo}:{s.hi}"]
        out.append(frag)
    return out


class _Builder:
    def __init__(self, estate: Estate) -> None:
        self.estate = estate
        self.unsupported: list[str] = []

    def rules(self, g: Grant, direction: str, actions: list[str]) -> list[dict[str, Any]]:
        peer_key = "source" if direction == "in" else "destination"
        out = []
        ids = ",".join(self.estate.ir.rules[c].id for c in g.codes)
        for p in g.peers:
            for ent in _entities(self.estate, p):
                for frag in _service_rules(g.services):
                    if frag.get("_other") or frag.get("icmp") == {}:
                        self.unsupported.append(ids)
                        continue
                    for action in actions:
                        rule: dict[str, Any] = {"action": action, peer_key: dict(ent)}
                        ports = frag.get("ports")
                        if "protocol" in frag:
                            rule["protocol"] = frag["protocol"]
                        if "icmp" in frag:
                            rule["icmp"] = frag["icmp"]
                        if ports and direction == "in":
                            rule["destination"] = {"ports": ports}
                        elif ports:
                            rule["destination"]["ports"] = ports
                        if ids:
                            rule["metadata"] = {"annotations": {"cellwall/rules": ids}}
                        out.append(rule)
        return out

    def tier(self, cls: int, tier: str, mode: int) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "order": ORDERS[tier],
            "selector": calico_selector(self.estate, cls),
            "types": ["Ingress", "Egress"],
        }
        for d, key in (("in", "ingress"), ("out", "egress")):
            spec[key] = self.tier_rules(cls, tier, mode, d)
        name = f"{object_name(self.estate, cls)}-{ORDERS[tier]}-{tier}"
        return {
            "apiVersion": "projectcalico.org/v3",
            "kind": "GlobalNetworkPolicy",
            "metadata": {"name": name},
            "spec": spec,
        }

    def tier_rules(self, cls: int, tier: str, mode: int, d: str) -> list[dict[str, Any]]:
        blocks = mode == 2 or (mode == 1 and tier == "deny")
        acts = ["Deny"] if blocks else ["Log", "Allow"]
        if tier == "mgmt":
            return self.management(d)
        if tier == "default":
            return [{"action": a} for a in acts]
        want = DENIED if tier == "deny" else ALLOWED
        acts = acts if tier == "deny" else ["Allow"]
        out: list[dict[str, Any]] = []
        for g in sorted(grants(self.estate, cls, d, want), key=repr):
            out += self.rules(g, d, acts)
        return out

    def management(self, d: str) -> list[dict[str, Any]]:
        """The management tier: admin networks → the endpoint (ingress) and the endpoint →
        controllers (egress); and, for an endpoint whose own address is in the admin
        networks (a controller), the same services to (from) every endpoint."""
        s = self.estate.ir.policy_set.settings.management
        pairs: list[tuple[dict[str, Any], dict[str, Any], tuple[Service, ...]]]
        if d == "in":
            pairs = [({"nets": list(s.admin_networks)}, {}, s.services)]
            pairs.append(({"selector": "all()"}, {"nets": list(s.controllers)}, s.control_services))
        else:
            pairs = [({}, {"nets": list(s.controllers)}, s.control_services)]
            pairs.append(({"nets": list(s.admin_networks)}, {"selector": "all()"}, s.services))
        out = []
        for src, dst, svcs in pairs:
            if not svcs or not (src.get("nets", True) and dst.get("nets", True)):
                continue
            pieces = tuple(ServicePiece(x.proto, x.lo, x.hi) for x in svcs)
            for frag in _service_rules(pieces):
                rule: dict[str, Any] = {"action": "Allow"}
                if src:
                    rule["source"] = dict(src)
                rule.update({k: v for k, v in frag.items() if k == "protocol"})
                if dst or "ports" in frag:
                    rule["destination"] = dict(dst)
                if "ports" in frag:
                    rule["destination"]["ports"] = frag["ports"]
                out.append(rule)
        return out


@register
class CalicoTarget(Target):
    name: ClassVar[str] = "calico"
    per_host: ClassVar[bool] = False
    capabilities: ClassVar[frozenset[str]] = frozenset({"deny", "icmp", "other-proto"})
    description: ClassVar[str] = "Calico GlobalNetworkPolicy per label class, ordered tiers"

    def compile(self, estate: Estate, host: str | None) -> Artefacts:
        from cellwall.targets.base import Unsupported

        out = Artefacts(self.name, unsupported=self.gaps(estate.ir))
        b = _Builder(estate)
        for cls in host_classes(estate, host):
            mode = int(estate.ir.class_mode[cls])
            for tier in ORDERS:
                doc = b.tier(cls, tier, mode)
                out.files.append(Artefact(f"{doc['metadata']['name']}.yaml", dump(doc)))
        for ids in sorted(set(b.unsupported)):
            for rid in ids.split(",") if ids else ["(not-allowed)"]:
                out.unsupported.append(
                    Unsupported(
                        rid,
                        "protocol ranges or ICMP type ranges that Calico cannot "
                        "list in one rule are left out",
                    )
                )
        return out
