"""Rule-based label hygiene: behaviour that a workload's own labels rule out."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

from cellwall.discover.edges import Edge
from cellwall.discover.label_rules import public_iplists, rule_findings
from cellwall.model.inventory import Workload
from cellwall.services.map import MapQuery, hygiene_report
from cellwall.workspace import Workspace

T = datetime(2026, 11, 2, tzinfo=UTC)


def _w(name: str, role: str, env: str = "prod") -> Workload:
    return Workload.of(name, labels={"app": "shop", "role": role, "env": env})


def _e(client: str, server: str, service: str, n: int = 5) -> Edge:
    return Edge(client, server, service, n, 2 * n, 100, 4, T, T, 1)


WORKLOADS = [_w("web-1", "web"), _w("api-1", "api"), _w("db-1", "db"), _w("db-2", "db"),
             _w("api-dev", "api", "dev"), _w("cache-stg", "cache", "staging")]  # fmt: skip
LISTS = {"internet": (["0.0.0.0/0"], ["10.0.0.0/8"]), "corp-vpn": (["10.250.0.0/16"], [])}


def test_each_rule_fires_with_its_flows() -> None:
    edges = [
        _e("iplist:internet", "db-1", "tcp/443", 7),  # a db serving HTTPS to the internet
        _e("cidr:198.51.100.0/24", "db-1", "tcp/5432", 2),
        _e("api-dev", "db-2", "tcp/5432", 3),  # dev calls prod
        _e("api-1", "cache-stg", "tcp/6379", 4),  # prod calls staging: staging is the subject
        _e("web-1", "cidr:203.0.113.0/24", "tcp/4444", 9),  # web calls out on an odd port
    ]
    found = rule_findings(edges, WORKLOADS, public_lists=public_iplists(LISTS))
    got = {(f.rule, f.subject): f for f in found}
    assert set(got) == {
        ("data-serves-internet", "db-1"),
        ("env-crossing", "api-dev"),
        ("env-crossing", "cache-stg"),
        ("web-egress-unusual-port", "web-1"),
    }
    db = got[("data-serves-internet", "db-1")]
    assert db.severity == "high" and db.conversations == 9
    assert "role=db serves HTTP to iplist:internet" in db.reasons
    assert db.evidence[0] == "iplist:internet -> db-1 tcp/443: 7 conversations"
    assert got[("env-crossing", "api-dev")].reasons == ["env=dev calls env=prod (db-2)"]
    assert got[("env-crossing", "cache-stg")].reasons == [
        "env=staging is called by env=prod (api-1)"
    ]
    assert got[("web-egress-unusual-port", "web-1")].to_dict()["evidence"] == [
        "web-1 -> cidr:203.0.113.0/24 tcp/4444: 9 conversations"
    ]


def test_what_the_labels_allow_is_no_finding() -> None:
    edges = [
        _e("iplist:internet", "web-1", "tcp/443"),
        _e("web-1", "api-1", "tcp/8443"),
        _e("api-1", "db-1", "tcp/5432"),
        _e("db-1", "iplist:internet", "tcp/443"),  # a db fetching updates: it calls out
        _e("web-1", "cidr:203.0.113.0/24", "tcp/443"),
        _e("iplist:corp-vpn", "db-2", "tcp/5432"),  # a private list is not the internet
        _e("unmanaged:10.9.0.4", "db-2", "tcp/5432"),
    ]
    assert rule_findings(edges, WORKLOADS, public_lists=public_iplists(LISTS)) == []
    assert public_iplists(LISTS) == {"internet"}


def test_the_demo_env_mislabel_is_found(demo_vpc: Path) -> None:
    lists = (demo_vpc / "estate/truth/policy-app.yaml",)
    report = hygiene_report(Workspace.resolve(demo_vpc / "home"), MapQuery(iplist_files=lists))
    with (demo_vpc / "estate/truth/mislabels.csv").open() as f:
        env_wrong = {r["workload"] for r in csv.DictReader(f) if r["key"] == "env"}
    found = {f["subject"] for f in report["rule_findings"] if f["rule"] == "env-crossing"}
    assert env_wrong and env_wrong <= found
    assert all(f["evidence"] and f["reasons"] for f in report["rule_findings"])
