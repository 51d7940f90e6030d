from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import replace

import pytest

from cellwall.demo import DemoConfig
from cellwall.demo.estate import build_estate
from cellwall.demo.model import Estate

from .conftest import START

CONFIG = DemoConfig(seed=3, start=START, days=4, flows=0)


@pytest.fixture(scope="module")
def estate() -> Estate:
    return build_estate(CONFIG)


def test_applications_tiers_envs_and_locations(estate: Estate) -> None:
    apps = {w.app for w in estate.workloads} - {"infra"}
    assert len(apps) >= 6
    assert {w.env for w in estate.workloads} == {"prod", "staging", "dev"}
    assert len({w.loc for w in estate.workloads}) == 2
    roles = defaultdict(set)
    for w in estate.workloads:
        roles[w.app].add(w.role)
        assert w.owner.startswith("team-")
        assert set(w.labels) >= {"app", "role", "env", "loc"}
    assert {"web", "api", "db", "cache"} <= roles["payments"]
    assert {"queue", "worker"} <= roles["orders"]
    assert {"dns", "ntp", "ldap", "monitor", "backup", "logs", "bastion"} <= roles["infra"]
    pay_db = [w for w in estate.workloads if (w.app, w.role) == ("payments", "db")]
    assert pay_db and all(w.labels.get("data") == "pci" for w in pay_db)


def test_shared_infrastructure_reaches_every_host(estate: Estate) -> None:
    nw = len(estate.workloads)
    scraped = {e.server for e in estate.edges if e.service.port == 9100}
    monitors = {w.index for w in estate.workloads if w.role == "monitor"}
    assert scraped | monitors == set(range(nw))
    resolving = {e.client for e in estate.edges if e.service.text == "udp/53" and e.client < nw}
    dns = {w.index for w in estate.workloads if w.role == "dns"}
    assert resolving | dns == set(range(nw))
    bastion = {w.index for w in estate.workloads if w.role == "bastion"}
    ssh = {e.server for e in estate.edges if e.client in bastion and e.service.port == 22}
    assert ssh == {w.index for w in estate.workloads if w.kind == "vm"} - bastion


def test_no_intended_edge_crosses_environments(estate: Estate) -> None:
    nw = len(estate.workloads)
    for e in estate.edges:
        if e.client < nw and e.server < nw:
            assert estate.workloads[e.client].env == estate.workloads[e.server].env


def test_external_and_unmanaged_ends(estate: Estate) -> None:
    names = {x.name: x for x in estate.externals}
    assert {"internet", "payment-gateway", "package-mirror", "corp-vpn", "legacy-nas"} <= set(names)
    assert names["corp-vpn"].internal and names["legacy-nas"].internal
    internet = names["internet"].index
    inbound = {estate.workloads[e.server].role for e in estate.edges if e.client == internet}
    assert inbound == {"web"}
    # Unmanaged internal addresses are owned by no workload.
    owned = {lease.ip for w in estate.workloads for lease in w.leases}
    assert not owned & set(names["legacy-nas"].ips + names["corp-vpn"].ips)


def test_schedules_daily_weekly_and_rare(estate: Estate) -> None:
    kinds = defaultdict(set)
    for e in estate.edges:
        kinds[e.schedule.kind].add(e.purpose)
    assert "nightly database backup" in kinds["daily"]
    assert any("weekly reporting ETL" in p for p in kinds["weekly"])
    assert any("rare" in p for p in kinds["every"])


def test_pods_churn_and_addresses_are_reused(estate: Estate) -> None:
    pods = [w for w in estate.workloads if w.kind == "pod"]
    assert sum(len(w.leases) > 1 for w in pods) > len(pods) // 2
    for w in pods:
        for a, b in itertools.pairwise(w.leases):
            assert a.until == b.since  # a restart hands over without a gap
        assert w.leases[-1].until == estate.end
    holders: defaultdict[int, list[tuple[int, int, str]]] = defaultdict(list)
    for w in estate.workloads:
        for lease in w.leases:
            since = lease.since if lease.since is not None else -(2**62)
            until = lease.until if lease.until is not None else 2**62
            holders[lease.ip].append((since, until, w.name))
    reused = 0
    for spans in holders.values():
        spans.sort()
        for (_, until, x), (since, _, y) in itertools.pairwise(spans):
            assert until <= since, "two workloads hold one address at once"
            reused += x != y
    assert reused > 0


def test_mislabels_are_recorded_with_true_labels(estate: Estate) -> None:
    assert len(estate.mislabels) == CONFIG.mislabel
    first = estate.mislabels[0]
    assert (first.key, first.claimed, first.true) == ("role", "db", "cache")
    assert {m.key for m in estate.mislabels} == {"role", "app", "env"}
    wrong = {m.workload: m for m in estate.mislabels}
    for w in estate.workloads:
        diff = {k for k in w.labels if w.labels[k] != w.claimed[k]}
        if w.name in wrong:
            m = wrong[w.name]
            assert diff == {m.key} and w.claimed[m.key] == m.claimed and w.labels[m.key] == m.true
        else:
            assert not diff


def test_estate_follows_the_seed() -> None:
    a, b = build_estate(CONFIG), build_estate(CONFIG)
    assert [w.leases for w in a.workloads] == [w.leases for w in b.workloads]
    c = build_estate(replace(CONFIG, seed=4))
    assert [w.leases for w in a.workloads] != [w.leases for w in c.workloads]
    assert [w.name for w in a.workloads] == [w.name for w in c.workloads]
    none = build_estate(replace(CONFIG, mislabel=0))
    assert not none.mislabels
