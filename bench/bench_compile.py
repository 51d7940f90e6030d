"""Compiling the estate (issue 8): nftables for every host of a 6,000-host estate.

The estate and policy are bench_policy's (100 apps × 5 roles × 4 envs, about 5,000 rules
over 300 services), with 3 workloads per class: 6,000 hosts. The figure is the wall time of
``compile_policy(..., "nftables")`` for all hosts, lowering included (floor: 30 s for 5k
hosts). The same-run baseline is a straightforward compiler: per host, every rule's
selectors checked in Python against the host and each peer class, timed on a sample of
hosts and scaled to all of them.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from cellwall.model.inventory import Workload
from cellwall.model.policy import PolicySet, Selector
from cellwall.services.compile import compile_policy

HERE = Path(__file__).resolve().parent


def _bench_policy() -> Any:
    spec = importlib.util.spec_from_file_location("bench_policy", HERE / "bench_policy.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _matches(sel: Selector, w: Workload) -> bool:
    return all(w.labels.get(t.key) in t.values for t in sel.labels) and not sel.address_terms


def _naive_host(ps: PolicySet, host: Workload, classes: list[Workload]) -> int:
    """Per host: every rule, every peer class, checked one by one (what a naive compiler
    does before it writes a line)."""
    lines = 0
    for policy in ps.policies:
        scope_ok = policy.scope is None or _matches(policy.scope, host)
        for r in policy.rules:
            if scope_ok and _matches(r.to, host):
                lines += sum(1 for peer in classes if _matches(r.from_, peer))
            if _matches(r.from_, host):
                lines += sum(1 for peer in classes if _matches(r.to, peer))
    return lines


def run() -> dict[str, Any]:
    scale = float(os.environ.get("BENCH_SCALE", "1"))
    bp = _bench_policy()
    rng = np.random.default_rng(7)
    ws = bp.estate(per_class=max(1, round(3 * scale)))
    ps = bp.policy(rng)
    t0 = time.perf_counter()
    arts = compile_policy(ps, ws, "nftables", allow_expired=True)
    ours = time.perf_counter() - t0
    classes = list({w.labels: w for w in ws}.values())
    sample = ws[:: max(1, len(ws) // 20)][:20]
    b0 = time.perf_counter()
    for host in sample:
        _naive_host(ps, host, classes)
    naive = (time.perf_counter() - b0) / len(sample) * len(ws)
    return {
        "name": "compile",
        "hosts": len(ws),
        "rules": sum(len(p.rules) for p in ps.policies),
        "files": len(arts.files),
        "compile_s": round(ours, 2),
        "naive_s_estimated": round(naive, 1),
        "ratio": round(naive / ours, 1),
    }


if __name__ == "__main__":
    print(run())
