"""`explain`: every matching rule in precedence order, the one that decides, narrowing facts,
the three ways to name an end, and bad input (through the CLI, for the exit code)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cellwall.cli import app
from cellwall.errors import UsageError
from cellwall.inventory.loader import load_inventory_text
from cellwall.model.inventory import Workload
from cellwall.model.policy import PolicySet
from cellwall.policy.explain import Explanation, explain
from cellwall.policy.loader import load_policy_texts
from tests.policy.reference import reference_judge

AT = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
INVENTORY = """\
apiVersion: cellwall/v1
kind: Workload
metadata: {name: web-1}
spec: {addresses: [10.9.0.1], labels: {app: shop, role: web, env: prod}}
---
apiVersion: cellwall/v1
kind: Workload
metadata: {name: api-1}
spec: {addresses: [10.9.0.2], labels: {app: shop, role: api, env: prod}}
---
apiVersion: cellwall/v1
kind: Workload
metadata: {name: api-q}
spec: {addresses: [10.9.0.6], labels: {app: shop, role: api, env: prod, quarantine: "yes"}}
---
apiVersion: cellwall/v1
kind: Workload
metadata: {name: db-1}
spec: {addresses: [10.9.0.3], labels: {app: shop, role: db, env: prod}}
---
apiVersion: cellwall/v1
kind: Workload
metadata: {name: batch-1}
spec:
  addresses: [{ip: 10.9.0.7, from: 2026-11-01T00:00:00Z, until: 2026-11-02T00:00:00Z}]
  labels: {app: shop, role: batch, env: prod}
"""
# Written in the order deny, allow, override-deny (policies are ordered by name), so that
# the precedence order differs from the written one.
POLICY = """\
apiVersion: cellwall/v1
kind: Policy
metadata: {name: a-guards, owner: security}
spec:
  rules:
    - {id: no-db-from-anyone, action: deny, from: {any: true}, to: {role: db},
       services: [tcp/5432]}
---
apiVersion: cellwall/v1
kind: Policy
metadata: {name: b-shop, owner: team-shop}
spec:
  scope: {app: shop}
  mode: full
  rules:
    - {id: api-to-db, from: {role: api}, to: {role: db}, services: [tcp/5432]}
    - {id: prod-to-db-range, from: {env: prod}, to: {role: db}, services: [tcp/5000-6000]}
    - id: web-gets-api
      from: {role: web}
      to: {role: api}
      services: [{service: tcp/8080, http: {methods: [GET], paths: ["/api/.*"]}}]
    - {id: batch-to-db, from: {workload: batch-1}, to: {role: db}, services: [tcp/6432]}
---
apiVersion: cellwall/v1
kind: Policy
metadata: {name: c-quarantine, owner: security}
spec:
  rules:
    - {id: quarantine, action: override-deny, from: {quarantine: "yes"}, to: {any: true},
       services: [any]}
"""


@pytest.fixture(scope="module")
def world() -> tuple[PolicySet, list[Workload]]:
    inv = load_inventory_text(INVENTORY, "inventory.yaml")
    assert not inv.errors
    result = load_policy_texts(
        {"policy.yaml": POLICY}, workloads=inv.workloads, today=date(2026, 11, 1)
    )
    assert not result.errors, result.errors
    return result.policy_set, list(inv.workloads)


def _ex(world: tuple[PolicySet, list[Workload]], src: str, dst: str, svc: str, **facts: str):
    ps, wl = world
    return explain(ps, wl, src, dst, svc, AT, facts=facts or None)


def _listing(e: Explanation) -> list[tuple[str, str, bool]]:
    return [(m.rule_id, m.action, m.decides) for m in e.matches]


def test_every_matching_rule_in_precedence_order_one_decides(world) -> None:
    e = _ex(world, "api-q", "db-1", "tcp/5432")
    assert _listing(e) == [
        ("quarantine", "override-deny", True),
        ("api-to-db", "allow", False),
        ("prod-to-db-range", "allow", False),
        ("no-db-from-anyone", "deny", False),
    ]
    assert (e.verdict, e.rule_id, e.blocked) == ("denied", "quarantine", True)
    assert all("quarantine comes first" in m.why for m in e.matches[1:])
    assert [m.policy for m in e.matches] == ["c-quarantine", "b-shop", "b-shop", "a-guards"]


def test_allow_decides_over_deny_and_the_verdict_agrees_with_the_reference(world) -> None:
    e = _ex(world, "api-1", "db-1", "tcp/5432")
    assert _listing(e) == [
        ("api-to-db", "allow", True),
        ("prod-to-db-range", "allow", False),
        ("no-db-from-anyone", "deny", False),
    ]
    assert (e.verdict, e.rule_id, e.blocked) == ("allowed", "api-to-db", False)
    conv = {
        "client_ip": "10.9.0.2",
        "server_ip": "10.9.0.3",
        "proto": 6,
        "server_port": 5432,
        "client_port": 40000,
        "start": AT,
        **dict.fromkeys(("server_process", "http_method", "http_path", "icmp_code")),
    }
    ps, wl = world
    assert reference_judge(conv, ps, wl)[:2] == ("allowed", "api-to-db")


def test_an_end_by_workload_by_ip_and_by_labels(world) -> None:
    by_name = _ex(world, "api-1", "workload:db-1", "tcp/5432")
    by_ip = _ex(world, "10.9.0.2", "10.9.0.3", "tcp/5432")
    assert by_name.client == "workload:api-1 (10.9.0.2)"
    assert by_name.server == "workload:db-1 (10.9.0.3)"
    assert _listing(by_ip) == _listing(by_name)
    assert (by_ip.verdict, by_ip.rule_id) == ("allowed", "api-to-db")
    labels = _ex(world, "app=shop,role=web,env=prod", "db-1", "tcp/5432")
    assert labels.client.startswith("labels ")
    assert _listing(labels) == [
        ("prod-to-db-range", "allow", True),
        ("no-db-from-anyone", "deny", False),
    ]
    dev = _ex(world, "app=shop,role=web,env=dev", "db-1", "tcp/5432")
    assert _listing(dev) == [("no-db-from-anyone", "deny", True)]
    assert (dev.verdict, dev.blocked) == ("denied", True)
    # the same labels plus quarantine=yes: the override-deny comes first
    q = _ex(world, "app=shop,role=api,env=prod,quarantine=yes", "db-1", "tcp/5432")
    assert [m.rule_id for m in q.matches if m.decides] == ["quarantine"]
    # an unmanaged address is matched by `any: true` in an unscoped policy only
    outside = _ex(world, "203.0.113.5", "db-1", "tcp/5432")
    assert _listing(outside) == [("no-db-from-anyone", "deny", True)]
    assert outside.client == "203.0.113.5"


def test_a_port_range_rule_matches_inside_and_not_outside(world) -> None:
    inside = _ex(world, "web-1", "db-1", "tcp/5999")
    assert _listing(inside) == [("prod-to-db-range", "allow", True)]
    outside = _ex(world, "web-1", "db-1", "tcp/6001")
    assert (outside.verdict, outside.matches, outside.blocked) == ("not-allowed", [], True)
    assert "no rule matches" in str(outside)


def test_a_narrowed_http_rule_is_unverified_without_facts_and_verified_with_them(world) -> None:
    bare = _ex(world, "web-1", "api-1", "tcp/8080")
    assert (bare.verdict, bare.rule_id, bare.unverified) == ("allowed", "web-gets-api", True)
    (m,) = bare.matches
    assert m.decides and m.unverified and "unverified" in m.why
    assert "(unverified)" in str(bare)
    full = _ex(world, "web-1", "api-1", "tcp/8080", http_method="GET", http_path="/api/orders")
    assert (full.verdict, full.rule_id, full.unverified) == ("allowed", "web-gets-api", False)
    assert [(x.decides, x.unverified) for x in full.matches] == [(True, False)]
    wrong = _ex(world, "web-1", "api-1", "tcp/8080", http_method="POST", http_path="/api/x")
    assert (wrong.verdict, wrong.matches) == ("not-allowed", [])
    wrong_path = _ex(world, "web-1", "api-1", "tcp/8080", http_method="GET", http_path="/admin")
    assert wrong_path.verdict == "not-allowed"


def test_the_json_form_lists_the_same_matches(world) -> None:
    doc = _ex(world, "api-q", "db-1", "tcp/5432").to_dict()
    assert doc["verdict"] == "denied" and doc["rule"] == "quarantine"
    assert doc["at"] == "2026-11-02T12:00:00Z"
    assert [m["rule"] for m in doc["matches"]] == [
        "quarantine",
        "api-to-db",
        "prod-to-db-range",
        "no-db-from-anyone",
    ]
    assert [m["decides"] for m in doc["matches"]] == [True, False, False, False]


def test_a_workload_outside_its_address_lease_keeps_its_name(world) -> None:
    """batch-1 owns 10.9.0.7 only on 1 November. Explained on 2 November it has no address,
    but it is still batch-1: `from: {workload: batch-1}` must match it, as it does inside
    its lease."""
    ps, wl = world
    inside = explain(ps, wl, "batch-1", "db-1", "tcp/6432", datetime(2026, 11, 1, 12, tzinfo=UTC))
    assert (inside.verdict, inside.rule_id) == ("allowed", "batch-to-db")
    outside = explain(ps, wl, "batch-1", "db-1", "tcp/6432", AT)
    assert outside.client == "workload:batch-1"
    assert (outside.verdict, outside.rule_id) == ("allowed", "batch-to-db")


def test_bad_ends_and_services_raise_usage_errors(world) -> None:
    with pytest.raises(UsageError, match="not an IP address, a workload or labels"):
        _ex(world, "no-such-workload", "db-1", "tcp/5432")
    with pytest.raises(UsageError, match="above 65535"):
        _ex(world, "api-1", "db-1", "tcp/99999")
    with pytest.raises(UsageError, match="one protocol and port"):
        _ex(world, "api-1", "db-1", "any")


def test_a_port_range_is_not_one_conversation(world) -> None:
    """`explain` judges one conversation; tcp/5000-6001 spans allowed and not-allowed ports
    and must be refused, not judged as tcp/5000."""
    with pytest.raises(UsageError, match="one protocol and port"):
        _ex(world, "web-1", "db-1", "tcp/5000-6001")


# ---------------------------------------------------------------------------------------------
# Through the CLI: exit codes and messages

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("explain-cli")
    (root / "inventory.yaml").write_text(INVENTORY)
    (root / "policy").mkdir()
    (root / "policy" / "policy.yaml").write_text(POLICY)
    return root / "home", root / "inventory.yaml", root / "policy"


def _cli(files: tuple[Path, Path, Path], *args: str):
    home, inv, pol = files
    common = ["--home", str(home), "--inventory", str(inv), "--policy", str(pol)]
    return runner.invoke(app, ["explain", *args, *common, "--at", "2026-11-02T12:00:00Z"])


def test_cli_unknown_workload_exits_2_with_a_clear_message(files) -> None:
    r = _cli(files, "no-such-workload", "db-1", "tcp/5432")
    assert r.exit_code == 2
    assert "client 'no-such-workload' is not an IP address, a workload or labels" in r.stderr
    assert r.stdout == ""


def test_cli_bad_service_exits_2_with_a_clear_message(files) -> None:
    r = _cli(files, "api-1", "db-1", "tcp/99999")
    assert r.exit_code == 2
    assert "service 'tcp/99999'" in r.stderr and "above 65535" in r.stderr
    r = _cli(files, "api-1", "db-1", "bogus/1")
    assert r.exit_code == 2 and "bogus" in r.stderr


def test_cli_explain_facts_make_the_verdict_verified(files) -> None:
    import json

    r = _cli(files, "web-1", "api-1", "tcp/8080", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["unverified"] is True
    r = _cli(
        files,
        "web-1",
        "api-1",
        "tcp/8080",
        "--http-method",
        "GET",
        "--http-path",
        "/api/a",
        "--json",
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert (doc["verdict"], doc["rule"], doc["unverified"]) == ("allowed", "web-gets-api", False)
