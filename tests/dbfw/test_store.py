"""The learned allow-list in the workspace: counts, merge, and audited review."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cellwall.dbfw import ClientIdentity, FingerprintStore, Profiles
from cellwall.errors import UsageError
from cellwall.state.audit import AuditLog
from cellwall.workspace import Workspace

WHO = ClientIdentity("web-1", "shop", "shop", "app")
T0 = datetime(2026, 6, 1, tzinfo=UTC)
T1 = datetime(2026, 6, 2, tzinfo=UTC)


def observe(p: Profiles, fp: str, at: datetime, n: int = 1) -> None:
    for _ in range(n):
        p.observe(WHO, fp, at, lambda: "SELECT $1", 1, (), learn=True)


def test_counts_accumulate_across_flushes(ws: Workspace) -> None:
    store = FingerprintStore(ws.engine)
    p = Profiles()
    observe(p, "f1", T0, 3)
    assert store.record(p.take()) == 1 and p.pending == {}
    observe(p, "f1", T1, 2)
    observe(p, "f2", T1)
    store.record(p.take())
    rows = {r.fingerprint: r for r in store.find()}
    assert rows["f1"].count == 5 and rows["f1"].first_seen == T0 and rows["f1"].last_seen == T1
    assert rows["f2"].status == "learned" and store.statuses() == {
        WHO: {"f1": "learned", "f2": "learned"}
    }


def test_review_changes_status_and_is_audited(ws: Workspace) -> None:
    store = FingerprintStore(ws.engine)
    p = Profiles()
    observe(p, "f1", T0)
    observe(p, "f2", T0)
    store.record(p.take())
    ids = {r.fingerprint: r.id for r in store.find()}
    done = store.review([ids["f2"]], "rejected", "alice", note="never used by the app")
    assert done[0].status == "rejected" and done[0].reviewed_by == "alice"
    entries = AuditLog(ws.engine).entries(action="dbproxy.reject")
    assert entries[0].actor == "alice" and entries[0].details["previous"] == "learned"
    p.merge(store.statuses())
    assert p.status(WHO, "f2") == "rejected" and p.knows(WHO, "f1")
    with pytest.raises(UsageError):
        store.review([999], "approved", "alice")
    with pytest.raises(UsageError):
        store.review([ids["f1"]], "maybe", "alice")


def test_unknown_fingerprints_are_not_learned_outside_learn_mode() -> None:
    p = Profiles()
    p.observe(WHO, "f1", T0, lambda: "x", 1, (), learn=False)
    assert p.status(WHO, "f1") is None and p.pending == {}
