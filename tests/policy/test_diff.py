"""The semantic diff: exactly the class triples whose verdict changes, nothing for policies
that mean the same, and the observed conversations whose verdict changes."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pytest

from cellwall.inventory.loader import load_inventory_text
from cellwall.model.inventory import Workload
from cellwall.model.policy import PolicySet
from cellwall.policy.diff import semantic_diff
from cellwall.policy.loader import load_policy_texts

INVENTORY = "---\n".join(
    "apiVersion: cellwall/v1\nkind: Workload\n"
    f"metadata: {{name: {name}}}\nspec: {{addresses: [{ip}], labels: {labels}}}\n"
    for name, ip, labels in [
        ("web-1", "10.9.0.1", "{app: shop, role: web, env: prod}"),
        ("web-2", "10.9.0.4", "{app: shop, role: web, env: prod}"),
        ("api-1", "10.9.0.2", "{app: shop, role: api, env: prod}"),
        ("db-1", "10.9.0.3", "{app: shop, role: db, env: prod}"),
        ("cache-1", "10.9.0.5", "{app: shop, role: cache, env: prod}"),
    ]
)
WEB = "app=shop,env=prod,role=web"
API = "app=shop,env=prod,role=api"
CACHE = "app=shop,env=prod,role=cache"


@pytest.fixture(scope="module")
def workloads() -> list[Workload]:
    inv = load_inventory_text(INVENTORY, "inventory.yaml")
    assert not inv.errors
    return list(inv.workloads)


def policy(workloads: list[Workload], rules: list[str], extra: str = "") -> PolicySet:
    text = (
        "apiVersion: cellwall/v1\nkind: Policy\nmetadata: {name: shop, owner: team-shop}\n"
        "spec:\n  scope: {app: shop}\n  rules:\n" + "".join(f"    - {r}\n" for r in rules)
    )
    files = {"policy.yaml": text}
    if extra:
        files["extra.yaml"] = extra
    result = load_policy_texts(files, workloads=workloads, today=date(2026, 11, 1))
    assert not result.errors, result.errors
    return result.policy_set


BEFORE = [
    "{id: web-to-api, from: {role: web}, to: {role: api}, services: [tcp/8443]}",
    "{id: api-to-db, from: {role: api}, to: {role: db}, services: [tcp/5432]}",
    "{id: web-to-cache, from: {role: web}, to: {role: cache}, services: [tcp/6379]}",
]
AFTER = [
    "{id: web-to-api, from: {role: web}, to: {role: api}, services: [tcp/8443-8450]}",
    "{id: api-to-db, from: {role: api}, to: {role: db}, services: [tcp/5432]}",
]


def test_a_grown_port_range_and_a_removed_rule_change_exactly_those_triples(workloads) -> None:
    a, b = policy(workloads, BEFORE), policy(workloads, AFTER)
    d = semantic_diff(a, b, workloads)
    assert d.changes == [
        {
            "client": WEB,
            "server": API,
            "service": "tcp/8444-8450",
            "before": "not-allowed",
            "after": "allowed",
        },
        {
            "client": WEB,
            "server": CACHE,
            "service": "tcp/6379",
            "before": "allowed",
            "after": "not-allowed",
        },
    ]
    doc = d.to_dict()
    assert (doc["became_allowed"], doc["became_blocked"]) == (1, 1)
    assert d.probes > 0
    # and back again: the same triples, before and after swapped
    back = semantic_diff(b, a, workloads).changes
    assert back == [c | {"before": c["after"], "after": c["before"]} for c in d.changes]


def test_equal_policies_written_differently_change_nothing(workloads) -> None:
    a = policy(
        workloads,
        [
            "{id: web-to-api, from: {role: web}, to: {role: api}, services: [tcp/80, tcp/81]}",
            "{id: api-to-db, from: {role: api}, to: {role: db}, services: [tcp/5432]}",
            "{id: no-rdp, action: deny, from: {any: true}, to: {any: true}, services: [tcp/81]}",
        ],
    )
    b = policy(
        workloads,
        [
            "{id: no-rdp, action: deny, from: {any: true}, to: {any: true}, services: [tcp/81]}",
            "{id: db-from-api, from: {role: api}, to: {role: db}, services: [tcp/5432]}",
            "{id: web-to-api, from: {role: web}, to: {role: api}, services: [tcp/80-81]}",
        ],
    )
    assert semantic_diff(a, b, workloads).changes == []
    assert semantic_diff(a, a, workloads).changes == []


def test_a_changed_deny_is_seen_through_precedence(workloads) -> None:
    """Adding a deny under an allow changes nothing; adding an override-deny does."""
    base = policy(workloads, BEFORE)
    deny = policy(
        workloads,
        [*BEFORE, "{id: d, action: deny, from: {role: web}, to: {role: cache}, services: [tcp]}"],
    )
    changes = semantic_diff(base, deny, workloads).changes
    # every tcp port to the cache but 6379 goes from not-allowed to denied; 6379 stays allowed
    assert changes and all(c["client"] == WEB and c["server"] == CACHE for c in changes)
    assert {(c["before"], c["after"]) for c in changes} == {("not-allowed", "denied")}
    assert "tcp/6379" not in {c["service"] for c in changes}
    override = policy(
        workloads,
        [
            *BEFORE,
            "{id: o, action: override-deny, from: {role: web}, to: {role: cache},"
            " services: [tcp/6379]}",
        ],
    )
    assert semantic_diff(base, override, workloads).changes == [
        {"client": WEB, "server": CACHE, "service": "tcp/6379", "before": "allowed",
         "after": "denied"}
    ]  # fmt: skip


def _partners(cidr: str) -> str:
    return (
        "apiVersion: cellwall/v1\nkind: IPList\nmetadata: {name: partners}\n"
        f"spec: {{cidrs: [{cidr}]}}\n"
    )


PARTNER_RULE = "{id: partners-in, from: {iplist: partners}, to: {role: web}, services: [tcp/443]}"


def test_a_grown_ip_list_is_a_change_for_the_new_addresses(workloads) -> None:
    """partners grows from 203.0.113.0/25 to 203.0.113.0/24: 203.0.113.128-255 may now reach
    the web tier on tcp/443. The diff must say so (it probes CIDR boundaries)."""
    a = policy(workloads, [PARTNER_RULE], _partners("203.0.113.0/25"))
    b = policy(workloads, [PARTNER_RULE], _partners("203.0.113.0/24"))
    changes = semantic_diff(a, b, workloads).changes
    assert changes, "203.0.113.128/25 became allowed to the web tier and the diff is silent"
    assert all(c["server"] == WEB and c["service"] == "tcp/443" for c in changes)
    assert {(c["before"], c["after"]) for c in changes} == {("not-allowed", "allowed")}


def test_a_new_ip_list_start_is_a_change(workloads) -> None:
    a = policy(workloads, [PARTNER_RULE], _partners("203.0.113.0/25"))
    b = policy(workloads, [PARTNER_RULE], _partners("198.51.100.0/24"))
    changes = semantic_diff(a, b, workloads).changes
    pairs = {(c["client"], c["before"], c["after"]) for c in changes}
    assert ("address 198.51.100.0", "not-allowed", "allowed") in pairs
    assert ("address 203.0.113.0", "allowed", "not-allowed") in pairs


def _conv(client: str, server: str, port: int, n: int) -> list[dict[str, Any]]:
    at = datetime(2026, 11, 2, 12, tzinfo=UTC)
    return [
        {
            "conversation_id": f"6:{client}:{40000 + i}>{server}:{port}",
            "client_ip": client,
            "server_ip": server,
            "proto": 6,
            "server_port": port,
            "client_port": 40000 + i,
            "service": f"tcp/{port}",
            "start": at,
        }
        for i in range(n)
    ]


def test_observed_conversations_whose_verdict_changes(workloads) -> None:
    rows = (
        _conv("10.9.0.1", "10.9.0.5", 6379, 3)  # web -> cache: allowed, then not-allowed
        + _conv("10.9.0.4", "10.9.0.2", 8444, 2)  # web -> api 8444: not-allowed, then allowed
        + _conv("10.9.0.2", "10.9.0.3", 5432, 5)  # api -> db: allowed before and after
    )
    schema = pa.schema(
        [
            ("conversation_id", pa.string()),
            ("client_ip", pa.string()),
            ("server_ip", pa.string()),
            ("proto", pa.uint8()),
            ("server_port", pa.int32()),
            ("client_port", pa.int32()),
            ("service", pa.string()),
            ("start", pa.timestamp("us", tz="UTC")),
        ]
    )
    conv = pa.Table.from_pylist(rows, schema=schema)
    d = semantic_diff(policy(workloads, BEFORE), policy(workloads, AFTER), workloads, conv)
    assert dict(d.observed) == {("allowed", "not-allowed"): 3, ("not-allowed", "allowed"): 2}
    assert len(d.observed_examples) == 5
    assert {(e["client_workload"], e["server_workload"]) for e in d.observed_examples} == {
        ("web-1", "cache-1"),
        ("web-2", "api-1"),
    }
    text = str(d)
    assert "observed: 3 conversation(s) allowed → not-allowed" in text
    assert "observed: 2 conversation(s) not-allowed → allowed" in text
