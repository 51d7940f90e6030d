"""The offline demonstration: learn the shop's traffic, then judge fresh traffic and attacks."""

from __future__ import annotations

import json
from pathlib import Path

from cellwall.services.dbfw import demo_dbfw


def test_demo_blocks_every_sample_attack_and_no_benign_request(tmp_path: Path) -> None:
    summary = demo_dbfw(tmp_path / "out")
    assert summary["learned_fingerprints"] == 6
    assert summary["benign_requests"] == 1000 and summary["benign_blocked"] == 0
    assert summary["attacks_blocked"] == summary["attack_requests"] >= 20
    assert set(summary["by_family"]) == {
        "boolean",
        "union",
        "stacked",
        "time",
        "error",
        "out-of-band",
    }
    lines = (tmp_path / "out" / "alerts.jsonl").read_text().splitlines()
    assert len(lines) == summary["alerts"] == summary["attack_requests"]
    first = json.loads(lines[0])
    assert first["metadata"]["uid"] == "demo-000001" and first["action"] == "Denied"
    again = demo_dbfw(tmp_path / "out")
    assert {k: v for k, v in again.items() if k != "queries_per_second"} == {
        k: v for k, v in summary.items() if k != "queries_per_second"
    }
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["alerts"] == len(lines)
