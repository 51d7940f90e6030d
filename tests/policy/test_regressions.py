"""Minimal reproducers of disagreements between the fast evaluator and the reference.

Each test states what docs/policy.md says and which side got it wrong.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from cellwall.model.inventory import Workload
from cellwall.model.policy import Policy, PolicySet, Rule, Selector, Service, parse_service
from tests.policy.reference import reference_judge
from tests.policy.strategies import MOMENTS
from tests.policy.test_equivalence import fast_answers

WEB_ONLY = Selector.of(role="web")


MAPPED = str(ipaddress.ip_address("::ffff:10.0.0.1"))  # canonical text, as the lake writes it


def conv(client_ip: str, server_ip: str) -> dict[str, Any]:
    return {
        "client_ip": client_ip,
        "server_ip": server_ip,
        "proto": 6,
        "server_port": 443,
        "client_port": 40000,
        "start": MOMENTS[1],
        "server_process": None,
        "http_method": None,
        "http_path": None,
        "icmp_code": None,
    }


def test_an_ipv4_mapped_address_is_one_thing_for_identity_and_for_ranges() -> None:
    """``::ffff:10.0.0.1`` is a valid address, so a conversation may carry it (in its
    canonical text, ``str(ipaddress.ip_address(...))``, which differs between Python
    versions).

    Found by the reference: the fast evaluator's identity step compared the text (the end was
    unmanaged) while its range matching mapped the address to IPv4
    (``cellwall.inventory.classify.to_numbers``), so ``from-ten``, a rule for unmanaged
    addresses in 10/8, allowed a conversation that neither reading allows. docs/policy.md now
    says that addresses are compared as written: it is an IPv6 address, not the workload
    that owns 10.0.0.1 and not in 10.0.0.0/8.
    """
    web = Workload.of("web", labels={"role": "web"}, addresses=["10.0.0.1"])
    tcp = (parse_service("tcp"),)
    policy = PolicySet(
        policies=(
            Policy(
                "p",
                (
                    Rule("from-web", Selector.of(role="web"), Selector(any=True), tcp),
                    Rule("from-ten", Selector(cidrs=("10.0.0.0/8",)), Selector(any=True), tcp),
                    Rule("from-mapped", Selector(cidrs=("::ffff:0:0/96",)), WEB_ONLY, tcp),
                ),
            ),
        )
    )
    convs = [conv(MAPPED, "8.8.8.8"), conv(MAPPED, "10.0.0.1")]
    expected = [("not-allowed", None, False, False), ("allowed", "from-mapped", False, False)]
    assert [reference_judge(c, policy, [web]) for c in convs] == expected
    assert fast_answers(convs, policy, [web], []) == expected


def test_an_empty_inventory() -> None:
    """Found by the property test on an early version: with no workloads at all, the fast
    evaluator indexed an empty per-class mode array (IndexError in ``evaluate``)."""
    policy = PolicySet(
        policies=(Policy("p", (Rule("r", Selector(cidrs=("8.0.0.0/8",)), WEB_ONLY, tcp()),)),)
    )
    convs = [conv("8.8.8.8", "10.0.0.1"), conv("10.0.0.1", "10.0.0.1")]
    expected = [("not-allowed", None, False, False)] * 2
    assert [reference_judge(c, policy, []) for c in convs] == expected
    assert fast_answers(convs, policy, [], []) == expected


def tcp() -> tuple[Service, ...]:
    return (parse_service("tcp"),)
