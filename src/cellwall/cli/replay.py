"""`cellwall replay` (test mode over history) and `cellwall explain` (one conversation)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cellwall.cli.app import app
from cellwall.cli.common import (
    HomeOpt,
    InventoryOpt,
    JsonOpt,
    LakeOpt,
    NowOpt,
    PolicyOpt,
    emit_json,
    handled,
    out,
    parse_time,
    workspace,
)

__all__ = ["explain_command", "replay_command"]


def _print_replay(doc: dict[str, Any]) -> None:
    v = doc["verdicts"]
    total = sum(v.values())
    out.print(f"[bold]{total}[/] conversations judged")
    for name in ("allowed", "denied", "not-allowed"):
        label = "not-allowed (would be blocked)" if name == "not-allowed" else name
        out.print(f"  {label:32} {v[name]}")
    out.print(f"  {'unverified':32} {doc['unverified']}")
    out.print(f"  {'blocked under the modes':32} {doc['would_block']}")
    out.print(f"  {'escaped (exporter accepted)':32} {doc['escaped']}")
    for level in ("workload", "label"):
        edges = doc["top_would_be_blocked"][level][:10]
        if edges:
            out.print(f"[bold]top would-be-blocked edges ({level})[/]")
            for e in edges:
                out.print(
                    f"  {e['conversations']:>8}  {e['client']} → {e['server']} {e['service']}"
                )
    if "parquet" in doc:
        out.print(f"labelled conversations: {doc['parquet']}")


@app.command("replay")
def replay_command(
    policy: PolicyOpt = None,
    inventory: InventoryOpt = None,
    since: Annotated[str | None, typer.Option(help="ISO 8601 time or span such as 7d.")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601 time or span.")] = None,
    parquet: Annotated[
        Path | None,
        typer.Option("--parquet", help="Write the judged conversations here as Parquet."),
    ] = None,
    top: Annotated[int, typer.Option(help="How many would-be-blocked edges to list.")] = 20,
    json_out: JsonOpt = False,
    home: HomeOpt = None,
    lake: LakeOpt = None,
    now: NowOpt = None,
) -> None:
    """Test mode over history: what the policy would allow, deny and block."""
    from cellwall.services.replay import ReplayQuery, run_replay

    with handled():
        q = ReplayQuery(
            policy_dir=policy,
            inventory=inventory,
            since=parse_time(since, now, "--since"),
            until=parse_time(until, now, "--until"),
            parquet_out=parquet,
            top=top,
        )
        doc = run_replay(workspace(home, lake), q)
        if json_out:
            emit_json(doc)
        else:
            _print_replay(doc)


@app.command("explain")
def explain_command(
    src: Annotated[str, typer.Argument(help="Client: an IP, a workload, or KEY=VALUE,... labels.")],
    dst: Annotated[str, typer.Argument(help="Server: an IP, a workload, or labels.")],
    service: Annotated[str, typer.Argument(help="Service such as tcp/5432 or icmp/8.")],
    at: Annotated[str | None, typer.Option("--at", help="ISO 8601 time (else now).")] = None,
    process: Annotated[str | None, typer.Option(help="The server's process.")] = None,
    http_method: Annotated[str | None, typer.Option("--http-method")] = None,
    http_path: Annotated[str | None, typer.Option("--http-path")] = None,
    policy: PolicyOpt = None,
    inventory: InventoryOpt = None,
    json_out: JsonOpt = False,
    home: HomeOpt = None,
    now: NowOpt = None,
) -> None:
    """Every rule that matches one conversation, in precedence order, and the verdict."""
    from datetime import UTC, datetime

    from cellwall.evidence.dns import scan_dns
    from cellwall.policy.explain import explain
    from cellwall.services.replay import policy_for, workloads_for

    with handled():
        ws = workspace(home)
        when = parse_time(at, now, "--at") or parse_time(now, None, "--now") or datetime.now(UTC)
        facts = {"server_process": process, "http_method": http_method, "http_path": http_path}
        result = explain(
            policy_for(ws, policy),
            workloads_for(ws, inventory),
            src,
            dst,
            service,
            when,
            facts=facts,
            dns=scan_dns(ws.lake) if ws.lake.exists() else None,
        )
        if json_out:
            emit_json(result.to_dict())
        else:
            out.print(str(result), highlight=False, markup=False)
