"""Incremental mode: given the active policy, what to add, tighten and remove.

- *add*: rules for the traffic that the active policy does not allow (the caller proposes
  them from the uncovered conversations' edges);
- *tighten*: an allow rule whose services allow far more than was used (an any-port rule
  where only 443 was seen) gets the services that were seen;
- *remove*: an allow rule with no hit in the last N days (neither in the judged window nor
  in the hit counts that replays recorded).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cellwall.model.policy import PolicySet, Service
from cellwall.recommend.fold import merge_ports

__all__ = ["Removal", "Tightening", "idle_rules", "rule_usage", "tightenings"]


@dataclass(frozen=True, slots=True)
class Tightening:
    policy: str
    rule: str
    services: tuple[str, ...]
    observed: tuple[str, ...]
    proposed: tuple[str, ...]
    conversations: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "rule": self.rule,
            "services": list(self.services),
            "observed": list(self.observed),
            "proposed": list(self.proposed),
            "conversations": self.conversations,
        }


@dataclass(frozen=True, slots=True)
class Removal:
    policy: str
    rule: str
    last_hit: datetime | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        last = self.last_hit.isoformat().replace("+00:00", "Z") if self.last_hit else None
        return {"policy": self.policy, "rule": self.rule, "last_hit": last, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Usage:
    services: frozenset[str]
    conversations: int
    last: datetime


def rule_usage(verdicts: pa.Table, conversations: pa.Table) -> dict[str, Usage]:
    """Per deciding rule of the allowed conversations: the services used, how many, last."""
    allowed = pc.equal(verdicts["verdict"], "allowed")
    rules = verdicts["rule_id"].filter(allowed).to_pylist()
    services = conversations["service"].filter(allowed).to_pylist()
    starts = conversations["start"].filter(allowed).to_pylist()
    seen: dict[str, set[str]] = defaultdict(set)
    count: dict[str, int] = defaultdict(int)
    last: dict[str, datetime] = {}
    for rule, svc, at in zip(rules, services, starts, strict=True):
        if rule is None:
            continue
        seen[rule].add(svc)
        count[rule] += 1
        if rule not in last or at > last[rule]:
            last[rule] = at
    return {r: Usage(frozenset(seen[r]), count[r], last[r]) for r in seen}


def _width(s: Service) -> float:
    if s.narrowed:
        return 0.0  # narrowed services are left to people
    if s.proto is None:
        return float("inf")
    if s.lo is None or s.hi is None:
        return 65536.0 if s.proto in (6, 17, 132) else 256.0
    return float(s.hi - s.lo + 1)


def tightenings(policy: PolicySet, usage: Mapping[str, Usage], dense: int) -> list[Tightening]:
    """Allow rules whose services are wider than the ports seen through them."""
    out = []
    for pol, rule in policy.rules():
        used = usage.get(rule.id)
        if rule.action != "allow" or used is None:
            continue
        allowed = float(np.sum([_width(s) for s in rule.services]))
        wide = any(_width(s) > 1 for s in rule.services)
        if not wide or allowed <= len(used.services):
            continue
        proposed, _ = merge_ports(used.services, dense)
        out.append(
            Tightening(
                pol.name,
                rule.id,
                tuple(str(s) for s in rule.services),
                tuple(sorted(used.services)),
                proposed,
                used.conversations,
            )
        )
    return out


def idle_rules(
    policy: PolicySet,
    usage: Mapping[str, Usage],
    recorded: Mapping[str, datetime],
    cut: datetime,
    days: int,
) -> list[Removal]:
    """Allow rules with no hit on or after ``cut`` (judged now, or recorded by replays)."""
    out = []
    for pol, rule in policy.rules():
        if rule.action != "allow":
            continue
        hits = [t for t in (recorded.get(rule.id), usage.get(rule.id)) if t is not None]
        last = max(
            (t if isinstance(t, datetime) else t.last for t in hits),
            default=None,
        )
        if last is None or last < cut:
            why = f"no hit in the last {days} days" if last else "never hit"
            out.append(Removal(pol.name, rule.id, last, why))
    return out
