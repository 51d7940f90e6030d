"""The audit log: who changed what in the workspace, when, with what result.

Every use case that changes the workspace (an ingest, an inventory load) appends one entry.
Entries are never updated or deleted. The actor is ``--as NAME``, else ``CELLWALL_USER``,
else the operating-system user.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

__all__ = ["AuditEntry", "AuditLog", "current_actor"]

metadata = sa.MetaData()

entries = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("actor", sa.String, nullable=False),
    sa.Column("action", sa.String, nullable=False, index=True),
    sa.Column("target", sa.String, nullable=False),
    sa.Column("outcome", sa.String, nullable=False),
    sa.Column("details", sa.Text, nullable=False),
)


def current_actor(explicit: str | None = None) -> str:
    if explicit:
        return explicit
    env = os.environ.get("CELLWALL_USER")
    if env:
        return env
    try:
        return f"os:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"os:uid-{os.getuid()}"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    outcome: str
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "details": self.details,
        }


def _now() -> datetime:
    return datetime.now(UTC)


class AuditLog:
    def __init__(self, engine: sa.Engine, clock: Callable[[], datetime] = _now) -> None:
        self.engine = engine
        self.clock = clock
        metadata.create_all(engine)

    def record(
        self,
        actor: str,
        action: str,
        target: str,
        outcome: str = "ok",
        details: dict[str, Any] | None = None,
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                entries.insert().values(
                    at=self.clock(),
                    actor=actor,
                    action=action,
                    target=target,
                    outcome=outcome,
                    details=json.dumps(details or {}, sort_keys=True, default=str),
                )
            )

    def entries(self, *, action: str | None = None, limit: int = 100) -> list[AuditEntry]:
        q = sa.select(entries).order_by(entries.c.id.desc()).limit(limit)
        if action:
            q = q.where(entries.c.action == action)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [
            AuditEntry(
                r["id"],
                r["at"].replace(tzinfo=UTC) if r["at"].tzinfo is None else r["at"],
                r["actor"],
                r["action"],
                r["target"],
                r["outcome"],
                json.loads(r["details"]),
            )
            for r in rows
        ]
