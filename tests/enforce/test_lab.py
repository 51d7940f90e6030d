"""`cellwall lab verify` in real namespaces: a small estate agrees everywhere, a planted
wrong ruleset is caught, the demo estate (a sample) agrees, and nothing is left behind."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cellwall.cli import app
from cellwall.demo import DemoConfig, generate
from cellwall.demo.policy_docs import demo_policy_yaml
from cellwall.enforce import netns
from cellwall.enforce.lab import PREFIX, plan_lab, probe_points, run_lab
from cellwall.inventory.loader import load_inventory_files
from cellwall.policy.loader import load_policy_texts
from cellwall.services.compile import _demo_instant
from tests.enforce.estate import POLICY, WORKLOADS, policy

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("lab_lock")


def _leftovers() -> list[str]:
    return [n for n in netns.names() if n.startswith(PREFIX)]


def test_probe_points_take_both_ends_of_each_range_and_one_past() -> None:
    points, _ = probe_points(policy())
    tcp = [n for p, n in points if p == 6]
    assert {9000, 9002, 9003, 8443, 8444, 22, 23, 7443, 7444} <= set(tcp)
    assert (1, None) in points and (58, None) in points


def test_the_plan_gives_each_class_two_hosts_and_ipv6_lab_addresses() -> None:
    plan = plan_lab(policy(), WORKLOADS)
    assert plan.classes == 4 and len(plan.hosts) == 6
    by_name = {h.name: h for h in plan.hosts}
    assert by_name["api-1"].v6 == "fd20::111"  # its own address is kept
    assert (by_name["db-1"].v6 or "").startswith("fd00:ce11:1ab::")
    assert ("web-1", "web-2") in {(a.name, b.name) for a, b in plan.pairs}
    rewritten = {w.name: w for w in plan.workloads}
    assert by_name["db-1"].v6 in rewritten["db-1"].ips()


def test_a_small_estate_agrees_everywhere_in_a_real_kernel() -> None:
    result = run_lab(policy(), WORKLOADS)
    assert result.disagreements == [], str(result)
    assert result.probes > 1000 and result.agreed == result.probes
    assert result.through > 20  # allowed paths were exercised, not only drops
    assert set(result.ends) == {
        "admin:10.99.0.0/24",
        "controller:10.99.0.10/32",
        "unmanaged-private",
        "unmanaged-public",
    }
    assert _leftovers() == []


def test_the_management_tier_is_proven_from_the_admin_network_and_to_the_controller() -> None:
    def plant(files: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for kind in ("mgmt_admin", "mgmt_control"):
            text = files["db-1"]["nft"]
            files["db-1"]["nft"] = text.replace(f"name {kind} accept", f"name {kind} drop")
        return files

    result = run_lab(policy(), WORKLOADS, plant=plant)
    wrong = {(o.client, o.server, o.service, o.rule_id) for o in result.disagreements}
    assert wrong == {
        ("admin:10.99.0.0/24", "db-1", "tcp/22", "management:admin"),
        ("controller:10.99.0.10/32", "db-1", "tcp/22", "management:admin"),  # inside it
        ("db-1", "controller:10.99.0.10/32", "tcp/7443", "management:control"),
    }, str(result)
    assert _leftovers() == []


def test_a_planted_wrong_ruleset_is_caught_and_the_command_exits_1(tmp_path: Path) -> None:
    def plant(files: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        files["db-1"]["nft"] = files["db-1"]["nft"].replace(
            "counter name r_api-to-db accept", "counter name r_api-to-db drop"
        )
        return files

    result = run_lab(policy(), WORKLOADS, plant=plant)
    assert result.exit_code == 1
    wrong = {(o.client, o.server, o.service, o.family, o.rule_id) for o in result.disagreements}
    assert wrong == {
        ("api-1", "db-1", svc, fam, "api-to-db")
        for svc in ("tcp/5432", "udp/5353")
        for fam in (4, 6)
    }
    assert "expected allowed" in str(result) and "observed blocked" in str(result)
    assert _leftovers() == []


def test_the_cli_runs_the_lab_and_cleans(tmp_path: Path) -> None:
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "estate.yaml").write_text(POLICY)
    inv = tmp_path / "inventory.csv"
    rows = ["name,addresses,owner,app,role"]
    for w in WORKLOADS:
        rows.append(f"{w.name},{' '.join(w.ips())},,{w.labels.get('app')},{w.labels.get('role')}")
    inv.write_text("\n".join(rows) + "\n")
    r = runner.invoke(
        app,
        [
            "lab",
            "verify",
            "--inventory",
            str(inv),
            "--policy",
            str(tmp_path / "policy"),
            "--sample",
            "3",
            "--json",
            "--home",
            str(tmp_path / "home"),
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["disagreements"] == [] and doc["classes"] == 3
    args = ["lab", "verify", "--inventory", str(inv), "--policy", str(tmp_path / "policy")]
    args += ["--sample", "2", "--json", "--home", str(tmp_path / "home")]
    r = runner.invoke(app, [*args, "--target", "iptables", "--no-ends"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["target"] == "iptables" and doc["disagreements"] == [] and doc["probes"] > 0
    assert doc["ends"] == []
    r = runner.invoke(app, [*args, "--target", "calico"])
    assert r.exit_code == 2 and "nftables or iptables" in r.output
    netns.add(f"{PREFIX}-stale")
    r = runner.invoke(app, ["lab", "clean"])
    assert r.exit_code == 0 and _leftovers() == []


@pytest.mark.real
def test_a_sample_of_the_demo_estate_agrees(tmp_path: Path) -> None:
    start = datetime(2026, 11, 2, tzinfo=UTC)
    res = generate(tmp_path / "estate", DemoConfig(seed=11, start=start, days=1, flows=2000))
    workloads = list(load_inventory_files([res.documents["inventory"]]).workloads)
    ps = load_policy_texts(demo_policy_yaml(), workloads=workloads).policy_set
    result = run_lab(ps, workloads, sample=8, at=_demo_instant(workloads))
    assert result.disagreements == [], str(result)
    assert result.classes == 8 and result.through > 100
    # every IP list of the demo policy, the management tier and the unmanaged space
    ends = set(result.ends)
    assert {"admin:10.255.1.0/24", "controller:10.255.0.10/32", "unmanaged-private"} <= ends
    for name in ("corp-vpn", "legacy-nas", "payment-gateway", "upstream-dns", "internet"):
        assert any(name in e for e in ends), (name, ends)
    assert result.seconds < 60
