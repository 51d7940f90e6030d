"""Cilium CiliumNetworkPolicy: per label class, with ICMP, entities, L7 HTTP and FQDN.

Like :mod:`cellwall.targets.k8s`, each class whose mode blocks something gets one object
listing what its mode lets through (deny rules are enforced exactly by leaving their traffic
out). On top of NetworkPolicy it uses ``icmps`` for ICMP types, ``fromEntities``/``toEntities:
[world]`` for a region that is the whole unmanaged space, ``rules.http`` where the deciding
rule narrows a TCP service by HTTP method or path, and ``toFQDNs`` for allow rules whose
``to`` is an ``fqdn`` (Cilium learns the addresses from DNS; see docs/targets.md).

Cilium's CIDR rules never match endpoints it manages (a pod is matched by its labels only),
which is cellwall's reading of ``cidrs`` and IP lists: a region's CIDRs need no holes. The
management tier is by address, so pods inside the admin networks or that are controllers are
named by class (``fromEndpoints`` / ``toEndpoints``) next to the CIDRs, and such a class
reaches (is reached from) every class on the admin (control) services; a class only some of
whose pods qualify is reported (:func:`cellwall.targets.k8s.role_gaps`).
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from cellwall.model.policy import Service
from cellwall.policy.ir import MANAGEMENT_IDS
from cellwall.targets.base import Artefact, Artefacts, Target, Unsupported, register
from cellwall.targets.classview import Grant, Peer, ServicePiece, cidr_block, grants, isolated
from cellwall.targets.k8s import (
    NS_KEY,
    class_namespace,
    class_selector,
    dump,
    host_classes,
    management_roles,
    object_name,
    role_gaps,
)
from cellwall.targets.plan import Estate

__all__ = ["CiliumTarget"]

_PROTO = {6: "TCP", 17: "UDP", 132: "SCTP"}
_NS = "k8s:io.kubernetes.pod.namespace"


def _endpoint(estate: Estate, cls: int) -> dict[str, Any]:
    sel = class_selector(estate, cls)
    labels = dict(sel.get("matchLabels", {}))
    labels[_NS] = class_namespace(estate, cls)
    out: dict[str, Any] = {"matchLabels": dict(sorted(labels.items()))}
    if "matchExpressions" in sel:
        out["matchExpressions"] = sel["matchExpressions"]
    return out


def _whole(p: Peer) -> bool:
    spans = {(f, a, b) for f, a, b in p.ranges}
    return (4, 0, (1 << 32) - 1) in spans and (6, 0, (1 << 128) - 1) in spans


def _peer_fields(estate: Estate, peers: tuple[Peer, ...], d: str) -> list[dict[str, Any]]:
    pre = "from" if d == "in" else "to"
    eps = [_endpoint(estate, p.cls) for p in peers if p.cls is not None]
    out: list[dict[str, Any]] = []
    if eps:
        out.append({f"{pre}Endpoints": eps})
    for p in peers:
        if p.cls is not None:
            continue
        if _whole(p):
            out.append({f"{pre}Entities": ["world"]})
            continue
        cidrs = []
        for cidr, exc in cidr_block(p.ranges):
            c: dict[str, Any] = {"cidr": cidr}
            if exc:
                c["except"] = exc
            cidrs.append(c)
        out.append({f"{pre}CIDRSet": cidrs})
    return out


def _http(estate: Estate, codes: tuple[int, ...], s: ServicePiece) -> list[dict[str, str]]:
    """HTTP rules of the narrowed services (of the deciding rules) that cover piece ``s``."""
    out = []
    for c in codes:
        for svc, _ in estate.ir.rules[c].narrowed:
            if svc.proto != s.proto or not (svc.http_methods or svc.http_paths):
                continue
            if svc.lo is not None and s.lo is not None and not svc.lo <= s.lo <= (svc.hi or 0):
                continue
            for m in svc.http_methods or ("",):
                for path in svc.http_paths or ("",):
                    rule = {k: v for k, v in (("method", m), ("path", path)) if v}
                    out.append(rule)
    return out


def _l4(estate: Estate, g: Grant) -> list[dict[str, Any]]:
    """``toPorts`` / ``icmps`` fragments for a grant ([{}] when it is all traffic)."""
    if g.services is None:
        return [{}]
    ports: list[dict[str, Any]] = []
    icmps: list[dict[str, Any]] = []
    frags: list[dict[str, Any]] = []
    for s in g.services:
        if s.proto in _PROTO:
            port: dict[str, Any] = {
                "port": str(s.lo if s.lo is not None else 0),
                "protocol": _PROTO[s.proto],
            }
            if s.lo is not None and s.hi is not None and s.hi > s.lo:
                port["endPort"] = s.hi
            http = _http(estate, g.codes, s)
            entry: dict[str, Any] = {"ports": [port]}
            if http:
                entry["rules"] = {"http": http}
            ports.append(entry)
        elif s.proto in (1, 58) and s.lo is not None:
            fam = "IPv4" if s.proto == 1 else "IPv6"
            icmps += [
                {"fields": [{"type": t, "family": fam}]} for t in range(s.lo, (s.hi or s.lo) + 1)
            ]
        else:
            frags.append({"_lost": list(s.codes) or [-1]})
    if ports:
        frags.append({"toPorts": ports})
    if icmps:
        frags.append({"icmps": icmps})
    return frags


class _Builder:
    def __init__(self, estate: Estate) -> None:
        self.estate = estate
        self.lost: set[int] = set()
        self.mgmt_lost: set[str] = set()

    def rules(self, cls: int, d: str) -> list[dict[str, Any]]:
        out = []
        for g in sorted(grants(self.estate, cls, d), key=repr):
            for frag in _l4(self.estate, g):
                if frag.get("_lost"):
                    self.lost.update(frag["_lost"])
                    continue
                for pf in _peer_fields(self.estate, g.peers, d):
                    out.append({**pf, **frag})
        return out + self.fqdn(cls, d) + self.management(cls, d)

    def fqdn(self, cls: int, d: str) -> list[dict[str, Any]]:
        if d != "out":
            return []
        out = []
        for i, r in enumerate(self.estate.ir.rules):
            if r.action != "allow" or r.rule.to.fqdn is None or not r.src.classes[cls]:
                continue
            name = r.rule.to.fqdn
            sel = {"matchPattern": name} if "*" in name else {"matchName": name}
            rule: dict[str, Any] = {"toFQDNs": [sel]}
            svcs = r.rule.services
            if not any(x.proto is None for x in svcs):
                # no toPorts would be all traffic: ICMP and other protocols are left out
                if any(x.proto not in _PROTO for x in svcs):
                    self.lost.add(i)
                ports = _svc_ports(svcs)
                if not ports:
                    continue
                rule["toPorts"] = [{"ports": ports}]
            out.append(rule)
        return out

    def management(self, cls: int, d: str) -> list[dict[str, Any]]:
        """Admin networks and admin classes → the class (ingress), the class → controllers
        and controller classes (egress); an admin class → every class (egress) and every
        class → a controller class (ingress)."""
        s = self.estate.ir.policy_set.settings.management
        r = management_roles(self.estate)
        a_id, c_id = MANAGEMENT_IDS
        pre = "from" if d == "in" else "to"
        tier = [
            (a_id, s.admin_networks, r.admin, s.services, "in"),
            (c_id, s.controllers, r.control, s.control_services, "out"),
        ]
        out: list[dict[str, Any]] = []
        for rid, nets, role, svcs, own in tier:
            if not nets or not svcs:
                continue
            if own == d:
                peers: list[dict[str, Any]] = [{f"{pre}CIDR": list(nets)}]
                if role:
                    peers.append({f"{pre}Endpoints": [_endpoint(self.estate, c) for c in role]})
            elif cls in role:  # every workload, on the same services
                peers = [{f"{pre}Endpoints": [_endpoint(self.estate, c) for c in r.classes]}]
            else:
                continue
            pieces = tuple(ServicePiece(x.proto, x.lo, x.hi) for x in svcs)
            none = any(x.proto is None for x in svcs)
            for frag in _l4(self.estate, Grant((), None if none else pieces, ())):
                if frag.get("_lost"):
                    self.mgmt_lost.add(rid)
                    continue
                out += [{**p, **copy.deepcopy(frag)} for p in peers]  # no YAML anchors
        return out


def _svc_ports(services: tuple[Service, ...]) -> list[dict[str, Any]]:
    out = []
    for s in services:
        if s.proto in _PROTO:
            p: dict[str, Any] = {
                "port": str(s.lo if s.lo is not None else 0),
                "protocol": _PROTO[s.proto],
            }
            if s.lo is not None and s.hi is not None and s.hi > s.lo:
                p["endPort"] = s.hi
            out.append(p)
    return out


@register
class CiliumTarget(Target):
    name: ClassVar[str] = "cilium"
    per_host: ClassVar[bool] = False
    capabilities: ClassVar[frozenset[str]] = frozenset({"deny", "icmp", "http", "fqdn"})
    description: ClassVar[str] = "CiliumNetworkPolicy per label class (ICMP, L7 HTTP, FQDN)"

    def compile(self, estate: Estate, host: str | None) -> Artefacts:
        out = Artefacts(self.name, unsupported=self.gaps(estate.ir))
        b = _Builder(estate)
        for cls in host_classes(estate, host):
            types = [d for d in ("in", "out") if isolated(estate, cls, d)]
            if not types:
                continue
            spec: dict[str, Any] = {"endpointSelector": _endpoint(estate, cls)}
            for d in types:
                spec["ingress" if d == "in" else "egress"] = b.rules(cls, d)
            ns = class_namespace(estate, cls)
            doc = {
                "apiVersion": "cilium.io/v2",
                "kind": "CiliumNetworkPolicy",
                "metadata": {"name": object_name(estate, cls), "namespace": ns},
                "spec": spec,
            }
            out.files.append(Artefact(f"{ns}/{object_name(estate, cls)}.yaml", dump(doc)))
        for c in sorted(b.lost):
            out.unsupported.append(
                Unsupported(
                    estate.ir.rules[c].id if c >= 0 else "(not-allowed)",
                    "traffic on protocols other than TCP, UDP, SCTP and typed ICMP is left out",
                )
            )
        for rid in sorted(b.mgmt_lost):
            out.unsupported.append(
                Unsupported(
                    rid,
                    "management traffic on protocols other than TCP, UDP, SCTP "
                    "and typed ICMP is left out",
                )
            )
        for cls in host_classes(estate, host):
            if isolated(estate, cls, "in") or isolated(estate, cls, "out"):
                out.unsupported.extend(role_gaps(estate, cls, "CiliumNetworkPolicy"))
        _ = NS_KEY
        return out
