"""A small ingested demo estate shared by the discovery tests, and a flow-table builder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa
import pytest

from cellwall.model.flow_schema import FLOW_SCHEMA
from cellwall.services.demo import demo_config, run_demo

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
COLUMNS = ("start", "end", "src_ip", "dst_ip", "src_port", "dst_port", "proto", "bytes",
           "packets", "rev_bytes", "rev_packets", "action", "tcp_flags", "src_initiated",
           "exporter")  # fmt: skip


def table(*rows: dict[str, Any]) -> Any:
    """An Ibis table of flow records; ``t`` is seconds after T0, ``d`` the duration."""
    schema = pa.schema([FLOW_SCHEMA.field(c) for c in COLUMNS])
    full = []
    for r in rows:
        r = dict(r)
        start = T0 + timedelta(seconds=r.pop("t", 0))
        full.append({"start": start, "end": start + timedelta(seconds=r.pop("d", 0)),
                     "proto": 6, "bytes": 100, "packets": 2, **r})  # fmt: skip
    return ibis.memtable(pa.Table.from_pylist(full, schema=schema))


@pytest.fixture(scope="session")
def demo_vpc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("map-demo-vpc")
    run_demo(out, demo_config(flows=30_000, seed=3))
    return out


@pytest.fixture(scope="session")
def demo_zeek(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("map-demo-zeek")
    run_demo(out, demo_config(flows=15_000, seed=4, fmt="zeek"))
    return out
