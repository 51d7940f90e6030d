"""Kubernetes NetworkPolicy: one object per label class whose mode blocks something.

A class becomes a ``podSelector`` that selects exactly its pods (its labels, and
``DoesNotExist`` for the other keys its namespace uses); its namespace is the workload's
``namespace`` label (``default`` when it has none). Peers are pod selectors with a
``namespaceSelector`` on ``kubernetes.io/metadata.name``, and unmanaged regions are
``ipBlock`` s. Whether an ``ipBlock`` also matches pod addresses is the CNI's choice (Calico:
yes; Cilium, NCA: no), so every pod address inside a block whose class is not let through on
all of the block's traffic is in the block's ``except``: a pod is decided by its own selector
under either reading. NetworkPolicy only allows, so each object lists what the class's mode lets
through: ``allowed`` in full mode, and also ``not-allowed`` in selective mode; deny rules are
thus enforced exactly by leaving their traffic out. Visibility-mode classes get no object
(NetworkPolicy cannot log). ICMP and protocols other than TCP, UDP and SCTP cannot be listed
apart: such traffic is left out (tighter) and the rules that decide it are reported.

The management tier is by address: ``ipBlock`` s for the admin networks and controllers,
and, for pods inside them, the classes all of whose pods are (:func:`management_roles`);
such a class also reaches (is reached from) every class on the admin (control) services. A
class only some of whose pods (or only one address family of them) are in the admin
networks or are controllers cannot be selected by labels: its pods' part is left to the
``ipBlock`` (tighter where the CNI does not match pod addresses, and no access to every pod)
and reported.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import yaml

from cellwall.model.policy import Service
from cellwall.policy.ir import MANAGEMENT_IDS
from cellwall.targets.base import Artefact, Artefacts, Target, Unsupported, register
from cellwall.targets.classview import (
    Grant,
    Peer,
    ServicePiece,
    cidr_block,
    grants,
    isolated,
    permitted,
)
from cellwall.targets.plan import Estate

__all__ = [
    "K8sTarget",
    "Roles",
    "class_namespace",
    "class_selector",
    "management_roles",
    "object_name",
    "pod_holes",
    "punch",
    "role_gaps",
]

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


def _peer(estate: Estate, p: Peer, holes: list[tuple[int, int]]) -> list[dict[str, Any]]:
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
        punched = punch(cidr, exc, holes)
        if punched is None:
            continue
        block: dict[str, Any] = {"cidr": cidr}
        if punched:
            block["except"] = punched
        out.append({"ipBlock": block})
    return out


def pod_holes(estate: Estate, cls: int, direction: str, g: Grant) -> list[tuple[int, int]]:
    """(family, address) of the workloads that a CIDR of grant ``g`` must not match where
    the target matches workload addresses by CIDR: those of every class that ``cls`` does
    not let through on all of ``g``'s traffic (its own selector decides them)."""
    key = ("k8s-masks", cls, direction)
    masks = estate.memo.get(key)
    if not isinstance(masks, dict):
        masks = estate.memo[key] = {p: ok for p, ok, _ in permitted(estate, cls, direction)}
    mask = masks[g.peers[0]]
    short = {c for c in range(estate.ir.classes.count) if (mask & ~masks[Peer(c, (), c)]).any()}
    out = set()
    for h in estate.hosts.values():
        if h.cls in short:
            for ip in h.addresses:
                a = ipaddress.ip_address(ip)
                out.add((a.version, int(a)))
    return sorted(out)


def punch(cidr: str, exc: list[str], holes: list[tuple[int, int]]) -> list[str] | None:
    """The ``except`` list of ``cidr`` once the ``holes`` addresses inside it are cut out
    too (None: nothing of ``cidr`` is left)."""
    n = ipaddress.ip_network(cidr)
    lo, hi = int(n.network_address), int(n.broadcast_address)
    inside = [v for f, v in holes if f == n.version and lo <= v <= hi]
    if not inside:
        return exc
    make = ipaddress.IPv4Network if n.version == 4 else ipaddress.IPv6Network
    nets = [make(e) for e in exc] + [make((v, n.max_prefixlen)) for v in inside]
    merged = list(ipaddress.collapse_addresses(nets))  # type: ignore[type-var]
    if any(m == n for m in merged):
        return None
    return [str(m) for m in merged]


@dataclass(frozen=True, slots=True)
class Roles:
    """Classes by management role: every address of whose workloads is in the admin
    networks (``admin``) or a controller (``control``), only some of whose are (``*_some``:
    another workload, or another address family, is not), and every class with an
    addressed workload (``classes``)."""

    admin: tuple[int, ...]
    admin_some: tuple[int, ...]
    control: tuple[int, ...]
    control_some: tuple[int, ...]
    classes: tuple[int, ...]


def management_roles(estate: Estate) -> Roles:
    """The classes of the workloads that are in the admin networks or are controllers (the
    management tier matches by address, whoever owns it)."""
    memo = estate.memo.get(("k8s-roles",))
    if isinstance(memo, Roles):
        return memo
    s = estate.ir.policy_set.settings.management
    admin = [ipaddress.ip_network(n) for n in s.admin_networks]
    ctl = [ipaddress.ip_network(n) for n in s.controllers]
    seen: dict[int, list[tuple[bool, bool]]] = {}
    for h in estate.hosts.values():
        ips = [ipaddress.ip_address(a) for a in h.addresses]
        if ips:
            # per address: a selector picks every address of a pod, each family alike
            seen.setdefault(h.cls, []).extend(
                (
                    any(a in n for n in admin if a.version == n.version),
                    any(a in n for n in ctl if a.version == n.version),
                )
                for a in ips
            )

    def split(i: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        every = tuple(c for c, rs in sorted(seen.items()) if all(r[i] for r in rs))
        some = tuple(c for c, rs in sorted(seen.items()) if any(r[i] for r in rs))
        return every, tuple(c for c in some if c not in every)

    (a, a_some), (c, c_some) = split(0), split(1)
    out = Roles(a, a_some, c, c_some, tuple(sorted(seen)))
    estate.memo[("k8s-roles",)] = out
    return out


def role_gaps(estate: Estate, cls: int, target: str) -> list[Unsupported]:
    """An :class:`Unsupported` per management rule that class ``cls`` holds for only some
    of its workloads (a label selector cannot tell them apart)."""
    r = management_roles(estate)
    a_id, c_id = MANAGEMENT_IDS
    out = []
    for rid, some, what in (
        (a_id, r.admin_some, "in the admin networks"),
        (c_id, r.control_some, "controllers"),
    ):
        if cls in some:
            out.append(
                Unsupported(
                    rid,
                    f"{object_name(estate, cls)}: only some of its workloads (or of their "
                    f"addresses) are {what}; "
                    f"{target} selects workloads by labels, not addresses, so their "
                    "management access by class is left out (by CIDR only where the "
                    "platform matches workload addresses; blocked elsewhere)",
                )
            )
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
            holes = (
                pod_holes(self.estate, cls, direction, g)
                if any(p.cls is None for p in g.peers)
                else []
            )
            peers = [x for p in g.peers for x in _peer(self.estate, p, holes)]
            if not peers:
                continue
            rule: dict[str, Any] = {key: peers}
            if g.services is not None:
                ports, lost = _ports(g.services)
                if lost:
                    self._lost(lost)
                if not ports:
                    continue
                rule["ports"] = ports
            out.append(rule)
        out += self._management(cls, direction, key)
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

    def _management(self, cls: int, direction: str, key: str) -> list[dict[str, Any]]:
        """Admin networks (and pods of admin classes) → the class, and the class →
        controllers (and pods of controller classes); an admin class → every class and
        every class → a controller class."""
        s = self.estate.ir.policy_set.settings.management
        r = management_roles(self.estate)
        a_id, c_id = MANAGEMENT_IDS
        tier = [
            (a_id, s.admin_networks, r.admin, s.services, "in"),
            (c_id, s.controllers, r.control, s.control_services, "out"),
        ]
        out = []
        for rid, nets, role, svcs, d in tier:
            if not nets or not svcs:
                continue
            if d == direction:
                peers = [{"ipBlock": {"cidr": c}} for c in nets]
                peers += [x for c in role for x in _peer(self.estate, Peer(c), [])]
            elif cls in role:  # every workload, on the same services
                peers = [x for c in r.classes for x in _peer(self.estate, Peer(c), [])]
            else:
                continue
            rule: dict[str, Any] = {key: peers}
            ports = self._mgmt_ports(rid, svcs)
            if ports == []:
                continue
            if ports is not None:
                rule["ports"] = ports
            out.append(rule)
        return out

    def _mgmt_ports(self, rid: str, svcs: tuple[Service, ...]) -> list[dict[str, Any]] | None:
        """NetworkPolicy ports of management services (None: all traffic); the others
        (ICMP, other protocols) are reported and left out."""
        if any(x.proto is None for x in svcs):
            return None
        ports = _service_ports(svcs)
        if any(x.proto not in _PROTO for x in svcs):
            self.unsupported.append(
                Unsupported(
                    rid,
                    "icmp/other-proto: NetworkPolicy lists only TCP, UDP and SCTP; "
                    "that management traffic is left out (blocked)",
                )
            )
        return ports

    def policy_types(self, cls: int) -> list[str]:
        return [d for d in ("in", "out") if isolated(self.estate, cls, d)]

    def policy(self, cls: int) -> dict[str, Any] | None:
        est = self.estate
        types = self.policy_types(cls)
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
        for cls in host_classes(estate, host):
            if b.policy_types(cls):
                out.unsupported.extend(role_gaps(estate, cls, "NetworkPolicy"))
        out.unsupported.extend(dict.fromkeys(b.unsupported))
        if any(int(m) == 0 for m in estate.ir.class_mode):
            out.notes.append(
                "visibility-mode classes get no NetworkPolicy: NetworkPolicy cannot log"
            )
        return out
