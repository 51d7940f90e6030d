"""Calico GlobalNetworkPolicy held to the judge by an independent interpreter
(``oracle_calico``) on the lab's probes: class representatives, IP lists, the unmanaged
space, the admin networks and the controllers, over TCP, UDP and ICMP, IPv4 and IPv6."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from tests.targets.common import AT, fixture_estate
from tests.targets.oracle_calico import CalicoOracle, OracleError, parse_selector
from tests.targets.oracle_probes import (
    check_target,
    edge_estate,
)


def test_selectors_read_as_calico_reads_them() -> None:
    sel = parse_selector("app == 'payments' && !has(data) && env in {'prod', 'dev'}")
    assert sel({"app": "payments", "env": "prod"})
    assert not sel({"app": "payments", "env": "prod", "data": "pci"})
    assert not sel({"app": "payments", "env": "staging"})
    assert parse_selector("all()")({})
    assert parse_selector("(a == 'x' || b != 'y') && role not in {'db'}")({"b": "z"})
    with pytest.raises(OracleError):
        parse_selector("app ~= 'x'")


def test_first_match_in_order_decides_and_log_goes_on() -> None:
    docs = [
        {
            "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "b"},
            "spec": {
                "order": 20,
                "selector": "role == 'db'",
                "types": ["Ingress"],
                "ingress": [{"action": "Allow"}],
            },
        },
        {
            "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "a"},
            "spec": {
                "order": 10,
                "selector": "role == 'db'",
                "types": ["Ingress"],
                "ingress": [
                    {"action": "Log"},
                    {
                        "action": "Deny",
                        "protocol": "TCP",
                        "source": {"nets": ["10.0.0.0/8"]},
                        "destination": {"ports": ["5000:5999"]},
                    },
                ],
            },
        },
    ]
    o = CalicoOracle(docs, {"10.0.0.2": {"role": "db"}, "10.0.0.3": {"role": "web"}})
    assert not o.allowed("10.0.0.3", "10.0.0.2", 6, 5432)
    assert o.allowed("10.0.0.3", "10.0.0.2", 6, 6000)
    assert o.allowed("192.0.2.1", "10.0.0.2", 6, 5432)
    assert o.allowed("10.0.0.2", "10.0.0.3", 17, 53)  # no policy applies to web


_check = partial(check_target, target="calico", oracle=CalicoOracle.from_texts)


def test_calico_agrees_with_the_judge_on_the_target_fixture() -> None:
    ps, workloads = fixture_estate()
    res = _check(ps, workloads, AT)
    assert res.wrong == [], str(res)
    assert res.probes > 3000 and res.through > 500 and res.agreed > 3000
    assert {p.client for p, _ in res.apart} == {"pay-web-1"}  # web-to-api: http, apart


def test_calico_agrees_where_cidrs_hold_workloads_and_workloads_hold_management() -> None:
    ps, workloads = edge_estate()
    res = _check(ps, workloads, AT)
    assert res.wrong == [], str(res)
    assert res.agreed == res.probes > 500


@pytest.mark.real
def test_calico_agrees_with_the_judge_on_a_sample_of_the_demo(tmp_path: Path) -> None:
    from tests.targets.oracle_probes import demo_estate

    ps, workloads, at = demo_estate(tmp_path)
    res = _check(ps, workloads, at, sample=8, allow_expired=True)  # YAML dumps are slow
    assert res.wrong == [], str(res)
    assert res.probes > 15000 and res.through > 2000
