"""The canonical flow schema: one Arrow schema that every ingest adapter produces.

docs/flows.md documents every column. Columns are grouped as:

- the time window and 5-tuple (``start``, ``end``, ``src_ip`` ... ``proto``);
- counters (``bytes``/``packets`` from src to dst; ``rev_bytes``/``rev_packets`` from dst
  back to src, only for bidirectional records such as Zeek's);
- what the exporter itself knew (``action``, ``drop_reason``, ``tcp_flags``, ``direction``,
  ``src_initiated``, ``exporter``, ``sampling_rate``, ``source_id``);
- optional host and L7 facts (process and user on each end, DNS name, HTTP);
- lineage (``lineage_format``, ``lineage_file``, ``lineage_pos``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

__all__ = [
    "ACTIONS",
    "DIRECTIONS",
    "FLOW_SCHEMA",
    "REQUIRED_COLUMNS",
    "conform",
    "empty_flows",
]

TS = pa.timestamp("us", tz="UTC")

FLOW_SCHEMA = pa.schema(
    [
        pa.field("start", TS, nullable=False),
        pa.field("end", TS),
        pa.field("src_ip", pa.string(), nullable=False),
        pa.field("src_port", pa.uint16()),
        pa.field("dst_ip", pa.string(), nullable=False),
        pa.field("dst_port", pa.uint16()),
        pa.field("proto", pa.uint8(), nullable=False),
        pa.field("bytes", pa.uint64()),
        pa.field("packets", pa.uint64()),
        pa.field("rev_bytes", pa.uint64()),
        pa.field("rev_packets", pa.uint64()),
        pa.field("action", pa.string()),
        pa.field("drop_reason", pa.string()),
        pa.field("tcp_flags", pa.uint16()),
        pa.field("direction", pa.string()),
        pa.field("src_initiated", pa.bool_()),
        pa.field("exporter", pa.string()),
        pa.field("sampling_rate", pa.uint32()),
        pa.field("source_id", pa.string()),
        pa.field("src_process", pa.string()),
        pa.field("src_user", pa.string()),
        pa.field("dst_process", pa.string()),
        pa.field("dst_user", pa.string()),
        pa.field("dns_name", pa.string()),
        pa.field("http_method", pa.string()),
        pa.field("http_path", pa.string()),
        pa.field("http_status", pa.uint16()),
        pa.field("lineage_format", pa.string(), nullable=False),
        pa.field("lineage_file", pa.string(), nullable=False),
        pa.field("lineage_pos", pa.int64(), nullable=False),
    ]
)

REQUIRED_COLUMNS = tuple(f.name for f in FLOW_SCHEMA if not f.nullable)
ACTIONS = ("ACCEPT", "REJECT")
DIRECTIONS = ("ingress", "egress")


def empty_flows() -> pa.Table:
    return FLOW_SCHEMA.empty_table()


def conform(columns: Mapping[str, Any], length: int) -> pa.Table:
    """Build a table in FLOW_SCHEMA from the columns an adapter has; the rest are null.

    Every given column is cast (safely) to its schema type, so an adapter cannot store
    a value that does not fit.
    """
    unknown = set(columns) - set(FLOW_SCHEMA.names)
    if unknown:
        raise KeyError(f"not flow columns: {sorted(unknown)}")
    arrays = []
    for f in FLOW_SCHEMA:
        value = columns.get(f.name)
        if value is None:
            arrays.append(pa.nulls(length, f.type))
            continue
        if isinstance(value, pa.ChunkedArray):
            value = value.combine_chunks()
        if not isinstance(value, pa.Array):
            value = pa.array(value)
        if value.type != f.type:
            value = value.cast(f.type)
        arrays.append(value)
    return pa.Table.from_arrays(arrays, schema=FLOW_SCHEMA)
