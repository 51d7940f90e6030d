"""Invariant proofs against the brute-force reference: forbid, only, require and
forbid_path hold exactly when enumerating every pair (and every chain) says they do, and a
counterexample is a real conversation that the reference judges the same way."""

from __future__ import annotations

import ipaddress
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellwall.analyze.invariants import prove
from cellwall.analyze.space import Space
from cellwall.model.policy import Invariant, Policy, PolicySet, Rule, Selector, Service
from tests.analyze.reference import Brute, Probe, brute, stand_ins
from tests.analyze.test_space import ENDS
from tests.policy.reference import service_match
from tests.policy.strategies import (
    inventories,
    policy_sets,
    selectors,
    services,
    workload_selectors,
)

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def cases(draw: st.DrawFn) -> tuple[PolicySet, list, Invariant]:
    ws = stand_ins(draw(inventories(most=5)))
    names = [w.name for w in ws]
    ps = draw(policy_sets(names))
    lists = [il.name for il in ps.iplists]
    kind = draw(st.sampled_from(("forbid", "only", "require", "forbid_path")))
    svc = tuple(draw(st.lists(services(), max_size=2, min_size=1 if kind == "require" else 0)))
    hops = draw(st.integers(1, 3)) if kind == "forbid_path" else None
    inv = Invariant("inv", kind, draw(selectors(names, lists)),
                    draw(workload_selectors(names, lists)), svc, hops)  # fmt: skip
    return ps, ws, inv


def _with_services(ps: PolicySet, inv: Invariant) -> PolicySet:
    """The policy plus a rule that matches nothing, so the reference probes the invariant's
    service boundaries too."""
    never = Selector(workload="~none~", negations=(Selector(workload="~none~"),))
    probe = Rule("~probe~", never, never, inv.services or (Service(),))
    return PolicySet((*ps.policies, Policy("~probes~", (probe,))), ps.iplists, settings=ps.settings)


def _region_starts(ps: PolicySet, inv: Invariant) -> list[str]:
    """The first address of every region the policy and the invariant tell apart: each
    CIDR's first address and the address after its last, and the start of each family."""
    cidrs = {c for il in ps.iplists for c in (*il.cidrs, *il.except_)}
    m = ps.settings.management
    cidrs |= {*m.admin_networks, *m.controllers}
    for sel in [inv.from_, inv.to, *(s for _, r in ps.rules() for s in (r.from_, r.to))]:
        cidrs |= {*sel.cidrs, *sel.except_}
    out = {"0.0.0.0", "::", *ENDS}
    for c in cidrs:
        net = ipaddress.ip_network(c, strict=False)
        out.add(str(net.network_address))
        top = (1 << (32 if net.version == 4 else 128)) - 1
        after = int(net.broadcast_address) + 1
        if after <= top:
            out.add(
                str(
                    ipaddress.ip_address(after)
                    if net.version == 6 or after < 1 << 32
                    else net.broadcast_address
                )
            )
    return sorted(out)


def _touches(inv: Invariant, p: Probe) -> bool:
    conv = p.conversation("0.0.0.0", "0.0.0.0")
    return not inv.services or any(service_match(s.l4(), conv) for s in inv.services)


def _holds(ref: Brute, ps: PolicySet, inv: Invariant) -> bool:
    probes = [p for p in ref.probes if _touches(inv, p)]
    src = {e for e in ref.ends if ref.matches(inv.from_, ps, e)}
    dst = {e for e in ref.ends if ref.matches(inv.to, ps, e)}
    if inv.kind == "forbid_path":
        assert inv.max_hops is not None
        return not (set().union(*ref.layers(src, inv.max_hops, probes)) & dst)
    pairs = [(a, b) for a, b, _ in ref.verdict if b in dst]
    if inv.kind == "forbid":
        return not any(a in src and ref.ok(a, b, p, False) for a, b in pairs for p in probes)
    if inv.kind == "only":
        return not any(a not in src and ref.ok(a, b, p, False) for a, b in pairs for p in probes)
    return all(ref.ok(a, b, p, False) for a, b in pairs if a in src for p in probes)


@SETTINGS
@given(cases())
def test_a_proof_agrees_with_enumerating_every_pair_and_chain(case: tuple) -> None:
    ps, ws, inv = case
    space = Space(ps, ws, [inv.from_, inv.to])
    result = prove(space, inv)
    ref = brute(_with_services(ps, inv), ws, _region_starts(ps, inv))
    assert result.holds == _holds(ref, ps, inv), result
    if not result.holds:
        assert result.counterexample is not None
        hops = result.counterexample.hops
        assert 1 <= len(hops) <= (inv.max_hops or 1)
        for a, b in itertools.pairwise(hops):
            assert a.server == b.client
        for h in hops:
            expected = "allowed" if inv.kind != "require" else h.verdict
            assert h.verdict == expected
        if inv.kind == "require":
            assert hops[0].verdict != "allowed"
