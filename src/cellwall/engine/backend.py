"""Connecting to an Ibis backend. DuckDB runs embedded; its memory is capped."""

from __future__ import annotations

from typing import Any

__all__ = ["connect"]

DEFAULT_MEMORY = "2GB"


def connect(
    kind: str = "duckdb", *, memory_limit: str = DEFAULT_MEMORY, threads: int | None = None
) -> Any:
    """An Ibis backend. ``duckdb`` is the default; ``spark`` arrives with the map issue."""
    import ibis

    if kind != "duckdb":
        raise ValueError(f"unknown engine {kind!r}; this build runs on duckdb")
    con = ibis.duckdb.connect()
    con.raw_sql(f"SET memory_limit = '{memory_limit}'")
    if threads:
        con.raw_sql(f"SET threads = {int(threads)}")
    return con
