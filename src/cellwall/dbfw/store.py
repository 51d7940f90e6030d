"""What the database firewall learned, in the workspace: one row per identity and fingerprint.

Each row counts the queries seen, with first and last seen, a normalised sample (constants
replaced by ``$n``, so no literal values are kept) and a review status:

- ``learned``: seen in learn mode; allowed until a person rejects it;
- ``approved``: a person accepted it, including any structural indicator it trips
  (a monitoring tool that reads ``pg_catalog``, say);
- ``rejected``: a person rejected it; blocked in enforce mode from then on.

Reviews are recorded in the audit log. The proxy keeps the allow-list in memory
(:class:`Profiles`) and writes counts back in batches.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cellwall.dbfw.identity import ClientIdentity
from cellwall.errors import UsageError
from cellwall.state.audit import AuditLog

__all__ = ["STATUSES", "FingerprintStore", "LearnedFingerprint", "Observation", "Profiles"]

STATUSES = ("learned", "approved", "rejected")
_ACTIONS = {"approved": "dbproxy.approve", "rejected": "dbproxy.reject", "learned": "dbproxy.reset"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

md = sa.MetaData()
fingerprints_t = sa.Table(
    "dbfw_fingerprints",
    md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String, nullable=False),
    sa.Column("db_user", sa.String, nullable=False),
    sa.Column("db_name", sa.String, nullable=False),
    sa.Column("application", sa.String, nullable=False),
    sa.Column("fingerprint", sa.String, nullable=False),
    sa.Column("sample", sa.Text, nullable=False),
    sa.Column("statements", sa.Integer, nullable=False),
    sa.Column("indicators", sa.Text, nullable=False),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("first_us", sa.BigInteger, nullable=False),
    sa.Column("last_us", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("reviewed_by", sa.String),
    sa.Column("reviewed_us", sa.BigInteger),
    sa.UniqueConstraint("source", "db_user", "db_name", "application", "fingerprint"),
)


def _us(ts: datetime) -> int:
    return (ts - _EPOCH) // timedelta(microseconds=1)


def _dt(us: int | None) -> datetime | None:
    return None if us is None else _EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True, slots=True)
class LearnedFingerprint:
    """One reviewable row of the allow-list."""

    id: int
    identity: ClientIdentity
    fingerprint: str
    sample: str
    statements: int
    indicators: tuple[str, ...]
    count: int
    first_seen: datetime
    last_seen: datetime
    status: str
    reviewed_by: str | None = None
    reviewed_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "identity": self.identity.to_dict(),
            "fingerprint": self.fingerprint,
            "sample": self.sample,
            "statements": self.statements,
            "indicators": list(self.indicators),
            "count": self.count,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "status": self.status,
            "reviewed_by": self.reviewed_by,
            "reviewed_at": self.reviewed_at.isoformat() if self.reviewed_at else None,
        }


@dataclass(slots=True)
class Observation:
    """Counts gathered in memory since the last write (mutable on purpose)."""

    sample: str
    statements: int
    indicators: tuple[str, ...]
    first: datetime
    last: datetime
    count: int = 0
    new: bool = False


def _now() -> datetime:
    return datetime.now(UTC)


class FingerprintStore:
    def __init__(
        self, engine: sa.Engine, audit: AuditLog | None = None, clock: Callable[[], datetime] = _now
    ) -> None:
        self.engine = engine
        self.audit = audit if audit is not None else AuditLog(engine)
        self.clock = clock
        md.create_all(engine)

    def statuses(self) -> dict[ClientIdentity, dict[str, str]]:
        t = fingerprints_t
        q = sa.select(
            t.c.source, t.c.db_user, t.c.db_name, t.c.application, t.c.fingerprint, t.c.status
        )
        out: dict[ClientIdentity, dict[str, str]] = {}
        with self.engine.connect() as conn:
            for src, user, db, app, fp, status in conn.execute(q):
                out.setdefault(ClientIdentity(src, user, db, app), {})[fp] = status
        return out

    def record(self, batch: Iterable[tuple[ClientIdentity, str, Observation]]) -> int:
        """Add counts; create rows for new fingerprints as ``learned``."""
        t = fingerprints_t
        rows = [
            {
                "source": i.source,
                "db_user": i.user,
                "db_name": i.database,
                "application": i.application,
                "fingerprint": fp,
                "sample": o.sample,
                "statements": o.statements,
                "indicators": json.dumps(list(o.indicators)),
                "count": o.count,
                "first_us": _us(o.first),
                "last_us": _us(o.last),
                "status": "learned",
            }
            for i, fp, o in batch
        ]
        if not rows:
            return 0
        stmt = sqlite_insert(t)
        stmt = stmt.on_conflict_do_update(
            index_elements=["source", "db_user", "db_name", "application", "fingerprint"],
            set_={
                "count": t.c.count + stmt.excluded.count,
                "first_us": sa.func.min(t.c.first_us, stmt.excluded.first_us),
                "last_us": sa.func.max(t.c.last_us, stmt.excluded.last_us),
            },
        )
        with self.engine.begin() as conn:
            conn.execute(stmt, rows)
        return len(rows)

    def find(
        self,
        *,
        status: str | None = None,
        source: str | None = None,
        user: str | None = None,
        ids: Sequence[int] = (),
    ) -> list[LearnedFingerprint]:
        t = fingerprints_t
        q = sa.select(t).order_by(t.c.source, t.c.db_user, t.c.db_name, t.c.application, t.c.id)
        if status:
            if status not in STATUSES:
                raise UsageError(f"status {status!r}: use " + ", ".join(STATUSES))
            q = q.where(t.c.status == status)
        if source:
            q = q.where(t.c.source == source)
        if user:
            q = q.where(t.c.db_user == user)
        if ids:
            q = q.where(t.c.id.in_(list(ids)))
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [
            LearnedFingerprint(
                r["id"],
                ClientIdentity(r["source"], r["db_user"], r["db_name"], r["application"]),
                r["fingerprint"],
                r["sample"],
                r["statements"],
                tuple(json.loads(r["indicators"])),
                r["count"],
                _dt(r["first_us"]) or _EPOCH,
                _dt(r["last_us"]) or _EPOCH,
                r["status"],
                r["reviewed_by"],
                _dt(r["reviewed_us"]),
            )
            for r in rows
        ]

    def review(
        self, ids: Sequence[int], decision: str, actor: str, note: str = ""
    ) -> list[LearnedFingerprint]:
        """Set the status of these rows to ``approved`` or ``rejected``; audited."""
        if decision not in ("approved", "rejected", "learned"):
            raise UsageError(f"decision {decision!r}: use approved or rejected")
        found = self.find(ids=ids)
        missing = sorted(set(ids) - {f.id for f in found})
        if missing:
            raise UsageError(
                "no learned fingerprint with id " + ", ".join(map(str, missing)),
                hint="list them with `cellwall dbproxy review list`",
            )
        now = _us(self.clock())
        t = fingerprints_t
        with self.engine.begin() as conn:
            conn.execute(
                t.update()
                .where(t.c.id.in_(list(ids)))
                .values(status=decision, reviewed_by=actor, reviewed_us=now)
            )
        for f in found:
            self.audit.record(
                actor,
                _ACTIONS[decision],
                f"{f.identity} {f.fingerprint}",
                "ok",
                {
                    "id": f.id,
                    "previous": f.status,
                    "status": decision,
                    "note": note,
                    "sample": f.sample[:200],
                },
            )
        return self.find(ids=ids)


@dataclass
class Profiles:
    """The allow-list in memory: identity → fingerprint → status, plus counts to write back."""

    statuses: dict[ClientIdentity, dict[str, str]] = field(default_factory=dict)
    pending: dict[tuple[ClientIdentity, str], Observation] = field(default_factory=dict)

    def status(self, identity: ClientIdentity, fingerprint: str) -> str | None:
        known = self.statuses.get(identity)
        return None if known is None else known.get(fingerprint)

    def knows(self, identity: ClientIdentity, fingerprint: str | None) -> bool:
        if fingerprint is None:
            return False
        return self.status(identity, fingerprint) in ("learned", "approved")

    def observe(
        self,
        identity: ClientIdentity,
        fingerprint: str,
        at: datetime,
        sample: Callable[[], str],
        statements: int,
        indicators: tuple[str, ...],
        *,
        learn: bool,
    ) -> None:
        """Count a use; in learn mode a new fingerprint becomes ``learned``."""
        known = self.statuses.setdefault(identity, {})
        if fingerprint not in known:
            if not learn:
                return
            known[fingerprint] = "learned"
        key = (identity, fingerprint)
        obs = self.pending.get(key)
        if obs is None:
            obs = self.pending[key] = Observation(sample(), statements, indicators, at, at)
        obs.count += 1
        obs.last = at

    def merge(self, statuses: dict[ClientIdentity, dict[str, str]]) -> None:
        """Take the stored statuses (reviews made while the proxy runs win)."""
        for identity, known in statuses.items():
            self.statuses.setdefault(identity, {}).update(known)

    def take(self) -> list[tuple[ClientIdentity, str, Observation]]:
        batch = [(i, fp, o) for (i, fp), o in self.pending.items()]
        self.pending = {}
        return batch
