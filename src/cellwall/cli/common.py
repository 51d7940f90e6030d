"""What every command shares: consoles, option types, JSON output, error handling."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from cellwall.errors import CellwallError, UsageError
from cellwall.workspace import Workspace

__all__ = [
    "AsOpt",
    "HomeOpt",
    "InventoryOpt",
    "JsonOpt",
    "LakeOpt",
    "NowOpt",
    "PolicyOpt",
    "emit_json",
    "err",
    "handled",
    "out",
    "parse_time",
    "workspace",
]

# Scripts and pipes get wide lines rather than 80 columns of wrapped cells.
out = Console() if sys.stdout.isatty() else Console(width=200, soft_wrap=True)
err = Console(stderr=True)

HomeOpt = Annotated[
    Path | None, typer.Option("--home", help="Workspace directory (else $CELLWALL_HOME).")
]
LakeOpt = Annotated[Path | None, typer.Option("--lake", help="Flow lake directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
AsOpt = Annotated[str | None, typer.Option("--as", help="The acting person (else $CELLWALL_USER).")]
PolicyOpt = Annotated[
    Path | None, typer.Option("--policy", help="Policy directory (else the active policy).")
]
InventoryOpt = Annotated[
    Path | None, typer.Option("--inventory", help="Inventory file (else the loaded inventory).")
]
NowOpt = Annotated[
    str | None, typer.Option("--now", help="The time that relative spans count back from.")
]


def emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")


@contextmanager
def handled() -> Iterator[None]:
    """Turn cellwall errors into a message on stderr and their exit code."""
    try:
        yield
    except CellwallError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(exc.exit_code) from None


def workspace(home: Path | None, lake: Path | None = None) -> Workspace:
    return Workspace.resolve(home, lake)


def parse_time(value: str | None, now: str | None, option: str) -> datetime | None:
    from cellwall.model.times import parse_instant

    if value is None:
        return None
    try:
        ref = parse_instant(now) if now else None
        return parse_instant(value, ref)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None
