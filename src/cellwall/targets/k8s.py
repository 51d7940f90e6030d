"""Kubernetes NetworkPolicy: one object per label class whose mode blocks something.

A class becomes a ``podSelector`` that selects exactly its pods (its labels, and
``DoesNotExist`` for the other keys its namespace uses); its namespace is the workload's
``namespace`` label (``default`` when it has none). Peers are pod selectors with a
``namespaceSelector`` on ``kubernetes.io/metadata.name``, and unmanaged regions are
``ipBlock`` s. NetworkPolicy only allows, so each object lists what the class's mode lets
through: ``allowed`` in full mode, and also ``not-allowed`` in selective mode; deny rules are
thus enforced exactly by leaving their traffic out. Visibility-mode classes get no object
(NetworkPolicy cannot log). ICMP and protocols other than TCP, UDP and SCTP cannot be listed
apart: such traffic is left out (tighter) and the rules that decide it are reported.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, ClassVar

import yaml

from cellwall.model.policy import Service
from cellwall.targets.base import Artefact, Artefacts, Target, Unsupported, register
from cellwall.targets.classview import Peer, ServicePiece, cidr_block, grants, isolated
from cellwall.targets.plan import Estate

__all__ = ["K8sTarget", "class_namespace", "class_selector", "object_name"]

_PROTO = {6: "TCP", 17: "UDP", 132: "SCTP"}
NS_KEY = "namespace"
NS_LABEL = "kubernetes.io/metadata.name"


def class_namespace(estate: Estate, cls: int) -> str:
    return estate.ir.classes.labels(cls).get(NS_KEY) or "default"


def class_selector(estate: Estate, cls: int) -> dict[str, Any]:
    """A label selector that matches exactly the pods of class ``cls`` in its namespace."""
    ct = estate.ir.classes
    ns = class_namespace(estate, cls)
    labels = {k: v for k, v in ct.labels(cls).items() if k != NS_KEY}
    keys = {
        k
        for c in range(ct.count)
        if class_namespace(estate, c) == ns
        for k in ct.labels(c)
        if k != NS_KEY
    }
    sel: dict[str, Any] = {}
    if labels:
        sel["matchLabels"] = dict(sorted(labels.items()))
    missing = sorted(keys - set(labels))
    if missing:
        # NotIn every value the namespace uses: equal to DoesNotExist over the inventory
        # (NotIn matches a pod without the key), and read alike by every analyzer
        sel["matchExpressions"] = [
            {"key": k, "operator": "NotIn", "values": _values(estate, ns, k)} for k in missing
        ]
    return sel


def _values(estate: Estate, ns: str, key: str) -> list[str]:
    ct = estate.ir.classes
    found = {
        v
        for c in range(ct.count)
        if class_namespace(estate, c) == ns
        for v in (ct.labels(c).get(key),)
        if v is not None
    }
    return sorted(found)


def object_name(estate: Estate, cls: int, prefix: str = "cw") -> str:
    """A stable DNS-1123 name for a class: its label values and a short hash."""
    labels = estate.ir.classes.labels(cls)
    text = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    slug = "-".join(v for k, v in sorted(labels.items()) if k != NS_KEY)
    slug = re.sub(r"[^a-z0-9-]+", "-", slug.lower()).strip("-")[:40].strip("-")
    return f"{prefix}-{slug}-{digest}" if slug else f"{prefix}-{digest}"


def _peer(estate: Estate, p: Peer) -> list[dict[str, Any]]:
    if p.cls is not None:
        ns = class_namespace(estate, p.cls)
        return [
            {
                "namespaceSelector": {"matchLabels": {NS_LABEL: ns}},
                "podSelector": class_selector(estate, p.cls),
            }
        ]
    out = []
    for cidr, exc in cidr_block(p.ranges):
        block: dict[str, Any] = {"cidr": cidr}
        if exc:
            block["except"] = exc
        out.append({"ipBlock": block})
    return out


def _ports(pieces: tuple[ServicePiece, ...]) -> tuple[list[dict[str, Any]], list[int]]:
    """NetworkPolicy ports, and the rules deciding the pieces (ICMP, other protocols) that
    were left out (-1: not-allowed traffic)."""
    out: list[dict[str, Any]] = []
    lost: list[int] = []
    for s in pieces:
        if s.proto not in _PROTO:
            lost += list(s.codes) or [-1]
            continue
        port: dict[str, Any] = {"protocol": _PROTO[s.proto]}
        if s.lo is not None:
            port["port"] = s.lo
            if s.hi is not None and s.hi > s.lo:
                port["endPort"] = s.hi
        out.append(port)
    return out, lost


def _service_ports(services: tuple[Service, ...]) -> list[dict[str, Any]]:
    pieces = tuple(ServicePiece(s.proto, s.lo, s.hi) for s in services)
    return _ports(pieces)[0]


class _Builder:
    def __init__(self, estate: Estate, target: str) -> None:
        self.estate = estate
        self.target = target
        self.unsupported: list[Unsupported] = []

    def rules(self, cls: int, direction: str) -> list[dict[str, Any]]:
        key = "from" if direction == "in" else "to"
        out = []
        for g in sorted(grants(self.estate, cls, direction), key=repr):
            peers = [x for p in g.peers for x in _peer(self.estate, p)]
            rule: dict[str, Any] = {key: peers}
            if g.services is not None:
                ports, lost = _ports(g.services)
                if lost:
                    self._lost(lost)
                if not ports:
                    continue
                rule["ports"] = ports
            out.append(rule)
        out += self._management(direction, key)
        return out

    def _lost(self, codes: list[int]) -> None:
        for c in sorted(set(codes)):
            rid = self.estate.ir.rules[c].id if c >= 0 else "(not-allowed)"
            self.unsupported.append(
                Unsupported(
                    rid,
                    "icmp/other-proto: NetworkPolicy lists only TCP, UDP and SCTP; "
                    "that traffic is left out (blocked)",
                )
            )

    def _management(self, direction: str, key: str) -> list[dict[str, Any]]:
        s = self.estate.ir.policy_set.settings.management
        nets, svcs = (
            (s.admin_networks, s.services)
            if direction == "in"
            else (s.controllers, s.control_services)
        )
        if not nets or not svcs:
            return []
        rule: dict[str, Any] = {key: [{"ipBlock": {"cidr": c}} for c in nets]}
        ports = _service_ports(svcs)
        if ports:
            rule["ports"] = ports
        return [rule]

    def policy(self, cls: int) -> dict[str, Any] | None:
        est = self.estate
        types = [d for d in ("in", "out") if isolated(est, cls, d)]
        if not types:
            return None
        spec: dict[str, Any] = {
            "podSelector": class_selector(est, cls),
            "policyTypes": ["Ingress" if d == "in" else "Egress" for d in types],
        }
        for d in types:
            spec["ingress" if d == "in" else "egress"] = self.rules(cls, d)
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {
                "name": object_name(est, cls),
                "namespace": class_namespace(est, cls),
                "labels": {"app.kubernetes.io/managed-by": "cellwall"},
            },
            "spec": spec,
        }


def host_classes(estate: Estate, host: str | None) -> list[int]:
    """The classes to compile: the host's, or every class that has a workload."""
    if host is not None:
        return [estate.hosts[host].cls]
    return sorted({h.cls for h in estate.hosts.values()})


# libyaml's emitter where PyYAML was built with it: the same text, several times faster.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump(doc: dict[str, Any]) -> str:
    return yaml.dump(doc, Dumper=_DUMPER, sort_keys=False, default_flow_style=False)


@register
class K8sTarget(Target):
    name: ClassVar[str] = "k8s"
    per_host: ClassVar[bool] = False
    capabilities: ClassVar[frozenset[str]] = frozenset({"deny", "other-proto"})
    description: ClassVar[str] = "Kubernetes NetworkPolicy, one object per label class"

    def compile(self, estate: Estate, host: str | None) -> Artefacts:
        out = Artefacts(self.name, unsupported=self.gaps(estate.ir))
        b = _Builder(estate, self.name)
        for cls in host_classes(estate, host):
            doc = b.policy(cls)
            if doc is None:
                continue
            meta = doc["metadata"]
            out.files.append(Artefact(f"{meta['namespace']}/{meta['name']}.yaml", dump(doc)))
        out.unsupported.extend(b.unsupported)
        if any(int(m) == 0 for m in estate.ir.class_mode):
            out.notes.append(
                "visibility-mode classes get no NetworkPolicy: NetworkPolicy cannot log"
            )
        return out
