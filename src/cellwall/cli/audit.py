"""`cellwall audit`: the audit log."""

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


@app.command("audit")
def audit(
    action: Annotated[
        str | None, typer.Option(help="Only this action (ingest, inventory.load).")
    ] = None,
    limit: Annotated[int, typer.Option(help="The newest N entries.")] = 50,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the audit log: who changed what in the workspace, and when."""
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
        for c in ("at", "actor", "action", "target", "outcome"):
            table.add_column(c)
        for r in rows:
            table.add_row(
                r["at"], escape(r["actor"]), r["action"], escape(r["target"]), r["outcome"]
            )
        out.print(table)
