"""The audit log: who changed what in the workspace, when, with what result, hash-chained.

Every use case that changes the workspace (an ingest, an inventory load, a policy version,
a review transition) appends one entry. Entries are never updated or deleted. The actor is
``--as NAME``, else ``CELLWALL_USER``, else the operating-system user.

Each entry's ``digest`` is SHA-256 over its sequence number, the digest of the entry before
it and its own fields (:func:`entry_digest`), and a one-row head table holds the newest
sequence number and digest. Appending takes the database's write lock first, so concurrent
writers chain one after the other. :meth:`AuditLog.verify` recomputes the chain: an edited
entry, a deleted or inserted one, and a cut-off tail are each reported with the entry where
the chain breaks. Someone able to rewrite the whole table can also recompute the chain, so
auditors record the head (``cellwall audit head``) elsewhere and pass it back as an anchor
(``cellwall audit verify --anchor SEQ:DIGEST``).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from cellwall.errors import WorkspaceError

__all__ = [
    "GENESIS",
    "AuditEntry",
    "AuditLog",
    "Break",
    "Verification",
    "anchors_from",
    "current_actor",
    "entry_digest",
    "parse_anchor",
]

metadata = sa.MetaData()

entries = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("actor", sa.String, nullable=False),
    sa.Column("action", sa.String, nullable=False, index=True),
    sa.Column("target", sa.String, nullable=False),
    sa.Column("outcome", sa.String, nullable=False),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("prev", sa.String(64), nullable=True),
    sa.Column("digest", sa.String(64), nullable=True),
)

head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
)

#: The "previous digest" of the first entry.
GENESIS = "0" * 64


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


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def entry_digest(
    seq: int,
    prev: str,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    outcome: str,
    details: str,
) -> str:
    """SHA-256 (hex) of one entry: its fields as a canonical JSON array, after ``prev``."""
    fields = [
        seq,
        prev,
        _utc(at).isoformat(timespec="microseconds"),
        actor,
        action,
        target,
        outcome,
        details,
    ]
    body = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    outcome: str
    details: dict[str, Any]
    digest: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "details": self.details,
            "digest": self.digest,
        }


@dataclass(frozen=True, slots=True)
class Break:
    """Where the chain breaks: the entry (sequence number) and what is wrong there."""

    id: int
    problem: str  # altered | missing | relinked | unsealed | truncated | anchor
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "problem": self.problem, "message": self.message}


@dataclass(slots=True)
class Verification:
    """What :meth:`AuditLog.verify` found: entries checked, the head, and every break."""

    entries: int = 0
    head_seq: int = 0
    head_digest: str = GENESIS
    breaks: list[Break] = field(default_factory=list)
    anchors: int = 0

    @property
    def ok(self) -> bool:
        return not self.breaks

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "head": {"seq": self.head_seq, "digest": self.head_digest},
            "anchors_checked": self.anchors,
            "breaks": [b.to_dict() for b in self.breaks],
        }


def _now() -> datetime:
    return datetime.now(UTC)


def _details(details: dict[str, Any] | None) -> str:
    return json.dumps(details or {}, sort_keys=True, default=str)


_READY: weakref.WeakSet[sa.Engine] = weakref.WeakSet()


def _prepare(engine: sa.Engine) -> None:
    """Create the tables; seal a log written before the chain existed (once per engine)."""
    if engine in _READY:
        return
    for attempt in range(3):
        try:
            with engine.begin() as conn:
                if sa.inspect(conn).has_table("audit_log"):
                    columns = {c["name"] for c in sa.inspect(conn).get_columns("audit_log")}
                    if "digest" not in columns:
                        conn.execute(sa.text("ALTER TABLE audit_log ADD COLUMN prev VARCHAR(64)"))
                        conn.execute(sa.text("ALTER TABLE audit_log ADD COLUMN digest VARCHAR(64)"))
                metadata.create_all(conn)
                no_head = conn.execute(sa.select(head.c.seq)).first() is None
                sealed = conn.execute(
                    sa.select(entries.c.id).where(entries.c.digest.is_not(None)).limit(1)
                ).first()
                # A log with digests but no head was tampered with: never re-seal it (that
                # would hide the tampering); verify reports it and recording refuses.
                if no_head and sealed is None:
                    seq, prev = _seal(conn)
                    conn.execute(head.insert().values(id=1, seq=seq, digest=prev))
            break
        except (sa.exc.IntegrityError, sa.exc.OperationalError):
            # Another process prepared the log at the same moment; look again.
            if attempt == 2:
                raise
    _READY.add(engine)


def _seal(conn: sa.Connection) -> tuple[int, str]:
    """Chain the entries that have no digest yet (an older workspace's), in id order."""
    prev, seq = GENESIS, 0
    rows = conn.execute(sa.select(entries).order_by(entries.c.id)).mappings().all()
    for r in rows:
        seq = r["id"]
        d = entry_digest(
            seq, prev, r["at"], r["actor"], r["action"], r["target"], r["outcome"], r["details"]
        )
        conn.execute(entries.update().where(entries.c.id == seq).values(prev=prev, digest=d))
        prev = d
    return seq, prev


def _entry(r: sa.RowMapping) -> AuditEntry:
    return AuditEntry(
        r["id"],
        _utc(r["at"]),
        r["actor"],
        r["action"],
        r["target"],
        r["outcome"],
        json.loads(r["details"]),
        r["digest"],
    )


class AuditLog:
    def __init__(self, engine: sa.Engine, clock: Callable[[], datetime] = _now) -> None:
        self.engine = engine
        self.clock = clock
        _prepare(engine)

    def record(
        self,
        actor: str,
        action: str,
        target: str,
        outcome: str = "ok",
        details: dict[str, Any] | None = None,
    ) -> int:
        """Append one entry; returns its sequence number."""
        with self.engine.begin() as conn:
            # The UPDATE comes first so that this transaction holds the write lock before it
            # reads the head: two writers chain one after the other, never from one head.
            conn.execute(head.update().where(head.c.id == 1).values(seq=head.c.seq + 1))
            found = conn.execute(sa.select(head.c.seq, head.c.digest)).first()
            if found is None:
                raise WorkspaceError(
                    "the audit log's head row is missing, so nothing more can be chained",
                    hint="run `cellwall audit verify` and restore the workspace from a backup",
                )
            seq, prev = found
            at, text = self.clock(), _details(details)
            d = entry_digest(seq, prev, at, actor, action, target, outcome, text)
            conn.execute(
                entries.insert().values(
                    id=seq,
                    at=_utc(at),
                    actor=actor,
                    action=action,
                    target=target,
                    outcome=outcome,
                    details=text,
                    prev=prev,
                    digest=d,
                )
            )
            conn.execute(head.update().where(head.c.id == 1).values(digest=d))
        return int(seq)

    def entries(self, *, action: str | None = None, limit: int = 100) -> list[AuditEntry]:
        q = sa.select(entries).order_by(entries.c.id.desc()).limit(limit)
        if action:
            q = q.where(entries.c.action == action)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [_entry(r) for r in rows]

    def head(self) -> tuple[int, str]:
        """The newest sequence number and its digest: what an auditor records as an anchor."""
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(head.c.seq, head.c.digest)).first()
        if found is None:
            raise WorkspaceError(
                "the audit log's head row is missing", hint="run `cellwall audit verify`"
            )
        return int(found[0]), str(found[1])

    def verify(
        self, anchors: Iterable[tuple[int, str]] = (), *, batch: int = 10_000
    ) -> Verification:
        """Recompute the whole chain; every break is reported, in order."""
        want = dict(anchors)
        found = Verification(anchors=len(want))
        seen: dict[int, str] = {}
        expected_id, prev = 1, GENESIS
        last = 0
        with self.engine.connect() as conn:
            found_head = conn.execute(sa.select(head.c.seq, head.c.digest)).first()
            head_seq, head_digest = found_head if found_head is not None else (-1, "(missing)")
            while True:
                q = sa.select(entries).where(entries.c.id > last).order_by(entries.c.id)
                rows = conn.execute(q.limit(batch)).mappings().all()
                if not rows:
                    break
                for r in rows:
                    expected_id, prev = _check(r, expected_id, prev, found.breaks)
                    seen[r["id"]] = r["digest"] or ""
                    found.entries += 1
                last = rows[-1]["id"]
        found.head_seq, found.head_digest = int(head_seq), str(head_digest)
        if last != head_seq or (last and seen.get(last) != head_digest):
            found.breaks.append(
                Break(
                    last,
                    "truncated",
                    f"the log ends at entry {last} but its head says entry {head_seq} "
                    f"({str(head_digest)[:12]}…): entries were removed or the head was altered",
                )
            )
        for seq, digest in sorted(want.items()):
            if seen.get(seq) != digest:
                found.breaks.append(
                    Break(
                        seq,
                        "anchor",
                        f"entry {seq} does not have the anchored digest {digest[:12]}…: "
                        "the log was rewritten since the anchor was taken",
                    )
                )
        return found


def _check(r: sa.RowMapping, expected_id: int, prev: str, breaks: list[Break]) -> tuple[int, str]:
    """Check one row against the chain so far; returns the next expected id and digest."""
    seq = r["id"]
    if seq != expected_id:
        gone = f"{expected_id}" if seq == expected_id + 1 else f"{expected_id}–{seq - 1}"
        breaks.append(Break(seq, "missing", f"entries {gone} are missing before entry {seq}"))
    if r["digest"] is None:
        breaks.append(Break(seq, "unsealed", f"entry {seq} has no digest: it was inserted"))
        return seq + 1, prev
    if r["prev"] != prev and seq == expected_id:
        breaks.append(
            Break(seq, "relinked", f"entry {seq} does not follow the digest of the entry before")
        )
    d = entry_digest(
        seq,
        r["prev"] or "",
        r["at"],
        r["actor"],
        r["action"],
        r["target"],
        r["outcome"],
        r["details"],
    )
    if d != r["digest"]:
        breaks.append(
            Break(seq, "altered", f"entry {seq} ({r['action']} by {r['actor']}) was altered")
        )
    return seq + 1, str(r["digest"])


def parse_anchor(text: str) -> tuple[int, str]:
    """``SEQ:DIGEST`` as printed by ``audit head``."""
    seq, sep, digest = text.partition(":")
    if not sep or not seq.strip().isdigit() or len(digest.strip()) != 64:
        raise ValueError(f"anchor {text!r} is not SEQ:DIGEST (a number and 64 hex digits)")
    return int(seq), digest.strip().lower()


def anchors_from(texts: Sequence[str]) -> list[tuple[int, str]]:
    return [parse_anchor(t) for t in texts]
