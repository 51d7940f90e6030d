"""The analysis space against the brute-force reference: for random inventories and
policies, every pair of ends, every probe service, both views (verdicts, and the modes
applied): exact equality, and the same deciding rule."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellwall.analyze.space import Space
from cellwall.model.inventory import Workload
from cellwall.model.policy import Management, PolicySet, Settings, parse_service
from cellwall.policy.judge import judge
from tests.analyze.reference import Brute, brute, stand_ins
from tests.policy.strategies import ADMIN_IPS, CONTROLLERS, UNMANAGED, inventories, policy_sets

ENDS = (UNMANAGED[0], UNMANAGED[4], UNMANAGED[6], ADMIN_IPS[0], CONTROLLERS[0])
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
Case = tuple[PolicySet, list[Workload]]


@st.composite
def cases(draw: st.DrawFn, most: int = 5) -> Case:
    inventory = stand_ins(draw(inventories(most=most)))
    return draw(policy_sets([w.name for w in inventory])), inventory


def endpoint(space: Space, end: str) -> int:
    if end in space.workloads:
        return space.cells.workload_class[end]
    ip = ipaddress.ip_address(end)
    for i, iv in enumerate(space.intervals):
        lo, hi = ipaddress.ip_address(iv.first), ipaddress.ip_address(iv.last)
        if iv.family == ip.version and lo <= ip <= hi:  # type: ignore[operator]
            return space.k + i
    raise AssertionError(end)


def pairs(ref: Brute) -> list[tuple[str, str]]:
    return sorted({(a, b) for a, b, _ in ref.verdict})


def _atoms(space: Space, effective: bool) -> dict[int, npt.NDArray[np.bool_]]:
    out = {}
    for part, m in space.per_atom(np.ones(len(space.atoms), bool), effective):
        for a in np.flatnonzero(part).tolist():
            out[a] = m
    return out


def _check_atoms(space: Space, ref: Brute, effective: bool) -> None:
    by_atom = _atoms(space, effective)
    for p in ref.probes:
        atom = int(space.ir.atoms.atoms_of(np.asarray([p.proto]), np.asarray([p.port]))[0])
        for a, b in pairs(ref):
            i, j = endpoint(space, a), endpoint(space, b)
            assert bool(by_atom[atom][i, j]) == ref.ok(a, b, p, effective), (a, b, p)
            if not effective:
                verdict, rule, _, blocked = ref.verdict[a, b, p]
                d = space.decide(i, j, atom)
                assert (d.verdict, d.rule) == (verdict, rule)
                assert space.blocked(i, j, d.verdict) == blocked


@SETTINGS
@given(cases())
def test_matrices_atoms_and_decisions_equal_the_reference(case: Case) -> None:
    ps, ws = case
    space, ref = Space(ps, ws), brute(ps, ws, ENDS)
    every = np.ones(len(space.atoms), bool)
    for effective in (False, True):
        m = space.permitted(every, effective)
        for a, b in pairs(ref):
            got = bool(m[endpoint(space, a), endpoint(space, b)])
            assert got == ref.allowed(a, b, effective=effective), (a, b, effective)
        _check_atoms(space, ref, effective)


def test_a_workload_that_owns_an_admin_address_is_in_the_management_tier() -> None:
    """The evaluator matches the management tier by address, whoever owns it; the analysis
    must agree (the bastion below is a workload in the admin network)."""
    bastion = Workload.of("bastion", labels={"role": "bastion"}, addresses=["10.255.0.5"])
    web = Workload.of("web", labels={"role": "web"}, addresses=["10.1.0.1"])
    ssh = (parse_service("tcp/22"),)
    ps = PolicySet(settings=Settings(management=Management(("10.255.0.0/24",), ssh)))
    space = Space(ps, [bastion, web])
    atom = next(i for i, a in enumerate(space.atoms) if space.ir.atoms.describe(i) == "tcp/22")
    mask = np.zeros(len(space.atoms), bool)
    mask[atom] = True
    cell = {n: c for c, ms in enumerate(space.members) for n in ms}
    allowed = space.allowed(mask)
    assert allowed[cell["bastion"], cell["web"]]
    assert not allowed[cell["web"], cell["bastion"]]
    conv = pa.table(
        {
            "client_ip": ["10.255.0.5", "10.1.0.1"],
            "server_ip": ["10.1.0.1", "10.255.0.5"],
            "proto": pa.array([6, 6], pa.uint8()),
            "server_port": pa.array([22, 22], pa.int32()),
            "client_port": pa.array([40000, 40000], pa.int32()),
            "start": pa.array(
                [datetime(2026, 11, 1, tzinfo=UTC)] * 2, pa.timestamp("us", tz="UTC")
            ),
        }
    )
    assert judge(conv, ps, [bastion, web])["verdict"].to_pylist() == ["allowed", "not-allowed"]
