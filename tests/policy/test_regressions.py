"""Minimal reproducers of disagreements between the fast evaluator and the reference.

Each test states what docs/policy.md says and which side got it wrong.
"""

from __future__ import annotations

from typing import Any

from cellwall.model.inventory import Workload
from cellwall.model.policy import Policy, PolicySet, Rule, Selector, parse_service
from tests.policy.reference import reference_judge
from tests.policy.strategies import MOMENTS
from tests.policy.test_equivalence import fast_answers


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
    """``::ffff:10.0.0.1`` is a canonical address (``str(ipaddress.ip_address(...))`` keeps
    it), so a conversation may carry it. docs/policy.md does not say that it means 10.0.0.1.

    Read literally, it is an IPv6 address: not the workload that owns 10.0.0.1, and not in
    10.0.0.0/8 (the reference's answer: not-allowed). Read as its IPv4 address, it is the
    workload ``web``, and ``from-web`` decides. The fast evaluator mixes the two readings: its
    identity step compares the text (so the end is unmanaged) while its range matching maps
    the address to IPv4 (``cellwall.inventory.classify.to_numbers``), so ``from-ten``, a rule
    for unmanaged addresses in 10/8, allows a conversation that neither reading allows.
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
                ),
            ),
        )
    )
    c = conv("::ffff:10.0.0.1", "8.8.8.8")
    literal = reference_judge(c, policy, [web])
    assert literal == ("not-allowed", None, False, False)
    as_ipv4 = reference_judge(conv("10.0.0.1", "8.8.8.8"), policy, [web])
    assert as_ipv4 == ("allowed", "from-web", False, False)
    fast = fast_answers([c], policy, [web], [])[0]
    assert fast in (literal, as_ipv4), f"fast evaluator: {fast}"
