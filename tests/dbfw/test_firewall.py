"""Decisions per mode, review semantics, and alerts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from cellwall.dbfw import (
    AlertSink,
    Classifier,
    ClientIdentity,
    Firewall,
    Mode,
    Profiles,
    libinjection_detector,
)
from cellwall.dbfw.demoapp import SAMPLE_ATTACKS, attack_requests, benign_requests

WHO = ClientIdentity("web-1", "shop", "shop", "shop-app")
OTHER = ClientIdentity("batch-1", "shop", "shop", "etl")


def firewall(mode: Mode, alerts: Path | None = None) -> Firewall:
    ids = iter(range(1, 10**6))
    return Firewall(
        mode,
        Classifier(libinjection_detector()),
        Profiles(),
        AlertSink(alerts),
        clock=lambda: datetime(2026, 6, 1, tzinfo=UTC),
        alert_id=lambda: f"a{next(ids)}",
    )


def learned(mode: Mode = Mode.ENFORCE, alerts: Path | None = None) -> Firewall:
    fw = firewall(Mode.LEARN, alerts)
    for r in benign_requests(600, seed=1):
        fw.check(WHO, r.sql)
    fw.mode = mode
    return fw


def test_learn_mode_learns_and_counts_per_identity() -> None:
    fw = learned(Mode.LEARN)
    assert len(fw.profiles.statuses[WHO]) == 6 and OTHER not in fw.profiles.statuses
    counts = sorted(o.count for o in fw.profiles.pending.values())
    assert sum(counts) == 600 and counts == [100] * 6
    sample = next(iter(fw.profiles.pending.values())).sample
    assert "$1" in sample


def test_enforce_allows_fresh_values_and_blocks_new_shapes_and_attacks(tmp_path: Path) -> None:
    fw = learned(alerts=tmp_path / "a.jsonl")
    assert not any(fw.check(WHO, r.sql).block for r in benign_requests(1000, seed=2))
    attacks = list(attack_requests(list(SAMPLE_ATTACKS)))
    assert all(fw.check(WHO, r.sql).block for r in attacks)
    # the same benign query from another identity is a new fingerprint for it
    d = fw.check(OTHER, next(benign_requests(1, seed=3)).sql)
    assert d.block and [h.indicator for h in d.reasons] == ["new-fingerprint"]
    fw.alerts.close()
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert len(lines) == len(attacks) + 1
    doc = json.loads(lines[0])
    assert doc["class_uid"] == 2004 and doc["disposition"] == "Blocked"
    assert doc["cellwall"]["identity"] == WHO.to_dict()
    assert doc["cellwall"]["reasons"][0]["id"] == "new-fingerprint"
    assert doc["cellwall"]["query"] == attacks[0].sql


def test_union_added_to_a_learned_template_is_named() -> None:
    fw = firewall(Mode.LEARN)
    fw.check(WHO, "SELECT a, b FROM t WHERE id = 1")
    fw.mode = Mode.ENFORCE
    d = fw.check(WHO, "SELECT a, b FROM t WHERE id = 1 UNION SELECT x, y FROM secrets")
    assert [h.indicator for h in d.reasons] == ["new-fingerprint", "union-injection"]


def test_alert_mode_allows_but_reports() -> None:
    fw = learned(Mode.ALERT)
    d = fw.check(WHO, "SELECT id, name, email FROM users WHERE id = 1 OR 1=1")
    assert not d.block and {"new-fingerprint", "tautology"} <= {h.indicator for h in d.reasons}
    assert fw.alerts.count == 1


def test_indicators_block_even_learned_shapes_until_approved() -> None:
    fw = firewall(Mode.LEARN)
    probe = "SELECT typname FROM pg_catalog.pg_type WHERE oid = 25"
    fw.check(WHO, probe)
    fw.mode = Mode.ENFORCE
    d = fw.check(WHO, probe)
    assert d.block and [h.indicator for h in d.reasons] == ["catalog-probe"]
    fw.profiles.statuses[WHO][d.analysis.fingerprint] = "approved"
    assert not fw.check(WHO, probe).block
    # approval accepts structure, not a tautology slipped into the same shape
    fw.check(WHO, "SELECT a FROM t WHERE b = 1 OR c = 2")
    fw.mode = Mode.LEARN
    fw.check(WHO, "SELECT a FROM t WHERE b = 1 OR c = 2")
    fw.mode = Mode.ENFORCE
    assert fw.check(WHO, "SELECT a FROM t WHERE b = 1 OR 2 = 2").block


def test_rejected_fingerprint_is_blocked_and_housekeeping_always_passes() -> None:
    fw = learned()
    sql = next(benign_requests(1, seed=9)).sql
    fp = fw.check(WHO, sql).analysis.fingerprint
    fw.profiles.statuses[WHO][fp] = "rejected"
    d = fw.check(WHO, sql)
    assert d.block and d.reasons[0].indicator == "rejected-fingerprint"
    for sql in ("BEGIN", "ROLLBACK", "COMMIT", "SET statement_timeout = 5", "SHOW work_mem", ""):
        assert not fw.check(OTHER, sql).block
    assert fw.check(OTHER, "SET ROLE postgres").block
