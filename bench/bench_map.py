"""Benchmark: dependency-map edges (the fast path on DuckDB) against a pandas formulation.

A demo estate (VPC v2) of ``records`` flow records is generated and ingested (or
``BENCH_MAP_HOME`` names the workspace of an earlier one). Then:

- **full**: the workload-level edges of the whole lake through ``map_from_table`` on its
  fast path (:mod:`cellwall.discover.fast`), in a child process, which reports its wall
  time, CPU time and peak RSS (``ru_maxrss``); ``BENCH_MAP_REPEAT`` runs it several times and
  reports the median;
- **slice**: the first days of the lake holding about ``slice_records`` records, mapped by
  the fast path, by its Ibis twin (the expressions Spark runs) and by a pandas formulation
  of the same semantics (orientation with listening endpoints, the gap rule, exporter
  de-duplication, owners by ``merge_asof``, edges by ``groupby``). Every time includes
  reading the Parquet files. The edge sets are checked equal; ``ratio`` is pandas time /
  fast-path time.

Sizes scale with ``BENCH_SCALE``: 1.0 is the issue's 100 M records with a 10 M slice.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from cellwall.discover.coded import LakeFlows
from cellwall.discover.edges import _segments_table
from cellwall.discover.external import classify_external
from cellwall.discover.orient import DEFAULT_GAP_SECONDS
from cellwall.engine import connect
from cellwall.inventory import InventoryStore
from cellwall.lake.layout import LakeLayout
from cellwall.lake.scan import FlowFilter, flows
from cellwall.services.demo import demo_config, run_demo
from cellwall.services.map import MapQuery, map_from_table
from cellwall.workspace import Workspace

KEY = ["proto", "a_ip", "a_port", "b_ip", "b_port"]
COLUMNS = ["start", "end", "src_ip", "dst_ip", "src_port", "dst_port", "proto", "bytes",
           "packets", "rev_bytes", "rev_packets", "action", "tcp_flags", "src_initiated",
           "exporter"]  # fmt: skip


def _service(proto: pd.Series, port: pd.Series) -> pd.Series:
    names = proto.map({6: "tcp", 17: "udp", 132: "sctp"}).fillna("proto-" + proto.astype(str))
    out = names + "/" + port.astype(str)
    out[port < 0] = names[port < 0]
    out[proto == 1] = "icmp"
    out[proto == 58] = "icmpv6"
    return out


def _port_class(p: np.ndarray) -> np.ndarray:
    return np.where(p < 1024, 0, np.where(p < 32768, 1, 2))


def pandas_conversations(df: pd.DataFrame, gap_s: int = DEFAULT_GAP_SECONDS) -> pd.DataFrame:
    sp = df["src_port"].fillna(-1).astype("int64").to_numpy()
    dp = df["dst_port"].fillna(-1).astype("int64").to_numpy()
    src, dst = df["src_ip"].to_numpy(), df["dst_ip"].to_numpy()
    a_is_src = (src < dst) | ((src == dst) & (sp <= dp))
    proto = df["proto"].astype("int64").to_numpy()
    # listening endpoints
    ep = pd.DataFrame(
        {"ip": np.concatenate([src, dst]), "proto": np.concatenate([proto, proto]),
         "port": np.concatenate([sp, dp]), "peer": np.concatenate([dp, sp])}
    )  # fmt: skip
    ep = ep[ep["port"] >= 0]
    g = ep.groupby(["ip", "proto", "port"], sort=False)["peer"].agg(["min", "max"])
    listen = set(g.index[(g["min"] < g["max"]) & (g["min"] >= 1024)])
    flags = df["tcp_flags"].fillna(0).astype("int64").to_numpy()
    init = df["src_initiated"]
    syn_only = (
        (proto == 6) & df["tcp_flags"].notna().to_numpy() & (flags & 2 != 0) & (flags & 16 == 0)
    )
    rejected = (df["action"] == "REJECT").fillna(False).to_numpy()
    ex_rank = np.where(init.notna().to_numpy(), 1, np.where(syn_only | rejected, 2, 0))
    ex_src_client = np.where(init.notna().to_numpy(), init.astype("boolean").fillna(True), True)
    ev = ex_rank > 0
    ans_ip = np.where(ex_src_client, dst, src)[ev]
    ans_port = np.where(ex_src_client, dp, sp)[ev]
    listen |= {(i, p, q) for i, p, q in zip(ans_ip, proto[ev], ans_port, strict=True) if q >= 0}
    idx = pd.MultiIndex.from_arrays([src, proto, sp])
    src_l = idx.isin(list(listen)) if listen else np.zeros(len(df), bool)
    idx = pd.MultiIndex.from_arrays([dst, proto, dp])
    dst_l = idx.isin(list(listen)) if listen else np.zeros(len(df), bool)
    sc, dc = _port_class(sp), _port_class(dp)
    icmp = np.isin(proto, (1, 58))
    port_src = np.where(icmp, ~np.isin(sp, (0, 129)), np.where(sc != dc, sc > dc, sp >= dp))
    rank = np.where(ev, ex_rank, np.where(src_l != dst_l, 3, 4))
    src_client = np.where(ev, ex_src_client, np.where(src_l != dst_l, dst_l, port_src))
    code = rank * 2 + np.where(src_client == a_is_src, 0, 1)
    by = df["bytes"].fillna(0).astype("int64").to_numpy()
    rb = df["rev_bytes"].fillna(0).astype("int64").to_numpy()
    pk = df["packets"].fillna(0).astype("int64").to_numpy()
    rp = df["rev_packets"].fillna(0).astype("int64").to_numpy()
    r = pd.DataFrame(
        {"proto": proto, "a_ip": np.where(a_is_src, src, dst), "a_port": np.where(a_is_src, sp, dp),
         "b_ip": np.where(a_is_src, dst, src), "b_port": np.where(a_is_src, dp, sp),
         "exporter": df["exporter"].fillna("").to_numpy(), "start": df["start"].to_numpy(),
         "end": df["end"].fillna(df["start"]).to_numpy(), "code": code,
         "ab_b": np.where(a_is_src, by, rb), "ba_b": np.where(a_is_src, rb, by),
         "ab_p": np.where(a_is_src, pk, rp), "ba_p": np.where(a_is_src, rp, pk)}
    )  # fmt: skip
    r = r.sort_values([*KEY, "start"], kind="stable", ignore_index=True)
    keys = [r[k] for k in KEY]
    r["run_end"] = r.groupby(keys, sort=False)["end"].cummax()
    prev = r.groupby(keys, sort=False)["run_end"].shift()
    new = prev.isna() | (r["start"] > prev + pd.Timedelta(seconds=gap_s))
    r["seq"] = new.astype("int64").groupby(keys, sort=False).cumsum()
    per = r.groupby([*KEY, "seq", "exporter"], sort=False).agg(
        ab_b=("ab_b", "sum"), ba_b=("ba_b", "sum"), ab_p=("ab_p", "sum"), ba_p=("ba_p", "sum"),
        code=("code", "min"), start=("start", "min"), end=("end", "max"), records=("code", "size"),
    )  # fmt: skip
    c = per.groupby(level=[*KEY, "seq"], sort=False).agg(
        ab_b=("ab_b", "max"), ba_b=("ba_b", "max"), ab_p=("ab_p", "max"), ba_p=("ba_p", "max"),
        code=("code", "min"), start=("start", "min"), end=("end", "max"),
        records=("records", "sum"),
    ).reset_index()  # fmt: skip
    a_client = (c["code"] % 2) == 0
    return pd.DataFrame(
        {"client_ip": np.where(a_client, c["a_ip"], c["b_ip"]),
         "server_ip": np.where(a_client, c["b_ip"], c["a_ip"]),
         "service": _service(c["proto"], pd.Series(np.where(a_client, c["b_port"], c["a_port"]))),
         "start": c["start"], "end": c["end"], "records": c["records"],
         "bytes": c["ab_b"] + c["ba_b"], "packets": c["ab_p"] + c["ba_p"]}
    )  # fmt: skip


def pandas_edges(df: pd.DataFrame, ws: Workspace) -> pd.DataFrame:
    conv = pandas_conversations(df)
    workloads = InventoryStore(ws.engine).current()
    seg = _segments_table(workloads).to_pandas()
    ext = classify_external(sorted(set(df["src_ip"]) | set(df["dst_ip"]))).to_pandas()
    ext_node = dict(zip(ext["ip"], ext["node"], strict=True))
    conv = conv.sort_values("start", kind="stable")
    seg = seg.sort_values("s_from")
    for col in ("s_from", "s_until"):
        seg[col] = seg[col].astype(conv["start"].dtype)
    for side in ("client", "server"):
        m = pd.merge_asof(
            conv, seg.rename(columns={"ip": f"{side}_ip"}), left_on="start", right_on="s_from",
            by=f"{side}_ip",
        )  # fmt: skip
        owner = m["owner"].where(m["start"] < m["s_until"])
        conv[side] = owner.fillna(m[f"{side}_ip"].map(ext_node)).to_numpy()
    conv["day"] = conv["start"].dt.date
    e = conv.groupby(["client", "server", "service"]).agg(
        conversations=("records", "size"), records=("records", "sum"), bytes=("bytes", "sum"),
        packets=("packets", "sum"), first_seen=("start", "min"), last_seen=("end", "max"),
        days=("day", "nunique"),
    )  # fmt: skip
    return e.reset_index()


def _slice_filter(ws: Workspace, records: int, total: int) -> FlowFilter:
    con = connect()
    t = flows(con, LakeLayout(ws.lake))
    first = t.start.min().to_pyarrow().as_py()
    return FlowFilter(since=first, until=first + timedelta(days=7) * (records / total))


def _map(ws: Workspace, f: FlowFilter, fast: bool) -> Any:
    layout = LakeLayout(ws.lake)
    t = flows(connect(), layout, f)
    chunks = LakeFlows(layout, f.since, f.until) if fast else None
    workloads = InventoryStore(ws.engine).current()
    return map_from_table(t, workloads, MapQuery(group_by="workload"), flows_by_chunk=chunks)


def _map_child(home: str) -> None:
    started, cpu = time.perf_counter(), os.times()
    m = _map(Workspace.resolve(Path(home)), FlowFilter(), fast=True)
    done = os.times()
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - started,
                "cpu_seconds": done.user - cpu.user + done.system - cpu.system,
                "edges": len(m.edges),
                "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def _full(ws: Workspace, repeat: int) -> dict[str, float]:
    runs = []
    for _ in range(repeat):
        child = subprocess.run(
            [sys.executable, __file__, "--map-child", str(ws.home)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def _timed(fn: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    return fn(), time.perf_counter() - started


def _edges(m: Any) -> dict[tuple[str, str, str], int]:
    return {(e.client, e.server, e.service): e.conversations for e in m.edges}


def run(records: int = 100_000_000, slice_records: int = 10_000_000) -> dict[str, Any]:
    scale = float(os.environ.get("BENCH_SCALE", "1"))
    records = max(20_000, int(records * scale))
    slice_records = max(10_000, int(slice_records * scale))
    repeat = int(os.environ.get("BENCH_MAP_REPEAT", "1"))
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        if os.environ.get("BENCH_MAP_HOME"):
            ws = Workspace.resolve(Path(os.environ["BENCH_MAP_HOME"]))
        else:
            summary = run_demo(Path(tmp) / "demo", demo_config(flows=records))
            ws = Workspace.resolve(Path(summary["workspace"]))
        stored = int(flows(connect(), LakeLayout(ws.lake)).count().to_pyarrow().as_py())
        full = _full(ws, repeat)
        f = _slice_filter(ws, slice_records, stored)
        n_slice = int(flows(connect(), LakeLayout(ws.lake), f).count().to_pyarrow().as_py())
        ours, ours_s = _timed(lambda: _map(ws, f, fast=True))
        twin, twin_s = _timed(lambda: _map(ws, f, fast=False))

        def by_pandas() -> pd.DataFrame:
            dataset = ds.dataset(str(LakeLayout(ws.lake).flows), format="parquet",
                                 partitioning="hive")  # fmt: skip
            flt = (ds.field("start") >= f.since) & (ds.field("start") < f.until)
            return pandas_edges(dataset.to_table(columns=COLUMNS, filter=flt).to_pandas(), ws)

        theirs, pandas_s = _timed(by_pandas)
    want = {(r.client, r.server, r.service): r.conversations for r in theirs.itertuples()}
    return {
        "name": "map-edges",
        "records": stored,
        "edges": full["edges"],
        "seconds": round(full["seconds"], 2),
        "cpu_seconds": round(full["cpu_seconds"], 1),
        "records_per_s": round(stored / full["seconds"]),
        "peak_rss_mb": round(full["rss_mb"]),
        "runs": repeat,
        "slice_records": n_slice,
        "slice_fast_s": round(ours_s, 2),
        "slice_ibis_s": round(twin_s, 2),
        "slice_pandas_s": round(pandas_s, 2),
        "same_edges": _edges(ours) == want == _edges(twin),
        "cores": os.cpu_count(),
        "ratio": round(pandas_s / ours_s, 1),
    }


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--map-child":
        _map_child(sys.argv[2])
    else:
        print(run())
