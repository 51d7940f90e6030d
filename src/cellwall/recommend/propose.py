"""The recommendation pipeline: workload-level map edges in, proposed policies out.

Passes, in order:

1. :func:`~.hostile.hostile_edges`: leave out scans, probes and flagged edges;
   :func:`~.externals.one_off_externals`: and external ends without evidence of their own;
2. :func:`~.aggregate.class_edges`: edges → class edges at the granularity, external ends
   generalised (IP lists, FQDNs, CIDR aggregates, ``internet``), evidence pooled;
3. minimum evidence: class edges with too little evidence are left out, with the reason;
4. :func:`~.shared.shared_plan`: shared infrastructure services;
5. rows: one per (from, to) with the services seen between them (ports merged, :mod:`.fold`);
6. placement: each row goes to the destination application's scoped policy (cross-app rules
   with ``from_outside_scope``), to its source application's policy when the destination
   is external, or to the unscoped ``shared-services`` policy;
7. :func:`~.fold.fold_env` and :func:`~.fold.merge_sides`;
8. ids, selectors, confidence and coverage (:mod:`.rules`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import pyarrow as pa

from cellwall.model.inventory import Workload
from cellwall.recommend.aggregate import ClassEdge, class_edges, total_conversations
from cellwall.recommend.classes import INTERNET, INTERNET_EXCEPT, Classifier, ClassKey
from cellwall.recommend.externals import one_off_externals
from cellwall.recommend.fold import Group, Row, Side, fold_env, merge_ports, merge_sides
from cellwall.recommend.hostile import hostile_edges
from cellwall.recommend.model import Exclusion, Proposal, RecommendConfig
from cellwall.recommend.rules import build_policies, key_text
from cellwall.recommend.shared import shared_plan

__all__ = ["propose"]

IPListSpec = tuple[Sequence[str], Sequence[str]]


def _enough(e: ClassEdge, config: RecommendConfig) -> str | None:
    ev = e.evidence
    if ev.conversations < config.min_conversations:
        return f"{ev.conversations} conversation(s), fewer than {config.min_conversations}"
    if ev.days < config.min_days:
        return f"seen on {ev.days} day(s), fewer than {config.min_days}"
    if ev.span_hours < config.min_span_hours:
        return f"seen over {ev.span_hours:.1f} h, less than {config.min_span_hours:g} h"
    return None


def _filter(
    edges: list[ClassEdge], config: RecommendConfig
) -> tuple[list[ClassEdge], list[Exclusion]]:
    kept, out = [], []
    for e in edges:
        external = (e.src[0], e.dst[0])
        if all(k in ("iplist", "fqdn", "net", "addr", "cidrs") for k in external):
            why: str | None = "neither end is a workload"
            reason = "no-workload"
        else:
            why, reason = _enough(e, config), "below-min-evidence"
        if why is None:
            kept.append(e)
        else:
            src, dst = key_text(e.src), key_text(e.dst)
            out.append(Exclusion(reason, src, dst, e.service, e.evidence.conversations, why))
    return kept, out


def _side(key: ClassKey, keys: Sequence[str]) -> Side:
    kind, value = key
    if kind == "labels":
        pinned = dict(value)  # type: ignore[call-overload]
        return Side("labels", tuple(frozenset([pinned[k]]) for k in keys))
    if kind == "net":
        return Side("cidrs", text=str(value))
    return Side(kind, text=str(value))


def _rows(
    edges: list[ClassEdge], classifier: Classifier, config: RecommendConfig
) -> list[tuple[Row, str]]:
    """One row per (from, to, sharing), with its services; and its sharing role."""
    plan = shared_plan(edges, classifier, config)
    keys = config.keys
    groups: dict[tuple[Side, Side, bool, str], list[ClassEdge]] = defaultdict(list)
    for i, e in enumerate(edges):
        role = plan.role.get(i, "")
        src, dst, same = _side(e.src, keys), _side(e.dst, keys), False
        if role and plan.any_side[i]:
            src, dst = (Side("any"), dst) if role == "serves" else (src, Side("any"))
            same = True  # every observed pair stayed within one env (shared._covers)
        groups[src, dst, same, role].append(e)
    out = []
    for (src, dst, same, role), members in groups.items():
        ev = members[0].evidence
        for m in members[1:]:
            ev = ev.merge(m.evidence, config.samples)
        services, notes = merge_ports({m.service for m in members}, config.dense_ports)
        out.append((Row(src, dst, services, ev, same, ("", None, ""), notes), role))
    return out


def _app(side: Side, classifier: Classifier, keys: Sequence[str]) -> str | None:
    if side.kind == "labels" and "app" in keys:
        values = side.comps[keys.index("app")]
        return next(iter(values)) if len(values) == 1 else None
    if side.kind == "workload":
        return classifier.labels(("workload", side.text)).get("app")
    return None


def _place(row: Row, role: str, classifier: Classifier, keys: Sequence[str]) -> Group:
    """(policy name, scope app or None, kind)."""
    if role:
        return ("shared-services", None, "shared")
    external = ("iplist", "fqdn", "cidrs")
    if row.dst.kind in external:
        app = _app(row.src, classifier, keys)
        return (f"app-{app}", app, "external") if app else ("unlabelled", None, "external")
    app = _app(row.dst, classifier, keys)
    if app is None:
        return ("cross-cutting", None, "cross-app")
    if row.src.kind in external:
        kind = "external"
    else:
        kind = "intra-app" if _app(row.src, classifier, keys) == app else "cross-app"
    return (f"app-{app}", app, kind)


def propose(
    edges: pa.Table,
    workloads: Sequence[Workload],
    config: RecommendConfig,
    *,
    iplists: Mapping[str, IPListSpec] | None = None,
) -> Proposal:
    """Proposed policies for workload-level map ``edges`` (columns ``client``, ``server``,
    ``service``, ``conversations``, ``bytes``, ``first_seen``, ``last_seen``, ``days``)."""
    total = total_conversations(edges)
    keep, exclusions = hostile_edges(edges, config)
    classifier = Classifier(workloads, config)
    edges = edges.filter(pa.array(keep))
    keep, one_off = one_off_externals(edges, classifier, config)
    exclusions += one_off
    cedges = class_edges(edges.filter(pa.array(keep)), classifier, config)
    cedges, weak = _filter(cedges, config)
    exclusions += weak
    placed = [
        Row(r.src, r.dst, r.services, r.evidence, r.same, _place(r, role, classifier, config.keys))
        for r, role in _rows(cedges, classifier, config)
    ]
    env = config.keys.index("env") if "env" in config.keys else None
    rows = fold_env(placed, env, config.samples)
    rows = merge_sides(rows, len(config.keys), config.samples)
    covered = sum(e.evidence.conversations for e in cedges)
    policies = build_policies(rows, classifier, config, total)
    used = {
        str(side.get("iplist"))
        for p in policies
        for r in p.rules
        for side in (r.from_, r.to)
        if "iplist" in side
    }
    known: dict[str, IPListSpec] = dict(iplists or {})
    known.setdefault("internet", (INTERNET, INTERNET_EXCEPT))
    lists = {n: (tuple(known[n][0]), tuple(known[n][1])) for n in sorted(used) if n in known}
    exclusions.sort(key=lambda x: (x.reason, x.client, x.server, x.service))
    return Proposal(config.granularity, tuple(policies), lists, tuple(exclusions), total, covered)
