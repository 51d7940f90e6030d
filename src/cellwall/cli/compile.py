"""`cellwall compile`: enforcement artefacts for a target, per host or for the estate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cellwall.cli.app import app
from cellwall.cli.common import (
    HomeOpt,
    InventoryOpt,
    JsonOpt,
    NowOpt,
    PolicyOpt,
    emit_json,
    handled,
    out,
    parse_time,
    workspace,
)

__all__ = ["compile_command"]


def _print(doc: dict[str, Any]) -> None:
    out.print(
        f"[bold]{doc['target']}[/]: {doc['files']} file(s) for {doc['hosts']} host(s) "
        f"in {doc['out']}"
    )
    for u in doc["unsupported"]:
        out.print(f"  [yellow]unsupported[/] {u['rule_id']}: {u['reason']}", highlight=False)
    for n in doc["notes"]:
        out.print(f"  note: {n}", highlight=False)


@app.command("compile")
def compile_command(
    target: Annotated[
        str,
        typer.Option(
            "--target",
            help="nftables, iptables, k8s, cilium, calico or aws-sg.",
            show_default=False,
        ),
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write into.")],
    host: Annotated[str | None, typer.Option("--host", help="Compile for this host.")] = None,
    all_hosts: Annotated[bool, typer.Option("--all", help="Compile for every host.")] = False,
    policy: PolicyOpt = None,
    inventory: InventoryOpt = None,
    allow_expired: Annotated[
        bool, typer.Option("--allow-expired", help="Compile rules whose review_by has passed.")
    ] = False,
    at: Annotated[
        str | None, typer.Option("--at", help="Addresses as owned at this time (else now).")
    ] = None,
    json_out: JsonOpt = False,
    home: HomeOpt = None,
    now: NowOpt = None,
) -> None:
    """Write enforcement artefacts: one file per host or object, plus unsupported.json."""
    from cellwall.services.compile import CompileRequest, run_compile

    with handled():
        when = parse_time(at, now, "--at") or parse_time(now, None, "--now")
        req = CompileRequest(
            target=target,
            out=out_dir,
            host=host,
            all_hosts=all_hosts,
            policy_dir=policy,
            inventory=inventory,
            allow_expired=allow_expired,
            at=when,
            today=when.date() if when is not None else None,
        )
        doc = run_compile(workspace(home), req)
        if json_out:
            emit_json(doc)
        else:
            _print(doc)
