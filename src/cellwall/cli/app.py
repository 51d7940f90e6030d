"""The ``cellwall`` Typer application and its command groups; commands register on them."""

from __future__ import annotations

import typer

__all__ = ["app", "demo_app", "flows_app", "inventory_app"]

app = typer.Typer(
    name="cellwall",
    help="Micro-segmentation: see, decide, prove, enforce and watch.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
flows_app = typer.Typer(help="Look at the flows in the lake.", no_args_is_help=True)
app.add_typer(flows_app, name="flows")
inventory_app = typer.Typer(help="Labelled workloads and label conventions.", no_args_is_help=True)
app.add_typer(inventory_app, name="inventory")
demo_app = typer.Typer(help="The synthetic estate, end to end.", no_args_is_help=True)
app.add_typer(demo_app, name="demo")
