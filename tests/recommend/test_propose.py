"""The recommendation passes on small, hand-made edge tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from cellwall.model.inventory import Workload
from cellwall.model.policy import Selector
from cellwall.policy.loader import load_policy_texts
from cellwall.recommend import RecommendConfig, proposal_files, propose
from cellwall.recommend.compare import compare_proposals
from cellwall.recommend.fold import merge_ports
from cellwall.recommend.seasonality import periodic_edges, seasonality_warnings
from cellwall.services.recommend import _SCHEMA

T0 = datetime(2026, 11, 2, tzinfo=UTC)
APPS = ("shop", "pay", "ship", "mail")


def estate() -> list[Workload]:
    out = []
    n = 0
    for env in ("prod", "dev"):
        for app in APPS:
            for role in ("web", "api", "db"):
                n += 1
                labels = {"app": app, "role": role, "env": env}
                out.append(
                    Workload.of(
                        f"{app}-{role}-{env}",
                        labels=labels,
                        addresses=[f"10.0.0.{n}"],
                        owner=f"team-{app}",
                    )
                )
        for role in ("dns", "monitor"):
            n += 1
            labels = {"app": "infra", "role": role, "env": env}
            out.append(Workload.of(f"{role}-{env}", labels=labels, addresses=[f"10.0.0.{n}"]))
    return out


def edge(
    c: str, s: str, svc: str, conv: int = 50, days: int = 20, first: int = 0, span_h: float = 480.0
) -> dict[str, Any]:
    start = T0 + timedelta(hours=first)
    return {
        "client": c,
        "server": s,
        "service": svc,
        "conversations": conv,
        "bytes": conv * 100,
        "first_seen": start,
        "last_seen": start + timedelta(hours=span_h),
        "days": days,
    }


def base_edges() -> list[dict[str, Any]]:
    rows = []
    for env in ("prod", "dev"):
        for app in APPS:
            rows.append(edge(f"{app}-web-{env}", f"{app}-api-{env}", "tcp/8443"))
            rows.append(edge(f"{app}-api-{env}", f"{app}-db-{env}", "tcp/5432"))
            for role in ("web", "api", "db"):
                rows.append(edge(f"{app}-{role}-{env}", f"dns-{env}", "udp/53"))
                rows.append(edge(f"monitor-{env}", f"{app}-{role}-{env}", "tcp/9100"))
        rows.append(edge(f"monitor-{env}", f"dns-{env}", "tcp/9100"))
        rows.append(edge(f"dns-{env}", f"monitor-{env}", "udp/53"))
    rows.append(edge("shop-api-prod", "pay-api-prod", "tcp/8443"))
    for k in range(40):  # customers from 40 public networks
        rows.append(
            edge(
                f"cidr:{23 + k}.1.2.0/24",
                "shop-web-prod",
                "tcp/443",
                conv=3,
                days=1,
                first=k * 5,
                span_h=0.1,
            )
        )
    for k in range(6):  # staff on the VPN
        rows.append(edge(f"unmanaged:10.250.0.{10 + k}", "shop-web-dev", "tcp/443"))
    rows.append(edge("pay-api-prod", "cidr:203.0.113.0/24", "tcp/443"))
    return rows


def table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=_SCHEMA)


def run(rows: list[dict[str, Any]], **kw: Any) -> Any:
    return propose(table(rows), estate(), RecommendConfig(window_days=30, **kw))


def rules_by_id(p: Any) -> dict[str, Any]:
    return {r.id: r for r in p.rules}


def test_the_proposal_loads_without_errors_and_is_stable() -> None:
    p = run(base_edges())
    files = proposal_files(p, ["test"])
    texts = {k: v for k, v in files.items() if k.endswith(".yaml")}
    result = load_policy_texts(texts, workloads=estate())
    assert not result.errors, result.errors
    assert files == proposal_files(run(list(reversed(base_edges()))), ["test"])


def test_intra_cross_external_and_shared_rules_are_placed_apart() -> None:
    p = run(base_edges())
    names = {pol.name: pol for pol in p.policies}
    assert names["app-pay"].scope == {"app": "pay"}
    cross = [r for r in names["app-pay"].rules if r.kind == "cross-app"]
    assert [dict(r.from_) for r in cross] == [{"app": "shop", "role": "api", "env": "prod"}]
    assert all(r.from_outside_scope for r in cross)
    intra = [r for r in names["app-shop"].rules if r.kind == "intra-app"]
    assert {"role": "web"} in [dict(r.from_) for r in intra]
    shared = names["shared-services"].rules
    dns = [r for r in shared if r.services == ("udp/53",) and dict(r.from_) == {"any": True}]
    assert len(dns) == 1 and dns[0].same == ("env",)
    monitor = [r for r in shared if r.services == ("tcp/9100",)]
    assert [dict(r.to) for r in monitor] == [{"any": True}]


def test_env_folding_writes_one_rule_with_same_env() -> None:
    p = run(base_edges())
    shop = next(pol for pol in p.policies if pol.name == "app-shop")
    web = [r for r in shop.rules if dict(r.from_) == {"role": "web"}]
    assert len(web) == 1
    assert dict(web[0].to) == {"role": "api", "env": ["dev", "prod"]}
    assert web[0].same == ("env",)


def test_external_ends_become_internet_and_cidr_aggregates() -> None:
    p = run(base_edges())
    assert "internet" in p.iplists
    docs = [r.document() for r in p.rules]
    assert {"from": {"iplist": "internet"}}.items() <= next(
        d for d in docs if d["from"] == {"iplist": "internet"}
    ).items()
    vpn = next(d for d in docs if "cidrs" in d["from"])
    assert vpn["from"] == {"cidrs": ["10.250.0.0/24"]}
    gateway = next(d for d in docs if "cidrs" in d["to"])
    assert gateway["to"] == {"cidrs": ["203.0.113.0/24"]}


def test_a_fan_out_scan_is_left_out_with_its_reason() -> None:
    rows = base_edges()
    scan = [
        edge("shop-web-prod", w.name, f"tcp/{p}", conv=1, days=1, first=500, span_h=0.01)
        for w in estate()[:8]
        for p in (22, 445)
    ]
    p = run(rows + scan)
    reasons = {(x.client, x.server, x.service): x.reason for x in p.exclusions}
    assert reasons[("shop-web-prod", "shop-db-prod", "tcp/445")] == "fan-out-scan"
    for r in p.rules:
        assert "tcp/445" not in r.services


def test_a_multi_port_probe_and_thin_evidence_are_left_out() -> None:
    probe = [
        edge("mail-web-prod", "pay-db-prod", f"tcp/{p}", conv=1, days=1, first=900, span_h=0.01)
        for p in (21, 23, 25, 3389)
    ]
    thin = [edge("mail-web-prod", "ship-db-prod", "tcp/5432", conv=30, days=1, span_h=2)]
    p = run(base_edges() + probe + thin)
    got = {(x.server, x.service): (x.reason, x.detail) for x in p.exclusions}
    assert got["pay-db-prod", "tcp/3389"][0] == "multi-port-probe"
    assert got["app=ship,role=db,env=prod", "tcp/5432"][0] == "below-min-evidence"
    assert "day" in got["app=ship,role=db,env=prod", "tcp/5432"][1]


def test_flagged_edges_are_left_out() -> None:
    flagged = frozenset({("shop-api-prod", "pay-api-prod", "tcp/8443")})
    p = run(base_edges(), flagged=flagged)
    assert [x.reason for x in p.exclusions if x.server == "pay-api-prod"] == ["flagged"]
    assert not any(r.kind == "cross-app" for r in p.rules)


def test_evidence_confidence_and_coverage_are_on_every_rule() -> None:
    p = run(base_edges())
    assert abs(sum(r.coverage for r in p.rules) - p.coverage) < 1e-3
    for r in p.rules:
        assert r.evidence.conversations > 0 and 0 < r.confidence <= 1
        assert r.evidence.samples and r.evidence.first_seen <= r.evidence.last_seen
    text = proposal_files(p)["app-shop.yaml"]
    assert "# evidence:" in text and "# sample:" in text and "confidence" in text


def test_ports_merge_only_where_every_port_was_seen() -> None:
    assert merge_ports({"tcp/8080", "tcp/8081", "tcp/8082", "tcp/9000"}, 16) == (
        ("tcp/8080-8082", "tcp/9000"),
        (),
    )
    services, notes = merge_ports({f"tcp/{p}" for p in range(30000, 30040, 2)}, 16)
    assert services == ("tcp/30000-30038",) and "20 observed ports" in notes[0]
    assert merge_ports({"udp/53", "tcp/53"}, 16)[0] == ("tcp/53", "udp/53")


def test_weekly_edges_warn_when_the_window_is_short() -> None:
    weekly = edge(
        "shop-api-prod", "pay-db-prod", "tcp/5432", conv=4, days=4, first=2, span_h=21 * 24
    )
    found = periodic_edges(table([weekly, *base_edges()[:3]]))
    assert [(p.client, p.period_days) for p in found] == [("shop-api-prod", 7)]
    assert seasonality_warnings(found, 10) and not seasonality_warnings(found, 30)


def test_compare_names_what_changes_between_windows() -> None:
    a = run(base_edges())
    b = run([*base_edges(), edge("shop-web-prod", "shop-api-prod", "tcp/8080")])
    diff = compare_proposals(a, b, "A", "B").to_dict()
    assert diff["services_changed"] or diff["only_in_b"]
    assert compare_proposals(a, a, "A", "A").to_dict()["only_in_a"] == []


def test_selectors_are_valid_policy_selectors() -> None:
    for r in run(base_edges()).rules:
        for side in (r.from_, r.to):
            assert side and not (set(side) & {"any"} and len(side) > 1)
    assert Selector.of(role="web") == Selector.of(role=["web"])


def test_a_one_off_external_end_does_not_ride_on_the_others_evidence() -> None:
    """An upload to a fresh address, on one afternoon, from a class whose other external
    peer on that service is long established: at app granularity both share one rule, and
    the fresh address must not enter it (how an exfiltration would be learned)."""
    exfil = edge("pay-web-prod", "cidr:192.0.2.0/24", "tcp/443", conv=24, days=1, span_h=1.5)
    for granularity in ("app", "role", "workload"):
        p = run([*base_edges(), exfil], granularity=granularity)
        external = [r.document()["to"] for r in p.rules if "cidrs" in r.document()["to"]]
        assert external and all("192.0.2.0/24" not in d["cidrs"] for d in external), external
        assert any("203.0.113.0/24" in d["cidrs"] for d in external)
        (why,) = [x for x in p.exclusions if x.server.endswith("192.0.2.0/24")]
        assert why.reason == "one-off-external" and "1 day(s)" in why.detail


def test_one_off_peers_still_make_the_internet_list_and_private_aggregates_pool() -> None:
    # Each of the 40 customer networks is seen once (base_edges): together they are the
    # internet list, not 40 one-off ends. Six VPN addresses in one /24, each on one day,
    # pool into 10.250.0.0/24 as the aggregate they form.
    vpn = [
        edge(f"unmanaged:10.250.1.{10 + k}", "mail-web-dev", "tcp/443", days=1, first=30 * k)
        for k in range(6)
    ]
    p = run([*base_edges(), *vpn])
    docs = [r.document() for r in p.rules]
    assert any(d["from"] == {"iplist": "internet"} for d in docs)
    assert any(d["from"] == {"cidrs": ["10.250.1.0/24"]} for d in docs)
    assert not [x for x in p.exclusions if x.reason == "one-off-external"]
