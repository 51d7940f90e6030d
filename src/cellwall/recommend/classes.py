"""What an end of an edge becomes in a rule: a label class, a workload, or an external end.

A map node (:mod:`cellwall.discover.edges`) is a workload name or an external node
(``iplist:NAME``, ``dns:NAME``, ``unmanaged:IP``, ``cidr:NET``). At ``role`` granularity a
workload is its ``{app, role, env}`` class, at ``app`` its ``{app, env}`` class, at
``workload`` itself; a workload that lacks one of those labels stays itself. External ends
are generalised per (class, service, direction) by :func:`generalise`:

- many public networks (``internet_networks`` /24s or more) become the ``internet`` IP list;
- unmanaged private addresses aggregate to their /24 when it holds ``private_aggregate`` of
  them, else stay single addresses; what remains is one ``cidrs`` selector;
- IP lists and DNS names stay what they are (``iplist``, ``fqdn``).
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cellwall.model.inventory import Workload
from cellwall.recommend.model import RecommendConfig

__all__ = [
    "INTERNET",
    "INTERNET_EXCEPT",
    "ClassKey",
    "Classifier",
    "generalise",
    "is_external",
]

# ("labels", ((key, value), ...)) | ("workload", name) | ("iplist", name) | ("fqdn", name)
# | ("net", "203.0.113.0/24") | ("addr", "10.1.2.3") | ("cidrs", "a,b,...")
ClassKey = tuple[str, object]
INTERNET = ("0.0.0.0/0", "::/0")
INTERNET_EXCEPT = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
_EXTERNAL = ("iplist", "fqdn", "net", "addr", "cidrs")


def is_external(key: ClassKey) -> bool:
    return key[0] in _EXTERNAL


@dataclass
class Classifier:
    """Map node names to class keys, with the workloads' labels at hand."""

    workloads: Sequence[Workload]
    config: RecommendConfig

    def __post_init__(self) -> None:
        self.by_name = {w.name: w for w in self.workloads}
        self._cache: dict[str, ClassKey] = {}
        self._classes: set[ClassKey] | None = None

    def of(self, node: str) -> ClassKey:
        found = self._cache.get(node)
        if found is None:
            found = self._classify(node)
            self._cache[node] = found
        return found

    def _classify(self, node: str) -> ClassKey:
        w = self.by_name.get(node)
        if w is not None:
            keys = self.config.keys
            if not keys or any(k not in w.labels for k in keys):
                return ("workload", node)
            return ("labels", tuple((k, w.labels[k]) for k in keys))
        kind, _, rest = node.partition(":")
        if kind == "iplist":
            return ("iplist", rest)
        if kind == "dns":
            return ("fqdn", rest)
        if kind == "cidr":
            return ("net", rest)
        if kind == "unmanaged":
            return ("addr", rest)
        return ("addr", node)  # an address the map could not name

    def labels(self, key: ClassKey) -> dict[str, str]:
        """The labels that a class key pins (a workload's own labels for a workload key)."""
        if key[0] == "labels":
            pairs: tuple[tuple[str, str], ...] = key[1]  # type: ignore[assignment]
            return dict(pairs)
        if key[0] == "workload":
            w = self.by_name.get(str(key[1]))
            return dict(w.labels.items()) if w is not None else {}
        return {}

    def classes(self) -> set[ClassKey]:
        """Every class of the inventory at this granularity."""
        if self._classes is None:
            self._classes = {self.of(w.name) for w in self.workloads}
        return self._classes


def _private_cidrs(addresses: Iterable[str], threshold: int) -> list[str]:
    by_net: dict[str, list[str]] = defaultdict(list)
    for a in addresses:
        ip = ipaddress.ip_address(a)
        size = 24 if ip.version == 4 else 64
        by_net[str(ipaddress.ip_network(f"{a}/{size}", strict=False))].append(a)
    out: list[str] = []
    for net, members in by_net.items():
        if len(members) >= threshold:
            out.append(net)
        else:
            out.extend(str(ipaddress.ip_network(a)) for a in members)
    return out


def _collapse(cidrs: Iterable[str]) -> tuple[str, ...]:
    nets = [ipaddress.ip_network(c) for c in cidrs]
    v4 = ipaddress.collapse_addresses(n for n in nets if n.version == 4)
    v6 = ipaddress.collapse_addresses(n for n in nets if n.version == 6)
    return tuple(str(n) for n in [*v4, *v6])


def generalise(keys: Iterable[ClassKey], config: RecommendConfig) -> Mapping[ClassKey, ClassKey]:
    """For the external ends of one (class, service, direction): each end's rule end."""
    keys = set(keys)
    nets = sorted(str(k[1]) for k in keys if k[0] == "net")
    addrs = sorted(str(k[1]) for k in keys if k[0] == "addr")
    out: dict[ClassKey, ClassKey] = {k: k for k in keys if k[0] in ("iplist", "fqdn")}
    internet = len(nets) >= config.internet_networks
    if internet:
        out.update({("net", n): ("iplist", "internet") for n in nets})
        nets = []
    cidrs = _collapse([*nets, *_private_cidrs(addrs, config.private_aggregate)])
    if cidrs:
        target: ClassKey = ("cidrs", ",".join(cidrs))
        out.update({("net", n): target for n in nets})
        out.update({("addr", a): target for a in addrs})
    return out
