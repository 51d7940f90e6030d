"""The lab's address ends: an address per IP-list and CIDR term, one private and one
public address in no list, one per admin network and controller; none a workload's."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from cellwall.enforce.lab_ends import End, external_ends, usable
from cellwall.enforce.lab_plan import plan_lab, probe_points
from cellwall.model.inventory import Workload
from tests.enforce.estate import WORKLOADS, policy
from tests.targets.common import fixture_estate


def _taken(workloads: Sequence[Workload]) -> set[str]:
    return {a.ip for w in workloads for a in w.addresses}


def test_the_fixture_gets_an_end_per_term_and_for_the_management_tier() -> None:
    ps, workloads = fixture_estate()
    ends, notes = external_ends(ps, _taken(workloads))
    by = {e.name: e for e in ends}
    assert by["admin:10.255.0.0/24"].v4 is not None
    assert by["admin:fd00:255::/64"].v6 is not None
    assert by["controller:10.255.1.10/32"] == End(
        "controller:10.255.1.10/32", "controller", "10.255.1.10", None
    )
    assert by["iplist:internet"].v4 and by["iplist:internet"].v6
    assert "iplist:cidrs+internet" in by  # gre-to-router's 192.0.2.0/24
    assert ipaddress.ip_address(by["iplist:cidrs+internet"].v4 or "") in ipaddress.ip_network(
        "192.0.2.0/24"
    )
    assert ipaddress.ip_address(by["unmanaged-private"].v4 or "").is_private
    assert notes == []


def test_no_end_holds_a_workload_address_or_an_unusable_one() -> None:
    ps, workloads = fixture_estate()
    taken = _taken(workloads)
    for e in external_ends(ps, taken)[0]:
        for ip in (e.v4, e.v6):
            if ip is not None:
                assert ip not in taken and usable(ipaddress.ip_address(ip))


def test_without_an_internet_list_a_public_address_stands_for_the_internet() -> None:
    ends, _ = external_ends(policy(), _taken(WORKLOADS))
    kinds = {e.name: e.kind for e in ends}
    assert kinds == {
        "admin:10.99.0.0/24": "admin",
        "controller:10.99.0.10/32": "controller",
        "unmanaged-private": "unmanaged",
        "unmanaged-public": "unmanaged",
    }
    public = next(e for e in ends if e.name == "unmanaged-public")
    assert public.v4 and not ipaddress.ip_address(public.v4).is_private


def test_each_class_is_probed_to_and_from_every_end() -> None:
    plan = plan_lab(policy(), WORKLOADS)
    names = {e.name for e in plan.ends}
    to_end = {(c.cls, s.name) for c, s in plan.pairs if s.name in names}
    from_end = {(c.name, s.cls) for c, s in plan.pairs if c.name in names}
    assert len(to_end) == len(from_end) == plan.classes * len(names)
    assert plan_lab(policy(), WORKLOADS, ends=False).ends == []


def test_sctp_points_appear_only_when_the_policy_names_sctp() -> None:
    points, _ = probe_points(policy())
    assert not any(p == 132 for p, _ in points)
