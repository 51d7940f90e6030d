"""Rule hits kept in the workspace: a day recorded twice counts once; idle rules are found."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from cellwall.state.rule_hits import RuleHits
from cellwall.workspace import Workspace


def test_hits_per_day_replace_and_summarise(tmp_path: Path) -> None:
    ws = Workspace.resolve(tmp_path)
    hits = RuleHits(ws.engine)
    last = {"a": datetime(2026, 11, 2, 10, tzinfo=UTC), "b": datetime(2026, 11, 1, 5, tzinfo=UTC)}
    per_day = {("a", "2026-11-01"): 3, ("a", "2026-11-02"): 4, ("b", "2026-11-01"): 1}
    hits.record(1, per_day, last)
    hits.record(1, per_day, last)  # the same window again
    s = hits.summary(1)
    assert (s["a"].conversations, s["a"].days, s["a"].last_hit) == (7, 2, last["a"])
    assert (s["b"].conversations, s["b"].days) == (1, 1)
    assert hits.summary(2) == {}
    assert hits.idle_since(1, ["a", "b", "c"], date(2026, 11, 2)) == ["b", "c"]
