"""Rule expiry: ``expires:`` in the language, refused by compilers unless told, and kept
apart from ``review_by``, which only makes a rule overdue."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from cellwall.errors import UsageError
from cellwall.model.policy import PolicySet
from cellwall.policy.loader import load_policy_texts
from cellwall.services.compile import compile_policy, expired_rules, overdue_rules
from tests.targets.common import AT, fixture_estate

TODAY = date(2026, 11, 24)

RULE = """\
apiVersion: cellwall/v1
kind: Policy
metadata: {{name: p, owner: team}}
spec:
  rules:
    - id: r1
      from: {{role: web}}
      to: {{role: api}}
      services: [tcp/443]
      {extra}
"""


def _load(extra: str) -> tuple[PolicySet | None, list[tuple[str, str]]]:
    res = load_policy_texts({"p.yaml": RULE.format(extra=extra)}, today=TODAY)
    return res.policy_set, [(d.code, d.severity) for d in res.diagnostics]


def test_expires_is_read_and_an_expired_rule_is_warned_about() -> None:
    ps, found = _load("expires: 2026-11-20")
    assert ps is not None
    (_, rule) = next(iter(ps.rules()))
    assert rule.expires == date(2026, 11, 20) and rule.review_by is None
    assert ("rule-expired", "warning") in found
    _, later = _load("expires: 2026-12-31")
    assert "rule-expired" not in {code for code, _ in later}


def test_a_bad_expiry_date_names_the_field() -> None:
    res = load_policy_texts({"p.yaml": RULE.format(extra="expires: soon")}, today=TODAY)
    bad = [d for d in res.diagnostics if d.code == "bad-date"]
    assert bad and "expires" in bad[0].message and bad[0].line == 10


def _expire(ps: PolicySet, rule_id: str, **dates: date) -> PolicySet:
    pols = tuple(
        replace(p, rules=tuple(replace(r, **dates) if r.id == rule_id else r for r in p.rules))
        for p in ps.policies
    )
    return replace(ps, policies=pols)


def test_compilers_refuse_expired_rules_unless_told() -> None:
    ps, workloads = fixture_estate()
    rule_id = next(iter(ps.rules()))[1].id
    old = _expire(ps, rule_id, expires=date(2026, 11, 1))
    assert expired_rules(old, TODAY) == [(rule_id, date(2026, 11, 1))]
    refused = rf"1 rule\(s\) expired: {rule_id} \(expires 2026-11-01\)"
    for target in ("nftables", "k8s"):
        with pytest.raises(UsageError, match=refused):
            compile_policy(old, workloads, target, at=AT, today=TODAY)
    arts = compile_policy(old, workloads, "nftables", at=AT, today=TODAY, allow_expired=True)
    assert any("--allow-expired" in n and rule_id in n for n in arts.notes)
    assert arts.files


def test_an_overdue_review_is_noted_not_refused() -> None:
    ps, workloads = fixture_estate()
    rule_id = next(iter(ps.rules()))[1].id
    overdue = _expire(ps, rule_id, review_by=date(2026, 10, 1), expires=date(2027, 6, 1))
    assert overdue_rules(overdue, TODAY) == [(rule_id, date(2026, 10, 1))]
    assert expired_rules(overdue, TODAY) == []
    arts = compile_policy(overdue, workloads, "nftables", at=AT, today=TODAY)
    assert any("overdue for review" in n and rule_id in n for n in arts.notes)
