"""Ground truth: intended edges at each granularity and the minimal rules that allow them.

An end's *class* depends on the granularity: the workload itself (``workload``), its true
``{app, role, env}`` (``role``) or ``{app, env}`` (``app``); an external end is its IP list
at every granularity. Projecting the intended edges onto classes gives the exact allow set
``(from class, to class, service)`` at that granularity.

The minimal rules are derived from that set, never typed by hand:

1. one rule per (from class, to class), with the union of its services;
2. rules with the same ``from`` and services merge their ``to`` classes, one label key at
   a time, when the classes differ only in that key (``{role: [api, db]}``);
3. the same for ``from`` with the same ``to`` and services.

Each merge is exact (a union of products that agree on every other key is a product), so
the rules allow every intended edge and nothing else at that granularity.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cellwall.demo.model import Estate
from cellwall.demo.traffic import Conversations

__all__ = ["GRANULARITIES", "KEYS", "Rule", "Tally", "class_edges", "minimal_rules", "selector"]

GRANULARITIES = ("workload", "role", "app")
KEYS: dict[str, tuple[str, ...]] = {"role": ("app", "role", "env"), "app": ("app", "env")}

# A class or a merged selector: ("workload", name), ("iplist", name), or
# ("labels", (frozenset of values per key, in KEYS order)).
Atom = tuple[str, str]
Product = tuple[frozenset[str], ...]
Sel = tuple[str, Any]


def endpoint_class(estate: Estate, endpoint: int, granularity: str) -> Sel:
    nw = len(estate.workloads)
    if endpoint >= nw:
        return ("iplist", estate.externals[endpoint - nw].name)
    w = estate.workloads[endpoint]
    if granularity == "workload":
        return ("workload", w.name)
    return ("labels", tuple(frozenset([w.labels[k]]) for k in KEYS[granularity]))


def selector(sel: Sel, granularity: str) -> dict[str, Any]:
    """A class or merged selector as a policy selector mapping."""
    kind, value = sel
    if kind != "labels":
        return {kind: value}
    out: dict[str, Any] = {}
    for key, values in zip(KEYS[granularity], value, strict=True):
        ordered = sorted(values)
        out[key] = ordered[0] if len(ordered) == 1 else ordered
    return out


def _service_key(text: str) -> tuple[str, int]:
    proto, port = text.split("/")
    return proto, int(port)


def class_edges(estate: Estate, granularity: str) -> dict[tuple[Sel, Sel, str], set[str]]:
    """The exact allow set at a granularity, each with the purposes of its edges."""
    out: dict[tuple[Sel, Sel, str], set[str]] = defaultdict(set)
    for e in estate.edges:
        key = (
            endpoint_class(estate, e.client, granularity),
            endpoint_class(estate, e.server, granularity),
            e.service.text,
        )
        out[key].add(e.purpose)
    return dict(out)


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    source: Sel
    target: Sel
    services: tuple[str, ...]
    purposes: tuple[str, ...]

    def document(self, granularity: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "from": selector(self.source, granularity),
            "to": selector(self.target, granularity),
            "services": list(self.services),
            "justification": "; ".join(self.purposes),
        }


def _merge(items: list[tuple[Sel, frozenset[str]]]) -> list[tuple[Sel, frozenset[str]]]:
    """Merge label products that differ in one key only; atoms pass through."""
    atoms = [it for it in items if it[0][0] != "labels"]
    prods: list[tuple[Product, frozenset[str]]] = [(s[1], p) for s, p in items if s[0] == "labels"]
    changed = bool(prods)
    while changed:
        changed = False
        for k in range(len(prods[0][0])):
            groups: dict[Product, list[tuple[Product, frozenset[str]]]] = defaultdict(list)
            for prod, pay in prods:
                groups[prod[:k] + prod[k + 1 :]].append((prod, pay))
            merged = []
            for rest, members in groups.items():
                changed |= len(members) > 1
                values = frozenset().union(*(m[0][k] for m in members))
                pay = frozenset().union(*(m[1] for m in members))
                merged.append(((*rest[:k], values, *rest[k:]), pay))
            prods = merged
    return atoms + [(("labels", p), pay) for p, pay in prods]


def _sort_key(sel: Sel) -> tuple[str, tuple[tuple[str, ...], ...]]:
    kind, value = sel
    if kind != "labels":
        return kind, ((value,),)
    return kind, tuple(tuple(sorted(v)) for v in value)


def minimal_rules(estate: Estate, granularity: str) -> list[Rule]:
    """The compact exact rule set at a granularity (see the module's docstring)."""
    pairs: dict[tuple[Sel, Sel], tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
    for (src, dst, service), purposes in class_edges(estate, granularity).items():
        pairs[src, dst][0].add(service)
        pairs[src, dst][1].update(purposes)
    rows = [(s, d, frozenset(svc), frozenset(p)) for (s, d), (svc, p) in pairs.items()]
    if granularity != "workload":
        by_from: dict[tuple[Sel, frozenset[str]], list[tuple[Sel, frozenset[str]]]] = defaultdict(
            list
        )
        for s, d, svc, p in rows:
            by_from[s, svc].append((d, p))
        rows = [(s, d, svc, p) for (s, svc), ts in by_from.items() for d, p in _merge(ts)]
        by_to: dict[tuple[Sel, frozenset[str]], list[tuple[Sel, frozenset[str]]]] = defaultdict(
            list
        )
        for s, d, svc, p in rows:
            by_to[d, svc].append((s, p))
        rows = [(s, d, svc, p) for (d, svc), fs in by_to.items() for s, p in _merge(fs)]
    rows.sort(key=lambda r: (_sort_key(r[1]), _sort_key(r[0]), sorted(r[2], key=_service_key)))
    return [
        Rule(f"{granularity}-{n:04d}", s, d, tuple(sorted(svc, key=_service_key)), tuple(sorted(p)))
        for n, (s, d, svc, p) in enumerate(rows, start=1)
    ]


def edge_documents(estate: Estate, granularity: str) -> list[dict[str, Any]]:
    """The allow set as from/to selectors with one service each, sorted."""
    keys = sorted(
        class_edges(estate, granularity),
        key=lambda k: (_sort_key(k[0]), _sort_key(k[1]), _service_key(k[2])),
    )
    return [
        {"from": selector(s, granularity), "to": selector(d, granularity), "service": svc}
        for s, d, svc in keys
    ]


class Tally:
    """Per-edge conversation counts and first/last start times, slice by slice."""

    def __init__(self, edges: int) -> None:
        self.count = np.zeros(edges, np.int64)
        self.first = np.full(edges, -1, np.int64)
        self.last = np.full(edges, -1, np.int64)

    def add(self, conv: Conversations) -> None:
        """Count a slice (sorted by start); attack conversations carry no edge."""
        sel = conv.edge >= 0
        eid, t = conv.edge[sel], conv.start_us[sel]
        if not len(eid):
            return
        self.count += np.bincount(eid, minlength=len(self.count))
        uniq, first = np.unique(eid, return_index=True)
        fresh = self.first[uniq] < 0
        self.first[uniq[fresh]] = t[first[fresh]]
        uniq, last = np.unique(eid[::-1], return_index=True)
        self.last[uniq] = t[::-1][last]


def iplists_used(rules: Iterable[Rule]) -> list[str]:
    names = {sel[1] for r in rules for sel in (r.source, r.target) if sel[0] == "iplist"}
    return sorted(names)
