"""Blast radius and exposure: what an attacker who holds some workloads reaches in at most k
hops, and how exposed each workload is.

A hop is a permitted conversation; every hop after the first starts at a workload (an
unmanaged address range can only be where the attacker starts). Reach is computed over cells
(:mod:`cellwall.analyze.space`): each hop is one boolean matrix-vector product, and a reached
cell stands for all its workloads. The source workloads themselves are never counted.

Workloads are weighted by their labels (:data:`WEIGHTS`: ``criticality``, and ``data``
classes such as ``pci``; the largest applies, else 1) and by their vulnerabilities (the
highest CVSS score). A workload's exposure is::

    weight × (1 + max CVSS / 10) × (inbound + N if an unmanaged address reaches it) / N

where ``inbound`` counts the workloads that reach it within k hops and N is the number of
workloads: the share of the estate that can get to it, with the internet counting as all of
it.

Before and after: the same source on a flat network (everything reaches everything), along
the observed conversations (the map's edges), and under the proposed and active policies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cellwall.analyze.results import ExposureResult, ExposureRow, Scenario
from cellwall.analyze.space import Space
from cellwall.analyze.vulns import Vulnerability
from cellwall.model.inventory import Workload

__all__ = [
    "WEIGHTS",
    "Weights",
    "exposure",
    "flat_scenario",
    "graph_scenario",
    "hop_reach",
    "policy_scenario",
]

Mask = npt.NDArray[np.bool_]
WEIGHTS: dict[str, dict[str, float]] = {
    "criticality": {"critical": 10.0, "high": 5.0, "medium": 2.0, "low": 1.0},
    "data": {"pci": 10.0, "phi": 10.0, "secret": 10.0, "pii": 5.0, "confidential": 5.0},
}


@dataclass(frozen=True)
class Weights:
    """Per workload: the label weight, the highest CVSS score and the number of CVEs."""

    weight: Mapping[str, float]
    cvss: Mapping[str, float]
    cves: Mapping[str, int]

    @classmethod
    def of(
        cls, workloads: Iterable[Workload], vulns: Mapping[str, Sequence[Vulnerability]]
    ) -> Weights:
        weight = {}
        for w in workloads:
            found = [WEIGHTS[k].get(v, 1.0) for k, v in w.labels.items() if k in WEIGHTS]
            weight[w.name] = max([1.0, *found])
        cvss = {n: max(v.cvss for v in vs) for n, vs in vulns.items() if vs}
        return cls(weight, cvss, {n: len(vs) for n, vs in vulns.items()})

    def value(self, name: str) -> float:
        return self.weight.get(name, 1.0) * (1.0 + self.cvss.get(name, 0.0) / 10.0)


def hop_reach(matrix: Mask, start: Mask, hops: int, pivots: Mask) -> list[Mask]:
    """The endpoints first reached at each hop from ``start``; hops continue from
    ``pivots`` only (the workloads). Each hop ORs the frontier's rows of the matrix."""
    reached = np.zeros(len(start), bool)
    frontier = start
    out = []
    for _ in range(hops):
        if not frontier.any():
            out.append(np.zeros(len(start), bool))
            continue
        nxt = matrix[frontier].any(axis=0)
        nxt &= ~reached
        reached |= nxt
        out.append(nxt)
        frontier = nxt & pivots
    return out


def _scenario(name: str, by_hop: list[set[str]], weights: Weights) -> Scenario:
    every = set().union(*by_hop) if by_hop else set()
    ranked = sorted(every, key=lambda n: (-weights.value(n), n))
    return Scenario(
        name,
        len(every),
        round(sum(weights.weight.get(n, 1.0) for n in every), 2),
        sum(1 for n in every if weights.cves.get(n)),
        tuple(len(s) for s in by_hop),
        tuple(ranked[:5]),
    )


def policy_scenario(
    name: str,
    space: Space,
    start: Mask,
    hops: int,
    weights: Weights,
    matrix: Mask | None = None,
) -> Scenario:
    """Reach under a policy from the endpoints ``start`` (whole cells or ranges)."""
    m = matrix if matrix is not None else space.permitted(np.ones(len(space.atoms), bool))
    layers = hop_reach(m, start, hops, space.is_cell)
    seen: set[str] = set()
    by_hop = []
    for layer in layers:
        names = {
            w for c in np.flatnonzero(layer & ~start & space.is_cell) for w in space.members[c]
        }
        by_hop.append(names - seen)
        seen |= names
    return _scenario(name, by_hop, weights)


def flat_scenario(sources: set[str], workloads: Iterable[str], weights: Weights) -> Scenario:
    """A flat network: every workload reaches every other in one hop."""
    return _scenario("flat", [set(workloads) - sources], weights)


def graph_scenario(
    name: str,
    edges: Iterable[tuple[str, str]],
    sources: set[str],
    hops: int,
    weights: Weights,
    pivots: set[str],
) -> Scenario:
    """Reach along a graph of (client, server) edges, continuing only from ``pivots``."""
    out: dict[str, set[str]] = {}
    for a, b in edges:
        out.setdefault(a, set()).add(b)
    frontier, seen = set(sources), set(sources)
    by_hop = []
    for _ in range(hops):
        nxt = {b for a in frontier for b in out.get(a, ())} - seen
        seen |= nxt
        by_hop.append({n for n in nxt if n in pivots})
        frontier = nxt & pivots
    return _scenario(name, by_hop, weights)


def exposure(
    space: Space, hops: int, weights: Weights, *, policy: str, top: int = 20
) -> ExposureResult:
    """Every workload's exposure under the space's policy (highest first)."""
    m = space.permitted(np.ones(len(space.atoms), bool))
    k = space.k
    cells = m[:k, :k].astype(np.float32)
    reach = cells > 0.5
    power = reach.copy()
    for _ in range(hops - 1):
        power = (power.astype(np.float32) @ cells) > 0.5
        reach |= power
    sizes = space.sizes[:k].astype(np.int64)
    inbound = sizes @ reach.astype(np.int64) - np.diag(reach).astype(np.int64)
    public = np.concatenate([np.zeros(k, bool), [not i.private for i in space.intervals]])
    layers = hop_reach(m, public, hops, space.is_cell)
    from_outside = np.any(layers, axis=0)[:k] if layers else np.zeros(k, bool)
    total = max(int(sizes.sum()), 1)
    rows = []
    for c in range(k):
        base = (int(inbound[c]) + (total if from_outside[c] else 0)) / total
        for name in space.members[c]:
            rows.append(
                ExposureRow(
                    name,
                    round(weights.value(name) * base, 4),
                    int(inbound[c]),
                    bool(from_outside[c]),
                    weights.weight.get(name, 1.0),
                    weights.cvss.get(name, 0.0),
                    weights.cves.get(name, 0),
                )
            )
    rows.sort(key=lambda r: (-r.score, r.workload))
    return ExposureResult(policy, hops, tuple(rows[:top]))
