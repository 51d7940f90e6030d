"""The review state in the workspace database (SQLAlchemy Core; SQLite by default).

Tables, created on first use: ``review_rules`` (one row per rule: its policy, document,
evidence, state, review-by and expiry dates, and a revision number), ``review_events``
(every transition: who, when, from, to, note), ``review_bindings`` and ``review_iplists``
(documents that came with imports), and ``review_activations`` (which rules each activated
policy version held, for revert).

Two reviewers may act at once: a transition is one conditional ``UPDATE ... WHERE state =
:from AND rev = :rev`` and its event insert in the same transaction, so exactly one of two
racing transitions of a rule wins and the other raises :class:`ConflictError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from cellwall.errors import UsageError
from cellwall.model.policy import RoleBinding
from cellwall.review.model import TRANSITIONS, ConflictError

__all__ = ["Event", "ReviewStore", "RuleRecord"]

md = sa.MetaData()
rules_t = sa.Table(
    "review_rules",
    md,
    sa.Column("rule_id", sa.String, primary_key=True),
    sa.Column("policy", sa.String, nullable=False),
    sa.Column("owner", sa.String, nullable=False),
    sa.Column("scope", sa.Text, nullable=True),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("apps", sa.Text, nullable=False),
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("evidence", sa.Text, nullable=False),
    sa.Column("state", sa.String, nullable=False, index=True),
    sa.Column("review_by", sa.String, nullable=True),
    sa.Column("expires", sa.String, nullable=True),
    sa.Column("rev", sa.Integer, nullable=False),
)
events_t = sa.Table(
    "review_events",
    md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("rule_id", sa.String, nullable=False, index=True),
    sa.Column("at", sa.String, nullable=False),
    sa.Column("actor", sa.String, nullable=False),
    sa.Column("action", sa.String, nullable=False),
    sa.Column("from_state", sa.String, nullable=True),
    sa.Column("to_state", sa.String, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
)
bindings_t = sa.Table(
    "review_bindings",
    md,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("role", sa.String, nullable=False),
    sa.Column("subjects", sa.Text, nullable=False),
    sa.Column("apps", sa.Text, nullable=False),
)
iplists_t = sa.Table(
    "review_iplists",
    md,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("cidrs", sa.Text, nullable=False),
    sa.Column("except_", sa.Text, nullable=False),
)
activations_t = sa.Table(
    "review_activations",
    md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("at", sa.String, nullable=False),
    sa.Column("actor", sa.String, nullable=False),
    sa.Column("rules", sa.Text, nullable=False),
)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RuleRecord:
    """One rule under review; ``document`` is its policy-language mapping."""

    rule_id: str
    policy: str
    owner: str
    scope: Mapping[str, str] | None
    kind: str
    apps: tuple[str, ...]
    document: Mapping[str, Any]
    evidence: Mapping[str, Any] = field(default_factory=dict)
    state: str = "draft"
    review_by: str | None = None
    expires: str | None = None
    rev: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule_id,
            "policy": self.policy,
            "owner": self.owner,
            "scope": dict(self.scope) if self.scope else None,
            "kind": self.kind,
            "apps": list(self.apps),
            "state": self.state,
            "review_by": self.review_by,
            "expires": self.expires,
            "rev": self.rev,
            "document": dict(self.document),
            "evidence": dict(self.evidence),
        }


@dataclass(frozen=True, slots=True)
class Event:
    rule_id: str
    at: str
    actor: str
    action: str
    from_state: str | None
    to_state: str
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule_id,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "from": self.from_state,
            "to": self.to_state,
            "note": self.note,
        }


def _row(r: Any) -> RuleRecord:
    return RuleRecord(
        r.rule_id,
        r.policy,
        r.owner,
        json.loads(r.scope) if r.scope else None,
        r.kind,
        tuple(json.loads(r.apps)),
        json.loads(r.document),
        json.loads(r.evidence),
        r.state,
        r.review_by,
        r.expires,
        r.rev,
    )


def _values(rec: RuleRecord) -> dict[str, Any]:
    return {
        "rule_id": rec.rule_id,
        "policy": rec.policy,
        "owner": rec.owner,
        "scope": json.dumps(dict(rec.scope), sort_keys=True) if rec.scope else None,
        "kind": rec.kind,
        "apps": json.dumps(list(rec.apps)),
        "document": json.dumps(dict(rec.document)),
        "evidence": json.dumps(dict(rec.evidence), sort_keys=True, default=str),
        "state": rec.state,
        "review_by": rec.review_by,
        "expires": rec.expires,
        "rev": rec.rev,
    }


class ReviewStore:
    """The review state over one SQLAlchemy engine."""

    def __init__(self, engine: sa.Engine, clock: Callable[[], datetime] = _now) -> None:
        self.engine = engine
        self.clock = clock
        md.create_all(engine)

    def _stamp(self) -> str:
        return self.clock().astimezone(UTC).isoformat().replace("+00:00", "Z")

    def _event(
        self,
        conn: sa.Connection,
        rule: str,
        actor: str,
        action: str,
        frm: str | None,
        to: str,
        note: str,
        at: str | None = None,
    ) -> None:
        conn.execute(
            events_t.insert().values(
                rule_id=rule,
                at=at or self._stamp(),
                actor=actor,
                action=action,
                from_state=frm,
                to_state=to,
                note=note,
            )
        )

    def put(
        self, records: Iterable[RuleRecord], actor: str, note: str, events: bool = True
    ) -> dict[str, int]:
        """Add rules, or update the ones whose id exists; a changed rule goes back to its
        new record's state. Returns counts of added, changed and unchanged rules.
        ``events`` False writes no history (an import that restores its own)."""
        counts = {"added": 0, "changed": 0, "unchanged": 0}
        with self.engine.begin() as conn:
            for rec in records:
                old = conn.execute(
                    sa.select(rules_t).where(rules_t.c.rule_id == rec.rule_id)
                ).first()
                if old is None:
                    conn.execute(rules_t.insert().values(**_values(replace(rec, rev=1))))
                    if events:
                        self._event(conn, rec.rule_id, actor, "add", None, rec.state, note)
                    counts["added"] += 1
                    continue
                before = _row(old)
                same = before.document == rec.document and before.state == rec.state
                values = _values(replace(rec, rev=before.rev + 1))
                conn.execute(
                    rules_t.update().where(rules_t.c.rule_id == rec.rule_id).values(**values)
                )
                if same:
                    counts["unchanged"] += 1
                    continue
                if events:
                    self._event(conn, rec.rule_id, actor, "update", before.state, rec.state, note)
                counts["changed"] += 1
        return counts

    def get(self, rule_id: str) -> RuleRecord:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(rules_t).where(rules_t.c.rule_id == rule_id)).first()
        if row is None:
            raise UsageError(f"no rule {rule_id!r} is under review", "see `cellwall review list`")
        return _row(row)

    def rules(self, states: Sequence[str] = ()) -> list[RuleRecord]:
        q = sa.select(rules_t).order_by(rules_t.c.policy, rules_t.c.rule_id)
        if states:
            q = q.where(rules_t.c.state.in_(list(states)))
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(q)]

    def transition(
        self, rule_id: str, action: str, actor: str, note: str, rev: int | None = None
    ) -> RuleRecord:
        """Move a rule along ``action``; ConflictError when its state or revision changed."""
        sources, target = TRANSITIONS[action]
        rec = self.get(rule_id)
        expected = rec.rev if rev is None else rev
        if rec.rev != expected:  # the caller's view is stale: someone moved it meanwhile
            raise ConflictError(
                f"{rule_id} was changed by someone else meanwhile (revision {rec.rev}, "
                f"not {expected})",
                hint="list it again and retry",
            )
        if rec.state not in sources:
            raise UsageError(
                f"{rule_id} is {rec.state}; {action} needs {' or '.join(sources)}",
                hint="see `cellwall review list`",
            )
        with self.engine.begin() as conn:
            done = conn.execute(
                rules_t.update()
                .where(
                    (rules_t.c.rule_id == rule_id)
                    & (rules_t.c.state == rec.state)
                    & (rules_t.c.rev == expected)
                )
                .values(state=target, rev=expected + 1)
            )
            if done.rowcount != 1:
                raise ConflictError(
                    f"{rule_id} was changed by someone else meanwhile",
                    hint="list it again and retry",
                )
            self._event(conn, rule_id, actor, action, rec.state, target, note)
        return replace(rec, state=target, rev=expected + 1)

    def set_dates(self, rule_id: str, review_by: str | None, expires: str | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                rules_t.update()
                .where(rules_t.c.rule_id == rule_id)
                .values(review_by=review_by, expires=expires)
            )

    def events(self, rule_id: str | None = None) -> list[Event]:
        q = sa.select(events_t).order_by(events_t.c.id)
        if rule_id is not None:
            q = q.where(events_t.c.rule_id == rule_id)
        with self.engine.connect() as conn:
            return [
                Event(r.rule_id, r.at, r.actor, r.action, r.from_state, r.to_state, r.note)
                for r in conn.execute(q)
            ]

    def restore_events(self, events: Iterable[Event]) -> None:
        """Put exported history back (import), unless the rule already has history."""
        with self.engine.begin() as conn:
            for e in events:
                self._event(
                    conn, e.rule_id, e.actor, e.action, e.from_state, e.to_state, e.note, e.at
                )

    def activated(self, version: int, rule_ids: Sequence[str], actor: str) -> None:
        """Record an activation: those rules are active, every other active rule is not."""
        ids = sorted(set(rule_ids))
        with self.engine.begin() as conn:
            for rec in [_row(r) for r in conn.execute(sa.select(rules_t))]:
                want = "active" if rec.rule_id in ids else None
                if want is None and rec.state == "active":
                    want = "approved"
                if want is None or want == rec.state:
                    continue
                conn.execute(
                    rules_t.update()
                    .where(rules_t.c.rule_id == rec.rule_id)
                    .values(state=want, rev=rec.rev + 1)
                )
                self._event(conn, rec.rule_id, actor, "activate", rec.state, want, f"v{version}")
            conn.execute(
                activations_t.insert().values(
                    version=version, at=self._stamp(), actor=actor, rules=json.dumps(ids)
                )
            )

    def activation(self, version: int) -> list[str] | None:
        q = (
            sa.select(activations_t.c.rules)
            .where(activations_t.c.version == version)
            .order_by(activations_t.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            found = conn.execute(q).scalar()
        return None if found is None else list(json.loads(found))

    def bindings(self) -> list[RoleBinding]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(bindings_t).order_by(bindings_t.c.name)).all()
        return [
            RoleBinding(r.name, r.role, tuple(json.loads(r.subjects)), tuple(json.loads(r.apps)))
            for r in rows
        ]

    def put_bindings(self, bindings: Iterable[RoleBinding]) -> None:
        with self.engine.begin() as conn:
            for b in bindings:
                conn.execute(bindings_t.delete().where(bindings_t.c.name == b.name))
                conn.execute(
                    bindings_t.insert().values(
                        name=b.name,
                        role=b.role,
                        subjects=json.dumps(list(b.subjects)),
                        apps=json.dumps(list(b.apps)),
                    )
                )

    def iplists(self) -> dict[str, tuple[list[str], list[str]]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(iplists_t).order_by(iplists_t.c.name)).all()
        return {r.name: (json.loads(r.cidrs), json.loads(r.except_)) for r in rows}

    def put_iplists(self, lists: Mapping[str, tuple[Sequence[str], Sequence[str]]]) -> None:
        with self.engine.begin() as conn:
            for name, (cidrs, excepts) in lists.items():
                conn.execute(iplists_t.delete().where(iplists_t.c.name == name))
                conn.execute(
                    iplists_t.insert().values(
                        name=name, cidrs=json.dumps(list(cidrs)), except_=json.dumps(list(excepts))
                    )
                )
