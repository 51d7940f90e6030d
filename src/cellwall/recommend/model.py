"""The values of a recommendation: settings, evidence, exclusions, proposed rules and policies.

Everything here is a frozen value; :class:`Proposal` is what :func:`~.propose.propose`
returns and what :mod:`.render` writes. Selectors are plain mappings in the policy language
(``{"role": "web", "env": ["prod", "staging"]}``, ``{"iplist": "internet"}``,
``{"cidrs": ["10.250.0.0/24"]}``, ``{"any": True}``), ready to be written as YAML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "GRANULARITIES",
    "KEYS",
    "Evidence",
    "Exclusion",
    "Proposal",
    "ProposedPolicy",
    "ProposedRule",
    "RecommendConfig",
]

GRANULARITIES = ("workload", "role", "app")
KEYS: dict[str, tuple[str, ...]] = {
    "workload": (),
    "role": ("app", "role", "env"),
    "app": ("app", "env"),
}


@dataclass(frozen=True, slots=True)
class RecommendConfig:
    """The knobs of one recommendation; the defaults are documented in docs/recommend.md.

    - ``min_conversations``, ``min_days``, ``min_span_hours``: a candidate rule needs at
      least this much evidence (distinct UTC days is a lower bound, see :class:`Evidence`);
    - ``fanout``: a client that opens this many *weak* edges (one day, at most ``weak``
      conversations) within one hour is scanning; ``probe_ports``: a client that tries this
      many ports of one server on one day, each weakly, is probing;
    - ``internet_networks``: this many distinct public /24 peers of one class on one service
      become the ``internet`` IP list; ``private_aggregate``: this many unmanaged private
      addresses in one /24 become that /24;
    - ``shared_apps``, ``shared_share``: a server role that clients of this many apps (and
      this share of all apps) use on one service, or a client role that reaches as many, is
      shared infrastructure; ``any_share``: when
      the observed peers are this share of the classes of their envs, the side is
      ``{any: true}``;
    - ``dense_ports``: this many ports of one rule, covering at least half of their span,
      merge into one range.
    """

    granularity: str = "role"
    min_conversations: int = 2
    min_days: int = 2
    min_span_hours: float = 12.0
    weak: int = 2
    fanout: int = 10
    probe_ports: int = 4
    internet_networks: int = 16
    private_aggregate: int = 4
    shared_apps: int = 3
    shared_share: float = 0.6
    any_share: float = 0.9
    dense_ports: int = 16
    samples: int = 3
    owner: str = "security"
    window_days: float = 0.0  # the learning window, for confidence and seasonality
    flagged: frozenset[tuple[str, str, str]] = frozenset()  # (client, server, service)

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity {self.granularity!r}: use workload, role or app")

    @property
    def keys(self) -> tuple[str, ...]:
        return KEYS[self.granularity]


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a rule was learned from. ``days`` is a lower bound on the distinct UTC days with
    traffic (the most of any one edge behind it, or the distinct first and last days of
    its edges, whichever is larger); ``edges`` counts the workload-level edges."""

    conversations: int
    bytes: int
    days: int
    first_seen: datetime
    last_seen: datetime
    edges: int
    samples: tuple[tuple[int, str], ...] = ()  # (conversations, "client -> server service")
    dates: frozenset[int] = field(default=frozenset(), compare=False)  # known active days

    @property
    def span_hours(self) -> float:
        return (self.last_seen - self.first_seen).total_seconds() / 3600.0

    def merge(self, other: Evidence, samples: int = 3) -> Evidence:
        dates = self.dates | other.dates
        return Evidence(
            self.conversations + other.conversations,
            self.bytes + other.bytes,
            max(self.days, other.days, len(dates)),
            min(self.first_seen, other.first_seen),
            max(self.last_seen, other.last_seen),
            self.edges + other.edges,
            tuple(sorted({*self.samples, *other.samples}, key=lambda s: (-s[0], s[1])))[:samples],
            dates,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "conversations": self.conversations,
            "bytes": self.bytes,
            "days": self.days,
            "first_seen": _iso(self.first_seen),
            "last_seen": _iso(self.last_seen),
            "edges": self.edges,
            "samples": [f"{text} ({n} flows)" for n, text in self.samples],
        }


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Exclusion:
    """Traffic left out of the proposal, and why (``reason`` is a stable code)."""

    reason: str  # fan-out-scan | multi-port-probe | flagged | one-off-external
    # | below-min-evidence | no-workload
    client: str
    server: str
    service: str
    conversations: int
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "client": self.client,
            "server": self.server,
            "service": self.service,
            "conversations": self.conversations,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class ProposedRule:
    """One proposed ``rules:`` entry with its evidence.

    ``kind`` is ``intra-app``, ``cross-app``, ``external`` or ``shared``; ``apps`` are the
    applications whose workloads it touches (for review: who may approve it).
    """

    id: str
    from_: Mapping[str, Any]
    to: Mapping[str, Any]
    services: tuple[str, ...]
    evidence: Evidence
    confidence: float
    coverage: float
    kind: str
    apps: tuple[str, ...] = ()
    same: tuple[str, ...] = ()
    from_outside_scope: bool = False
    notes: tuple[str, ...] = ()

    def document(self) -> dict[str, Any]:
        """The rule as a policy-language mapping (no evidence)."""
        doc: dict[str, Any] = {"id": self.id, "from": dict(self.from_)}
        if self.from_outside_scope:
            doc["from_outside_scope"] = True
        doc["to"] = dict(self.to)
        doc["services"] = list(self.services)
        if self.same:
            doc["same"] = list(self.same)
        return doc

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.document(),
            "kind": self.kind,
            "apps": list(self.apps),
            "confidence": self.confidence,
            "coverage": self.coverage,
            "evidence": self.evidence.to_dict(),
            "notes": list(self.notes),
        }


@dataclass(frozen=True, slots=True)
class ProposedPolicy:
    name: str
    owner: str
    scope: Mapping[str, str] | None
    rules: tuple[ProposedRule, ...]


@dataclass(frozen=True, slots=True)
class Proposal:
    """The proposed policies, the IP lists they name, what was left out and the totals."""

    granularity: str
    policies: tuple[ProposedPolicy, ...]
    iplists: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]  # name -> (cidrs, except)
    exclusions: tuple[Exclusion, ...]
    conversations: int  # every conversation of the edges given
    covered: int  # the conversations of the edges the rules were learned from
    warnings: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def rules(self) -> list[ProposedRule]:
        return [r for p in self.policies for r in p.rules]

    @property
    def coverage(self) -> float:
        return self.covered / self.conversations if self.conversations else 1.0

    def summary(self) -> dict[str, Any]:
        reasons: dict[str, dict[str, int]] = {}
        for x in self.exclusions:
            entry = reasons.setdefault(x.reason, {"edges": 0, "conversations": 0})
            entry["edges"] += 1
            entry["conversations"] += x.conversations
        kinds: dict[str, int] = {}
        for r in self.rules:
            kinds[r.kind] = kinds.get(r.kind, 0) + 1
        return {
            "granularity": self.granularity,
            "policies": len(self.policies),
            "rules": len(self.rules),
            "rules_by_kind": dict(sorted(kinds.items())),
            "iplists": len(self.iplists),
            "conversations": self.conversations,
            "covered": self.covered,
            "coverage": round(self.coverage, 6),
            "excluded": dict(sorted(reasons.items())),
            "warnings": list(self.warnings),
            **dict(self.extra),
        }
