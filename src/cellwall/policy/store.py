"""The policy store: numbered versions of a policy directory in the workspace database.

:meth:`PolicyStore.load` keeps a new version (its number, when and by whom it was loaded,
where from, a content hash, counts, and the YAML texts themselves, so that a version can be
read again exactly as it was). A load whose content hash equals the newest version's makes
no new version. :meth:`PolicyStore.activate` makes a version the active one; activations are
kept as history, the latest one counts. Every change is written to the audit log.

Tables (SQLAlchemy Core, created on first use): ``policy_versions``, ``policy_files`` and
``policy_activations``. Times are stored as microseconds since the epoch (UTC).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from cellwall.errors import UsageError
from cellwall.model.inventory import Workload
from cellwall.model.labels import LabelConvention
from cellwall.model.policy import PolicySet
from cellwall.policy.loader import LoadResult, load_policy_texts
from cellwall.state.audit import AuditLog, current_actor

__all__ = ["PolicyStore", "StoredVersion", "VersionInfo", "content_hash"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

md = sa.MetaData()
versions_t = sa.Table(
    "policy_versions",
    md,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("loaded_at", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String, nullable=False),
    sa.Column("content_hash", sa.String, nullable=False, index=True),
    sa.Column("source", sa.String, nullable=False),
    sa.Column("policies", sa.Integer, nullable=False),
    sa.Column("rules", sa.Integer, nullable=False),
    sa.Column("iplists", sa.Integer, nullable=False),
    sa.Column("invariants", sa.Integer, nullable=False),
)


def _version_fk() -> sa.ForeignKey:
    return sa.ForeignKey("policy_versions.version", ondelete="CASCADE")


files_t = sa.Table(
    "policy_files",
    md,
    sa.Column("version", sa.Integer, _version_fk(), primary_key=True),
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
)
activations_t = sa.Table(
    "policy_activations",
    md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("version", sa.Integer, _version_fk(), nullable=False),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String, nullable=False),
)


def _us(ts: datetime) -> int:
    return (ts - _EPOCH) // _US


def _now() -> datetime:
    return datetime.now(UTC)


def content_hash(texts: Mapping[str, str]) -> str:
    """SHA-256 over the files' names and texts, in name order (how they are reached does not
    matter: the same directory loaded as ``pol`` or ``./pol`` has one hash)."""
    h = hashlib.sha256()
    for name in sorted(texts):
        for part in (name, texts[name]):
            data = part.encode("utf-8", "surrogatepass")
            h.update(len(data).to_bytes(8, "big"))
            h.update(data)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One stored version of the policy."""

    version: int
    loaded_at: datetime
    actor: str
    content_hash: str
    source: str
    policies: int
    rules: int
    iplists: int
    invariants: int
    active: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "loaded_at": self.loaded_at.isoformat(),
            "actor": self.actor,
            "content_hash": self.content_hash,
            "source": self.source,
            "policies": self.policies,
            "rules": self.rules,
            "iplists": self.iplists,
            "invariants": self.invariants,
            "active": self.active,
        }


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """A version and its texts (file name -> YAML) exactly as they were loaded."""

    info: VersionInfo
    texts: Mapping[str, str]

    def read(
        self,
        *,
        convention: LabelConvention | None = None,
        workloads: list[Workload] | None = None,
        today: date | None = None,
    ) -> LoadResult:
        """Read the texts again; diagnostics name files as ``vN:file.yaml``."""
        prefix = f"v{self.info.version}:"
        return load_policy_texts(
            self.texts, convention=convention, workloads=workloads, today=today, prefix=prefix
        )

    def policy_set(self) -> PolicySet:
        return self.read().policy_set


class PolicyStore:
    """Versions of the policy over one SQLAlchemy engine; changes go to the audit log."""

    def __init__(
        self,
        engine: sa.Engine,
        clock: Callable[[], datetime] = _now,
        audit: AuditLog | None = None,
    ) -> None:
        self.engine = engine
        self._clock = clock
        self._audit = audit if audit is not None else AuditLog(engine, clock)
        md.create_all(engine)

    def load(
        self,
        policy_set: PolicySet,
        source_dir: str,
        text_files: Mapping[str, str],
        *,
        actor: str | None = None,
    ) -> tuple[VersionInfo, bool]:
        """Store a new version; (the version, True), or (the newest, False) when unchanged."""
        who = current_actor(actor)
        digest = content_hash(text_files)
        newest = self.newest()
        if newest is not None and newest.content_hash == digest:
            details: dict[str, Any] = {"source": source_dir, "content_hash": digest}
            self._audit.record(who, "policy.load", f"v{newest.version}", "unchanged", details)
            return newest, False
        row: dict[str, Any] = {
            "loaded_at": _us(self._clock()),
            "actor": who,
            "content_hash": digest,
            "source": source_dir,
            "policies": len(policy_set.policies),
            "rules": len(policy_set.rules()),
            "iplists": len(policy_set.iplists),
            "invariants": sum(len(s.invariants) for s in policy_set.invariants),
        }
        with self.engine.begin() as conn:
            inserted = conn.execute(versions_t.insert().values(**row))
            number = int(inserted.inserted_primary_key[0])  # type: ignore[index]
            files = [{"version": number, "name": n, "text": t} for n, t in text_files.items()]
            if files:
                conn.execute(files_t.insert(), files)
        info = self._info(number)
        details = {k: v for k, v in row.items() if k not in ("loaded_at", "actor")}
        self._audit.record(who, "policy.load", f"v{number}", "ok", details)
        return info, True

    def activate(self, version: int, *, actor: str | None = None) -> VersionInfo:
        """Make ``version`` the active one (a UsageError when it does not exist)."""
        who = current_actor(actor)
        info = self._info(version)
        before = self.active()
        if before is not None and before.version == version:
            self._audit.record(who, "policy.activate", f"v{version}", "unchanged")
            return info
        with self.engine.begin() as conn:
            at = _us(self._clock())
            conn.execute(activations_t.insert().values(version=version, at=at, actor=who))
        previous = before.version if before is not None else None
        self._audit.record(who, "policy.activate", f"v{version}", "ok", {"previous": previous})
        return self._info(version)

    def _active_number(self, conn: sa.Connection) -> int | None:
        q = sa.select(activations_t.c.version).order_by(activations_t.c.id.desc()).limit(1)
        return conn.execute(q).scalar()

    def _rows(self, where: Any = None) -> list[VersionInfo]:
        q = sa.select(versions_t).order_by(versions_t.c.version)
        if where is not None:
            q = q.where(where)
        with self.engine.connect() as conn:
            active = self._active_number(conn)
            rows = conn.execute(q).mappings().all()
        return [
            VersionInfo(
                r["version"],
                _EPOCH + r["loaded_at"] * _US,
                r["actor"],
                r["content_hash"],
                r["source"],
                r["policies"],
                r["rules"],
                r["iplists"],
                r["invariants"],
                r["version"] == active,
            )
            for r in rows
        ]

    def _info(self, version: int) -> VersionInfo:
        rows = self._rows(versions_t.c.version == version)
        if not rows:
            newest = self.newest()
            hint = (
                f"versions are 1 to {newest.version}; see `cellwall policy list`"
                if newest is not None
                else "load one with `cellwall policy load DIR`"
            )
            raise UsageError(f"policy version {version} does not exist", hint)
        return rows[0]

    def versions(self) -> list[VersionInfo]:
        """Every version, oldest first."""
        return self._rows()

    def newest(self) -> VersionInfo | None:
        q = sa.select(sa.func.max(versions_t.c.version))
        with self.engine.connect() as conn:
            number = conn.execute(q).scalar()
        return None if number is None else self._info(number)

    def active(self) -> VersionInfo | None:
        with self.engine.connect() as conn:
            number = self._active_number(conn)
        return None if number is None else self._info(number)

    def get(self, version: int) -> StoredVersion:
        """A version with its texts (a UsageError when it does not exist)."""
        info = self._info(version)
        q = sa.select(files_t.c.name, files_t.c.text).where(files_t.c.version == version)
        with self.engine.connect() as conn:
            texts = {name: text for name, text in conn.execute(q)}
        return StoredVersion(info, texts)
