"""Rule-based label hygiene: behaviour that a workload's labels say it should not have.

:mod:`.hygiene` compares a workload with its peers; these rules compare it with what its
own labels promise, so they also work for a class with one member. Each rule declares its
id, severity, the sentence it reports, and the fix, next to its test:

- ``data-serves-internet``: a ``role=db`` (or cache) that internet clients connect to;
- ``env-crossing``: a workload that talks with one of another ``env`` (the subject is the
  less trusted end: dev, then staging, then prod);
- ``web-egress-unusual-port``: a ``role=web`` that opens connections to the internet on a
  port other than web, DNS or NTP.

A finding names its subject (the workload whose labels or exposure to look at), the rule,
why, and the edges behind it with their conversation counts. The input is the
workload-level map (thousands of edges), never flows.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cellwall.discover.edges import Edge
from cellwall.inventory.classify import IPListSpec
from cellwall.model.inventory import Workload

__all__ = ["RULES", "LabelRule", "RuleFinding", "public_iplists", "rule_findings"]

DATA_ROLES = frozenset({"db", "cache"})
HTTP_PORTS = frozenset({80, 443, 8000, 8080, 8443})
WEB_EGRESS_PORTS = frozenset({80, 443, 53, 123})
ENV_RANK = {"prod": 0, "staging": 1, "dev": 2}  # the less trusted end is the subject
MAX_EVIDENCE = 10


@dataclass(frozen=True, slots=True)
class End:
    """One end of an edge: a workload (with labels) or an external node."""

    node: str
    labels: Mapping[str, str]
    internet: bool  # an internet address (a CIDR aggregate, a DNS name, a public IP list)


def _port(service: str) -> int | None:
    _, _, port = service.partition("/")
    return int(port) if port.isdigit() else None


# A rule's test: (edge, client end, server end) -> (subject end, reason) or None.
Match = Callable[[Edge, End, End], tuple[End, str] | None]


@dataclass(frozen=True, slots=True)
class LabelRule:
    id: str
    severity: str  # high | medium | low
    summary: str
    remediation: str
    match: Match


def _data_serves_internet(e: Edge, c: End, s: End) -> tuple[End, str] | None:
    role = s.labels.get("role")
    if role not in DATA_ROLES or not c.internet:
        return None
    port = _port(e.service)
    what = "HTTP" if port in HTTP_PORTS else e.service
    return s, f"role={role} serves {what} to {c.node}"


def _env_crossing(e: Edge, c: End, s: End) -> tuple[End, str] | None:
    ce, se = c.labels.get("env"), s.labels.get("env")
    if ce is None or se is None or ce == se:
        return None
    subject = c if ENV_RANK.get(ce, 9) >= ENV_RANK.get(se, 9) else s
    verb = "calls" if subject is c else "is called by"
    other = s if subject is c else c
    return subject, f"env={subject.labels['env']} {verb} env={other.labels['env']} ({other.node})"


def _web_egress_unusual_port(e: Edge, c: End, s: End) -> tuple[End, str] | None:
    if c.labels.get("role") != "web" or not s.internet:
        return None
    port = _port(e.service)
    if port in WEB_EGRESS_PORTS:
        return None
    return c, f"role=web opens {e.service} to {s.node}"


RULES: tuple[LabelRule, ...] = (
    LabelRule(
        "data-serves-internet", "high",
        "a database or cache that internet clients connect to",
        "if it really serves the internet, it is not a db: fix its role; otherwise close the "
        "exposure",
        _data_serves_internet,
    ),
    LabelRule(
        "env-crossing", "high",
        "a workload that talks with another environment",
        "fix its env label if it is wrong; otherwise the flows cross an environment boundary "
        "and should stop",
        _env_crossing,
    ),
    LabelRule(
        "web-egress-unusual-port", "medium",
        "a web front that opens connections to the internet on an unusual port",
        "check its role (a web server answers, it rarely calls out) and the destination",
        _web_egress_unusual_port,
    ),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class RuleFinding:
    rule: str
    severity: str
    subject: str
    labels: dict[str, str]
    summary: str
    reasons: list[str]
    remediation: str
    conversations: int
    evidence: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "subject": self.subject,
            "labels": self.labels,
            "summary": self.summary,
            "reasons": self.reasons,
            "remediation": self.remediation,
            "conversations": self.conversations,
            "evidence": self.evidence,
        }


def public_iplists(iplists: Mapping[str, IPListSpec] | None) -> set[str]:
    """The IP lists that hold internet addresses (a CIDR outside the private ranges)."""
    found: set[str] = set()
    for name, (cidrs, _) in (iplists or {}).items():
        for cidr in cidrs:
            net = ipaddress.ip_network(cidr, strict=False)
            if not (net.is_private or net.is_loopback or net.is_link_local):
                found.add(name)
                break
    return found


def _end(node: str, workloads: Mapping[str, Workload], public: set[str]) -> End:
    w = workloads.get(node)
    if w is not None:
        return End(node, dict(w.labels.items()), False)
    kind, _, name = node.partition(":")
    internet = kind in ("cidr", "dns") or (kind == "iplist" and name in public)
    return End(node, {}, internet)


def rule_findings(
    edges: Sequence[Edge],
    workloads: Sequence[Workload],
    *,
    public_lists: set[str] | None = None,
    rules: Sequence[LabelRule] = RULES,
) -> list[RuleFinding]:
    """Findings from workload-level edges, one per rule and subject, worst first."""
    by_name = {w.name: w for w in workloads}
    public = public_lists or set()
    hits: dict[tuple[str, str], list[tuple[Edge, str]]] = defaultdict(list)
    for e in edges:
        c, s = _end(e.client, by_name, public), _end(e.server, by_name, public)
        for rule in rules:
            got = rule.match(e, c, s)
            if got is not None:
                hits[(rule.id, got[0].node)].append((e, got[1]))
    order = {"high": 0, "medium": 1, "low": 2}
    rule_by_id = {r.id: r for r in rules}
    out: list[RuleFinding] = []
    for (rule_id, subject), found in hits.items():
        rule = rule_by_id[rule_id]
        found.sort(key=lambda x: (-x[0].conversations, x[0].client, x[0].server, x[0].service))
        w = by_name.get(subject)
        out.append(
            RuleFinding(
                rule=rule.id,
                severity=rule.severity,
                subject=subject,
                labels=dict(w.labels.items()) if w is not None else {},
                summary=rule.summary,
                reasons=sorted({reason for _, reason in found}),
                remediation=rule.remediation,
                conversations=sum(e.conversations for e, _ in found),
                evidence=[f"{e.client} -> {e.server} {e.service}: {e.conversations} conversations"
                          for e, _ in found[:MAX_EVIDENCE]],
            )
        )  # fmt: skip
    out.sort(key=lambda f: (order.get(f.severity, 9), -f.conversations, f.rule, f.subject))
    return out
