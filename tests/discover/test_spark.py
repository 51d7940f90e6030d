"""The same Ibis expressions on PySpark (local mode) give the same edges as on DuckDB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa
import pyarrow.parquet as pq

# `make test` installs the spark extra and a JRE: a missing one fails here, never skips.
import pyspark  # noqa: F401
import pytest

from cellwall.discover.edges import edges_table, parse_group_by
from cellwall.discover.orient import conversations
from cellwall.inventory import InventoryStore
from cellwall.workspace import Workspace
from tests.discover.conftest import COLUMNS, table
from tests.discover.test_orient import vpc_pair

# PySpark and ibis's Spark backend warn from their own code (pandas 3 deprecations, py4j
# sockets); those are theirs to fix, not findings about cellwall.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

# Spark has no unsigned integers; its Parquet reader widens them the same way.
SIGNED = {pa.uint8(): pa.int16(), pa.uint16(): pa.int32(), pa.uint32(): pa.int64(),
          pa.uint64(): pa.int64()}  # fmt: skip


def signed(t: pa.Table) -> pa.Table:
    return t.cast(pa.schema([pa.field(f.name, SIGNED.get(f.type, f.type)) for f in t.schema]))


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield ibis.pyspark.connect(session)
    session.stop()


def both(spark: Any, expr: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    duck = ibis.duckdb.connect().to_pyarrow(expr).to_pylist()
    return sorted(duck, key=str), sorted(spark.to_pyarrow(expr).to_pylist(), key=str)


def test_conversations_gap_rule_and_exporters(spark: Any) -> None:
    recs = vpc_pair(41234, exporter="e1") + vpc_pair(41234, t=1, exporter="e2")
    recs += vpc_pair(41234, t=200) + vpc_pair(50000, t=5)
    flows = ibis.memtable(signed(table(*recs).to_pyarrow()))
    duck, spk = both(spark, conversations(flows))
    assert duck == spk and len(duck) == 3


def test_demo_slice_edges(spark: Any, demo_vpc: Path) -> None:
    ws = Workspace.resolve(demo_vpc / "home")
    files = sorted((ws.lake / "flows").glob("*/*.parquet"))[:3]
    t = signed(pa.concat_tables([pq.read_table(f).select(list(COLUMNS)) for f in files]))
    addresses = sorted(set(t["src_ip"].to_pylist()) | set(t["dst_ip"].to_pylist()))
    workloads = InventoryStore(ws.engine).current()
    e = edges_table(conversations(ibis.memtable(t)), addresses, workloads, parse_group_by("role"))
    duck, spk = both(spark, e)
    assert duck == spk and len(duck) > 20
