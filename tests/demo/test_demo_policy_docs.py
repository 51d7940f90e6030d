"""The demo's written policy loads cleanly and allows every intended dependency."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from cellwall.demo.config import DemoConfig
from cellwall.demo.documents import conventions_yaml, inventory_yaml
from cellwall.demo.estate import build_estate
from cellwall.demo.model import Estate, ip_text
from cellwall.demo.policy_docs import demo_policy_yaml
from cellwall.inventory.loader import load_inventory_text
from cellwall.model.inventory import Workload
from cellwall.policy.loader import LoadResult, load_policy_texts
from tests.policy.reference import reference_judge

START = datetime(2026, 11, 2, tzinfo=UTC)


def _load(estate: Estate) -> tuple[LoadResult, list[Workload]]:
    text = conventions_yaml(estate) + "---\n" + inventory_yaml(estate, true_labels=True)
    inv = load_inventory_text(text, "inventory.yaml")
    assert not inv.errors
    result = load_policy_texts(
        demo_policy_yaml(),
        convention=inv.convention(),
        workloads=inv.workloads,
        today=START.date(),
    )
    return result, inv.workloads


def _ip_at(estate: Estate, end: int, ts: int) -> str | None:
    nw = len(estate.workloads)
    if end >= nw:
        return ip_text(estate.externals[end - nw].ips[0])
    for lease in estate.workloads[end].leases:
        if (lease.since is None or lease.since <= ts) and (lease.until is None or ts < lease.until):
            return ip_text(lease.ip)
    return None


def test_the_demo_policy_loads_without_findings() -> None:
    result, _ = _load(build_estate(DemoConfig(start=START, days=2)))
    assert result.diagnostics == []
    ps = result.policy_set
    assert {p.name for p in ps.policies} >= {"global", "payments", "reporting"}
    assert ps.iplist("internet") is not None and ps.iplist("attacker") is None
    assert {r.action for _, r in ps.rules()} == {"allow", "deny", "override-deny"}
    assert all(r.review_by is None or r.review_by > date(2026, 12, 31) for _, r in ps.rules())


def _conv(ts: int, client: str, server: str, proto: int, port: int) -> dict[str, Any]:
    facts = dict.fromkeys(("server_process", "http_method", "http_path", "icmp_code"))
    return {
        "client_ip": client,
        "server_ip": server,
        "proto": proto,
        "server_port": port,
        "client_port": 40000,
        "start": datetime.fromtimestamp(ts, UTC),
        **facts,
    }


def _first_pair(estate: Estate, client: int, server: int) -> tuple[int, str, str] | None:
    """A time at which both ends own an address, with those addresses."""
    for ts in range(estate.start, estate.end, 3600):
        c, s = _ip_at(estate, client, ts), _ip_at(estate, server, ts)
        if c is not None and s is not None:
            return ts, c, s
    return None


def test_the_demo_policy_allows_every_intended_dependency() -> None:
    estate = build_estate(DemoConfig(start=START, days=2))
    result, workloads = _load(estate)
    for e in estate.edges:
        found = _first_pair(estate, e.client, e.server)
        assert found is not None, e.purpose
        ts, client, server = found
        conv = _conv(ts, client, server, e.service.proto, e.service.port)
        verdict, rule, _, _ = reference_judge(conv, result.policy_set, workloads)
        assert verdict == "allowed", (e.purpose, client, server, e.service.text, rule)


def test_the_demo_policy_denies_ransomware_ports_and_dev_to_prod() -> None:
    estate = build_estate(DemoConfig(start=START, days=2))
    result, workloads = _load(estate)
    by_name = {w.name: i for i, w in enumerate(estate.workloads)}
    cases = [
        ("pay-web-1", "pay-db-1", 445, "denied", "deny-smb"),
        ("cat-db-1", "ord-db-1", 3389, "denied", "deny-rdp"),
        ("pay-web-dev-1", "pay-api-1", 8443, "denied", "dev-never-prod"),
        ("pay-web-1", "pay-db-1", 5432, "not-allowed", None),
    ]
    for client, server, port, verdict, rule in cases:
        found = _first_pair(estate, by_name[client], by_name[server])
        assert found is not None
        ts, c, s = found
        conv = _conv(ts, c, s, 6, port)
        got, deciding, _, _ = reference_judge(conv, result.policy_set, workloads)
        assert (got, deciding) == (verdict, rule), (client, server, port)
