"""Rows become rules: selectors in the policy language, stable ids, confidence, coverage.

Ids are ``FROM-to-TO-HASH``: a readable stem and six hex digits of a hash over the policy,
the selectors and ``same`` (not the services), so that a rule keeps its id when only its
services change and an unrelated rule's change never renames it. Rules are sorted by kind
(intra-app, cross-app, external, shared), then by ``to``, ``from`` and services.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from cellwall.recommend.classes import Classifier, ClassKey
from cellwall.recommend.fold import Row, Side
from cellwall.recommend.model import Evidence, ProposedPolicy, ProposedRule, RecommendConfig

__all__ = ["build_policies", "confidence", "key_text", "selector"]

KIND_ORDER = {"intra-app": 0, "cross-app": 1, "external": 2, "shared": 3}
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


def key_text(key: ClassKey) -> str:
    kind, value = key
    if kind == "labels":
        return ",".join(f"{k}={v}" for k, v in value)  # type: ignore[attr-defined]
    if kind == "workload":
        return str(value)
    return f"{kind}:{value}"


def selector(
    side: Side, keys: Sequence[str], scope_app: str | None, keep_app: bool
) -> dict[str, Any]:
    """A side as a selector; the scope's app is left out unless ``keep_app``."""
    if side.kind == "any":
        return {"any": True}
    if side.kind == "cidrs":
        return {"cidrs": side.text.split(",")}
    if side.kind != "labels":
        return {side.kind: side.text}
    out: dict[str, Any] = {}
    for key, values in zip(keys, side.comps, strict=True):
        if not values or (key == "app" and values == {scope_app} and not keep_app):
            continue
        ordered = sorted(values)
        out[key] = ordered[0] if len(ordered) == 1 else ordered
    return out or {"any": True}


def confidence(ev: Evidence, window_days: float) -> float:
    """0..1: more conversations and more of the window's days give more confidence."""
    volume = 1.0 - math.exp(-ev.conversations / 10.0)
    spread = min(1.0, ev.days / max(1.0, min(7.0, window_days)))
    return round(volume * spread, 2)


def _slug(sel: Mapping[str, Any]) -> str:
    for key in ("role", "app", "workload", "iplist", "fqdn", "env"):
        if key in sel:
            v = sel[key]
            return "+".join(v) if isinstance(v, list) else str(v)
    if "cidrs" in sel:
        return "cidrs"
    return "any"


def _rule_id(policy: str, doc: Mapping[str, Any], taken: set[str]) -> str:
    body = {k: doc[k] for k in ("from", "to", "same", "from_outside_scope") if k in doc}
    digest = hashlib.sha256(json.dumps([policy, body], sort_keys=True).encode()).hexdigest()
    stem = _SLUG.sub("-", f"{_slug(doc['from'])}-to-{_slug(doc['to'])}")[:100].strip("-.")
    rid, n = f"{stem or 'rule'}-{digest[:6]}", 2
    while rid in taken:
        rid, n = f"{stem}-{digest[:6]}-{n}", n + 1
    taken.add(rid)
    return rid


def _apps(row: Row, classifier: Classifier, keys: Sequence[str]) -> tuple[str, ...]:
    out: set[str] = set()
    for side in (row.src, row.dst):
        if side.kind == "labels" and "app" in keys:
            out |= set(side.comps[keys.index("app")])
        elif side.kind == "workload":
            app = classifier.labels(("workload", side.text)).get("app")
            out |= {app} if app else set()
    return tuple(sorted(out))


def _rule(
    row: Row, classifier: Classifier, config: RecommendConfig, total: int, window: float
) -> ProposedRule:
    _, scope_app, kind = row.group
    keys = config.keys
    cross = kind == "cross-app" and row.src.kind in ("labels", "any")
    outside = cross and scope_app is not None
    src = selector(row.src, keys, scope_app, keep_app=kind != "intra-app")
    dst = selector(row.dst, keys, scope_app, keep_app=scope_app is None)
    return ProposedRule(
        id="",
        from_=src,
        to=dst,
        services=row.services,
        evidence=row.evidence,
        confidence=confidence(row.evidence, window),
        coverage=round(row.evidence.conversations / total, 6) if total else 0.0,
        kind=kind,
        apps=_apps(row, classifier, keys),
        same=("env",) if row.same else (),
        from_outside_scope=outside,
        notes=row.notes,
    )


def _order(r: ProposedRule) -> tuple[Any, ...]:
    return (KIND_ORDER.get(r.kind, 9), json.dumps(r.to), json.dumps(r.from_), r.services)


def _owner(app: str | None, classifier: Classifier, default: str) -> str:
    if app is None:
        return default
    owners: dict[str, int] = defaultdict(int)
    for w in classifier.workloads:
        if w.labels.get("app") == app and w.owner:
            owners[w.owner] += 1
    return max(sorted(owners), key=lambda o: owners[o]) if owners else default


def build_policies(
    rows: Sequence[Row], classifier: Classifier, config: RecommendConfig, total: int
) -> list[ProposedPolicy]:
    window = config.window_days or _window(rows)
    by_policy: dict[str, list[ProposedRule]] = defaultdict(list)
    scopes: dict[str, str | None] = {}
    for row in rows:
        name, scope_app, _ = row.group
        scopes[name] = scope_app
        by_policy[name].append(_rule(row, classifier, config, total, window))
    out = []
    taken: set[str] = set()
    for name in sorted(by_policy, key=str):
        rules = []
        for r in sorted(by_policy[name], key=_order):
            doc = r.document()
            rid = _rule_id(str(name), doc, taken)
            rules.append(_with_id(r, rid))
        app = scopes[str(name)]
        scope = {"app": app} if app is not None and "app" in config.keys else None
        if app is not None and config.granularity == "workload":
            scope = None
        owner = _owner(app, classifier, config.owner)
        out.append(ProposedPolicy(str(name), owner, scope, tuple(rules)))
    return out


def _with_id(r: ProposedRule, rid: str) -> ProposedRule:
    from dataclasses import replace

    return replace(r, id=rid)


def _window(rows: Sequence[Row]) -> float:
    if not rows:
        return 1.0
    first = min(r.evidence.first_seen for r in rows)
    last = max(r.evidence.last_seen for r in rows)
    return max(1.0, (last - first).total_seconds() / 86400.0)
