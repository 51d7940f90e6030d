"""Inventory snapshots and label conventions in SQL (SQLite by default, PostgreSQL too).

Each :meth:`InventoryStore.load` stores a new *snapshot* of one source (a file, a cluster, an
AWS account) with its time; older snapshots stay as history. The merged view
(:meth:`InventoryStore.current`) takes the latest snapshot of every source, so loading one
source replaces that source's workloads only. When two sources define the same workload
name, the most recently loaded one wins in the merged view, and the load that creates the
collision reports it.

Tables (SQLAlchemy Core, created on first use): ``inventory_snapshots``,
``inventory_workloads``, ``inventory_labels``, ``inventory_addresses`` and
``inventory_conventions``. Times are stored as microseconds since the epoch (UTC).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from cellwall.errors import Diagnostic, InventoryError
from cellwall.model.inventory import AddressLease, Origin, Workload
from cellwall.model.labels import LabelConvention, Labels

__all__ = ["InventoryStore", "SnapshotInfo"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

md = sa.MetaData()
snapshots = sa.Table(
    "inventory_snapshots",
    md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String, nullable=False, index=True),
    sa.Column("loaded_at", sa.BigInteger, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
)


def _snap_fk() -> sa.ForeignKey:
    return sa.ForeignKey("inventory_snapshots.id", ondelete="CASCADE")


workloads_t = sa.Table(
    "inventory_workloads",
    md,
    sa.Column("snapshot_id", sa.Integer, _snap_fk(), primary_key=True),
    sa.Column("pos", sa.Integer, primary_key=True),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("owner", sa.String),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("origin_file", sa.String, nullable=False),
    sa.Column("origin_line", sa.Integer),
    sa.Column("origin_col", sa.Integer),
)
labels_t = sa.Table(
    "inventory_labels",
    md,
    sa.Column("snapshot_id", sa.Integer, _snap_fk(), primary_key=True),
    sa.Column("pos", sa.Integer, primary_key=True),
    sa.Column("key", sa.String, primary_key=True),
    sa.Column("value", sa.String, nullable=False),
)
addresses_t = sa.Table(
    "inventory_addresses",
    md,
    sa.Column("snapshot_id", sa.Integer, _snap_fk(), nullable=False, index=True),
    sa.Column("pos", sa.Integer, nullable=False),
    sa.Column("ip", sa.String, nullable=False, index=True),
    sa.Column("start_us", sa.BigInteger),
    sa.Column("until_us", sa.BigInteger),
)
conventions_t = sa.Table(
    "inventory_conventions",
    md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String, nullable=False, index=True),
    sa.Column("loaded_at", sa.BigInteger, nullable=False),
    sa.Column("document", sa.JSON, nullable=False),
)


def _us(ts: datetime | None) -> int | None:
    return None if ts is None else (ts - _EPOCH) // _US


def _dt(us: int | None) -> datetime | None:
    return None if us is None else _EPOCH + us * _US


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """One stored load of one source."""

    id: int
    source: str
    loaded_at: datetime
    workloads: int


class InventoryStore:
    """Snapshots of workloads per source, and label conventions, over one SQLAlchemy engine."""

    def __init__(self, engine: sa.Engine, clock: Callable[[], datetime] = _now) -> None:
        self.engine = engine
        self._clock = clock
        md.create_all(engine)

    def load(self, source: str, workloads: Iterable[Workload]) -> list[Diagnostic]:
        """Store a snapshot of ``source``; return a warning per name another source also has."""
        items = list(workloads)
        counts = Counter(w.name for w in items)
        dupes = sorted(name for name, n in counts.items() if n > 1)
        if dupes:
            raise InventoryError(f"source {source!r} names workloads twice: {', '.join(dupes)}")
        now = _us(self._clock())
        with self.engine.begin() as conn:
            others = self._latest_names(conn, exclude=source)
            inserted = conn.execute(
                snapshots.insert().values(source=source, loaded_at=now, count=len(items))
            )
            snap = int(inserted.inserted_primary_key[0])  # type: ignore[index]
            self._insert(conn, snap, items)
        out = []
        for w in items:
            if w.name in others:
                o = w.source
                msg = (
                    f"workload `{w.name}` of source `{source}` is also in source `{others[w.name]}`"
                )
                hint = "the most recent load wins in the merged inventory; rename one of them"
                out.append(
                    Diagnostic(o.file, o.line, o.col, "name-collision", msg, hint, "warning")
                )
        return out

    def _insert(self, conn: sa.Connection, snap: int, items: list[Workload]) -> None:
        rows: list[dict[str, Any]] = []
        labels: list[dict[str, Any]] = []
        addrs: list[dict[str, Any]] = []
        for pos, w in enumerate(items):
            s = w.source
            rows.append(
                {"snapshot_id": snap, "pos": pos, "name": w.name, "owner": w.owner, "kind": w.kind}
                | {"origin_file": s.file, "origin_line": s.line, "origin_col": s.col}
            )
            labels.extend(
                {"snapshot_id": snap, "pos": pos, "key": k, "value": v} for k, v in w.labels.items()
            )
            addrs.extend(
                {"snapshot_id": snap, "pos": pos, "ip": a.ip}
                | {"start_us": _us(a.start), "until_us": _us(a.until)}
                for a in w.addresses
            )
        for table, values in ((workloads_t, rows), (labels_t, labels), (addresses_t, addrs)):
            if values:
                conn.execute(table.insert(), values)

    def _latest_ids(self, conn: sa.Connection, at: datetime | None = None) -> dict[int, str]:
        q = sa.select(sa.func.max(snapshots.c.id), snapshots.c.source).group_by(snapshots.c.source)
        if at is not None:
            q = q.where(snapshots.c.loaded_at <= _us(at))
        return {row[0]: row[1] for row in conn.execute(q)}

    def _latest_names(self, conn: sa.Connection, exclude: str) -> dict[str, str]:
        ids = {i: s for i, s in self._latest_ids(conn).items() if s != exclude}
        q = sa.select(workloads_t.c.name, workloads_t.c.snapshot_id).where(
            workloads_t.c.snapshot_id.in_(ids)
        )
        return {name: ids[sid] for name, sid in conn.execute(q)}

    def _read(self, conn: sa.Connection, ids: Iterable[int]) -> dict[int, list[Workload]]:
        ids = list(ids)
        labels: dict[tuple[int, int], dict[str, str]] = {}
        q = sa.select(labels_t).where(labels_t.c.snapshot_id.in_(ids))
        for sid, pos, key, value in conn.execute(q):
            labels.setdefault((sid, pos), {})[key] = value
        addrs: dict[tuple[int, int], list[AddressLease]] = {}
        q = sa.select(addresses_t).where(addresses_t.c.snapshot_id.in_(ids))
        for sid, pos, ip, start, until in conn.execute(q):
            addrs.setdefault((sid, pos), []).append(AddressLease(ip, _dt(start), _dt(until)))
        out: dict[int, list[Workload]] = {i: [] for i in ids}
        q = sa.select(workloads_t).where(workloads_t.c.snapshot_id.in_(ids))
        q = q.order_by(workloads_t.c.snapshot_id, workloads_t.c.pos)
        for sid, pos, name, owner, kind, file, line, col in conn.execute(q):
            lbl = Labels.of(labels.get((sid, pos), {}))
            leases = tuple(addrs.get((sid, pos), ()))
            out[sid].append(Workload(name, owner, lbl, leases, Origin(file, line, col), kind))
        return out

    def current(self, at: datetime | None = None) -> list[Workload]:
        """The latest snapshot of every source (as of ``at``), merged; newest wins on a name."""
        with self.engine.connect() as conn:
            ids = self._latest_ids(conn, at)
            by_snapshot = self._read(conn, ids)
        merged: dict[str, Workload] = {}
        for sid in sorted(by_snapshot):  # later snapshots overwrite earlier ones
            for w in by_snapshot[sid]:
                merged[w.name] = w
        return sorted(merged.values(), key=lambda w: w.name)

    def snapshot(self, snapshot_id: int) -> list[Workload]:
        with self.engine.connect() as conn:
            return self._read(conn, [snapshot_id])[snapshot_id]

    def snapshots(self, source: str | None = None) -> list[SnapshotInfo]:
        """The history, oldest first."""
        q = sa.select(snapshots).order_by(snapshots.c.id)
        if source is not None:
            q = q.where(snapshots.c.source == source)
        with self.engine.connect() as conn:
            return [SnapshotInfo(i, s, _EPOCH + t * _US, n) for i, s, t, n in conn.execute(q)]

    def sources(self) -> list[str]:
        with self.engine.connect() as conn:
            return sorted(self._latest_ids(conn).values())

    def save_convention(self, source: str, convention: LabelConvention) -> None:
        """Store a convention; the latest one per source counts."""
        doc = {
            "required": list(convention.required),
            "values": {k: list(v) for k, v in convention.values},
            "aliases": dict(convention.aliases),
        }
        row = {"source": source, "loaded_at": _us(self._clock()), "document": doc}
        with self.engine.begin() as conn:
            conn.execute(conventions_t.insert().values(**row))

    def convention(self) -> LabelConvention | None:
        """The latest convention of every source, merged in the order they were saved."""
        latest = sa.select(sa.func.max(conventions_t.c.id)).group_by(conventions_t.c.source)
        q = sa.select(conventions_t.c.document).where(conventions_t.c.id.in_(latest))
        merged: LabelConvention | None = None
        with self.engine.connect() as conn:
            for (doc,) in conn.execute(q.order_by(conventions_t.c.id)):
                c = LabelConvention.of(doc["required"], doc["values"], doc["aliases"])
                merged = c if merged is None else merged.merge(c)
        return merged
