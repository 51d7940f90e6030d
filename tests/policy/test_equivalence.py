"""The fast evaluator agrees with the reference evaluator on every conversation.

Random policy sets, inventories, DNS evidence and conversations (tests/policy/strategies.py)
go through ``cellwall.policy.judge.judge`` as one Arrow table and, one at a time, through
``tests/policy/reference.py``; every row must give the same verdict, deciding rule,
``unverified`` and ``blocked``. ``CELLWALL_FUZZ`` sets the number of examples (default 200;
the wide scenarios, past one machine word of names and rules, run a twentieth of that).

On a disagreement :func:`minimise` drops every workload, lease, DNS row, policy, rule,
service and IP list that the disagreement does not need, and the failure prints that small
case (conversation, policy, workloads, evidence, both answers) ready to paste into
tests/policy/test_regressions.py.
"""

from __future__ import annotations

import os
import pprint
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from cellwall.evidence.dns import DNS_SCHEMA
from cellwall.model.inventory import AddressLease, Workload
from cellwall.model.policy import (
    IPList,
    Policy,
    PolicySet,
    Rule,
    Selector,
    Service,
    Settings,
    parse_service,
)
from cellwall.policy.judge import judge
from tests.policy.reference import reference_judge
from tests.policy.strategies import MOMENTS, Scenario, scenarios, wide_scenarios

T = TypeVar("T")

TS = pa.timestamp("us", tz="UTC")
CONVERSATION_SCHEMA = pa.schema(
    [
        ("client_ip", pa.string()),
        ("server_ip", pa.string()),
        ("proto", pa.uint8()),
        ("server_port", pa.int32()),
        ("client_port", pa.int32()),
        ("start", TS),
        ("server_process", pa.string()),
        ("http_method", pa.string()),
        ("http_path", pa.string()),
        ("icmp_code", pa.int32()),
    ]
)


def conversation_table(convs: Sequence[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(convs), schema=CONVERSATION_SCHEMA)


def dns_table(rows: Sequence[tuple[datetime, datetime, str, str]]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "ts": ts,
                "ip": ip,
                "name": name,
                "ttl_s": int((until - ts).total_seconds()),
                "valid_until": until,
                "client_ip": None,
                "source": "test",
                "lineage_file": "test.log",
                "lineage_pos": i,
            }
            for i, (ts, until, ip, name) in enumerate(rows)
        ],
        schema=DNS_SCHEMA,
    )


def fast_answers(
    convs: Sequence[dict[str, Any]],
    policy: PolicySet,
    workloads: Sequence[Workload],
    dns: Sequence[tuple[datetime, datetime, str, str]],
) -> list[tuple[str, str | None, bool, bool]]:
    out = judge(conversation_table(convs), policy, workloads, dns_table(dns) if dns else None)
    assert out.num_rows == len(convs)
    return list(
        zip(
            out["verdict"].to_pylist(),
            out["rule_id"].to_pylist(),
            out["unverified"].to_pylist(),
            out["blocked"].to_pylist(),
            strict=True,
        )
    )


Answer = tuple[str, str | None, bool, bool]
DnsRows = list[tuple[datetime, datetime, str, str]]


@dataclass(frozen=True)
class Case:
    """One conversation with everything that judges it."""

    policy: PolicySet
    workloads: list[Workload]
    dns: DnsRows
    conv: dict[str, Any]


def disagreement(case: Case) -> tuple[object, Answer] | None:
    """(the fast evaluator's answer or its exception, the reference's), when they differ."""
    ref = reference_judge(case.conv, case.policy, case.workloads, case.dns)
    try:
        fast: object = fast_answers([case.conv], case.policy, case.workloads, case.dns)[0]
    except Exception as exc:  # a crash is a disagreement too; it is reported, not hidden
        fast = exc
    return None if fast == ref else (fast, ref)


def _drop_each(items: Sequence[T], still_fails: Callable[[list[T]], bool]) -> list[T]:
    kept = list(items)
    i = 0
    while i < len(kept):
        trial = kept[:i] + kept[i + 1 :]
        if still_fails(trial):
            kept = trial
        else:
            i += 1
    return kept


def _set_policies(c: Case, policies: Sequence[Policy]) -> Case:
    return replace(c, policy=replace(c.policy, policies=tuple(policies)))


def _set_rules(c: Case, i: int, rules: Sequence[Rule]) -> Case:
    ps = list(c.policy.policies)
    ps[i] = replace(ps[i], rules=tuple(rules))
    return _set_policies(c, ps)


def _set_services(c: Case, i: int, j: int, services: Sequence[Service]) -> Case:
    rules = list(c.policy.policies[i].rules)
    rules[j] = replace(rules[j], services=tuple(services))
    return _set_rules(c, i, rules)


def _set_leases(c: Case, i: int, leases: Sequence[AddressLease]) -> Case:
    ws = list(c.workloads)
    ws[i] = replace(ws[i], addresses=tuple(leases))
    return replace(c, workloads=ws)


def minimise(case: Case) -> Case:
    """Drop workloads, leases, DNS rows, policies, rules, services, IP lists and the
    management tier while the two evaluators still disagree on the conversation: a small
    reproducer is worth more than Hypothesis' own shrinking of the whole scenario (which
    re-runs the fast evaluator thousands of times)."""

    def fails(c: Case) -> bool:
        return disagreement(c) is not None

    c = case
    c = replace(c, workloads=_drop_each(c.workloads, lambda t: fails(replace(c, workloads=t))))
    c = replace(c, dns=_drop_each(c.dns, lambda t: fails(replace(c, dns=t))))
    c = _set_policies(c, _drop_each(c.policy.policies, lambda t: fails(_set_policies(c, t))))
    for i, pol in enumerate(c.policy.policies):

        def rules_fail(t: list[Rule], c: Case = c, i: int = i) -> bool:
            return fails(_set_rules(c, i, t))

        rules = _drop_each(pol.rules, rules_fail)
        c = _set_rules(c, i, rules)
        for j, rule in enumerate(rules):

            def services_fail(t: list[Service], c: Case = c, i: int = i, j: int = j) -> bool:
                return bool(t) and fails(_set_services(c, i, j, t))

            c = _set_services(c, i, j, _drop_each(rule.services, services_fail))
    lists = _drop_each(
        c.policy.iplists, lambda t: fails(replace(c, policy=replace(c.policy, iplists=tuple(t))))
    )
    c = replace(c, policy=replace(c.policy, iplists=tuple(lists)))
    plain = replace(c.policy, settings=Settings(default_mode=c.policy.settings.default_mode))
    if plain != c.policy and fails(replace(c, policy=plain)):
        c = replace(c, policy=plain)
    for i, w in enumerate(c.workloads):

        def leases_fail(t: list[AddressLease], c: Case = c, i: int = i) -> bool:
            return bool(t) and fails(_set_leases(c, i, t))

        c = _set_leases(c, i, _drop_each(w.addresses, leases_fail))
    return c


def describe(case: Case, fast: object, ref: object) -> str:
    return "\n".join(
        [
            f"fast evaluator {fast!r} != reference {ref!r}",
            "(a minimal case: the other workloads, rules and evidence did not matter)",
            "conv = " + pprint.pformat(case.conv, width=100),
            "policy = " + pprint.pformat(case.policy, width=100),
            "workloads = " + pprint.pformat(case.workloads, width=100),
            "dns = " + pprint.pformat(case.dns, width=100),
        ]
    )


def check(scenario: Scenario) -> None:
    s = scenario
    try:
        fast: list[Answer] | None = fast_answers(s.conversations, s.policy, s.workloads, s.dns)
    except Exception:
        fast = None  # find the conversation that makes it fail, one at a time
    for row, conv in enumerate(s.conversations):
        ref = reference_judge(conv, s.policy, s.workloads, s.dns)
        case = Case(s.policy, list(s.workloads), list(s.dns), conv)
        if fast is not None and fast[row] == ref:
            continue
        if fast is None and disagreement(case) is None:
            continue
        small = minimise(case)
        found = disagreement(small)
        assert found is not None
        raise AssertionError(describe(small, *found))
    if fast is None:  # fails on the whole table, though on no conversation alone
        fast_answers(s.conversations, s.policy, s.workloads, s.dns)


@settings(
    max_examples=int(os.environ.get("CELLWALL_FUZZ", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    # check() minimises a disagreement itself; Hypothesis' shrinking of whole scenarios
    # re-runs the fast evaluator for minutes.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(scenarios())
def test_fast_evaluator_agrees_with_the_reference(scenario: Scenario) -> None:
    check(scenario)


@settings(
    max_examples=max(10, int(os.environ.get("CELLWALL_FUZZ", "200")) // 20),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(wide_scenarios())
@pytest.mark.filterwarnings(
    "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"
)
def test_fast_evaluator_agrees_on_wide_policies(scenario: Scenario) -> None:
    check(scenario)


def test_the_tables_carry_the_conversations_and_evidence_unchanged() -> None:
    """The harness itself: what the fast evaluator receives is what the reference judged."""
    conv = {
        "client_ip": "fd00::1",
        "server_ip": "10.0.0.2",
        "proto": 58,
        "server_port": -1,
        "client_port": 128,
        "start": MOMENTS[1],
        "server_process": None,
        "http_method": None,
        "http_path": None,
        "icmp_code": 0,
    }
    assert conversation_table([conv]).to_pylist() == [conv]
    dns = dns_table([(MOMENTS[0], MOMENTS[2], "8.8.8.8", "api.example.com")])
    assert dns.to_pylist()[0]["valid_until"] == MOMENTS[2]


def test_the_harness_catches_a_planted_bug_and_minimises_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fast evaluator that lets override-deny through is caught, and the reported case
    keeps only what the disagreement needs."""
    real = judge

    def planted(conversations: pa.Table, *args: Any, **kw: Any) -> pa.Table:
        out = real(conversations, *args, **kw)
        wrong = pa.array([r == "od" for r in out["rule_id"].to_pylist()])
        verdict = pc.if_else(wrong, pa.scalar("allowed"), out["verdict"])
        return out.set_column(out.schema.get_field_index("verdict"), "verdict", verdict)

    monkeypatch.setitem(globals(), "judge", planted)
    web, db = Selector.of(role="web"), Selector.of(role="db")
    workloads = [
        Workload.of("a", labels={"role": "web"}, addresses=["10.0.0.1"]),
        Workload.of("b", labels={"role": "db"}, addresses=["10.0.0.2", "fd00::2"]),
        Workload.of("c", labels={"role": "dns"}, addresses=["10.0.0.3"]),
    ]
    policy = PolicySet(
        policies=(
            Policy(
                "one",
                (
                    Rule("allow", web, db, (parse_service("tcp/443"), parse_service("udp"))),
                    Rule(
                        "od",
                        web,
                        db,
                        (parse_service("tcp"), parse_service("icmp")),
                        action="override-deny",
                    ),
                ),
            ),
            Policy("two", (Rule("other", db, web, (parse_service("any"),)),)),
        ),
        iplists=(IPList("l", cidrs=("0.0.0.0/0",)),),
    )
    dns = [(MOMENTS[0], MOMENTS[2], "8.8.8.8", "api.example.com")]
    conv = {
        "client_ip": "10.0.0.1",
        "server_ip": "10.0.0.2",
        "proto": 6,
        "server_port": 443,
        "client_port": 40000,
        "start": MOMENTS[1],
        "server_process": None,
        "http_method": None,
        "http_path": None,
        "icmp_code": None,
    }
    innocent = dict(conv, server_ip="10.0.0.3")
    with pytest.raises(AssertionError) as caught:
        check(Scenario(policy, workloads, dns, [innocent, conv]))
    message = str(caught.value)
    assert "('allowed', 'od', False, True) != reference ('denied', 'od', False, True)" in message
    small = minimise(Case(policy, workloads, dns, conv))
    assert [w.name for w in small.workloads] == ["a", "b"]
    assert [w.addresses for w in small.workloads] == [
        (AddressLease("10.0.0.1"),),
        (AddressLease("10.0.0.2"),),
    ]
    assert small.dns == [] and small.policy.iplists == ()
    assert [(p.name, [(r.id, r.services) for r in p.rules]) for p in small.policy.policies] == [
        ("one", [("od", (parse_service("tcp"),))])
    ]
