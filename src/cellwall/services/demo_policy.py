"""The demo's policy stage: write the estate's policy, load and activate it, replay the
lake against it, and explain one blocked and one allowed conversation."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from cellwall.demo.policy_docs import demo_policy_yaml
from cellwall.evidence.dns import scan_dns
from cellwall.policy.explain import explain
from cellwall.services.policy import active_policy, load_policy_dir
from cellwall.services.replay import ReplayQuery, run_replay, workloads_for
from cellwall.workspace import Workspace

__all__ = ["demo_policy_stage"]


def _examples(doc: dict[str, Any], parquet: Path) -> list[tuple[str, str, str, datetime]]:
    """The top would-be-blocked edge of the replay and an allowed conversation between two
    workloads, each as (client, server, service, start of one of its conversations)."""
    cols = ["client_workload", "server_workload", "client_ip", "server_ip", "service", "start"]
    rows = pq.read_table(parquet, columns=[*cols, "verdict"]).to_pylist()

    def name(r: dict[str, Any], side: str) -> str:
        return str(r[f"{side}_workload"] or f"ip:{r[f'{side}_ip']}")

    out = []
    top = doc["top_would_be_blocked"]["workload"][:1]
    for e in top:
        for r in rows:
            if (name(r, "client"), name(r, "server"), r["service"]) == (
                e["client"],
                e["server"],
                e["service"],
            ):
                end = (e["client"].removeprefix("ip:"), e["server"].removeprefix("ip:"))
                out.append((*end, e["service"], r["start"]))
                break
    between_workloads = (r for r in rows if r["client_workload"] and r["server_workload"])
    for r in between_workloads:
        if r["verdict"] == "allowed" and "/" in r["service"]:
            out.append((r["client_workload"], r["server_workload"], r["service"], r["start"]))
            break
    return out


def demo_policy_stage(ws: Workspace, out: Path, today: datetime) -> dict[str, Any]:
    """Run the policy stage into ``out`` (policy/, replay/) and return its summary."""
    policy_dir = out / "policy"
    policy_dir.mkdir(parents=True, exist_ok=True)
    for name, text in demo_policy_yaml().items():
        (policy_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (policy_dir / name).write_text(text)
    loaded = load_policy_dir(ws, [policy_dir], today=today.date(), actor="demo", activate=True)
    replay_dir = out / "replay"
    replay_dir.mkdir(parents=True, exist_ok=True)
    parquet = replay_dir / "conversations.parquet"
    doc = run_replay(ws, ReplayQuery(parquet_out=parquet))
    (replay_dir / "replay.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    policy = active_policy(ws)
    workloads = workloads_for(ws, None)
    explained = []
    if policy is not None:
        dns = scan_dns(ws.lake)
        for src, dst, svc, start in _examples(doc, parquet):
            e = explain(policy, workloads, src, dst, svc, start, dns=dns)
            explained.append(str(e))
    (replay_dir / "explain.txt").write_text("\n\n".join(explained) + "\n")
    return {
        "policy": str(policy_dir),
        "version": loaded.get("version"),
        "errors": loaded.get("errors"),
        "warnings": loaded.get("warnings"),
        "replay": str(replay_dir / "replay.json"),
        "verdicts": doc["verdicts"],
        "would_block": doc["would_block"],
        "escaped": doc["escaped"],
        "parquet": str(parquet),
    }
