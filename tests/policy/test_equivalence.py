"""The fast evaluator agrees with the reference evaluator on every conversation.

Random policy sets, inventories, DNS evidence and conversations (tests/policy/strategies.py)
go through ``cellwall.policy.judge.judge`` as one Arrow table and, one at a time, through
``tests/policy/reference.py``; every row must give the same verdict, deciding rule,
``unverified`` and ``blocked``. ``CELLWALL_FUZZ`` sets the number of examples (default 200).
"""

from __future__ import annotations

import os
import pprint
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings

from cellwall.evidence.dns import DNS_SCHEMA
from cellwall.model.inventory import Workload
from cellwall.model.policy import PolicySet
from cellwall.policy.judge import judge
from tests.policy.reference import reference_judge
from tests.policy.strategies import Scenario, scenarios

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


def describe(scenario: Scenario, conv: dict[str, Any], fast: object, ref: object, row: int) -> str:
    return "\n".join(
        [
            f"row {row}: fast evaluator {fast!r} != reference {ref!r}",
            "conversation:",
            pprint.pformat(conv, width=100),
            "policy:",
            pprint.pformat(scenario.policy, width=100),
            "workloads:",
            pprint.pformat(scenario.workloads, width=100),
            "dns:",
            pprint.pformat(scenario.dns, width=100),
        ]
    )


def check(scenario: Scenario) -> None:
    fast = fast_answers(scenario.conversations, scenario.policy, scenario.workloads, scenario.dns)
    for row, conv in enumerate(scenario.conversations):
        ref = reference_judge(conv, scenario.policy, scenario.workloads, scenario.dns)
        if fast[row] != ref:
            raise AssertionError(describe(scenario, conv, fast[row], ref, row))


@settings(
    max_examples=int(os.environ.get("CELLWALL_FUZZ", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios())
def test_fast_evaluator_agrees_with_the_reference(scenario: Scenario) -> None:
    check(scenario)


def test_the_tables_carry_the_conversations_and_evidence_unchanged() -> None:
    """The harness itself: what the fast evaluator receives is what the reference judged."""
    from tests.policy.strategies import MOMENTS

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
