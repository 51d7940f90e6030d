"""The textual diff of two policy sets: what was written differently, by rule id.

Rules are matched by id, IP lists, policies and invariant sets by name, invariants by id.
Each entity is written as a few text fields (a rule: its policy, the policy's scope, action,
from, to, services, ``same``, ``from_outside_scope`` and its metadata); a changed entity
lists the fields that differ. This says what was *written*; the semantic diff
(:mod:`cellwall.policy.diff`) says what it *means* for traffic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cellwall.model.policy import Invariant, IPList, Policy, PolicySet, Rule, Selector

__all__ = ["Change", "RuleDiff", "Section", "rule_diff"]

Fields = dict[str, str]


@dataclass(frozen=True, slots=True)
class Change:
    """One entity present in both sets whose fields differ: (field, before, after)."""

    name: str
    fields: tuple[tuple[str, str, str], ...]


@dataclass
class Section:
    """Added, removed and changed entities of one kind (rules, IP lists, ...)."""

    added: dict[str, Fields] = field(default_factory=dict)
    removed: dict[str, Fields] = field(default_factory=dict)
    changed: list[Change] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": [{"name": n, "fields": f} for n, f in self.added.items()],
            "removed": [{"name": n, "fields": f} for n, f in self.removed.items()],
            "changed": [
                {"name": c.name, "changes": {k: {"before": b, "after": a} for k, b, a in c.fields}}
                for c in self.changed
            ],
        }


@dataclass
class RuleDiff:
    """The textual diff, one section per kind of entity."""

    sections: dict[str, Section]

    @property
    def empty(self) -> bool:
        return all(s.empty for s in self.sections.values())

    def to_dict(self) -> dict[str, Any]:
        return {name: s.to_dict() for name, s in self.sections.items()}

    def __str__(self) -> str:
        if self.empty:
            return "no written differences"
        lines = []
        for name, s in self.sections.items():
            if s.empty:
                continue
            lines.append(
                f"{name}: {len(s.added)} added, {len(s.removed)} removed, {len(s.changed)} changed"
            )
            lines += [f"  + {n}: {_summary(f)}" for n, f in s.added.items()]
            lines += [f"  - {n}: {_summary(f)}" for n, f in s.removed.items()]
            for c in s.changed:
                lines.append(f"  ~ {c.name}")
                lines += [f"      {k}: {b or '(none)'} -> {a or '(none)'}" for k, b, a in c.fields]
        return "\n".join(lines)


def _summary(f: Fields) -> str:
    return "; ".join(f"{k}={v}" for k, v in f.items() if v)


def _sel(s: Selector | None) -> str:
    return "" if s is None else str(s)


def _rule(p: Policy, r: Rule) -> Fields:
    return {
        "policy": p.name,
        "scope": _sel(p.scope),
        "action": r.action,
        "from": str(r.from_),
        "from_outside_scope": "true" if r.from_outside_scope else "",
        "to": str(r.to),
        "services": ", ".join(sorted(str(s) for s in r.services)),
        "same": ", ".join(r.same),
        "owner": r.owner or "",
        "justification": r.justification or "",
        "review_by": r.review_by.isoformat() if r.review_by else "",
        "expires": r.expires.isoformat() if r.expires else "",
        "ticket": r.ticket or "",
    }


def _policy(p: Policy) -> Fields:
    return {
        "scope": _sel(p.scope),
        "mode": p.mode or "",
        "owner": p.owner or "",
        "rules": ", ".join(r.id for r in p.rules),
    }


def _iplist(i: IPList) -> Fields:
    return {
        "cidrs": ", ".join(i.cidrs),
        "except": ", ".join(i.except_),
        "fqdns": ", ".join(i.fqdns),
    }


def _invariant(set_name: str, i: Invariant) -> Fields:
    return {
        "set": set_name,
        "kind": i.kind,
        "from": str(i.from_),
        "to": str(i.to),
        "services": ", ".join(sorted(str(s) for s in i.services)),
        "max_hops": "" if i.max_hops is None else str(i.max_hops),
    }


def _settings(ps: PolicySet) -> dict[str, Fields]:
    s, m = ps.settings, ps.settings.management
    return {
        "settings": {
            "default_mode": s.default_mode,
            "admin_networks": ", ".join(m.admin_networks),
            "services": ", ".join(str(x) for x in m.services),
            "controllers": ", ".join(m.controllers),
            "control_services": ", ".join(str(x) for x in m.control_services),
        }
    }


def _compare(before: dict[str, Fields], after: dict[str, Fields]) -> Section:
    out = Section()
    for name in sorted(before.keys() | after.keys()):
        b, a = before.get(name), after.get(name)
        if b is None and a is not None:
            out.added[name] = a
        elif a is None and b is not None:
            out.removed[name] = b
        elif a is not None and b is not None and a != b:
            keys = [k for k in {**b, **a} if b.get(k, "") != a.get(k, "")]
            out.changed.append(Change(name, tuple((k, b.get(k, ""), a.get(k, "")) for k in keys)))
    return out


def _by(items: Iterable[tuple[str, Fields]]) -> dict[str, Fields]:
    return dict(items)


def rule_diff(a: PolicySet, b: PolicySet) -> RuleDiff:
    """What was written differently from ``a`` to ``b``."""
    parts: dict[str, Callable[[PolicySet], dict[str, Fields]]] = {
        "rules": lambda ps: _by((r.id, _rule(p, r)) for p, r in ps.rules()),
        "policies": lambda ps: _by((p.name, _policy(p)) for p in ps.policies),
        "iplists": lambda ps: _by((i.name, _iplist(i)) for i in ps.iplists),
        "invariants": lambda ps: _by(
            (i.id, _invariant(s.name, i)) for s in ps.invariants for i in s.invariants
        ),
        "bindings": lambda ps: _by(
            (x.name, {"role": x.role, "subjects": ", ".join(x.subjects), "apps": ", ".join(x.apps)})
            for x in ps.bindings
        ),
        "settings": _settings,
    }
    return RuleDiff({name: _compare(fn(a), fn(b)) for name, fn in parts.items()})
