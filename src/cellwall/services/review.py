"""The review use cases: submit proposals, list, approve, reject, retire, activate, revert,
export and import (docs/review.md). Every action is checked against the actor's roles and
written to the audit log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from cellwall.errors import InputError, UsageError
from cellwall.inventory import InventoryStore
from cellwall.recommend.model import Proposal
from cellwall.review.files import policy_texts, read_state, state_texts
from cellwall.review.model import Actor, PermissionDeniedError, actor_roles, check_may
from cellwall.review.store import ReviewStore, RuleRecord
from cellwall.services.authz import bindings_in_force
from cellwall.state.audit import AuditLog, current_actor
from cellwall.workspace import Workspace

__all__ = [
    "act_on_rules",
    "activate_reviewed",
    "demo_review",
    "export_review",
    "import_review",
    "list_review",
    "revert_review",
    "submit_proposal",
]

REVIEW_DAYS = {"intra-app": 180, "cross-app": 90, "external": 90, "shared": 180}


def _actor(ws: Workspace, name: str | None) -> Actor:
    return actor_roles(current_actor(name), bindings_in_force(ws))


def _audit(
    ws: Workspace,
    actor: str,
    action: str,
    target: str,
    details: dict[str, Any],
    outcome: str = "ok",
) -> None:
    AuditLog(ws.engine).record(actor, f"review.{action}", target, outcome, details)


def _denied(ws: Workspace, who: Actor, action: str, target: str, exc: Exception) -> None:
    _audit(ws, who.name, action, target, {"error": str(exc)}, "denied")


def submit_proposal(
    ws: Workspace, proposal: Proposal, *, actor: str | None, today: date, state: str = "proposed"
) -> dict[str, Any]:
    """Put a recommendation's rules under review (``proposed``, or ``draft``)."""
    store = ReviewStore(ws.engine)
    who = _actor(ws, actor)
    records = []
    for pol in proposal.policies:
        for r in pol.rules:
            try:
                check_may(who, "submit", r.kind, r.apps)
            except PermissionDeniedError as exc:
                _denied(ws, who, "submit", r.id, exc)
                raise
            review_by = today + timedelta(days=REVIEW_DAYS.get(r.kind, 90))
            evidence = {**r.evidence.to_dict(), "confidence": r.confidence, "coverage": r.coverage}
            records.append(
                RuleRecord(
                    r.id,
                    pol.name,
                    pol.owner,
                    pol.scope,
                    r.kind,
                    r.apps,
                    r.document(),
                    evidence,
                    state,
                    review_by.isoformat(),
                )
            )
    store.put_iplists(proposal.iplists)
    counts = store.put(records, who.name, "recommendation")
    _audit(ws, who.name, "submit", f"{len(records)} rules", counts)
    return {**counts, "rules": len(records), "state": state}


def list_review(
    ws: Workspace, *, actor: str | None, today: date, states: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """The rules under review, with ``overdue`` (review-by passed) and ``expired`` flags."""
    store = ReviewStore(ws.engine)
    who = _actor(ws, actor)
    check_may(who, "list")
    out = []
    for rec in store.rules(states):
        doc = rec.to_dict()
        doc["overdue"] = bool(rec.review_by and rec.review_by < today.isoformat())
        doc["expired"] = bool(rec.expires and rec.expires < today.isoformat())
        out.append(doc)
    return out


def act_on_rules(
    ws: Workspace,
    rule_ids: Sequence[str],
    action: str,
    *,
    actor: str | None,
    note: str = "",
    expires: date | None = None,
    review_by: date | None = None,
) -> list[dict[str, Any]]:
    """submit, approve, reject or retire rules, one transition each."""
    store = ReviewStore(ws.engine)
    who = _actor(ws, actor)
    done = []
    for rid in rule_ids:
        rec = store.get(rid)
        try:
            check_may(who, action, rec.kind, rec.apps)
        except PermissionDeniedError as exc:
            _denied(ws, who, action, rid, exc)
            raise
        moved = store.transition(rid, action, who.name, note)
        if expires is not None or review_by is not None:
            by = review_by.isoformat() if review_by else moved.review_by
            until = expires.isoformat() if expires else moved.expires
            store.set_dates(rid, by, until)
        _audit(ws, who.name, action, rid, {"from": rec.state, "to": moved.state, "note": note})
        done.append(store.get(rid).to_dict())
    return done


def _load_texts(ws: Workspace, texts: dict[str, str], today: date) -> Any:
    from cellwall.policy.loader import load_policy_texts

    inventory = InventoryStore(ws.engine)
    result = load_policy_texts(
        texts, convention=inventory.convention(), workloads=inventory.current(), today=today
    )
    if result.errors:
        raise InputError(
            f"the reviewed policy has {len(result.errors)} error(s)",
            "fix the rules (export, edit, import) and activate again",
            result.errors,
        )
    return result.policy_set


def activate_reviewed(
    ws: Workspace, *, actor: str | None, today: date, allow_expired: bool = False
) -> dict[str, Any]:
    """Load the approved and active rules as a new policy version and activate it."""
    from cellwall.policy.rulediff import rule_diff
    from cellwall.policy.store import PolicyStore
    from cellwall.services.policy import active_policy

    store = ReviewStore(ws.engine)
    who = _actor(ws, actor)
    try:
        check_may(who, "activate")
    except PermissionDeniedError as exc:
        _denied(ws, who, "activate", "policy", exc)
        raise
    chosen = store.rules(("approved", "active"))
    expired = [r.rule_id for r in chosen if r.expires and r.expires < today.isoformat()]
    if expired and not allow_expired:
        raise UsageError(
            f"{len(expired)} rule(s) have expired: {', '.join(expired[:5])}",
            hint="retire them, move their expiry, or pass --allow-expired",
        )
    if not chosen:
        raise UsageError("no rule is approved or active", hint="approve rules first")
    texts = policy_texts(chosen, bindings_in_force(ws), store.iplists())
    ps = _load_texts(ws, texts, today)
    before = active_policy(ws)
    with ws.writer_lock(timeout=30):
        pstore = PolicyStore(ws.engine)
        info, created = pstore.load(ps, "review", texts, actor=who.name)
        info = pstore.activate(info.version, actor=who.name)
        store.activated(info.version, [r.rule_id for r in chosen], who.name)
    diff = rule_diff(before, ps).to_dict() if before is not None else None
    _audit(ws, who.name, "activate", f"v{info.version}", {"rules": len(chosen)})
    return {"version": info.version, "created": created, "rules": len(chosen), "diff": diff}


def revert_review(ws: Workspace, *, actor: str | None, version: int | None) -> dict[str, Any]:
    """Activate an earlier policy version (default: the one before the active one) and put
    the review states back as they were then."""
    from cellwall.policy.store import PolicyStore

    store = ReviewStore(ws.engine)
    who = _actor(ws, actor)
    check_may(who, "revert")
    pstore = PolicyStore(ws.engine)
    active = pstore.active()
    if version is None:
        older = [v.version for v in pstore.versions() if active and v.version < active.version]
        if not older:
            raise UsageError("no earlier policy version to revert to")
        version = older[-1]
    with ws.writer_lock(timeout=30):
        info = pstore.activate(version, actor=who.name)
        rules = store.activation(version) or []
        store.activated(info.version, rules, who.name)
    _audit(ws, who.name, "revert", f"v{version}", {"rules": len(rules)})
    return {"version": info.version, "rules": len(rules)}


def export_review(ws: Workspace, folder: Path, *, actor: str | None) -> dict[str, Any]:
    """Write the whole review state as YAML files into ``folder``."""
    store = ReviewStore(ws.engine)
    who = _actor(ws, actor)
    check_may(who, "export")
    texts = state_texts(store.rules(), store.events(), store.bindings(), store.iplists())
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8", newline="\n")
    _audit(ws, who.name, "export", str(folder), {"files": len(texts)})
    return {"files": sorted(texts), "rules": len(store.rules())}


def import_review(ws: Workspace, folder: Path, *, actor: str | None) -> dict[str, Any]:
    """Read exported (or hand-written) files into the review state. Needs admin or
    security-architect, except to bootstrap a workspace that has no role binding yet."""
    store = ReviewStore(ws.engine)
    who = _actor(ws, actor)
    bootstrap = not bindings_in_force(ws)
    if not bootstrap:
        try:
            check_may(who, "import")
        except PermissionDeniedError as exc:
            _denied(ws, who, "import", str(folder), exc)
            raise
    state = read_state(folder)
    known = {r.rule_id for r in store.rules()}
    history = {e.rule_id for e in state.events}
    fresh = [r for r in state.records if r.rule_id not in known and r.rule_id in history]
    rest = [r for r in state.records if r not in fresh]
    counts = store.put(fresh, who.name, "import", events=False)
    more = store.put(rest, who.name, f"import from {folder}")
    store.restore_events(e for e in state.events if e.rule_id in {r.rule_id for r in fresh})
    store.put_bindings(state.bindings)
    store.put_iplists(state.iplists)
    total = {k: counts[k] + more[k] for k in counts}
    outcome = "bootstrap" if bootstrap else "ok"
    _audit(ws, who.name, "import", str(folder), {**total, "bindings": len(state.bindings)}, outcome)
    return {**total, "bindings": len(state.bindings), "iplists": len(state.iplists)}


def demo_review(ws: Workspace, proposal: Proposal, out_dir: Path, *, today: date) -> dict[str, Any]:
    """The demo's governance stage: a security architect (sam) submits the recommendation,
    the payments owners (alice) approve their app's intra-app rules, alice's attempt at a
    cross-app rule is refused and audited, and an auditor (audrey) exports the state to
    ``out_dir``."""
    submitted = submit_proposal(ws, proposal, actor="sam", today=today)
    rows = list_review(ws, actor="audrey", today=today)
    mine = [r["rule"] for r in rows if r["kind"] == "intra-app" and "payments" in r["apps"]]
    approved = act_on_rules(ws, mine, "approve", actor="alice", note="matches the design")
    cross = [r["rule"] for r in rows if r["kind"] == "cross-app"][:1]
    refused = 0
    try:
        act_on_rules(ws, cross, "approve", actor="alice", note="")
    except PermissionDeniedError:
        refused = len(cross)
    exported = export_review(ws, out_dir, actor="audrey")
    return {
        "submitted": submitted["rules"],
        "approved": len(approved),
        "refused": refused,
        "out": str(out_dir),
        "files": len(exported["files"]),
    }
