"""Learn on days 1-30 of the demo estate, judge on days 31-37 (issue 6, Quality)."""

from __future__ import annotations

from tests.recommend.quality import Estate, measure


def test_role_granularity_meets_the_quality_floors(estate: Estate) -> None:
    got = measure(estate, "role")
    assert got["load_errors"] == 0
    assert got["legit_allowed_share"] >= 0.995, got
    assert got["attacks_matched"] >= got["attacks"] - 2, got
    assert got["attacks_off_edge_allowed"] == 0, got
    # Every attack conversation the proposal allows, the truth's minimal rule set allows too.
    assert got["attacks_allowed_beyond_truth"] == 0, got
    assert got["attacks_on_edge_allowed"] <= got["attacks_allowed_by_truth_minimal"], got
    assert got["rules"] <= 1.5 * got["truth_rules"], got
    assert got["excluded"]["fan-out-scan"]["edges"] >= 900  # the port scan


def test_workload_granularity_never_learns_the_attack(estate: Estate) -> None:
    got = measure(estate, "workload")
    assert got["load_errors"] == 0
    assert got["attacks_off_edge_allowed"] == 0, got
    assert got["attacks_allowed_beyond_truth"] == 0, got
    assert got["legit_allowed_share"] >= 0.99, got


def test_app_granularity_allows_no_attack_its_own_truth_refuses(estate: Estate) -> None:
    got = measure(estate, "app")
    assert got["load_errors"] == 0
    assert got["attacks_allowed_beyond_truth"] == 0, got
    assert got["legit_allowed_share"] >= 0.995, got
