"""An independent reading of AWS security groups (Terraform JSON): allow or deny for one
connection.

It reads only the emitted ``*.tf.json`` and the instances (workload addresses and labels),
and decides as a VPC does for a new connection from ``src`` to ``dst``:

- An instance holds the groups whose class its labels are: a group's description is
  ``cellwall class k=v,...`` (the labels the group is for, as ``HOSTS`` attach it); an
  instance holds a group when it has exactly those values for every key any group names.
- Security groups only allow and are stateful: the connection gets through when the source
  instance's egress rules (the union over its groups) and the destination instance's
  ingress rules allow it. An address that is no instance has no group and passes its own
  side; an instance with no group is not filtered (so a missing group shows as *allowed*).
- A rule matches on ``ip_protocol`` (``-1`` is every protocol), ports ``from_port`` to
  ``to_port`` for TCP, UDP and SCTP (absent: every port), the ICMP type in ``from_port``
  and code in ``to_port`` (``-1``: any), and the peer: ``cidr_ipv4``/``cidr_ipv6`` hold the
  address (any address, instance or not), ``referenced_security_group_id`` the instances
  that hold that group. A reference to a group that is not defined raises (Terraform
  would refuse the plan).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["AwsOracle", "OracleError"]

Labels = Mapping[str, str]
_REF = re.compile(r"^\$\{aws_security_group\.([A-Za-z0-9_-]+)\.id\}$")
_PREFIX = "cellwall class "


class OracleError(ValueError):
    """The Terraform JSON uses something this oracle does not read, or is broken."""


@dataclass(frozen=True)
class _Rule:
    proto: int | None  # None: every protocol
    lo: int | None
    hi: int | None
    net: tuple[int, int, int] | None  # family, first, last
    group: str | None

    def service(self, family: int, proto: int, port: int | None) -> bool:
        if self.proto is None:
            return True
        if self.proto != proto:
            return False
        if proto in (1, 58):  # from_port: the type, to_port: the code (-1: any)
            if (proto == 1) != (family == 4):
                return False
            return self.lo in (None, -1) or self.lo == port
        if self.lo is None or self.hi is None:
            return True
        return port is not None and self.lo <= port <= self.hi


def _labels(description: str) -> dict[str, str]:
    if not description.startswith(_PREFIX):
        raise OracleError(f"group description {description!r} names no class")
    body = description[len(_PREFIX) :]
    return dict(kv.split("=", 1) for kv in body.split(",") if kv)


def _rule(doc: Mapping[str, Any]) -> tuple[str, _Rule]:
    proto = str(doc["ip_protocol"])
    net = None
    group = None
    if "cidr_ipv4" in doc or "cidr_ipv6" in doc:
        n = ipaddress.ip_network(doc.get("cidr_ipv4") or doc["cidr_ipv6"])
        net = (n.version, int(n.network_address), int(n.broadcast_address))
    elif "referenced_security_group_id" in doc:
        m = _REF.match(doc["referenced_security_group_id"])
        if m is None:
            raise OracleError(f"group reference {doc['referenced_security_group_id']!r}")
        group = m.group(1)
    else:
        raise OracleError(f"rule without a peer: {doc}")
    m = _REF.match(doc["security_group_id"])
    if m is None:
        raise OracleError(f"security_group_id {doc['security_group_id']!r}")
    words = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "sctp": 132}
    number = None if proto in ("-1", "all") else words.get(proto.lower()) or int(proto)
    return m.group(1), _Rule(number, doc.get("from_port"), doc.get("to_port"), net, group)


def _addr(ip: str) -> tuple[int, int]:
    a = ipaddress.ip_address(ip)
    return a.version, int(a)


class AwsOracle:
    """The VPC's decision over security group documents and instances (``instances``:
    address → labels)."""

    def __init__(self, docs: Iterable[Mapping[str, Any]], instances: Mapping[str, Labels]) -> None:
        groups: dict[str, dict[str, str]] = {}
        rules: dict[str, dict[str, list[_Rule]]] = {}
        for doc in docs:
            res = doc.get("resource", {})
            for name, g in res.get("aws_security_group", {}).items():
                groups[name] = _labels(g["description"])
            for kind, direction in (("ingress", "in"), ("egress", "out")):
                for r in res.get(f"aws_vpc_security_group_{kind}_rule", {}).values():
                    owner, rule = _rule(r)
                    rules.setdefault(owner, {}).setdefault(direction, []).append(rule)
        for owner, by_dir in rules.items():
            for r in (x for rs in by_dir.values() for x in rs):
                for name in (owner, r.group):
                    if name is not None and name not in groups:
                        raise OracleError(f"reference to undeclared aws_security_group.{name}")
        keys = {k for lb in groups.values() for k in lb}
        self.rules = rules
        self.member: dict[tuple[int, int], set[str]] = {}
        for ip, lb in instances.items():
            mine = {n for n, g in groups.items() if all(lb.get(k) == g.get(k) for k in keys)}
            self.member[_addr(ip)] = mine

    @classmethod
    def from_texts(cls, texts: Iterable[str], instances: Mapping[str, Labels]) -> AwsOracle:
        return cls([json.loads(t) for t in texts], instances)

    def _side(
        self,
        direction: str,
        me: tuple[int, int],
        peer: tuple[int, int],
        proto: int,
        port: int | None,
    ) -> bool:
        groups = self.member.get(me)
        if not groups:
            return True
        peer_groups = self.member.get(peer, set())
        fam, v = peer
        for g in groups:
            for r in self.rules.get(g, {}).get(direction, ()):
                if not r.service(me[0], proto, port):
                    continue
                if r.net is not None:
                    f, a, b = r.net
                    if f == fam and a <= v <= b:
                        return True
                elif r.group in peer_groups:
                    return True
        return False

    def allowed(self, src: str, dst: str, proto: int, port: int | None) -> bool:
        """Whether a new connection gets through (``port``: the ICMP type for ICMP)."""
        s, d = _addr(src), _addr(dst)
        return self._side("out", s, d, proto, port) and self._side("in", d, s, proto, port)
