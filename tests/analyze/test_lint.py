"""Lint: each check on a small policy written for it, and against the references on random
policies: a rule reported dead never decides any conversation of the brute-force reference,
and a rule not reported changes the canonical connectivity when it is removed."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings

from cellwall.analyze.lint import CHECKS, lint
from cellwall.analyze.space import Space
from cellwall.errors import Diagnostic
from cellwall.model.policy import IPList, Policy, PolicySet, Rule, Selector, parse_service
from cellwall.policy.connectivity import connectivity
from cellwall.policy.ir import PolicyIR
from tests.analyze.reference import brute
from tests.analyze.test_blast import _estate
from tests.analyze.test_space import ENDS, Case, cases

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEAD = {"shadowed", "overridden", "matches-nothing"}
S = Selector.of


def _without(ps: PolicySet, rule_id: str) -> PolicySet:
    return replace(
        ps,
        policies=tuple(
            replace(p, rules=tuple(r for r in p.rules if r.id != rule_id)) for p in ps.policies
        ),
    )


@SETTINGS
@given(cases(most=4))
def test_dead_rules_never_decide_and_live_ones_matter(case: Case) -> None:
    ps, ws = case
    report = lint(Space(ps, ws))
    flagged = {f.rules[0]: f.check for f in report.findings if f.check in DEAD | {"redundant"}}
    ref = brute(ps, ws, ENDS)
    deciders = {rule for _, rule, _, _ in ref.verdict.values()}
    base = connectivity(PolicyIR(ps, ws)).triples
    for _, r in ps.rules():
        check = flagged.get(r.id)
        if check in DEAD:
            assert r.id not in deciders, (r.id, check)
        elif check == "redundant":
            assert connectivity(PolicyIR(_without(ps, r.id), ws)).triples == base
        else:
            assert connectivity(PolicyIR(_without(ps, r.id), ws)).triples != base, r.id


def _findings(
    ps: PolicySet, diags: list[Diagnostic] | None = None
) -> dict[str, list[tuple[str, ...]]]:
    _, ws = _estate()
    out: dict[str, list[tuple[str, ...]]] = {}
    for f in lint(Space(ps, ws), diags or []).findings:
        out.setdefault(f.check, []).append(f.rules)
        assert (
            f.sentence and f.fix == CHECKS[f.check].fix and f.severity == CHECKS[f.check].severity
        )
    return out


def test_each_check_finds_what_it_names() -> None:
    ps, _ = _estate()
    tcp = lambda t: (parse_service(t),)  # noqa: E731
    rules = (
        *ps.policies[0].rules,
        Rule("web-api-again", S(role="web"), S(role="api"), tcp("tcp/8443")),
        Rule("api-db-wide", S(role="api"), S(role="db"), tcp("tcp/5000-6000")),
        Rule("no-web", S(role="web"), S(role="api"), tcp("tcp/8443"), action="deny"),
        Rule("stop-db", S(role="api"), S(role="db"), tcp("tcp/5432"), action="override-deny"),
        Rule("nothing", S(role="ghost"), S(role="db"), tcp("tcp/1")),
        Rule("open", Selector(any=True), Selector(any=True), tcp("tcp")),
        Rule("zero", Selector(cidrs=("0.0.0.0/0",)), S(role="web"), tcp("tcp/443")),
    )
    policy = PolicySet((Policy("p", rules),), (IPList("x", ("10.0.0.0/8",)),))
    msg = "rule `zero` was due for review on 2020-01-01"
    diag = Diagnostic("p.yaml", 3, 5, "review-overdue", msg, severity="warning")
    found = _findings(policy, [diag])
    assert ("api-db", "stop-db") in found["overridden"]
    assert found["matches-nothing"] == [("nothing",)]
    assert ("web-api-again", "web-api") in found["shadowed"]
    assert ("no-web", "web-api") in found["overridden"]  # a deny below an allow
    assert ("api-db-wide", "stop-db") in found["conflict"]
    assert found["any-to-any"] == [("open",)] and found["all-ports"] == [("open",)]
    assert found["whole-internet"] == [("zero",)]
    assert found["review-overdue"] == [("zero",)]
