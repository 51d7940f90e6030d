"""`cellwall audit [list]|verify|head`: the hash-chained audit log."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cellwall.cli.app import app
from cellwall.cli.common import (
    HomeOpt,
    JsonOpt,
    emit_json,
    handled,
    out,
    workspace,
)
from cellwall.errors import UsageError

audit_app = typer.Typer(
    help="The audit log: who changed what, and whether the hash chain is intact.",
    invoke_without_command=True,
)
app.add_typer(audit_app, name="audit")

ActionOpt = Annotated[
    str | None, typer.Option(help="Only this action (ingest, inventory.load, review.approve).")
]
LimitOpt = Annotated[int, typer.Option(help="The newest N entries.")]


def _list(action: str | None, limit: int, home: HomeOpt, as_json: bool) -> None:
    from cellwall.state.audit import AuditLog

    with handled():
        rows = [
            e.to_dict()
            for e in AuditLog(workspace(home).engine).entries(action=action, limit=limit)
        ]
        if as_json:
            emit_json(rows)
            return
        table = Table(show_edge=False)
        for c in ("id", "at", "actor", "action", "target", "outcome"):
            table.add_column(c)
        for r in rows:
            table.add_row(
                str(r["id"]),
                r["at"],
                escape(r["actor"]),
                r["action"],
                escape(r["target"]),
                r["outcome"],
            )
        out.print(table)


@audit_app.callback()
def audit(
    ctx: typer.Context,
    action: ActionOpt = None,
    limit: LimitOpt = 50,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the audit log (the newest entries first); see also `audit verify`."""
    if ctx.invoked_subcommand is None:
        _list(action, limit, home, as_json)


@audit_app.command("list")
def audit_list(
    action: ActionOpt = None,
    limit: LimitOpt = 50,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the audit log, the newest entries first."""
    _list(action, limit, home, as_json)


@audit_app.command("head")
def audit_head(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Print the newest entry's SEQ:DIGEST. Keep it outside the workspace as an anchor."""
    from cellwall.state.audit import AuditLog

    with handled():
        seq, digest = AuditLog(workspace(home).engine).head()
        if as_json:
            emit_json({"seq": seq, "digest": digest, "anchor": f"{seq}:{digest}"})
            return
        out.print(f"{seq}:{digest}", highlight=False)


@audit_app.command("verify")
def audit_verify(
    anchor: Annotated[
        list[str] | None,
        typer.Option(
            help="SEQ:DIGEST from an earlier `audit head`; the entry must still have it. "
            "Repeatable."
        ),
    ] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute the hash chain. Exit 1 when an entry was altered, removed or inserted."""
    from cellwall.state.audit import AuditLog, anchors_from

    with handled():
        try:
            anchors = anchors_from(anchor or [])
        except ValueError as exc:
            raise UsageError(str(exc), hint="copy the anchor from `cellwall audit head`") from None
        found = AuditLog(workspace(home).engine).verify(anchors)
        if as_json:
            emit_json(found.to_dict())
        elif found.ok:
            out.print(
                f"audit log intact: {found.entries} entries, head "
                f"{found.head_seq}:{found.head_digest}"
                + (f", {found.anchors} anchor(s) hold" if found.anchors else ""),
                highlight=False,
            )
        else:
            out.print(f"[red]audit log tampered with[/]: {len(found.breaks)} break(s)")
            for b in found.breaks:
                out.print(f"  entry {b.id}: {b.problem}: {escape(b.message)}", highlight=False)
        if not found.ok:
            raise typer.Exit(1)
