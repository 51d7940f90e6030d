"""Connecting to an Ibis backend: DuckDB (embedded, memory capped) or Spark (PySpark).

The queries are Ibis expressions and run unchanged on either. Spark runs in local mode with
every core unless ``CELLWALL_SPARK_MASTER`` names a cluster; it needs the ``spark`` extra and
a Java runtime. Two things differ from DuckDB and are handled here, once:

- the lake's day folders are read as Hive partitions (``day=...``), so that a time window
  prunes them: Spark finds that column when it reads their parent folder, not a glob;
- timestamps are UTC in the session, as they are in the lake.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["ENGINES", "connect"]

DEFAULT_MEMORY = "2GB"
ENGINES = ("duckdb", "spark")


def connect(
    kind: str = "duckdb", *, memory_limit: str = DEFAULT_MEMORY, threads: int | None = None
) -> Any:
    """An Ibis backend: ``duckdb`` (the default) or ``spark``."""
    import ibis

    if kind == "spark":
        return _spark(memory_limit, threads)
    if kind != "duckdb":
        raise ValueError(f"unknown engine {kind!r}; use " + " or ".join(ENGINES))
    con = ibis.duckdb.connect()
    con.raw_sql(f"SET memory_limit = '{memory_limit}'")
    if threads:
        con.raw_sql(f"SET threads = {int(threads)}")
    return con


def _spark(memory_limit: str, threads: int | None) -> Any:
    try:
        from ibis.backends.pyspark import Backend
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - the spark extra is installed by make test
        from cellwall.errors import UsageError

        raise UsageError(
            "the Spark engine needs PySpark", hint="pip install 'cellwall[spark]' and a JRE"
        ) from exc

    class LakeSpark(Backend):  # type: ignore[misc]
        """PySpark that reads the lake's ``day=*/*.parquet`` glob with its partitions."""

        def read_parquet(self, path: Any, /, **kwargs: Any) -> Any:
            kwargs.pop("hive_partitioning", None)
            if kwargs.pop("union_by_name", False):
                kwargs["mergeSchema"] = "true"
            text = str(path)
            if text.endswith("/day=*/*.parquet"):  # the folder: Spark discovers `day` itself
                text = text.removesuffix("/day=*/*.parquet")
            return super().read_parquet(text, **kwargs)

    master = os.environ.get("CELLWALL_SPARK_MASTER") or f"local[{threads or '*'}]"
    memory = memory_limit.lower().replace("gb", "g").replace("mb", "m")
    session = (
        SparkSession.builder.master(master)
        .appName("cellwall")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", memory)
        .config("spark.sql.shuffle.partitions", str(max(2, 2 * (threads or os.cpu_count() or 2))))
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return LakeSpark().connect(session)
