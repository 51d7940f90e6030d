"""The ``cellwall`` command (Typer + Rich). Thin: every command calls a service.

One module per command group registers its commands on :data:`app`; ``main`` runs it.
"""

from __future__ import annotations

from importlib import import_module

from cellwall.allocator import tune_allocator
from cellwall.cli.app import app
from cellwall.cli.common import (
    AsOpt,
    HomeOpt,
    JsonOpt,
    LakeOpt,
    NowOpt,
    emit_json,
    err,
    handled,
    out,
    parse_time,
    workspace,
)

__all__ = [
    "AsOpt",
    "HomeOpt",
    "JsonOpt",
    "LakeOpt",
    "NowOpt",
    "app",
    "emit_json",
    "err",
    "handled",
    "main",
    "out",
    "parse_time",
    "workspace",
]

# Importing a command module registers its commands, in this order in --help.
for _module in (
    "ingest",
    "inventory",
    "policy",
    "map",
    "demo",
    "collect",
    "audit",
    "replay",
    "dbproxy",
    "analyze",
    "recommend",
    "review",
    "compile",
    "enforce",
):
    import_module(f"cellwall.cli.{_module}")


def main() -> None:
    tune_allocator()
    app()
