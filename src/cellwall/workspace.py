"""The workspace: one directory that holds the flow lake, the state database and the lock.

Chosen, in this order, by ``--home DIR``, the ``CELLWALL_HOME`` environment variable, or
``~/.local/share/cellwall``. Nothing is created until a command needs it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import filelock
import sqlalchemy as sa

from cellwall.errors import LockedError, WorkspaceError

__all__ = ["Workspace"]

DEFAULT_HOME = Path("~/.local/share/cellwall")


@dataclass
class Workspace:
    home: Path
    lake: Path
    _engine: sa.Engine | None = field(default=None, repr=False)

    @classmethod
    def resolve(cls, home: str | Path | None = None, lake: str | Path | None = None) -> Workspace:
        chosen = Path(home or os.environ.get("CELLWALL_HOME") or DEFAULT_HOME).expanduser()
        return cls(home=chosen, lake=Path(lake).expanduser() if lake else chosen / "lake")

    def ensure(self) -> Workspace:
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            self.lake.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkspaceError(
                f"cannot create the workspace at {self.home}: {exc.strerror}",
                hint="choose another place with --home or CELLWALL_HOME",
            ) from exc
        return self

    @property
    def state_path(self) -> Path:
        return self.home / "state.db"

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self.ensure()
            engine = sa.create_engine(f"sqlite:///{self.state_path}")

            @sa.event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()

            self._engine = engine
        return self._engine

    @contextmanager
    def writer_lock(self, timeout: float = 0) -> Iterator[None]:
        """Hold the workspace's single writer lock; fail at once if another writer has it."""
        self.ensure()
        lock = filelock.FileLock(str(self.home / "writer.lock"), timeout=timeout)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise LockedError(
                f"another cellwall process is writing to the workspace {self.home}",
                hint="wait for it to finish; the lock is released when that process exits",
                exit_code=2,
            ) from None
        try:
            yield
        finally:
            lock.release()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
