"""Blast radius against the brute-force reference (hop by hop, workloads through
workloads), vulnerability reports, weights and exposure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellwall.analyze.blast import Weights, exposure, flat_scenario, graph_scenario, policy_scenario
from cellwall.analyze.space import Space
from cellwall.analyze.vulns import load_vulnerabilities
from cellwall.errors import InputError
from cellwall.model.inventory import Workload
from cellwall.model.policy import Policy, PolicySet, Rule, Selector, parse_service
from tests.analyze.reference import brute, stand_ins
from tests.analyze.test_space import ENDS, Case, cases

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(cases(), st.integers(1, 4), st.data())
def test_reach_hop_by_hop_equals_the_reference(case: Case, hops: int, data: st.DataObject) -> None:
    ps, ws = case
    if not ws:
        return
    source = data.draw(st.sampled_from([w.name for w in ws]))
    sel = Selector(workload=source)
    space = Space(ps, ws, [sel])
    weights = Weights.of(ws, {})
    got = policy_scenario("active", space, space.select(sel), hops, weights)
    layers = brute(ps, ws, ENDS).layers({source}, hops)
    seen: set[str] = set()
    expected = []
    for layer in layers:
        names = {e for e in layer if e in space.workloads and e != source} - seen
        expected.append(len(names))
        seen |= names
    assert list(got.by_hop) == expected
    assert got.reached == len(seen)


def _estate() -> tuple[PolicySet, list[Workload]]:
    ws = stand_ins(
        [
            Workload.of("web-1", labels={"role": "web"}),
            Workload.of("web-2", labels={"role": "web"}),
            Workload.of("api-1", labels={"role": "api"}),
            Workload.of("db-1", labels={"role": "db", "data": "pci"}),
            Workload.of("dns-1", labels={"role": "dns", "criticality": "high"}),
        ]
    )
    s = Selector.of
    rules = (
        Rule("web-api", s(role="web"), s(role="api"), (parse_service("tcp/8443"),)),
        Rule("api-db", s(role="api"), s(role="db"), (parse_service("tcp/5432"),)),
    )
    return PolicySet((Policy("p", rules),)), ws


def test_a_chain_is_reached_hop_by_hop_and_weighted() -> None:
    ps, ws = _estate()
    space = Space(ps, ws, [Selector(workload="web-1")])
    weights = Weights.of(ws, {})
    got = policy_scenario("active", space, space.select(Selector(workload="web-1")), 4, weights)
    assert got.by_hop == (1, 1, 0, 0)
    assert got.reached == 2 and got.weight == 11.0
    assert got.top[0] == "db-1"
    flat = flat_scenario({"web-1"}, [w.name for w in ws], weights)
    assert flat.reached == 4
    observed = graph_scenario("observed", [("web-1", "dns-1"), ("dns-1", "db-1")], {"web-1"}, 1,
                              weights, {w.name for w in ws})  # fmt: skip
    assert observed.reached == 1


def test_trivy_grype_and_csv_reports_are_read(tmp_path: Path) -> None:
    trivy = {"ArtifactName": "db-1", "Results": [{"Vulnerabilities": [
        {"VulnerabilityID": "CVE-1", "Severity": "HIGH", "CVSS": {"nvd": {"V3Score": 8.1}}},
        {"VulnerabilityID": "CVE-2", "Severity": "CRITICAL"}]}]}  # fmt: skip
    grype = {"source": {"target": {"userInput": "registry/api:1"}}, "matches": [
        {"vulnerability": {"id": "CVE-3", "severity": "Medium",
                           "cvss": [{"metrics": {"baseScore": 5.5}}]}}]}  # fmt: skip
    (tmp_path / "db.json").write_text(json.dumps(trivy))
    (tmp_path / "api-1.json").write_text(json.dumps(grype))
    (tmp_path / "cves.csv").write_text("workload,cve,severity,cvss\nweb-1,CVE-4,low,\n")
    names = ["db-1", "api-1", "web-1"]
    found = load_vulnerabilities(sorted(tmp_path.iterdir()), names)
    assert {k: sorted((v.id, v.cvss) for v in vs) for k, vs in found.items()} == {
        "db-1": [("CVE-1", 8.1), ("CVE-2", 9.0)],
        "api-1": [("CVE-3", 5.5)],
        "web-1": [("CVE-4", 1.0)],
    }
    (tmp_path / "bad.csv").write_text("workload,cve\nghost,CVE-9\n")
    with pytest.raises(InputError, match="ghost"):
        load_vulnerabilities([tmp_path / "bad.csv"], names)


def test_exposure_ranks_the_reachable_critical_workload_first() -> None:
    ps, ws = _estate()
    space = Space(ps, ws)
    vulns = load_vulnerabilities([], [])
    result = exposure(space, 4, Weights.of(ws, vulns), policy="p")
    top = result.rows[0]
    assert (top.workload, top.inbound, top.weight) == ("db-1", 3, 10.0)
    assert np.isclose(top.score, 10.0 * 3 / 5)
