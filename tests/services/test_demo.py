"""The demo end to end: generate, ingest, load, check, resolve."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cellwall.errors import UsageError
from cellwall.services.demo import demo_config, run_demo
from cellwall.services.flows import query_flows
from cellwall.state.audit import AuditLog
from cellwall.workspace import Workspace


@pytest.mark.usefixtures("lab_lock")  # the enforcement stage runs a lab sample as root
@pytest.mark.parametrize("fmt", ["vpc", "zeek"])
def test_demo_run_end_to_end(tmp_path: Path, fmt: str) -> None:
    config = demo_config(
        seed=11, days=2, flows=6000, fmt=fmt, start=datetime(2026, 11, 2, tzinfo=UTC)
    )
    doc = run_demo(tmp_path / "out", config)
    estate, ingest = doc["estate"], doc["ingest"]
    assert ingest["stored"] == estate["records"] > 0
    assert ingest["quarantined_total"] == 0
    assert ingest["ignored"].get("nodata", 0) + ingest["ignored"].get("skipdata", 0) == (
        estate["other_lines"] if fmt == "vpc" else 0
    )
    assert doc["inventory"]["workloads_total"] == estate["workloads"]
    ident = doc["identity"]
    assert ident["endpoints"] == 2 * estate["records"]
    assert ident["resolved_share"] > 0.85
    assert ident["by_class"]["internet"] > 0
    maps = doc["map"]
    assert Path(maps["app_png"]).read_bytes().startswith(b"\x89PNG")
    app_map = json.loads(Path(maps["app_json"]).read_text())
    internet = [n for n in app_map["nodes"] if "internet" in json.dumps(n)]
    assert internet, "the internet is one named node, not thousands of networks"
    assert 0 < maps["app_edges"] <= maps["role_edges"]
    telemetry = doc["telemetry"]  # the first flows again, as NetFlow v9, IPFIX and Hubble
    assert telemetry["flows"] > 1000
    files = telemetry["files"]
    assert {f["format"] for f in files.values()} == {"netflow", "hubble"}
    for name, f in files.items():
        assert f["same_as_the_slice"], name
        assert f["quarantined"] == {}
    assert files["exports-v9.pcap"]["stored"] == telemetry["flows"]
    assert (
        files["hubble.json"]["dns_evidence"]
        == files["hubble.json"]["stored"] - telemetry["flows"]
        > 0
    )
    assert telemetry["external_addresses_named"] == telemetry["external_addresses"] > 0
    assert all(n.endswith(".demo.example") for n in telemetry["names"].values())
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["ingest"]["stored"] == ingest["stored"]
    ws = Workspace.resolve(doc["workspace"])
    assert query_flows(ws, count_only=True)["count"] == estate["records"]
    review = doc["review"]
    assert review["submitted"] == doc["recommend"]["rules"] > 0
    assert review["approved"] > 0 and review["refused"] == 1
    assert any(Path(review["out"]).glob("*.yaml"))
    chain = AuditLog(ws.engine).verify()
    assert doc["audit"]["intact"] and chain.ok and chain.entries == doc["audit"]["entries"]
    enforce = doc["enforce"]
    assert enforce["verified"] and enforce["hosts"] == estate["workloads"]
    assert enforce["lab"]["probes"] > 0 and enforce["lab"]["disagreements"] == []
    approvals = AuditLog(ws.engine).entries(action="review.approve", limit=1000)
    assert {(e.actor, e.outcome) for e in approvals} == {("alice", "ok"), ("alice", "denied")}


def test_demo_refuses_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(UsageError, match="not written by"):
        run_demo(tmp_path, demo_config(flows=100, days=1))
    assert (tmp_path / "mine.txt").read_text() == "precious"


def test_demo_rerun_replaces_its_own_output(tmp_path: Path) -> None:
    config = demo_config(seed=3, days=1, flows=2000)
    first = run_demo(tmp_path / "o", config)
    second = run_demo(tmp_path / "o", config)
    assert second["ingest"]["stored"] == first["ingest"]["stored"]
    assert second["ingest"]["duplicate"] == 0
