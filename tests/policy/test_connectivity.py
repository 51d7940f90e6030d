"""Canonical connectivity: equal policies give equal sets, different ones do not."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from cellwall.model.policy import Policy, PolicySet, Rule, Selector, parse_service
from cellwall.policy.connectivity import connectivity
from cellwall.policy.ir import PolicyIR
from tests.policy.test_reference import CONTRACT, ESTATE, GLOBAL, PAYMENTS, svc


def conn(ps: PolicySet) -> frozenset[Any]:
    return connectivity(PolicyIR(ps, ESTATE)).triples


def with_payments(*rules: Rule) -> PolicySet:
    return replace(CONTRACT, policies=(replace(PAYMENTS, rules=rules), GLOBAL))


BASE = conn(CONTRACT)


def test_rule_order_within_a_tier_and_rule_ids_do_not_matter() -> None:
    reordered = tuple(reversed(PAYMENTS.rules))
    renamed = tuple(replace(r, id=f"x-{r.id}") for r in PAYMENTS.rules)
    assert conn(with_payments(*reordered)) == BASE
    assert conn(with_payments(*renamed)) == BASE


def test_ports_split_or_joined_are_the_same_set() -> None:
    api = PAYMENTS.rules[2]
    joined = replace(api, services=svc("tcp/5432-5433"))
    split = (
        replace(api, services=svc("tcp/5432")),
        replace(api, id="api-5433", services=svc("tcp/5433")),
    )
    a = conn(with_payments(*PAYMENTS.rules[:2], joined, PAYMENTS.rules[3]))
    b = conn(with_payments(*PAYMENTS.rules[:2], *split, PAYMENTS.rules[3]))
    assert a == b
    assert a != BASE


def test_a_selector_with_two_values_equals_two_rules() -> None:
    web = Selector.of(role="web")
    one = Rule("one", Selector.of(role=["api", "db"]), web, svc("tcp/7"))
    two = (
        Rule("a", Selector.of(role="api"), web, svc("tcp/7")),
        Rule("b", Selector.of(role="db"), web, svc("tcp/7")),
    )
    assert conn(with_payments(*PAYMENTS.rules, one)) == conn(with_payments(*PAYMENTS.rules, *two))


def test_a_redundant_rule_changes_nothing_and_a_removed_one_does() -> None:
    dup = replace(PAYMENTS.rules[1], id="dup")
    assert conn(with_payments(*PAYMENTS.rules, dup)) == BASE
    assert conn(with_payments(*PAYMENTS.rules[:3])) != BASE


def test_the_sets_hold_the_contract_example() -> None:
    triples = {(t.service, t.verdict) for t in BASE}
    assert ("tcp/443", "allowed") in triples
    assert ("tcp/8443", "allowed") in triples
    web_to_api = [t for t in BASE if t.service == "tcp/8443" and t.verdict == "allowed"]
    assert [(t.client.workloads, t.server.workloads) for t in web_to_api] == [
        (("pay-web-1",), ("pay-api-1",))
    ]
    internet = [t for t in BASE if t.service == "tcp/443"]
    assert all(t.client.ranges and not t.client.workloads for t in internet)
    assert ("any", "denied") in triples or any(t.verdict == "denied" for t in BASE)


def test_a_rule_that_reaches_new_workloads_differs() -> None:
    loose = Policy(
        "loose", rules=(replace(PAYMENTS.rules[1], id="loose", to=Selector.of(role="etl")),)
    )
    after = conn(replace(CONTRACT, policies=(*CONTRACT.policies, loose)))
    assert after != BASE
    assert allows(after, "pay-web-1", "rep-etl-1", "tcp/8443")
    assert not allows(BASE, "pay-web-1", "rep-etl-1", "tcp/8443")
    assert allows(after, "pay-web-1", "pay-api-1", "tcp/8443") and allows(
        BASE, "pay-web-1", "pay-api-1", "tcp/8443"
    )


def allows(triples: frozenset[Any], client: str, server: str, service: str) -> bool:
    return any(
        client in t.client.workloads and server in t.server.workloads and t.service == service
        for t in triples
        if t.verdict == "allowed"
    )
    assert parse_service("tcp/8443") == PAYMENTS.rules[1].services[0]
