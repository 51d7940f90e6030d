"""The demo use case: generate the synthetic estate and run the pipeline over it, end to end."""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.dataset as ds

from cellwall.demo import DemoConfig, generate
from cellwall.errors import UsageError
from cellwall.inventory import InventoryStore, Resolver
from cellwall.lake.layout import LakeLayout
from cellwall.services.analyze import demo_analysis
from cellwall.services.compile import demo_compile
from cellwall.services.dbfw import demo_dbfw
from cellwall.services.demo_policy import demo_policy_stage
from cellwall.services.demo_telemetry import demo_telemetry
from cellwall.services.enforce import demo_enforce
from cellwall.services.ingest import Progress, ingest_paths
from cellwall.services.inventory import check_inventory, load_inventory
from cellwall.services.recommend import demo_recommend
from cellwall.services.review import demo_review
from cellwall.state.audit import AuditLog
from cellwall.workspace import Workspace

__all__ = ["identity_coverage", "run_demo"]

MARKER = ".cellwall-demo"


def _fresh(out: Path) -> None:
    """Start from an empty output directory; only a previous demo's output is removed."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise UsageError(
                f"{out} is not empty and was not written by `cellwall demo`",
                hint="choose another --out",
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by cellwall demo run; removed by the next run\n")


def identity_coverage(ws: Workspace) -> dict[str, Any]:
    """How flow endpoints resolve against the inventory, at each flow's own time."""
    layout = LakeLayout(ws.lake)
    dataset = ds.dataset(str(layout.flows), format="parquet", partitioning="hive")
    workloads = InventoryStore(ws.engine).current()
    ends: Counter[str] = Counter()
    owners: set[str] = set()
    with Resolver(workloads) as resolver:
        for batch in dataset.to_batches(columns=["start", "src_ip", "dst_ip"], batch_size=1 << 20):
            for col in ("src_ip", "dst_ip"):
                got = resolver.resolve(batch[col], batch["start"])
                owned = pc.is_valid(got["owner"])
                ends["workload"] += pc.sum(owned).as_py() or 0
                owners.update(pc.unique(got["owner"].drop_null()).to_pylist())
                classes = got["address_class"].drop_null().value_counts().to_pylist()
                for item in classes:
                    ends[item["values"]] += item["counts"]
    total = sum(ends.values())
    return {
        "endpoints": total,
        "by_class": dict(sorted(ends.items())),
        "resolved_share": round(ends["workload"] / total, 4) if total else 0.0,
        "workloads_seen": len(owners),
        "workloads_total": len(workloads),
    }


INTERNET_IPLIST = """\
apiVersion: cellwall/v1
kind: IPList
metadata: {name: internet}
spec:
  cidrs: [0.0.0.0/0, "::/0"]
  except: [10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, "fc00::/7"]
"""


def draw_maps(ws: Workspace, folder: Path) -> dict[str, Any]:
    """The dependency map of the whole lake: by app (PNG, SVG, JSON) and by role (JSON, CSV).

    The internet is one named IP list, so that thousands of client networks are one node.
    """
    from cellwall.discover.render import render
    from cellwall.services.map import MapQuery, build_dependency_map

    folder.mkdir(parents=True, exist_ok=True)
    iplists = folder / "iplists.yaml"
    iplists.write_text(INTERNET_IPLIST)
    written: dict[str, Any] = {"iplists": str(iplists)}
    for group_by, formats in (("app", ("png", "svg", "json")), ("role", ("json", "csv"))):
        query = MapQuery(group_by=group_by, iplist_files=(iplists,))
        result = build_dependency_map(ws, query)
        for fmt in formats:
            path = folder / f"map-{group_by}.{fmt}"
            path.write_bytes(render(result, fmt))
            written[f"{group_by}_{fmt}"] = str(path)
        written[f"{group_by}_edges"] = len(result.edges)
    return written


def _newest(ws: Workspace) -> datetime:
    """The start of the newest flow in the lake (the demo's "today")."""
    from cellwall.engine import connect
    from cellwall.lake.scan import newest_start

    return newest_start(connect(), LakeLayout(ws.lake)) or datetime.now(UTC)


def run_demo(
    out: Path,
    config: DemoConfig,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Generate the estate into OUT/estate, then ingest, load and check it in OUT/home."""
    started = time.perf_counter()
    _fresh(out)
    estate_dir = out / "estate"
    result = generate(
        estate_dir, config, (lambda d, t: progress("generate", d, t)) if progress else None
    )
    ws = Workspace.resolve(out / "home")
    ingest_progress: Progress | None = None
    if progress is not None:
        counted = [0]

        def ingest_progress(records: int, _bytes: int) -> None:
            counted[0] += records
            progress("ingest", counted[0], result.records + result.other_lines)

    ingest = ingest_paths(ws, result.flow_files, fmt=config.fmt, progress=ingest_progress)
    docs = result.documents
    inventory = load_inventory(
        ws, [docs["inventory"]], source="demo-inventory", conventions=docs["conventions"]
    )
    load_inventory(ws, [docs["conventions"]], source="demo-conventions")
    check = check_inventory(ws)
    coverage = identity_coverage(ws)
    telemetry = demo_telemetry(ws, out / "telemetry")
    maps = draw_maps(ws, out / "map")
    newest = _newest(ws)
    policy = demo_policy_stage(ws, out, newest)
    recommend, proposal = demo_recommend(ws, out / "recommend")
    review = demo_review(ws, proposal, out / "review", today=newest.date())
    analysis = demo_analysis(ws, out, proposed=out / "recommend")
    compiled = demo_compile(ws, out / "compile")
    enforced = demo_enforce(ws, out / "enforce")
    dbfw = demo_dbfw(out / "dbfw")
    chain = AuditLog(ws.engine).verify()
    summary = {
        "out": str(out),
        "workspace": str(ws.home),
        "lake": str(ws.lake),
        "estate": result.to_dict(),
        "ingest": {k: v for k, v in ingest.to_dict().items() if k != "files"},
        "inventory": {k: v for k, v in inventory.items() if k != "diagnostics"},
        "inventory_check": {k: v for k, v in check.items() if k != "findings"},
        "identity": coverage,
        "telemetry": telemetry,
        "map": maps,
        "policy": policy,
        "recommend": recommend,
        "review": review,
        "analysis": analysis,
        "compile": compiled,
        "enforce": enforced,
        "dbfw": dbfw,
        "audit": {"entries": chain.entries, "intact": chain.ok, "head": chain.head_digest},
        "truth": str(docs["truth"]),
        "seconds": round(time.perf_counter() - started, 2),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def demo_config(**kwargs: Any) -> DemoConfig:
    return replace(DemoConfig(), **{k: v for k, v in kwargs.items() if v is not None}).validate()
