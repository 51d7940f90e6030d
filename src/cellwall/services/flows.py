"""The flows use case: filter the lake and return rows, a count, or a file."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from cellwall.engine import connect
from cellwall.errors import EmptyWindowError, UsageError
from cellwall.lake.layout import LakeLayout
from cellwall.lake.scan import FlowFilter, flows, newest_start
from cellwall.workspace import Workspace

__all__ = ["parse_proto", "query_flows"]

PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "sctp": 132}


def parse_proto(text: str | None) -> int | None:
    if text is None:
        return None
    if text.lower() in PROTOCOLS:
        return PROTOCOLS[text.lower()]
    if text.isdigit() and 0 <= int(text) <= 255:
        return int(text)
    raise UsageError(f"--proto {text!r}: use tcp, udp, icmp, icmpv6, sctp or a number 0-255")


def query_flows(
    ws: Workspace,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    ip: str | None = None,
    src: str | None = None,
    dst: str | None = None,
    port: int | None = None,
    proto: str | None = None,
    action: str | None = None,
    fmt: str | None = None,
    limit: int = 50,
    count_only: bool = False,
    out: Path | None = None,
) -> dict[str, Any]:
    from cellwall.model.net import canonical_ip

    def addr(value: str | None, option: str) -> str | None:
        if value is None:
            return None
        canon = canonical_ip(value)
        if canon is None:
            raise UsageError(f"{option} {value!r} is not an IP address")
        return canon

    layout = LakeLayout(ws.lake)
    con = connect()
    f = FlowFilter(
        since=since,
        until=until,
        ip=addr(ip, "--ip"),
        src_ip=addr(src, "--src"),
        dst_ip=addr(dst, "--dst"),
        port=port,
        proto=parse_proto(proto),
        action=action,
        fmt=fmt,
    )
    t = flows(con, layout, f)
    total = int(t.count().to_pyarrow().as_py())
    if total == 0 and (since is not None or until is not None):
        newest = newest_start(con, layout)
        raise EmptyWindowError(
            "no flows in that window",
            hint=f"the newest flow starts at {newest.isoformat() if newest else 'never'}",
        )
    result: dict[str, Any] = {"count": total}
    if out is not None:
        table = t.order_by("start").to_pyarrow()
        if out.suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, out)
        else:
            import pyarrow.csv as pacsv

            pacsv.write_csv(table, out)
        result["out"] = str(out)
        return result
    if not count_only:
        q = t.order_by("start")
        if limit:
            q = q.limit(limit)
        result["rows"] = q.drop("day").to_pyarrow().to_pylist()
    return result
