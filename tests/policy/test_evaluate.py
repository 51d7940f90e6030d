"""The vectorised core: batching, cache paths and the result columns do not change verdicts."""

from __future__ import annotations

from dataclasses import replace

import pyarrow as pa
import pytest

from cellwall.model.policy import MODES, Policy, PolicySet, Rule, Selector, Settings
from cellwall.policy import groups as groups_module
from cellwall.policy.evaluate import RESULT_SCHEMA, evaluate
from cellwall.policy.judge import Judge, judge
from tests.policy.test_equivalence import conversation_table
from tests.policy.test_reference import CONTRACT, ESTATE, conv, svc

CONVS = [
    conv("8.8.8.8", "10.1.1.1", "tcp/443"),
    conv("10.1.1.1", "10.1.2.2", "tcp/8443"),
    conv("10.1.2.2", "10.1.3.3", "tcp/5432"),
    conv("10.2.0.5", "10.1.3.3", "tcp/5432"),
    conv("10.1.1.50", "10.1.3.3", "tcp/5432"),
    conv("10.1.1.1", "10.4.0.53", "udp/53"),
    conv("10.1.1.50", "10.4.0.53", "udp/53"),
    conv("10.4.0.9", "10.1.2.2", "tcp/9100"),
    conv("10.1.1.1", "10.1.3.3", "tcp/5432"),
    conv("8.8.8.8", "9.9.9.9", "tcp/22"),
] * 3


def rows(t: pa.Table) -> list[tuple[str, str | None, bool, bool]]:
    return [(r["verdict"], r["rule_id"], r["unverified"], r["blocked"]) for r in t.to_pylist()]


def test_the_contract_example_verdicts() -> None:
    got = rows(judge(conversation_table(CONVS[:10]), CONTRACT, ESTATE))
    assert got == [
        ("allowed", "web-from-internet", False, False),
        ("allowed", "web-to-api", False, False),
        ("allowed", "api-to-db", False, False),
        ("allowed", "reporting-reads-db", False, False),
        ("denied", "dev-never-prod", False, True),
        ("allowed", "dns", False, False),
        ("denied", "dev-never-prod", False, True),  # before dns (same: [env] differs anyway)
        ("allowed", "monitoring-scrapes", False, False),
        ("not-allowed", None, False, True),
        ("not-allowed", None, False, False),  # two unmanaged ends: nobody enforces
    ]


def test_batches_of_any_size_give_the_same_verdicts() -> None:
    whole = rows(judge(conversation_table(CONVS), CONTRACT, ESTATE))
    with Judge(CONTRACT, ESTATE) as j:
        pieces = []
        for i in range(0, len(CONVS), 4):
            out = j.judge(conversation_table(CONVS[i : i + 4]))
            pieces += rows(
                out.select(["verdict", "rule_id", "unverified", "blocked"]).cast(
                    pa.schema(
                        [("verdict", pa.string()), ("rule_id", pa.string()),
                         ("unverified", pa.bool_()), ("blocked", pa.bool_())]
                    )
                )
            )  # fmt: skip
    assert pieces == whole


def test_the_sparse_pair_cache_agrees_with_the_dense_one(monkeypatch: pytest.MonkeyPatch) -> None:
    dense = rows(judge(conversation_table(CONVS), CONTRACT, ESTATE))
    monkeypatch.setattr(groups_module, "_MAX_DENSE", 0)
    assert rows(judge(conversation_table(CONVS), CONTRACT, ESTATE)) == dense


def test_result_columns_and_rule_codes() -> None:
    with Judge(CONTRACT, ESTATE) as j:
        out = evaluate(j.identify(conversation_table(CONVS[:10])), j.ir)
    assert out.schema == RESULT_SCHEMA
    codes = out["rule_code"].to_pylist()
    ids = out["rule_id"].cast(pa.string()).to_pylist()
    assert [j.ir.rule_id(c) for c in codes] == ids


@pytest.mark.parametrize("default", MODES)
def test_an_uncovered_workload_takes_the_default_mode(default: str) -> None:
    rule = Rule("r", Selector.of(role="web"), Selector.of(role="api"), svc("tcp/1"), action="deny")
    ps = PolicySet(policies=(Policy("p", (rule,)),), settings=Settings(default_mode=default))
    out = judge(
        conversation_table(
            [conv("10.1.1.1", "10.1.2.2", "tcp/1"), conv("10.1.1.1", "10.1.2.2", "tcp/2")]
        ),
        ps,
        ESTATE,
    )
    blocked = out["blocked"].to_pylist()
    assert (
        blocked
        == {"visibility": [False, False], "selective": [True, False], "full": [True, True]}[default]
    )


def test_the_strictest_scoped_mode_wins_for_a_workload() -> None:
    loose = Policy("a-loose", scope=Selector.of(app="payments"), mode="visibility")
    strict = Policy("b-strict", scope=Selector.of(role="db"), mode="full")
    ps = PolicySet(policies=(loose, strict), settings=Settings(default_mode="visibility"))
    out = judge(
        conversation_table(
            [conv("10.5.0.1", "10.1.3.3", "tcp/1"), conv("10.5.0.1", "10.1.2.2", "tcp/1")]
        ),
        ps,
        ESTATE,
    )
    assert out["blocked"].to_pylist() == [True, False]  # pay-db-1 is full, pay-api-1 visibility


def test_an_empty_inventory_and_policy_judge_everything_not_allowed() -> None:
    out = judge(conversation_table(CONVS[:3]), PolicySet(), [])
    assert out["verdict"].to_pylist() == ["not-allowed"] * 3
    assert out["blocked"].to_pylist() == [False] * 3


def test_a_policy_can_be_judged_twice_with_new_addresses() -> None:
    ps = replace(CONTRACT)
    with Judge(ps, ESTATE) as j:
        first = j.judge(conversation_table([conv("8.8.8.8", "10.1.1.1")]))
        second = j.judge(
            conversation_table([conv("1.1.1.1", "10.1.1.1"), conv("10.9.9.9", "10.1.1.1")])
        )
    assert first["verdict"].cast(pa.string()).to_pylist() == ["allowed"]
    assert second["verdict"].cast(pa.string()).to_pylist() == ["allowed", "not-allowed"]
