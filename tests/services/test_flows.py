"""Querying the lake: filters, windows, and the empty-window error."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from cellwall.errors import EmptyWindowError, UsageError
from cellwall.services.flows import query_flows
from cellwall.services.ingest import ingest_paths
from cellwall.workspace import Workspace
from tests.flowfiles import make_rows, write_csv


@pytest.fixture
def loaded(ws: Workspace, tmp_path: Path, mapping: Path) -> Workspace:
    rows = make_rows(400, start=1_762_000_000, step=600)  # 400 flows over ~2.8 days
    rows.append((1_762_000_100, "10.9.9.9", "192.0.2.7", 50000, 53, "udp", 60))
    ingest_paths(
        ws, [write_csv(tmp_path / "f.csv", rows)], fmt="csv", options={"mapping": str(mapping)}
    )
    return ws


def test_filters_by_address_port_and_protocol(loaded: Workspace) -> None:
    assert query_flows(loaded, count_only=True)["count"] == 401
    udp = query_flows(loaded, proto="udp")
    assert udp["count"] == 1 and udp["rows"][0]["dst_ip"] == "192.0.2.7"
    assert query_flows(loaded, ip="192.0.2.7", count_only=True)["count"] == 1
    assert query_flows(loaded, port=443, count_only=True)["count"] == 400
    expected = sum(1 for r in make_rows(400, step=600) if r[1] == "10.0.3.4")
    assert expected >= 1
    assert query_flows(loaded, src="10.0.3.4", count_only=True)["count"] == expected


def test_time_window_is_half_open(loaded: Workspace) -> None:
    since = datetime.fromtimestamp(1_762_000_000 + 600 * 10, UTC)
    until = datetime.fromtimestamp(1_762_000_000 + 600 * 20, UTC)
    got = query_flows(loaded, since=since, until=until, limit=0)
    assert got["count"] == 10
    assert min(r["start"] for r in got["rows"]) == since


def test_empty_window_names_the_newest_flow(loaded: Workspace) -> None:
    with pytest.raises(EmptyWindowError) as info:
        query_flows(loaded, since=datetime(2030, 1, 1, tzinfo=UTC))
    newest = datetime.fromtimestamp(1_762_000_000 + 600 * 399, UTC)
    assert newest.isoformat() in info.value.hint


def test_bad_filter_values_are_usage_errors(loaded: Workspace) -> None:
    with pytest.raises(UsageError, match="--proto"):
        query_flows(loaded, proto="tcpx")
    with pytest.raises(UsageError, match="not an IP"):
        query_flows(loaded, ip="10.0.0.999")


def test_empty_lake(ws: Workspace) -> None:
    with pytest.raises(EmptyWindowError, match="empty"):
        query_flows(ws)
