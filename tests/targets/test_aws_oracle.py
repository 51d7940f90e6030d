"""AWS security groups held to the judge by an independent interpreter (``oracle_aws``) on
the lab's probes: class representatives, IP lists, the unmanaged space, the admin networks
and the controllers, over TCP, UDP and ICMP, IPv4 and IPv6."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest

from cellwall.model.inventory import Workload
from cellwall.services.compile import compile_policy
from tests.targets.common import AT, fixture_estate
from tests.targets.oracle_aws import AwsOracle, OracleError
from tests.targets.oracle_probes import (
    check_target,
    edge_estate,
)


def _group(
    name: str, labels: str, ingress: list[dict[str, Any]], egress: list[dict[str, Any]]
) -> dict[str, Any]:
    ref = f"${{aws_security_group.{name}.id}}"
    return {
        "resource": {
            "aws_security_group": {name: {"description": f"cellwall class {labels}"}},
            "aws_vpc_security_group_ingress_rule": {
                f"{name}_in_{i}": {"security_group_id": ref, **r} for i, r in enumerate(ingress)
            },
            "aws_vpc_security_group_egress_rule": {
                f"{name}_out_{i}": {"security_group_id": ref, **r} for i, r in enumerate(egress)
            },
        }
    }


def test_groups_allow_the_union_of_their_rules_statefully() -> None:
    db = _group(
        "db",
        "role=db",
        [
            {
                "ip_protocol": "6",
                "from_port": 5432,
                "to_port": 5432,
                "referenced_security_group_id": "${aws_security_group.api.id}",
            },
            {"ip_protocol": "1", "from_port": 8, "to_port": -1, "cidr_ipv4": "10.9.0.0/16"},
        ],
        [],
    )
    api = _group("api", "role=api", [], [{"ip_protocol": "-1", "cidr_ipv4": "0.0.0.0/0"}])
    o = AwsOracle([db, api], {"10.0.0.2": {"role": "db"}, "10.0.0.3": {"role": "api"}})
    assert o.allowed("10.0.0.3", "10.0.0.2", 6, 5432)
    assert not o.allowed("10.0.0.3", "10.0.0.2", 6, 5433)
    assert not o.allowed("10.0.0.2", "10.0.0.3", 6, 5432)  # db has no egress rule
    assert o.allowed("10.9.1.1", "10.0.0.2", 1, 8) and not o.allowed("10.9.1.1", "10.0.0.2", 1, 0)
    assert o.allowed("10.0.0.3", "192.0.2.1", 17, 53)  # not an instance: no group there
    gone = {"ip_protocol": "-1", "referenced_security_group_id": "${aws_security_group.gone.id}"}
    broken = _group("x", "role=x", [gone], [])
    with pytest.raises(OracleError, match="undeclared"):
        AwsOracle([broken], {})


#: Security groups are written for the whole estate at once, not host by host.
_check = partial(check_target, target="aws-sg", oracle=AwsOracle.from_texts, per_host=False)


def test_aws_agrees_with_the_judge_on_the_target_fixture() -> None:
    ps, workloads = fixture_estate()
    res = _check(ps, workloads, AT)
    assert res.wrong == [], str(res)
    assert res.probes > 3000 and res.through > 500 and res.agreed > 3000


def test_aws_agrees_where_cidrs_hold_workloads_and_workloads_hold_management() -> None:
    ps, workloads = edge_estate()
    res = _check(ps, workloads, AT)
    assert res.wrong == [], str(res)
    assert res.agreed == res.probes > 500


@pytest.mark.real
def test_aws_agrees_with_the_judge_on_a_sample_of_the_demo(tmp_path: Path) -> None:
    from tests.targets.oracle_probes import demo_estate

    ps, workloads, at = demo_estate(tmp_path)
    res = _check(ps, workloads, at, sample=12, allow_expired=True)
    assert res.wrong == [], str(res)
    assert res.probes > 20000 and res.through > 2000


def test_a_class_only_partly_in_the_admin_networks_is_reported_and_set_apart() -> None:
    from cellwall.policy.loader import load_policy_texts
    from tests.targets.oracle_probes import EDGE_POLICY

    workloads = [
        Workload.of("api-1", labels={"app": "shop", "role": "api"}, addresses=["10.20.1.11"]),
        Workload.of("adm-1", labels={"app": "shop", "role": "ops"}, addresses=["10.99.0.7"]),
        Workload.of("ops-2", labels={"app": "shop", "role": "ops"}, addresses=["10.21.0.7"]),
    ]
    ps = load_policy_texts({"edge.yaml": EDGE_POLICY}, workloads=workloads).policy_set
    arts = compile_policy(ps, workloads, "aws-sg", at=AT, today=AT.date())
    assert [u.rule_id for u in arts.unsupported] == ["management:admin"]
    res = _check(ps, workloads, AT)
    assert {rule for _, rule in res.apart} == {"management:admin"}
    # ops-2's group lets it out on tcp/22 to every workload (the reported looseness), but
    # each server's group still takes the admin networks only: nothing got through
    assert res.wrong == [], str(res)
