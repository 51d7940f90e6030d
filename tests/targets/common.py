"""Shared helpers for the target tests: the fixture estate and the probe oracle."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from cellwall.inventory.loader import load_inventory_files
from cellwall.model.inventory import Workload
from cellwall.model.policy import PolicySet
from cellwall.policy.judge import judge
from cellwall.policy.loader import load_policy

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
GOLDEN = HERE / "golden"
AT = datetime(2026, 11, 2, 12, tzinfo=UTC)


def fixture_estate() -> tuple[PolicySet, list[Workload]]:
    inv = load_inventory_files([FIXTURES / "inventory.yaml"])
    inv.raise_for_errors()
    workloads = list(inv.workloads)
    res = load_policy([FIXTURES / "policy"], workloads=workloads)
    assert not [d for d in res.diagnostics if d.severity == "error"], res.diagnostics
    return res.policy_set, workloads


def judged_blocked(
    ps: PolicySet, workloads: list[Workload], probes: list[tuple[str, str, int, int]]
) -> list[bool]:
    """``blocked`` from the judge (with the modes) for (client, server, proto, port)."""
    t = pa.table(
        {
            "client_ip": [p[0] for p in probes],
            "server_ip": [p[1] for p in probes],
            "proto": pa.array([p[2] for p in probes], pa.uint8()),
            "server_port": pa.array([-1 if p[2] in (1, 58) else p[3] for p in probes], pa.int32()),
            "client_port": pa.array(
                [p[3] if p[2] in (1, 58) else 40000 for p in probes], pa.int32()
            ),
            "start": pa.array([AT] * len(probes), pa.timestamp("us", tz="UTC")),
        }
    )
    return [bool(x) for x in judge(t, ps, workloads)["blocked"].to_pylist()]
