"""Lowering: classes, scope, pinned workloads and the speed of a large lowering."""

from __future__ import annotations

import time

import numpy as np

from cellwall.model.inventory import Workload
from cellwall.model.policy import Policy, PolicySet, Rule, Selector, parse_service
from cellwall.policy.ir import PolicyIR
from tests.policy.test_reference import CONTRACT, ESTATE


def test_workloads_with_one_label_set_share_a_class() -> None:
    twins = [
        Workload.of(f"w{i}", labels={"app": "a", "role": "r"}, addresses=[f"10.0.0.{i}"])
        for i in range(5)
    ]
    ir = PolicyIR(PolicySet(), twins + ESTATE)
    assert len({ir.classes.workload_class[w.name] for w in twins}) == 1
    assert ir.classes.count == 1 + len({w.labels for w in ESTATE})


def test_a_named_workload_gets_a_class_of_its_own() -> None:
    twins = [Workload.of(f"w{i}", labels={"app": "a"}) for i in range(3)]
    rule = Rule("r", Selector(workload="w1"), Selector.of(app="a"), (parse_service("tcp/1"),))
    ir = PolicyIR(PolicySet(policies=(Policy("p", (rule,)),)), twins)
    wc = ir.classes.workload_class
    assert wc["w0"] == wc["w2"] != wc["w1"]
    assert ir.classes.name(wc["w1"]) == "workload:w1"


def test_scope_narrows_label_sides_but_not_from_outside_scope() -> None:
    ir = PolicyIR(CONTRACT, ESTATE)
    by_id = {r.id: r for r in ir.rules}
    wc = ir.classes.workload_class
    web_to_api = by_id["web-to-api"]
    assert web_to_api.src.classes[wc["pay-web-1"]]
    assert not web_to_api.src.classes[wc["pay-web-dev"]]  # env=dev is outside the scope
    reporting = by_id["reporting-reads-db"]
    assert reporting.src.classes[wc["rep-etl-1"]]
    assert reporting.dst.classes[wc["pay-db-1"]]
    internet = by_id["web-from-internet"]
    assert internet.src.unmanaged is not None and not internet.src.classes.any()


def test_lowering_ten_thousand_workloads_and_five_thousand_rules_is_quick() -> None:
    rng = np.random.default_rng(1)
    ws = [
        Workload.of(
            f"w{i}",
            labels={"app": f"a{i % 100}", "role": f"r{i // 100 % 5}", "env": f"e{i // 500 % 4}"},
        )
        for i in range(10_000)
    ]
    rules = tuple(
        Rule(
            f"r{i}",
            Selector.of(app=f"a{rng.integers(100)}", role=f"r{rng.integers(5)}"),
            Selector.of(role=f"r{rng.integers(5)}"),
            (parse_service(f"tcp/{1000 + int(rng.integers(300))}"),),
        )
        for i in range(5_000)
    )
    t0 = time.perf_counter()
    ir = PolicyIR(PolicySet(policies=(Policy("big", rules),)), ws)
    took = time.perf_counter() - t0
    assert ir.classes.count == 2_000 and len(ir.rules) == 5_000
    # the floor (2 s) is measured by bench/bench_policy.py on a quiet machine; here, with the
    # rest of the suite running beside it, only a gross regression fails
    assert took < 15.0, f"lowering took {took:.2f} s"
