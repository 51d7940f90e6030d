"""Rule hit counts per rule and UTC day, with the last hit, kept in the workspace.

Replay of the active policy records what it counted, so that later stages (stale-rule
detection, review) can ask "when did this rule last allow anything?" without rereading the
lake. A day recorded again keeps the larger count, never the sum: replaying the same window
twice counts once, and a window that starts in the middle of a day does not shrink it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

__all__ = ["RuleHit", "RuleHits"]

metadata = sa.MetaData()
hits_t = sa.Table(
    "rule_hits",
    metadata,
    sa.Column("policy_version", sa.Integer, primary_key=True),
    sa.Column("rule_id", sa.String, primary_key=True),
    sa.Column("day", sa.String, primary_key=True),
    sa.Column("conversations", sa.Integer, nullable=False),
    sa.Column("last_hit", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True, slots=True)
class RuleHit:
    rule_id: str
    conversations: int
    days: int
    last_hit: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule_id,
            "conversations": self.conversations,
            "days": self.days,
            "last_hit": self.last_hit.isoformat().replace("+00:00", "Z"),
        }


def _aware(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


class RuleHits:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)

    def record(
        self,
        version: int,
        per_day: Mapping[tuple[str, str], int],
        last_hit: Mapping[str, datetime],
    ) -> int:
        """Store (rule, day) → conversations for ``version``; the last hit of a (rule, day) is
        the rule's last hit when it falls on that day, else the end of the day is unknown and
        the rule's last hit is kept only on its own day."""
        rows: list[dict[str, Any]] = []
        for (rule, day), n in per_day.items():
            last = _aware(last_hit[rule])
            when = (
                last
                if last.date().isoformat() == day
                else datetime.fromisoformat(day).replace(tzinfo=UTC)
            )
            rows.append(
                {
                    "policy_version": version,
                    "rule_id": rule,
                    "day": day,
                    "conversations": n,
                    "last_hit": when,
                }
            )
        with self.engine.begin() as conn:
            for r in rows:
                key = (
                    (hits_t.c.policy_version == version)
                    & (hits_t.c.rule_id == r["rule_id"])
                    & (hits_t.c.day == r["day"])
                )
                old = conn.execute(
                    sa.select(hits_t.c.conversations, hits_t.c.last_hit).where(key)
                ).first()
                if old is None:
                    conn.execute(hits_t.insert().values(**r))
                    continue
                # a window that covers part of a day must not shrink what a whole-day replay
                # counted; the same window again changes nothing
                conn.execute(
                    hits_t.update()
                    .where(key)
                    .values(
                        conversations=max(int(old[0]), r["conversations"]),
                        last_hit=max(_aware(old[1]), r["last_hit"]),
                    )
                )
        return len(rows)

    def summary(self, version: int, rule_ids: Iterable[str] = ()) -> dict[str, RuleHit]:
        """Per rule of ``version``: conversations, days with a hit, and the last hit."""
        q = (
            sa.select(
                hits_t.c.rule_id,
                sa.func.sum(hits_t.c.conversations),
                sa.func.count(hits_t.c.day),
                sa.func.max(hits_t.c.last_hit),
            )
            .where(hits_t.c.policy_version == version)
            .group_by(hits_t.c.rule_id)
        )
        wanted = set(rule_ids)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return {
            rid: RuleHit(rid, int(n), int(d), _aware(last))
            for rid, n, d, last in rows
            if not wanted or rid in wanted
        }

    def idle_since(self, version: int, rule_ids: Iterable[str], day: date) -> list[str]:
        """The rules of ``rule_ids`` with no hit on or after ``day``."""
        hits = self.summary(version)
        cut = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return sorted(r for r in rule_ids if r not in hits or hits[r].last_hit < cut)
