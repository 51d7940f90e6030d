"""The lake's manifest in the state database: which inputs were ingested, and their files.

An ingest is a transaction. Its row is written as ``committing`` with the list of files
before any file is moved into place, and becomes ``committed`` once all are there. After a
crash, :func:`pending` finds the ``committing`` ones so that the commit can be rolled
forward; staged data with no manifest row is discarded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

__all__ = ["Manifest", "StagedFile"]

metadata = sa.MetaData()

ingests = sa.Table(
    "lake_ingests",
    metadata,
    sa.Column("txn", sa.String, primary_key=True),
    sa.Column("path", sa.String, nullable=False),
    sa.Column("format", sa.String, nullable=False),
    sa.Column("raw_key", sa.String, nullable=False, index=True),
    sa.Column("content_key", sa.String, nullable=False, index=True),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("committed_at", sa.DateTime(timezone=True)),
    sa.Column("counts", sa.Text, nullable=False),
)

files = sa.Table(
    "lake_files",
    metadata,
    sa.Column("txn", sa.String, sa.ForeignKey("lake_ingests.txn"), nullable=False, index=True),
    sa.Column("kind", sa.String, nullable=False),  # flows | quarantine
    sa.Column("staged", sa.String, nullable=False),
    sa.Column("final", sa.String, nullable=False, unique=True),
    sa.Column("day", sa.String),
    sa.Column("rows", sa.Integer, nullable=False),
)


@dataclass(frozen=True, slots=True)
class StagedFile:
    kind: str
    staged: str
    final: str
    day: str | None
    rows: int


class Manifest:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)

    def find(
        self, *, raw_key: str | None = None, content_key: str | None = None
    ) -> dict[str, Any] | None:
        q = sa.select(ingests).where(ingests.c.status == "committed")
        if raw_key is not None:
            q = q.where(ingests.c.raw_key == raw_key)
        if content_key is not None:
            q = q.where(ingests.c.content_key == content_key)
        with self.engine.connect() as conn:
            row = conn.execute(q.limit(1)).mappings().first()
        if row is None:
            return None
        out = dict(row)
        out["counts"] = json.loads(out["counts"])
        return out

    def begin_commit(
        self,
        txn: str,
        *,
        path: str,
        fmt: str,
        raw_key: str,
        content_key: str,
        counts: dict[str, Any],
        staged: Sequence[StagedFile],
    ) -> None:
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(
                ingests.insert().values(
                    txn=txn,
                    path=path,
                    format=fmt,
                    raw_key=raw_key,
                    content_key=content_key,
                    status="committing",
                    started_at=now,
                    counts=json.dumps(counts, sort_keys=True),
                )
            )
            if staged:
                conn.execute(
                    files.insert(),
                    [
                        {
                            "txn": txn,
                            "kind": f.kind,
                            "staged": f.staged,
                            "final": f.final,
                            "day": f.day,
                            "rows": f.rows,
                        }
                        for f in staged
                    ],
                )

    def finish_commit(self, txn: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                ingests.update()
                .where(ingests.c.txn == txn)
                .values(status="committed", committed_at=datetime.now(UTC))
            )

    def pending(self) -> list[tuple[str, list[StagedFile]]]:
        with self.engine.connect() as conn:
            txns = (
                conn.execute(sa.select(ingests.c.txn).where(ingests.c.status == "committing"))
                .scalars()
                .all()
            )
            out = []
            for txn in txns:
                rows = conn.execute(sa.select(files).where(files.c.txn == txn)).mappings().all()
                out.append(
                    (
                        txn,
                        [
                            StagedFile(r["kind"], r["staged"], r["final"], r["day"], r["rows"])
                            for r in rows
                        ],
                    )
                )
        return out

    def known_txns(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(ingests.c.txn)).scalars().all())

    def history(self, limit: int = 50) -> list[dict[str, Any]]:
        q = sa.select(ingests).order_by(ingests.c.started_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(q).mappings().all()]
        for r in rows:
            r["counts"] = json.loads(r["counts"])
        return rows
