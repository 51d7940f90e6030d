"""`cellwall inventory load|check|list|who`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cellwall.cli.app import inventory_app
from cellwall.cli.common import (
    AsOpt,
    HomeOpt,
    JsonOpt,
    NowOpt,
    emit_json,
    err,
    handled,
    out,
    parse_time,
    workspace,
)
from cellwall.errors import UsageError


def _print_diagnostics(diags: list[dict[str, Any]]) -> None:
    for d in diags:
        where = ":".join(
            str(x) for x in (d["file"] or "<input>", d["line"], d["col"]) if x is not None
        )
        colour = "red" if d["severity"] == "error" else "yellow"
        hint = f"  [dim]hint: {escape(d['hint'])}[/]" if d["hint"] else ""
        out.print(
            f"{escape(where)}: [{colour}]{d['severity']}[/] {d['code']}: "
            f"{escape(d['message'])}{hint}",
            highlight=False,
        )


@inventory_app.command("load")
def inventory_load(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="YAML/CSV workloads, Kubernetes manifests, AWS describe-instances JSON."
        ),
    ],
    source: Annotated[
        str | None,
        typer.Option(
            help="One source name for all the files (default: each file is its own source)."
        ),
    ] = None,
    conventions: Annotated[
        Path | None, typer.Option(help="A LabelConvention file whose aliases apply while loading.")
    ] = None,
    home: HomeOpt = None,
    actor: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Load workloads; replaces only the workloads of the same source."""
    from cellwall.services.inventory import load_inventory

    with handled():
        doc = load_inventory(
            workspace(home), files, source=source, conventions=conventions, actor=actor
        )
        if as_json:
            emit_json(doc)
        else:
            _print_diagnostics(doc["diagnostics"])
            for s in doc["sources"]:
                out.print(
                    f"{s['source']}: {s['workloads']} workloads"
                    + (f", {s['conventions']} convention(s)" if s["conventions"] else "")
                )
            out.print(
                f"{doc['workloads_total']} workloads in the inventory; "
                f"{doc['errors']} errors, {doc['warnings']} warnings"
            )
        if doc["errors"]:
            raise typer.Exit(2)


@inventory_app.command("check")
def inventory_check(
    conventions: Annotated[
        Path | None,
        typer.Option(help="Check against this LabelConvention file instead of the loaded one."),
    ] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the loaded workloads against the label conventions; exit 1 on any error."""
    from cellwall.services.inventory import check_inventory

    with handled():
        doc = check_inventory(workspace(home), conventions=conventions)
        if as_json:
            emit_json(doc)
        else:
            _print_diagnostics(doc["findings"])
            out.print(
                f"{doc['workloads']} workloads checked: {doc['errors']} errors, "
                f"{doc['warnings']} warnings"
            )
        if doc["errors"]:
            raise typer.Exit(1)


def _selector(items: list[str] | None) -> dict[str, str]:
    sel = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--label {item!r}: write KEY=VALUE")
        sel[key] = value
    return sel


@inventory_app.command("list")
def inventory_list(
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="Only workloads with KEY=VALUE.")
    ] = None,
    at: Annotated[
        str | None, typer.Option(help="The inventory as it was loaded at this time.")
    ] = None,
    now: NowOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the loaded workloads."""
    from cellwall.services.inventory import list_workloads

    with handled():
        rows = list_workloads(
            workspace(home), at=parse_time(at, now, "--at"), selector=_selector(label)
        )
        if as_json:
            emit_json(rows)
            return
        table = Table(show_edge=False)
        for c in ("name", "owner", "labels", "addresses"):
            table.add_column(c)
        for r in rows:
            labels = " ".join(f"{k}={v}" for k, v in r["labels"].items())
            table.add_row(r["name"], r["owner"] or "", labels, " ".join(r["addresses"]))
        out.print(table)
        out.print(f"{len(rows)} workloads")


@inventory_app.command("who")
def inventory_who(
    ips: Annotated[list[str], typer.Argument(help="Addresses to resolve.")],
    at: Annotated[str | None, typer.Option(help="When (default: now).")] = None,
    now: NowOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Which workload owned an address at a time; or what kind of address it is."""
    from cellwall.services.inventory import who_owns

    with handled():
        rows = who_owns(workspace(home), ips, at=parse_time(at, now, "--at"))
        if as_json:
            emit_json(rows)
            return
        for r in rows:
            if r["workload"]:
                labels = " ".join(f"{k}={v}" for k, v in (r["labels"] or {}).items())
                out.print(
                    f"{r['ip']} at {r['at']}: [bold]{escape(r['workload'])}[/] {escape(labels)}"
                )
            else:
                out.print(f"{r['ip']} at {r['at']}: {r['class']}")


@inventory_app.command("hints")
def inventory_hints(
    files: Annotated[list[Path], typer.Argument(help="Hubble flow files (JSON lines).")],
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write the Workload YAML here (else stdout).")
    ] = None,
) -> None:
    """Turn the pods that Hubble saw into Workload YAML that `inventory load` takes."""
    from cellwall.ingest.hubble_hints import hints_yaml

    with handled():
        text = hints_yaml(files)
        if out_file is None:
            sys.stdout.write(text)
        else:
            out_file.write_text(text)
            err.print(f"wrote {text.count('kind: Workload')} workloads to {out_file}")
