"""CiliumNetworkPolicy held to the judge by an independent interpreter (``oracle_cilium``)
on the lab's probes: class representatives, IP lists, the unmanaged space, the admin
networks and the controllers, over TCP, UDP and ICMP, IPv4 and IPv6."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from cellwall.services.compile import compile_policy
from cellwall.targets.plan import Estate
from tests.targets.common import AT, fixture_estate, judged_blocked
from tests.targets.oracle_cilium import CiliumOracle, OracleError
from tests.targets.oracle_probes import (
    check_target,
    edge_estate,
)


def test_endpoints_by_labels_and_cidrs_only_for_the_world() -> None:
    db = {
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "db", "namespace": "shop"},
        "spec": {
            "endpointSelector": {"matchLabels": {"role": "db"}},
            "ingress": [
                {
                    "fromEndpoints": [{"matchLabels": {"role": "api"}}],
                    "toPorts": [{"ports": [{"port": "5432", "protocol": "TCP"}]}],
                },
                {"fromCIDR": ["10.0.0.0/8"], "icmps": [{"fields": [{"type": 8}]}]},
            ],
        },
    }
    eps = {
        "10.0.0.2": {"role": "db", "namespace": "shop"},
        "10.0.0.3": {"role": "api", "namespace": "shop"},
        "10.0.0.4": {"role": "api", "namespace": "other"},
    }
    o = CiliumOracle([db], eps)
    assert o.allowed("10.0.0.3", "10.0.0.2", 6, 5432)
    assert not o.allowed("10.0.0.4", "10.0.0.2", 6, 5432)  # another namespace
    assert not o.allowed("10.0.0.3", "10.0.0.2", 6, 5433)
    assert o.allowed("10.9.0.1", "10.0.0.2", 1, 8) and not o.allowed("10.9.0.1", "10.0.0.2", 1, 0)
    assert not o.allowed("10.0.0.3", "10.0.0.2", 1, 8)  # a CIDR never matches an endpoint
    assert o.allowed("10.0.0.2", "10.0.0.3", 17, 53)  # no egress list: not enforced
    with pytest.raises(OracleError):
        CiliumOracle([{**db, "spec": {**db["spec"], "ingressDeny": []}}], eps)


def _l7_rules(estate: Estate) -> dict[str, str]:
    """An HTTP-narrowed rule is enforced by Cilium's proxy on requests: not probed here."""
    return {
        r.id: "L7 HTTP: not probed"
        for r in estate.ir.rules
        if any(s.http_methods or s.http_paths for s, _ in r.narrowed)
    }


_check = partial(check_target, target="cilium", oracle=CiliumOracle.from_texts, apart=_l7_rules)


def test_cilium_agrees_with_the_judge_on_the_target_fixture() -> None:
    ps, workloads = fixture_estate()
    res = _check(ps, workloads, AT)
    assert res.wrong == [], str(res)
    assert res.probes > 3000 and res.through > 500 and res.agreed > 3000


def test_cilium_agrees_where_cidrs_hold_workloads_and_workloads_hold_management() -> None:
    ps, workloads = edge_estate()
    res = _check(ps, workloads, AT)
    assert res.wrong == [], str(res)
    assert res.agreed + len(res.apart) == res.probes > 500
    # the lab gives adm-1 and ctl-1 an IPv6 address outside the management tier: a label
    # selector cannot tell one family from the other, so the target reports those rules
    assert {r for _, r in res.apart} == {"management:admin", "management:control"}


def test_cilium_agrees_on_the_kubernetes_fixture(tmp_path: Path) -> None:
    """The NCA cross-check's pods (IPv4 only): CIDR and IP-list terms over pods, a pod in
    the admin networks and a pod that is a controller, every pod pair on every service."""
    from cellwall.policy.loader import load_policy
    from tests.targets import test_k8s_nca as k

    (tmp_path / "p.yaml").write_text(k.POLICY)
    workloads = k._workloads()
    ps = load_policy([tmp_path], workloads=workloads).policy_set
    arts = compile_policy(ps, workloads, "cilium", at=AT, today=AT.date())
    assert [u.rule_id for u in arts.unsupported] == ["no-debug-db"]  # `any`: other protocols
    eps = {w.addresses[0].ip: dict(w.labels.items()) for w in workloads}
    oracle = CiliumOracle.from_texts([f.text for f in arts.files], eps)
    pairs = [(a, b) for a in eps for b in eps if a != b]
    probes = [(a, b, p, port) for a, b in pairs for p, port in k.SERVICES]
    blocked = judged_blocked(ps, workloads, probes)
    wrong = [(p, b) for p, b in zip(probes, blocked, strict=True) if oracle.allowed(*p) == b]
    assert wrong == [] and len(probes) == 720
    assert oracle.allowed("10.99.0.7", "10.8.0.4", 6, 22)  # adm-1 → db-1: management:admin
    assert oracle.allowed("10.8.0.1", "10.98.0.10", 6, 7443)  # web-1 → ctl-1: control


@pytest.mark.real
def test_cilium_agrees_with_the_judge_on_a_sample_of_the_demo(tmp_path: Path) -> None:
    from tests.targets.oracle_probes import demo_estate

    ps, workloads, at = demo_estate(tmp_path)
    res = _check(ps, workloads, at, sample=8, allow_expired=True)
    assert res.wrong == [], str(res)
    assert res.probes > 15000 and res.through > 2000
