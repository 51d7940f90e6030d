"""Policy analysis speed (issue 7): the class-level matrix and a single-source blast radius.

The estate and policy of bench_policy.py: 100 apps × 5 roles × 4 envs, 5 workloads per
class (10,000 workloads, 2,000 label classes) and about 5,800 rules over 300 TCP services.

Figures, each with its same-run baseline:
- ``space_s``: lowering the policy and building the analysis space; ``matrix_s``: the
  class-level matrix (allowed on any service) from it; ``matrix_total_s`` both (floor: under
  2 s);
- ``blast_ms``: a single-source blast radius of 4 hops under the policy, from the matrix,
  expanded to workloads and weighted (floor: under 50 ms); ``blast_bfs_ms`` the hops alone;
- the brute-force baseline enumerates workload pairs: the vectorised evaluator judges a
  sample of (client, server, one probe per service atom) conversations, and the rate gives
  the time that enumerating every pair would take; ``ratio_matrix`` and ``ratio_blast`` are
  that time over ours.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pyarrow as pa

from bench_policy import AT, TS, estate, policy
from cellwall.analyze.blast import Weights, hop_reach, policy_scenario
from cellwall.analyze.space import Space
from cellwall.model.policy import Selector
from cellwall.policy.judge import Judge


def _brute_rate(space: Space, ws: list[Any], n: int, rng: np.random.Generator) -> float:
    """(client, server, atom) judgements per second when enumerating workload pairs."""
    atoms = [a for a in space.atoms if a.proto is not None and a.lo >= 0]
    ips = [w.addresses[0].ip for w in ws]
    ci, si = rng.integers(len(ws), size=n), rng.integers(len(ws), size=n)
    ai = rng.integers(len(atoms), size=n)
    t = pa.table(
        {
            "client_ip": pa.array([ips[i] for i in ci]),
            "server_ip": pa.array([ips[i] for i in si]),
            "proto": pa.array([atoms[i].proto for i in ai], pa.uint8()),
            "server_port": pa.array([atoms[i].lo for i in ai], pa.int32()),
            "client_port": pa.array(np.full(n, 40000, np.int32)),
            "start": pa.array(np.full(n, AT), TS),
        }
    )
    with Judge(space.policy_set, ws) as j:
        ident = j.identify(t)
        j.judge(ident)  # warm the caches, as the real enumeration would
        t0 = time.perf_counter()
        j.judge(ident)
    return n / (time.perf_counter() - t0)


def run() -> dict[str, Any]:
    scale = float(os.environ.get("BENCH_SCALE", "1"))
    rng = np.random.default_rng(7)
    ws = estate()
    ps = policy(rng)
    t0 = time.perf_counter()
    space = Space(ps, ws, [Selector(workload=ws[0].name)])
    space_s = time.perf_counter() - t0
    every = np.ones(len(space.atoms), bool)
    t0 = time.perf_counter()
    m = space.permitted(every)
    matrix_s = time.perf_counter() - t0
    start = space.select(Selector(workload=ws[0].name))
    best = []
    for _ in range(5):
        t0 = time.perf_counter()
        layers = hop_reach(m, start, 4, space.is_cell)
        best.append(time.perf_counter() - t0)
    blast_s = min(best)
    weights = Weights.of(ws, {})
    t0 = time.perf_counter()
    reached = policy_scenario("active", space, start, 4, weights, m)
    scenario_s = time.perf_counter() - t0
    rate = _brute_rate(space, ws, int(300_000 * scale), rng)
    n_atoms = sum(1 for a in space.atoms if a.lo >= 0 or a.proto is None)
    brute_matrix = len(ws) ** 2 * n_atoms / rate
    frontier = [1] + [int(space.sizes[layer & space.is_cell].sum()) for layer in layers[:-1]]
    brute_blast = sum(frontier) * len(ws) * n_atoms / rate
    total = space_s + matrix_s
    return {
        "name": "analyze",
        "workloads": len(ws),
        "classes": space.k,
        "rules": len(space.ir.rules),
        "atoms": len(space.atoms),
        "space_s": round(space_s, 3),
        "matrix_s": round(matrix_s, 3),
        "matrix_total_s": round(total, 3),
        "blast_ms": round(scenario_s * 1000, 2),
        "blast_bfs_ms": round(blast_s * 1000, 3),
        "blast_reached": reached.reached,
        "brute_judgements_per_s": round(rate),
        "brute_matrix_s_est": round(brute_matrix, 1),
        "brute_blast_s_est": round(brute_blast, 1),
        "ratio_matrix": round(brute_matrix / total, 1),
        "ratio_blast": round(brute_blast / scenario_s, 1),
        "ratio": round(brute_matrix / total, 1),
    }


if __name__ == "__main__":
    print(run())
