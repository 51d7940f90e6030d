"""The review workflow: roles, transitions, activation through the policy store, revert,
expiry, export and import, and the audit trail."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from cellwall.errors import UsageError
from cellwall.policy.store import PolicyStore
from cellwall.review import PermissionDeniedError, ReviewStore
from cellwall.services.policy import active_policy
from cellwall.services.review import (
    act_on_rules,
    activate_reviewed,
    export_review,
    import_review,
    list_review,
    revert_review,
)
from cellwall.state.audit import AuditLog
from cellwall.workspace import Workspace
from tests.review.conftest import TODAY


def ids(ws: Workspace, kind: str, app: str | None = None) -> list[str]:
    rows = list_review(ws, actor="ada", today=TODAY)
    return [r["rule"] for r in rows if r["kind"] == kind and (app is None or app in r["apps"])]


def test_submitted_rules_are_proposed_with_review_dates(ws: Workspace) -> None:
    rows = list_review(ws, actor="ada", today=TODAY)
    assert rows and {r["state"] for r in rows} == {"proposed"}
    assert all(r["review_by"] > TODAY.isoformat() and not r["overdue"] for r in rows)
    assert all(r["evidence"]["conversations"] > 0 for r in rows)


def test_an_app_owner_approves_only_intra_app_rules_of_its_apps(ws: Workspace) -> None:
    mine = ids(ws, "intra-app", "shop")
    act_on_rules(ws, mine, "approve", actor="olga", note="looks right")
    assert {r.state for r in ReviewStore(ws.engine).rules() if r.rule_id in mine} == {"approved"}
    with pytest.raises(PermissionDeniedError, match="security-architect"):
        act_on_rules(ws, ids(ws, "cross-app")[:1], "approve", actor="olga")
    with pytest.raises(PermissionDeniedError, match="owns shop"):
        act_on_rules(ws, ids(ws, "intra-app", "pay")[:1], "approve", actor="olga")
    with pytest.raises(PermissionDeniedError):
        act_on_rules(ws, ids(ws, "shared")[:1], "approve", actor="ada")  # auditor
    with pytest.raises(PermissionDeniedError, match="no role"):
        list_review(ws, actor="mallory", today=TODAY)
    denied = AuditLog(ws.engine).entries(action="review.approve")
    assert {e.outcome for e in denied} == {"ok", "denied"}


def test_every_transition_records_who_when_and_a_note(ws: Workspace) -> None:
    rule = ids(ws, "cross-app")[0]
    act_on_rules(ws, [rule], "reject", actor="sam", note="not needed")
    act_on_rules(ws, [rule], "submit", actor="sam", note="needed after all")
    events = ReviewStore(ws.engine).events(rule)
    assert [(e.action, e.to_state, e.actor) for e in events] == [
        ("add", "proposed", "sam"),
        ("reject", "rejected", "sam"),
        ("submit", "proposed", "sam"),
    ]
    assert events[1].note == "not needed" and events[1].at.endswith("Z")
    with pytest.raises(UsageError, match="approve needs proposed"):
        act_on_rules(ws, [rule], "reject", actor="sam")
        act_on_rules(ws, [rule], "approve", actor="sam")


def test_activation_goes_through_the_policy_store_and_revert_restores(ws: Workspace) -> None:
    every = [r["rule"] for r in list_review(ws, actor="sam", today=TODAY)]
    first, rest = every[:3], every[3:]
    act_on_rules(ws, first, "approve", actor="sam")
    with pytest.raises(PermissionDeniedError):
        activate_reviewed(ws, actor="olga", today=TODAY)
    v1 = activate_reviewed(ws, actor="sam", today=TODAY)
    ps = active_policy(ws)
    assert ps is not None and {r.id for _, r in ps.rules()} == set(first)
    assert {b.name for b in ps.bindings} >= {"admins", "shop-owners"}
    act_on_rules(ws, rest, "approve", actor="root")
    v2 = activate_reviewed(ws, actor="root", today=TODAY)
    assert v2["version"] == v1["version"] + 1 and v2["diff"]["rules"]["added"]
    assert len(active_policy(ws).rules()) == len(every)  # type: ignore[union-attr]
    back = revert_review(ws, actor="sam", version=None)
    assert back["version"] == v1["version"]
    assert PolicyStore(ws.engine).active().version == v1["version"]  # type: ignore[union-attr]
    states = {r.rule_id: r.state for r in ReviewStore(ws.engine).rules()}
    assert {states[r] for r in first} == {"active"} and {states[r] for r in rest} == {"approved"}


def test_expired_rules_are_surfaced_and_refused_at_activation(ws: Workspace) -> None:
    rule = ids(ws, "shared")[0]
    act_on_rules(ws, [rule], "approve", actor="sam", expires=date(2026, 11, 15))
    row = next(r for r in list_review(ws, actor="ada", today=TODAY) if r["rule"] == rule)
    assert row["expired"] and row["expires"] == "2026-11-15"
    with pytest.raises(UsageError, match="expired"):
        activate_reviewed(ws, actor="sam", today=TODAY)
    assert activate_reviewed(ws, actor="sam", today=TODAY, allow_expired=True)["rules"] == 1
    active = active_policy(ws)
    assert active is not None
    assert [r.expires for _, r in active.rules() if r.id == rule] == [date(2026, 11, 15)]
    later = list_review(ws, actor="ada", today=date(2028, 1, 1))
    assert all(r["overdue"] for r in later)


def test_expiry_is_a_rule_field_in_exports(ws: Workspace, tmp_path: Path) -> None:
    rule = ids(ws, "shared")[0]
    act_on_rules(ws, [rule], "approve", actor="sam", expires=date(2027, 3, 1))
    export_review(ws, tmp_path / "out", actor="ada")
    text = "".join(p.read_text() for p in sorted((tmp_path / "out").iterdir()))
    assert 'expires: "2027-03-01"' in text and '"expires"' not in text
    other = Workspace.resolve(tmp_path / "other")
    import_review(other, tmp_path / "out", actor="someone")
    assert ReviewStore(other.engine).get(rule).expires == "2027-03-01"


def test_export_then_import_round_trips_the_whole_state(ws: Workspace, tmp_path: Path) -> None:
    act_on_rules(ws, ids(ws, "intra-app", "shop"), "approve", actor="olga", note="ok")
    act_on_rules(ws, ids(ws, "cross-app"), "reject", actor="sam", note="no: ticket 7")
    first = tmp_path / "export-1"
    export_review(ws, first, actor="ada")
    text = (first / "app-shop.yaml").read_text()
    assert "# evidence: {" in text and '"state": "approved"' in text and "review_by:" in text
    other = Workspace.resolve(tmp_path / "other")
    import_review(other, first, actor="someone")  # bootstrap: no binding there yet
    second = tmp_path / "export-2"
    export_review(other, second, actor="ada")
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    for name in names:
        assert (first / name).read_text() == (second / name).read_text(), name
    with pytest.raises(PermissionDeniedError):
        import_review(other, first, actor="olga")  # bindings exist now
