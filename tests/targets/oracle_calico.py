"""An independent reading of Calico GlobalNetworkPolicy: allow or deny for one connection.

It reads only the emitted YAML and the endpoints (workload addresses and their labels, what
Calico learns from the orchestrator), and decides as Calico's dataplane does for a new
connection from ``src`` to ``dst``:

- The source endpoint's *egress* policies, then the destination endpoint's *ingress*
  policies; an address that is no endpoint has no policy and passes its own side.
- A policy applies to an endpoint when its ``selector`` matches the endpoint's labels and
  its ``types`` hold the direction. Applied policies are evaluated by ``order``, then name;
  within a policy, rules in order. The first ``Allow`` or ``Deny`` decides; ``Log`` goes on;
  ``Pass`` ends the tier and falls to the profile (allow). A rule matches when every field
  it sets matches: ``protocol``/``notProtocol``, ``ipVersion``, ``icmp``, and per side
  ``nets``/``notNets`` (any address, endpoint or not), ``selector``/``notSelector`` (only
  endpoints), ``ports``/``notPorts`` (destination ports).
- When policies apply and none decides, the end of the tier denies; when none applies, the
  endpoint's profile allows.

Selectors: ``all()``, ``has(k)``, ``k == 'v'``, ``k != 'v'``, ``k in {...}``,
``k not in {...}``, ``!``, ``&&``, ``||`` and parentheses. Anything else raises: the oracle
never guesses.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["CalicoOracle", "parse_selector"]

Labels = Mapping[str, str]
Selector = Callable[[Labels], bool]
_PROTOS = {"TCP": 6, "UDP": 17, "ICMP": 1, "ICMPV6": 58, "SCTP": 132, "UDPLITE": 136}
_TOKEN = re.compile(r"\s*(\|\||&&|==|!=|!|\(|\)|\{|\}|,|'[^']*'|\"[^\"]*\"|[A-Za-z0-9_./-]+)")


class OracleError(ValueError):
    """The YAML uses something this oracle does not read."""


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise OracleError(f"selector {text!r}: cannot read at {pos}")
        out.append(m.group(1))
        pos = m.end()
    return out


def parse_selector(text: str) -> Selector:
    """A Calico selector expression as a predicate over labels."""
    toks = _tokens(text)
    pos = 0

    def peek() -> str | None:
        return toks[pos] if pos < len(toks) else None

    def take(want: str | None = None) -> str:
        nonlocal pos
        if pos >= len(toks) or (want is not None and toks[pos] != want):
            raise OracleError(f"selector {text!r}: expected {want!r} at token {pos}")
        pos += 1
        return toks[pos - 1]

    def string() -> str:
        t = take()
        if t[:1] not in ("'", '"'):
            raise OracleError(f"selector {text!r}: expected a quoted value, got {t!r}")
        return t[1:-1]

    def values() -> set[str]:
        take("{")
        out = set()
        while peek() != "}":
            out.add(string())
            if peek() == ",":
                take(",")
        take("}")
        return out

    def factor() -> Selector:
        t = take()
        if t == "!":
            inner = factor()
            return lambda lb: not inner(lb)
        if t == "(":
            inner = expr()
            take(")")
            return inner
        if t in ("all", "has"):
            take("(")
            name = take() if t == "has" else None
            take(")")
            if name is None:
                return lambda lb: True
            return lambda lb: name in lb
        key, op = t, take()
        if op == "==":
            v = string()
            return lambda lb: lb.get(key) == v
        if op == "!=":
            v = string()
            return lambda lb: lb.get(key) != v
        if op == "in":
            vs = values()
            return lambda lb: lb.get(key) in vs
        if op == "not" and take("in"):
            vs = values()
            return lambda lb: lb.get(key) not in vs
        raise OracleError(f"selector {text!r}: unknown operator {op!r}")

    def term() -> Selector:
        parts = [factor()]
        while peek() == "&&":
            take("&&")
            parts.append(factor())
        return lambda lb: all(p(lb) for p in parts)

    def expr() -> Selector:
        parts = [term()]
        while peek() == "||":
            take("||")
            parts.append(term())
        return lambda lb: any(p(lb) for p in parts)

    result = expr()
    if pos != len(toks):
        raise OracleError(f"selector {text!r}: trailing {toks[pos:]}")
    return result


Net = tuple[int, int, int]  # family, first, last


def _net(cidr: str) -> Net:
    n = ipaddress.ip_network(cidr, strict=False)
    return n.version, int(n.network_address), int(n.broadcast_address)


def _ports(spec: Iterable[Any]) -> list[tuple[int, int]]:
    out = []
    for p in spec:
        if isinstance(p, int):
            out.append((p, p))
        elif isinstance(p, str) and re.fullmatch(r"\d+:\d+", p):
            lo, hi = p.split(":")
            out.append((int(lo), int(hi)))
        else:
            raise OracleError(f"port {p!r}: named ports are not read")
    return out


def _proto(v: Any) -> int:
    if isinstance(v, int):
        return v
    if str(v).upper() in _PROTOS:
        return _PROTOS[str(v).upper()]
    raise OracleError(f"protocol {v!r}")


@dataclass(frozen=True)
class _Entity:
    nets: tuple[Net, ...] | None
    not_nets: tuple[Net, ...]
    selector: Selector | None
    not_selector: Selector | None
    ports: tuple[tuple[int, int], ...] | None
    not_ports: tuple[tuple[int, int], ...]

    @classmethod
    def read(cls, doc: Mapping[str, Any] | None) -> _Entity:
        doc = doc or {}
        known = {"nets", "notNets", "selector", "notSelector", "ports", "notPorts"}
        if set(doc) - known:
            raise OracleError(f"rule entity fields {sorted(set(doc) - known)} are not read")
        return cls(
            tuple(map(_net, doc["nets"])) if "nets" in doc else None,
            tuple(map(_net, doc.get("notNets", ()))),
            parse_selector(doc["selector"]) if "selector" in doc else None,
            parse_selector(doc["notSelector"]) if "notSelector" in doc else None,
            tuple(_ports(doc["ports"])) if "ports" in doc else None,
            tuple(_ports(doc.get("notPorts", ()))),
        )

    def peer(self, ip: tuple[int, int], labels: Labels | None) -> bool:
        """Whether the address (and its labels, None when it is no endpoint) matches."""
        fam, v = ip
        if self.nets is not None and not any(f == fam and a <= v <= b for f, a, b in self.nets):
            return False
        if any(f == fam and a <= v <= b for f, a, b in self.not_nets):
            return False
        if self.selector is not None and (labels is None or not self.selector(labels)):
            return False
        return not (
            self.not_selector is not None and labels is not None and self.not_selector(labels)
        )

    def port(self, port: int | None) -> bool:
        if self.ports is not None and (
            port is None or not any(a <= port <= b for a, b in self.ports)
        ):
            return False
        return not (port is not None and any(a <= port <= b for a, b in self.not_ports))


@dataclass(frozen=True)
class _Rule:
    action: str
    proto: int | None
    not_proto: int | None
    version: int | None
    icmp: tuple[int | None, int | None] | None
    source: _Entity
    destination: _Entity

    @classmethod
    def read(cls, doc: Mapping[str, Any]) -> _Rule:
        known = {
            "action",
            "protocol",
            "notProtocol",
            "ipVersion",
            "icmp",
            "source",
            "destination",
            "metadata",
        }
        if set(doc) - known:
            raise OracleError(f"rule fields {sorted(set(doc) - known)} are not read")
        if doc["action"] not in ("Allow", "Deny", "Log", "Pass"):
            raise OracleError(f"action {doc['action']!r}")
        icmp = doc.get("icmp")
        return cls(
            doc["action"],
            _proto(doc["protocol"]) if "protocol" in doc else None,
            _proto(doc["notProtocol"]) if "notProtocol" in doc else None,
            doc.get("ipVersion"),
            None if icmp is None else (icmp.get("type"), icmp.get("code")),
            _Entity.read(doc.get("source")),
            _Entity.read(doc.get("destination")),
        )

    def service(self, family: int, proto: int, port: int | None, icmp: int | None) -> bool:
        if self.version is not None and self.version != family:
            return False
        if self.proto is not None and self.proto != proto:
            return False
        if self.not_proto is not None and self.not_proto == proto:
            return False
        if self.icmp is not None:
            want_type, want_code = self.icmp
            if want_type is not None and want_type != icmp:
                return False
            if want_code not in (None, 0):  # the probes send code 0
                return False
        return self.destination.port(port)


@dataclass(frozen=True)
class _Policy:
    name: str
    order: float
    selector: Selector
    types: frozenset[str]
    ingress: tuple[_Rule, ...]
    egress: tuple[_Rule, ...]


def _read_policy(doc: Mapping[str, Any]) -> _Policy:
    if doc.get("kind") != "GlobalNetworkPolicy":
        raise OracleError(f"kind {doc.get('kind')!r} is not read")
    spec = doc["spec"]
    types = spec.get("types") or (["Ingress"] + (["Egress"] if spec.get("egress") else []))
    return _Policy(
        doc["metadata"]["name"],
        float(spec.get("order", float("inf"))),
        parse_selector(spec.get("selector", "all()")),
        frozenset(types),
        tuple(_Rule.read(r) for r in spec.get("ingress") or ()),
        tuple(_Rule.read(r) for r in spec.get("egress") or ()),
    )


def _addr(ip: str) -> tuple[int, int]:
    a = ipaddress.ip_address(ip)
    return a.version, int(a)


class CalicoOracle:
    """Calico's decision over a set of GlobalNetworkPolicy documents and endpoints
    (``endpoints``: address → labels of the workload endpoint that holds it)."""

    def __init__(self, docs: Iterable[Mapping[str, Any]], endpoints: Mapping[str, Labels]) -> None:
        self.policies = sorted((_read_policy(d) for d in docs), key=lambda p: (p.order, p.name))
        self.endpoints = {_addr(ip): dict(lb) for ip, lb in endpoints.items()}
        self._applied: dict[tuple[tuple[str, str], ...], dict[str, list[_Policy]]] = {}
        self._peer: dict[tuple[str, tuple[int, int], tuple[int, int]], list[list[_Rule]]] = {}

    @classmethod
    def from_texts(cls, texts: Iterable[str], endpoints: Mapping[str, Labels]) -> CalicoOracle:
        docs = [d for t in texts for d in yaml.load_all(t, Loader=_loader()) if d]
        return cls(docs, endpoints)

    def _policies(self, labels: Labels, direction: str) -> list[_Policy]:
        key = tuple(sorted(labels.items()))
        found = self._applied.get(key)
        if found is None:
            applied = [p for p in self.policies if p.selector(labels)]
            found = self._applied[key] = {
                d: [p for p in applied if d in p.types] for d in ("Ingress", "Egress")
            }
        return found[direction]

    def _rules(
        self, direction: str, me: tuple[int, int], other: tuple[int, int]
    ) -> list[list[_Rule]]:
        """Per applied policy of endpoint ``me``, its rules whose address sides match."""
        key = (direction, me, other)
        found = self._peer.get(key)
        if found is None:
            mine, theirs = self.endpoints.get(me), self.endpoints.get(other)
            assert mine is not None
            src, dst = (other, me) if direction == "Ingress" else (me, other)
            src_lb, dst_lb = (theirs, mine) if direction == "Ingress" else (mine, theirs)
            found = []
            for p in self._policies(mine, direction):
                rules = p.ingress if direction == "Ingress" else p.egress
                found.append(
                    [
                        r
                        for r in rules
                        if r.source.peer(src, src_lb) and r.destination.peer(dst, dst_lb)
                    ]
                )
            self._peer[key] = found
        return found

    def _side(
        self,
        direction: str,
        me: tuple[int, int],
        other: tuple[int, int],
        proto: int,
        port: int | None,
        icmp: int | None,
    ) -> bool:
        if me not in self.endpoints:
            return True  # not an endpoint: no policy on this side
        per_policy = self._rules(direction, me, other)
        if not per_policy:
            return True  # no policy applies: the profile allows
        for rules in per_policy:
            for r in rules:
                if not r.service(me[0], proto, port, icmp):
                    continue
                if r.action == "Allow":
                    return True
                if r.action == "Deny":
                    return False
                if r.action == "Pass":
                    return True
        return False  # the end of the tier denies

    def allowed(self, src: str, dst: str, proto: int, port: int | None) -> bool:
        """Whether a new connection gets through (``port``: the ICMP type for ICMP)."""
        s, d = _addr(src), _addr(dst)
        icmp = port if proto in (1, 58) else None
        dport = None if proto in (1, 58) else port
        return self._side("Egress", s, d, proto, dport, icmp) and self._side(
            "Ingress", d, s, proto, dport, icmp
        )


def _loader() -> type[yaml.SafeLoader]:
    loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return loader
