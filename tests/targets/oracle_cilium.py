"""An independent reading of CiliumNetworkPolicy: allowed or not for one new connection.

It reads only the emitted YAML and the endpoints (workload addresses and their labels, what
Cilium learns from Kubernetes: a workload's ``namespace`` label is its pod's namespace,
``default`` without one, and its other labels are the pod's), and decides as Cilium's
datapath does for a new connection from ``src`` to ``dst``:

- The source endpoint's *egress* and the destination endpoint's *ingress*; both must allow.
  An address that is no endpoint is ``world`` and enforces nothing.
- A policy applies to the endpoints of its namespace that its ``endpointSelector``
  matches; when one that applies has an ``ingress`` (``egress``) list, the endpoint denies
  what no rule of any such policy allows (rules only allow).
- A rule allows when its peer and its L4 match. Peers: ``fromEndpoints``/``toEndpoints``
  (label selectors over endpoints only; one without the namespace label means the
  policy's namespace), ``fromCIDR``/``toCIDR``, ``fromCIDRSet``/``toCIDRSet`` (with
  ``except``) and ``fromEntities``/``toEntities`` ``world`` (addresses that are no endpoint
  only: Cilium's CIDR rules never match endpoints it manages), ``all``; ``toFQDNs``
  matches no address (no DNS here). A rule without peers matches every peer. L4:
  ``toPorts`` (``port`` ``"0"`` alone is every port, with ``endPort`` the range from 0;
  ``protocol`` ``TCP``/``UDP``/``SCTP``/``ANY``) and ``icmps`` (type and family); neither
  means all traffic.
  ``rules.http`` is L7: the connection is allowed and requests are filtered (HTTP facts
  are not probed here).

Anything else raises: the oracle never guesses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

__all__ = ["CiliumOracle", "OracleError", "selects"]

Labels = Mapping[str, str]
NS = "k8s:io.kubernetes.pod.namespace"
_PROTOS = {"TCP": 6, "UDP": 17, "SCTP": 132}
_PEERS = {"Endpoints", "CIDR", "CIDRSet", "Entities", "FQDNs"}
_RULE_KEYS = {f"{d}{p}" for d in ("from", "to") for p in _PEERS} | {"toPorts", "icmps"}


class OracleError(ValueError):
    """The YAML uses something this oracle does not read."""


def selects(sel: Mapping[str, Any], labels: Labels) -> bool:
    """A Kubernetes label selector (``matchLabels``, ``matchExpressions``) over labels."""
    unknown = set(sel) - {"matchLabels", "matchExpressions"}
    if unknown:
        raise OracleError(f"selector keys {sorted(unknown)}")
    if any(labels.get(k) != v for k, v in sel.get("matchLabels", {}).items()):
        return False
    for e in sel.get("matchExpressions", []):
        k, op, vals = e["key"], e["operator"], e.get("values", [])
        if op == "In":
            ok = k in labels and labels[k] in vals
        elif op == "NotIn":
            ok = k not in labels or labels[k] not in vals
        elif op == "Exists":
            ok = k in labels
        elif op == "DoesNotExist":
            ok = k not in labels
        else:
            raise OracleError(f"selector operator {op!r}")
        if not ok:
            return False
    return True


def _in_cidr(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, cidr: str) -> bool:
    n = ipaddress.ip_network(cidr)
    return n.version == addr.version and addr in n


class CiliumOracle:
    def __init__(self, docs: Iterable[Mapping[str, Any]], endpoints: Mapping[str, Labels]):
        self.policies = []
        for d in docs:
            if d.get("kind") != "CiliumNetworkPolicy":
                raise OracleError(f"kind {d.get('kind')!r}")
            unknown = set(d["spec"]) - {"endpointSelector", "ingress", "egress"}
            if unknown:
                raise OracleError(f"spec keys {sorted(unknown)}")
            self.policies.append((d["metadata"].get("namespace", "default"), d["spec"]))
        self.endpoints: dict[str, dict[str, str]] = {}
        for ip, labels in endpoints.items():
            own = {k: v for k, v in labels.items() if k != "namespace"}
            own[NS] = labels.get("namespace", "default")
            self.endpoints[str(ipaddress.ip_address(ip))] = own

    @classmethod
    def from_texts(cls, texts: Iterable[str], endpoints: Mapping[str, Labels]) -> CiliumOracle:
        return cls([yaml.safe_load(t) for t in texts], endpoints)

    def allowed(self, src: str, dst: str, proto: int, port: int) -> bool:
        """Cilium's decision for a new connection ``src`` → ``dst`` on ``proto``/``port``
        (the ICMP type for ICMP)."""
        return self._side(src, dst, proto, port, "egress") and self._side(
            dst, src, proto, port, "ingress"
        )

    def _side(self, me: str, peer: str, proto: int, port: int, key: str) -> bool:
        labels = self.endpoints.get(str(ipaddress.ip_address(me)))
        if labels is None:
            return True  # world: no policy there
        rules = []
        enforced = False
        for ns, spec in self.policies:
            if ns == labels[NS] and selects(spec["endpointSelector"], labels) and key in spec:
                enforced = True
                rules += spec[key] or []
        if not enforced:
            return True
        pre = "from" if key == "ingress" else "to"
        return any(self._peer(r, pre, peer, labels[NS]) and self._l4(r, proto, port) for r in rules)

    def _peer(self, rule: Mapping[str, Any], pre: str, peer: str, ns: str) -> bool:
        unknown = set(rule) - _RULE_KEYS
        if unknown or any(k.startswith("to" if pre == "from" else "from") for k in rule
                          if k not in ("toPorts",)):  # fmt: skip
            raise OracleError(f"rule keys {sorted(rule)}")
        fields = [k for k in rule if k.startswith(pre) and k != "toPorts"]
        if not fields:
            return True
        addr = ipaddress.ip_address(peer)
        ep = self.endpoints.get(str(addr))
        for f in fields:
            kind, val = f[len(pre) :], rule[f]
            if kind == "Endpoints" and ep is not None:
                for sel in val:
                    scoped = dict(sel.get("matchLabels", {}))
                    if not any(NS in (e["key"],) for e in sel.get("matchExpressions", [])):
                        scoped.setdefault(NS, ns)
                    if selects({**sel, "matchLabels": scoped}, ep):
                        return True
            elif kind == "CIDR" and ep is None:
                if any(_in_cidr(addr, c) for c in val):
                    return True
            elif kind == "CIDRSet" and ep is None:
                for c in val:
                    if _in_cidr(addr, c["cidr"]) and not any(
                        _in_cidr(addr, e) for e in c.get("except", [])
                    ):
                        return True
            elif kind == "Entities":
                for ent in val:
                    if ent not in ("world", "all"):
                        raise OracleError(f"entity {ent!r}")
                    if ent == "all" or ep is None:
                        return True
            elif kind not in _PEERS:
                raise OracleError(f"peer {f!r}")
        return False  # FQDNs: no address is learned here

    def _l4(self, rule: Mapping[str, Any], proto: int, port: int) -> bool:
        ports, icmps = rule.get("toPorts"), rule.get("icmps")
        if ports is None and icmps is None:
            return True
        for entry in ports or []:
            if set(entry) - {"ports", "rules"} or set(entry.get("rules", {})) - {"http"}:
                raise OracleError(f"toPorts entry {sorted(entry)}")
            for p in entry["ports"]:
                want = p.get("protocol", "ANY")
                if want != "ANY" and _PROTOS.get(want) != proto:
                    continue
                if proto not in _PROTOS.values():
                    continue
                lo = int(p["port"])
                hi = int(p.get("endPort", lo))
                if (lo == 0 and "endPort" not in p) or lo <= port <= hi:
                    return True
        for entry in icmps or []:
            for f in entry["fields"]:
                fam = {"IPv4": 1, "IPv6": 58}[f.get("family", "IPv4")]
                if fam == proto and int(f["type"]) == port:
                    return True
        return False
