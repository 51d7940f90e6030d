"""Reading the flow lake over a time window, as an Ibis table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cellwall.errors import EmptyWindowError
from cellwall.lake.layout import LakeLayout

__all__ = ["FlowFilter", "flows", "newest_start"]


@dataclass(frozen=True, slots=True)
class FlowFilter:
    since: datetime | None = None
    until: datetime | None = None
    ip: str | None = None  # either end
    src_ip: str | None = None
    dst_ip: str | None = None
    port: int | None = None  # destination port
    proto: int | None = None
    action: str | None = None
    fmt: str | None = None


def _raw(con: Any, layout: LakeLayout) -> Any:
    return con.read_parquet(layout.flows_glob(), hive_partitioning=True, union_by_name=True)


def newest_start(con: Any, layout: LakeLayout) -> datetime | None:
    if not layout.has_flows():
        return None
    value = _raw(con, layout)["start"].max().to_pyarrow().as_py()
    return value  # type: ignore[no-any-return]


def flows(con: Any, layout: LakeLayout, f: FlowFilter = FlowFilter()) -> Any:
    """The lake's flows as an Ibis table, filtered; partitions outside the window are pruned.

    Raises EmptyWindowError (naming the newest flow) when the lake has no flows at all.
    """
    if not layout.has_flows():
        raise EmptyWindowError("the flow lake is empty", hint="load flows with `cellwall ingest`")
    t = _raw(con, layout)
    preds = []
    if f.since is not None:
        preds += [t["day"] >= f.since.date(), t["start"] >= f.since]
    if f.until is not None:
        preds += [t["day"] <= f.until.date(), t["start"] < f.until]
    if f.ip is not None:
        preds.append((t["src_ip"] == f.ip) | (t["dst_ip"] == f.ip))
    if f.src_ip is not None:
        preds.append(t["src_ip"] == f.src_ip)
    if f.dst_ip is not None:
        preds.append(t["dst_ip"] == f.dst_ip)
    if f.port is not None:
        preds.append(t["dst_port"] == f.port)
    if f.proto is not None:
        preds.append(t["proto"] == f.proto)
    if f.action is not None:
        preds.append(t["action"] == f.action.upper())
    if f.fmt is not None:
        preds.append(t["lineage_format"] == f.fmt)
    return t.filter(*preds) if preds else t
