"""Two reviewers at once: a rule moves once, and no transition is lost."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from cellwall.review import ConflictError, ReviewStore
from cellwall.services.review import act_on_rules, list_review
from cellwall.workspace import Workspace
from tests.review.conftest import TODAY


def _race(ws: Workspace, rule: str, rev: int, action: str, out: list[str]) -> None:
    store = ReviewStore(ws.engine)
    barrier.wait()
    try:
        store.transition(rule, action, f"reviewer-{action}", "race", rev=rev)
        out.append(action)
    except ConflictError:
        out.append("conflict")


barrier = threading.Barrier(2)


def test_two_threads_racing_on_one_rule_move_it_once(ws: Workspace) -> None:
    rules = ReviewStore(ws.engine).rules(("proposed",))
    for rec in rules[:5]:
        got: list[str] = []
        threads = [
            threading.Thread(target=_race, args=(ws, rec.rule_id, rec.rev, a, got))
            for a in ("approve", "reject")
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(got).count("conflict") == 1, got
        after = ReviewStore(ws.engine).get(rec.rule_id)
        winner = next(a for a in got if a != "conflict")
        assert after.state == ("approved" if winner == "approve" else "rejected")
        assert [e.action for e in ReviewStore(ws.engine).events(rec.rule_id)][-1] == winner


def _approve(home: str, rules: list[str]) -> None:
    act_on_rules(Workspace.resolve(home), rules, "approve", actor="sam", note="batch")


def test_two_processes_approving_at_once_lose_nothing(ws: Workspace) -> None:
    rules = [r["rule"] for r in list_review(ws, actor="sam", today=TODAY)]
    halves = [rules[0::2], rules[1::2]]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_approve, args=(str(Path(ws.home)), h)) for h in halves]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    states = {r.rule_id: r.state for r in ReviewStore(ws.engine).rules()}
    assert {states[r] for r in rules} == {"approved"}
    events = ReviewStore(ws.engine).events()
    assert sum(e.action == "approve" for e in events) == len(rules)


def test_a_stale_revision_is_a_conflict_even_when_the_state_moved_on(ws: Workspace) -> None:
    # The race above, with the loser arriving after the winner finished: its view of the
    # rule (revision) is stale, which is a conflict to retry, not a usage error.
    store = ReviewStore(ws.engine)
    rec = store.rules(("proposed",))[0]
    store.transition(rec.rule_id, "reject", "reviewer-a", "first", rev=rec.rev)
    with pytest.raises(ConflictError, match="changed by someone else"):
        store.transition(rec.rule_id, "approve", "reviewer-b", "second", rev=rec.rev)
    assert store.get(rec.rule_id).state == "rejected"
