"""Passes that make the candidate rules few without allowing more than was seen.

Each pass is a pure function over :class:`Row` s, and each is exact unless it says
otherwise:

1. :func:`merge_ports`: a rule's services are the set it was seen on; contiguous ports
   become one range (every port of it was seen); ``dense`` ports or more that cover at
   least half of their span become one range, which is the one widening, and says so;
2. :func:`fold_env`: rules that repeat across environments (the same classes but for
   ``env``, each within one env) become one rule with ``same: [env]`` and the envs listed;
3. :func:`merge_sides`: rules that differ only in one label key of one side merge that key
   (``{role: [api, db]}``): a union of products that agree on every other key is a product.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, replace

from cellwall.recommend.model import Evidence

__all__ = ["Row", "Side", "fold_env", "merge_ports", "merge_sides", "service_key"]

Comp = frozenset[str]
Group = tuple[str, str | None, str]  # (policy, scope app, kind)


@dataclass(frozen=True, slots=True)
class Side:
    """``labels`` (one value set per granularity key; empty = unconstrained), ``any``, or an
    atom: ``workload``, ``iplist``, ``fqdn`` or ``cidrs`` with its text."""

    kind: str
    comps: tuple[Comp, ...] = ()
    text: str = ""

    def without(self, k: int) -> Side:
        if self.kind != "labels":
            return self
        return Side("labels", (*self.comps[:k], frozenset(), *self.comps[k + 1 :]))

    def get(self, k: int) -> Comp:
        return self.comps[k] if self.kind == "labels" else frozenset()

    def with_comp(self, k: int, values: Comp) -> Side:
        return Side("labels", (*self.comps[:k], values, *self.comps[k + 1 :]))


@dataclass(frozen=True, slots=True)
class Row:
    """A candidate rule: from ``src`` to ``dst`` on ``services``; ``group`` keeps rows that
    may not merge apart (the policy they go to, and their kind)."""

    src: Side
    dst: Side
    services: tuple[str, ...]
    evidence: Evidence
    same: bool = False
    group: Group = ("", None, "")
    notes: tuple[str, ...] = ()


def service_key(text: str) -> tuple[str, int, int]:
    proto, _, port = text.partition("/")
    if not port:
        return proto, -1, -1
    lo, _, hi = port.partition("-")
    return proto, int(lo), int(hi or lo)


def _ranges(ports: list[int], dense: int) -> tuple[list[tuple[int, int]], str | None]:
    ports = sorted(set(ports))
    if len(ports) >= dense and len(ports) * 2 >= ports[-1] - ports[0] + 1:
        note = f"{len(ports)} observed ports merged into the range {ports[0]}-{ports[-1]}"
        return [(ports[0], ports[-1])], note
    out: list[tuple[int, int]] = []
    for p in ports:
        if out and out[-1][1] == p - 1:
            out[-1] = (out[-1][0], p)
        else:
            out.append((p, p))
    return out, None


def merge_ports(services: Iterable[str], dense: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the services with contiguous ports merged, notes on any widening)."""
    by_proto: dict[str, list[int]] = defaultdict(list)
    whole: set[str] = set()
    for s in services:
        proto, lo, hi = service_key(s)
        if lo < 0:
            whole.add(proto)
        else:
            by_proto[proto].extend(range(lo, hi + 1))
    out, notes = sorted(whole), []
    for proto in sorted(by_proto):
        if proto in whole:
            continue
        spans, note = _ranges(by_proto[proto], dense)
        out += [f"{proto}/{lo}" if lo == hi else f"{proto}/{lo}-{hi}" for lo, hi in spans]
        if note:
            notes.append(f"{proto}: {note}")
    return tuple(sorted(out, key=service_key)), tuple(notes)


def _merge_evidence(rows: Sequence[Row], samples: int) -> Evidence:
    ev = rows[0].evidence
    for r in rows[1:]:
        ev = ev.merge(r.evidence, samples)
    return ev


def fold_env(rows: Iterable[Row], env: int | None, samples: int) -> list[Row]:
    """Fold rows that repeat across envs into one ``same: [env]`` row (``env`` is the index
    of the env key; None: nothing to fold)."""
    rows = list(rows)
    if env is None:
        return rows
    groups: dict[tuple[Side, Side, tuple[str, ...], Group], list[Row]] = defaultdict(list)
    rest: list[Row] = []
    for r in rows:
        e = r.dst.get(env)
        src_ok = r.src.kind == "any" or (r.src.kind == "labels" and r.src.get(env) == e)
        if r.dst.kind == "labels" and len(e) == 1 and src_ok and (r.same or r.src.kind != "any"):
            groups[r.src.without(env), r.dst.without(env), r.services, r.group].append(r)
        else:
            rest.append(r)
    for (src, dst, services, group), members in groups.items():
        envs = frozenset().union(*(m.dst.get(env) for m in members))
        if len(members) == 1 and members[0].src.kind != "any":
            rest.append(members[0])
            continue
        notes = tuple(sorted({n for m in members for n in m.notes}))
        ev = _merge_evidence(members, 3)
        rest.append(Row(src, dst.with_comp(env, envs), services, ev, True, group, notes))
    return rest


def _merge_one_side(
    rows: list[Row], side: str, keys: Sequence[int], samples: int
) -> tuple[list[Row], bool]:
    changed = False
    for k in keys:
        groups: dict[Hashable, list[Row]] = defaultdict(list)
        for r in rows:
            mine = getattr(r, side)
            other = r.dst if side == "src" else r.src
            if mine.kind != "labels" or not mine.get(k):
                groups[id(r)].append(r)
                continue
            groups[mine.without(k), other, r.services, r.same, r.group].append(r)
        merged: list[Row] = []
        for members in groups.values():
            if len(members) == 1:
                merged.append(members[0])
                continue
            changed = True
            mine = getattr(members[0], side)
            values = frozenset().union(*(getattr(m, side).get(k) for m in members))
            notes = tuple(sorted({n for m in members for n in m.notes}))
            new = replace(members[0], evidence=_merge_evidence(members, samples), notes=notes)
            merged.append(replace(new, **{side: mine.with_comp(k, values)}))
        rows = merged
    return rows, changed


def merge_sides(
    rows: Iterable[Row],
    n_keys: int,
    samples: int,
    frozen: Callable[[Row, str], Iterable[int]] = lambda r, s: (),
) -> list[Row]:
    """Merge ``to`` sides (rows with equal ``from``), then ``from`` sides, to a fixed point.

    ``frozen(row, side)`` names key indices that must not merge for that row's side (the
    scope's app on the ``to`` side of a scoped policy); rows with a frozen key are grouped
    by its value, so they merge only among equals.
    """
    out = list(rows)
    for side in ("dst", "src"):
        changed = True
        while changed:
            allowed: dict[tuple[int, ...], list[Row]] = defaultdict(list)
            for r in out:
                block = tuple(sorted(set(frozen(r, side))))
                allowed[block].append(r)
            changed = False
            out = []
            for blocked, members in allowed.items():
                keys = [k for k in range(n_keys) if k not in blocked]
                got, did = _merge_one_side(members, side, keys, samples)
                out += got
                changed |= did
    return out
