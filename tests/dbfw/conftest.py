"""Fixtures: one real PostgreSQL per test worker, and helpers to run the proxy against it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.dbfw.pgserver import PgServer, start_postgres


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()
