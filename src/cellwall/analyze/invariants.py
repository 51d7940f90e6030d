"""Invariants (CONTRACTS.md, Invariants) proved against a policy, with counterexamples, and
checked against observed conversations as evidence.

| kind | holds when |
|---|---|
| ``forbid`` | nothing matching ``from`` is allowed to anything matching ``to`` on the services |
| ``only`` | everything allowed into ``to`` on the services comes from ``from`` |
| ``require`` | every pair is allowed on every listed service |
| ``forbid_path`` | no chain of at most ``max_hops`` allowed hops, each through a |
|  | workload, leads from ``from`` to ``to`` |

Proofs use verdicts; ``effective=True`` applies the modes (a pair counts when enforcement
would let it through). A proof is exact over the analysis space
(:mod:`cellwall.analyze.space`): every workload and every unmanaged address range, every
service atom. A failed proof comes with a counterexample: concrete workloads (or an address),
a service, the verdict and the rules that match, in precedence order.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cellwall.analyze.atoms import touched
from cellwall.analyze.observed import Observed
from cellwall.analyze.reach import hop, pair_count
from cellwall.analyze.results import Counterexample, Evidence, Hop, InvariantResult
from cellwall.analyze.space import Space
from cellwall.model.policy import Invariant, Selector

__all__ = ["CHECKS", "InvariantCheck", "evidence", "prove", "selectors_of"]

Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class InvariantCheck:
    """A kind's metadata: the sentences for a pass and a fail, and the remediation."""

    kind: str
    holds: str
    fails: str
    fix: str


CHECKS = {
    "forbid": InvariantCheck(
        "forbid",
        "nothing from {src} is allowed to {dst}{on}",
        "{n} workload pair(s) from {src} are allowed to {dst}{on}",
        "remove or narrow the allowing rule, or add an override-deny",
    ),
    "only": InvariantCheck(
        "only",
        "everything allowed into {dst}{on} comes from {src}",
        "{n} workload pair(s) outside {src} are allowed into {dst}{on}",
        "narrow the allowing rule's `from` to the permitted sources",
    ),
    "require": InvariantCheck(
        "require",
        "every pair from {src} to {dst} is allowed{on}",
        "{n} workload pair(s) from {src} to {dst} are not allowed{on}",
        "add an allow rule, or lift the deny that wins",
    ),
    "forbid_path": InvariantCheck(
        "forbid_path",
        "no chain of at most {hops} hop(s) leads from {src} to {dst}{on}",
        "{n} workload(s) of {dst} are reachable from {src} within {hops} hop(s){on}",
        "cut one hop of the chain: narrow the rule that allows it",
    ),
}


def selectors_of(invariants: Sequence[Invariant]) -> list[Selector]:
    return [s for inv in invariants for s in (inv.from_, inv.to)]


def _on(inv: Invariant) -> str:
    return f" on {', '.join(str(s) for s in inv.services)}" if inv.services else ""


def _first_atom(space: Space, i: int, j: int, atoms: Mask, effective: bool, want: bool) -> int:
    for part, m in space.per_atom(atoms, effective):
        if bool(m[i, j]) == want:
            found = np.flatnonzero(part).tolist()
            ported = [a for a in found if space.atoms[a].lo >= 0]
            return int((ported or found)[0])
    return int(np.flatnonzero(atoms)[0])


def _pick(space: Space, bad: Mask) -> tuple[int, int]:
    pairs = list(zip(*np.nonzero(bad), strict=True))
    i, j = min(pairs, key=lambda p: (space.name(int(p[0])), space.name(int(p[1]))))
    return int(i), int(j)


def _count(space: Space, bad: Mask) -> int:
    return sum(pair_count(space, int(i), int(j)) for i, j in zip(*np.nonzero(bad), strict=True))


def _pairwise(space: Space, inv: Invariant, effective: bool) -> tuple[int, Counterexample | None]:
    atoms = touched(space.atoms, inv.services)
    src, dst = space.select(inv.from_), space.select(inv.to)
    if inv.kind == "require":
        bad = np.zeros((space.n, space.n), bool)
        want = np.outer(src, dst) & space.distinct
        for _, m in space.per_atom(atoms, effective):
            bad |= want & ~m
        wanted = False
    else:
        clients = src if inv.kind == "forbid" else ~src
        bad = space.permitted(atoms, effective) & np.outer(clients, dst)
        wanted = True
    if not bad.any():
        return 0, None
    i, j = _pick(space, bad)
    atom = _first_atom(space, i, j, atoms, effective, wanted)
    return _count(space, bad), Counterexample((hop(space, i, j, atom, inv.services),))


def _chain(
    space: Space, path: list[int], atoms: Mask, inv: Invariant, effective: bool
) -> Counterexample:
    hops: list[Hop] = []
    client = space.example(path[0])
    for a, b in itertools.pairwise(path):
        atom = _first_atom(space, a, b, atoms, effective, True)
        h = hop(space, a, b, atom, inv.services)
        server = space.example(b, other=client)
        hops.append(
            Hop(client, server, h.service, h.verdict, h.rule, h.rules, h.unverified, h.blocked)
        )
        client = server
    return Counterexample(tuple(hops))


def _paths(space: Space, inv: Invariant, effective: bool) -> tuple[int, Counterexample | None]:
    atoms = touched(space.atoms, inv.services)
    m = space.permitted(atoms, effective)
    src, dst = space.select(inv.from_), space.select(inv.to)
    limit = inv.max_hops or space.n
    parent = np.full(space.n, -1, np.int64)
    reached = np.zeros(space.n, bool)
    frontier = src.copy()
    for _ in range(limit):
        if not frontier.any():
            break
        nxt = m[frontier].any(axis=0) & ~reached
        for node in np.flatnonzero(nxt).tolist():
            parent[node] = int(np.flatnonzero(frontier & m[:, node])[0])
        reached |= nxt
        frontier = nxt & space.is_cell  # hops continue only through workloads
    hits = reached & dst
    if not hits.any():
        return 0, None
    end = min(np.flatnonzero(hits).tolist(), key=space.name)
    path = [end, int(parent[end])]
    while not src[path[-1]] and parent[path[-1]] >= 0:
        path.append(int(parent[path[-1]]))
    path.reverse()
    n = int(space.sizes[hits].sum()) + int((hits & ~space.is_cell).sum())
    return n, _chain(space, path, atoms, inv, effective)


def prove(space: Space, inv: Invariant, *, effective: bool = False) -> InvariantResult:
    """Prove one invariant against the space's policy."""
    check = CHECKS[inv.kind]
    if inv.kind == "forbid_path":
        n, example = _paths(space, inv, effective)
    else:
        n, example = _pairwise(space, inv, effective)
    notes = []
    for side, sel in (("from", inv.from_), ("to", inv.to)):
        if not space.select(sel).any():
            notes.append(f"`{side}` {sel} matches nothing in the inventory or address space")
    fields = {
        "src": str(inv.from_),
        "dst": str(inv.to),
        "on": _on(inv),
        "n": n,
        "hops": inv.max_hops or "any number of",
    }
    holds = example is None
    sentence = (check.holds if holds else check.fails).format(**fields)
    if not holds:
        sentence += f"; fix: {check.fix}"
    return InvariantResult(inv.id, inv.kind, holds, sentence, n, example, None, tuple(notes))


def evidence(observed: Observed, inv: Invariant) -> Evidence:
    """What the observed conversations say about one invariant."""
    svc = inv.services
    if inv.kind in ("forbid", "require"):
        hits = observed.match(inv.from_, inv.to, svc)
        n = int(hits.sum())
        if inv.kind == "forbid":
            status = "contradicted" if n else "consistent"
            text = f"{n} observed conversation(s) from {inv.from_} to {inv.to}"
        else:
            status = "supported" if n else "no-data"
            text = f"{n} observed conversation(s) exercise the required pairs"
        return Evidence(status, n, text, observed.examples(hits))
    if inv.kind == "only":
        into = observed.match(target=inv.to, services=svc)
        bad = into & ~observed.match(inv.from_, inv.to, svc)
        n = int(bad.sum())
        text = f"{n} observed conversation(s) into {inv.to} from outside {inv.from_}"
        return Evidence("contradicted" if n else "consistent", n, text, observed.examples(bad))
    return _path_evidence(observed, inv)


def _path_evidence(observed: Observed, inv: Invariant) -> Evidence:
    on = observed.match(services=inv.services)
    starts = {c for c, _ in observed.edges(observed.match(inv.from_, services=inv.services))}
    targets = {s for _, s in observed.edges(observed.match(target=inv.to, services=inv.services))}
    graph: dict[str, list[str]] = {}
    for a, b in observed.edges(on):
        graph.setdefault(a, []).append(b)
    limit = inv.max_hops or len(graph) + 1
    queue: deque[tuple[str, tuple[str, ...]]] = deque((s, (s,)) for s in sorted(starts))
    seen: set[str] = set()
    while queue:
        node, path = queue.popleft()
        if len(path) > 1 and node in targets:
            text = f"observed chain of {len(path) - 1} hop(s): {' → '.join(path)}"
            return Evidence("contradicted", int(on.sum()), text)
        if len(path) > limit or (len(path) > 1 and node.startswith("ip:")):
            continue
        for nxt in graph.get(node, ()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append((nxt, (*path, nxt)))
    text = f"no observed chain within {inv.max_hops or 'any number of'} hop(s)"
    return Evidence("consistent", int(on.sum()), text)
