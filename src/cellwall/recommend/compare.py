"""``recommend --compare A B``: what changes between the proposals of two windows.

Rules are matched by policy, ``from``, ``to``, ``same`` and ``from_outside_scope`` (their
ids hash the same fields); a matched rule whose services differ is *changed*.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cellwall.recommend.model import Proposal, ProposedRule

__all__ = ["ProposalDiff", "compare_proposals"]


def _key(policy: str, r: ProposedRule) -> str:
    doc = r.document()
    body = {k: doc[k] for k in ("from", "to", "same", "from_outside_scope") if k in doc}
    return json.dumps([policy, body], sort_keys=True)


def _index(p: Proposal) -> dict[str, tuple[str, ProposedRule]]:
    return {_key(pol.name, r): (pol.name, r) for pol in p.policies for r in pol.rules}


def _brief(policy: str, r: ProposedRule) -> dict[str, Any]:
    return {
        "policy": policy,
        "id": r.id,
        "from": dict(r.from_),
        "to": dict(r.to),
        "services": list(r.services),
        "conversations": r.evidence.conversations,
    }


@dataclass(frozen=True, slots=True)
class ProposalDiff:
    a: str
    b: str
    only_a: list[dict[str, Any]]
    only_b: list[dict[str, Any]]
    changed: list[dict[str, Any]]
    rules_a: int
    rules_b: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "rules": {"a": self.rules_a, "b": self.rules_b},
            "only_in_a": self.only_a,
            "only_in_b": self.only_b,
            "services_changed": self.changed,
        }

    def __str__(self) -> str:
        lines = [f"window A {self.a}: {self.rules_a} rules; window B {self.b}: {self.rules_b}"]
        for title, items in (("only in A", self.only_a), ("only in B", self.only_b)):
            lines.append(f"{title}: {len(items)}")
            lines += [
                f"  {x['policy']}/{x['id']}: {x['from']} -> {x['to']} {', '.join(x['services'])}"
                for x in items
            ]
        lines.append(f"services changed: {len(self.changed)}")
        lines += [
            f"  {x['policy']}/{x['id']}: {', '.join(x['a'])} -> {', '.join(x['b'])}"
            for x in self.changed
        ]
        return "\n".join(lines)


def compare_proposals(a: Proposal, b: Proposal, name_a: str, name_b: str) -> ProposalDiff:
    ia, ib = _index(a), _index(b)
    only_a = [_brief(*ia[k]) for k in sorted(ia.keys() - ib.keys())]
    only_b = [_brief(*ib[k]) for k in sorted(ib.keys() - ia.keys())]
    changed = []
    for k in sorted(ia.keys() & ib.keys()):
        (pol, ra), (_, rb) = ia[k], ib[k]
        if ra.services != rb.services:
            changed.append(
                {"policy": pol, "id": ra.id, "a": list(ra.services), "b": list(rb.services)}
            )
    return ProposalDiff(name_a, name_b, only_a, only_b, changed, len(a.rules), len(b.rules))
