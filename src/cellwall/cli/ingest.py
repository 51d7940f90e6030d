"""`cellwall ingest`, `cellwall formats` and `cellwall flows query`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cellwall.cli.app import app, flows_app
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
from cellwall.errors import UsageError


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Flow files (plain or gzip).")],
    fmt: Annotated[
        str, typer.Option("--format", help="auto, or a format name (see `cellwall formats`).")
    ] = "auto",
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="Format option KEY=VALUE (e.g. mapping=FILE)."),
    ] = None,
    home: HomeOpt = None,
    lake: LakeOpt = None,
    actor: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Load flow files into the lake; print read, stored, duplicate and quarantined counts."""
    from cellwall.services.ingest import ingest_paths

    with handled():
        opts: dict[str, str] = {}
        for item in option or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise UsageError(f"--option {item!r}: write KEY=VALUE")
            opts[key] = value
        ws = workspace(home, lake)
        show = not as_json and err.is_terminal
        with Progress(
            TextColumn("[bold]ingest"),
            BarColumn(bar_width=None),
            TextColumn("{task.completed:,.0f} records"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=err,
            disable=not show,
            transient=True,
        ) as bar:
            task = bar.add_task("ingest", total=None, rate="")

            def progress(records: int, _bytes: int) -> None:
                bar.advance(task, records)
                t = bar.tasks[0]
                if t.elapsed:
                    bar.update(task, rate=f"{t.completed / t.elapsed:,.0f} records/s")

            summary = ingest_paths(ws, paths, fmt=fmt, options=opts, progress=progress, actor=actor)
        doc = summary.to_dict()
        doc["lake"] = str(ws.lake)
        if as_json:
            emit_json(doc)
        else:
            _print_ingest(doc)
        if doc["failed_files"]:
            raise typer.Exit(2)


def _print_ingest(doc: dict[str, Any]) -> None:
    table = Table(title="ingest", show_edge=False)
    for col in ("file", "format", "status", "read", "stored", "duplicate", "quarantined"):
        table.add_column(col, justify="right" if col in ("read", "stored", "duplicate") else "left")
    for f in doc["files"]:
        q = ", ".join(f"{k}={v}" for k, v in f["quarantined"].items()) or "0"
        table.add_row(
            Path(f["path"]).name,
            f["format"],
            f["status"],
            f"{f['read']:,}",
            f"{f['stored']:,}",
            f"{f['duplicate']:,}",
            q,
        )
    out.print(table)
    q = ", ".join(f"{k}={v}" for k, v in doc["quarantined"].items()) or "none"
    ig = ", ".join(f"{k}={v}" for k, v in doc["ignored"].items()) or "none"
    out.print(
        f"read {doc['read']:,}  stored {doc['stored']:,}  duplicate {doc['duplicate']:,}  "
        f"quarantined {doc['quarantined_total']:,} ({q})  ignored ({ig})"
    )
    rate = doc["records_per_s"]
    out.print(
        f"{doc['seconds']:.2f} s"
        + (f", {rate:,} records/s" if rate else "")
        + f"; lake: {doc['lake']}"
    )
    if any(doc["quarantined"].values()):
        out.print(f"quarantine: {Path(doc['lake']) / 'quarantine'}")
    for f in doc["files"]:
        if f["error"]:
            err.print(f"[red]failed[/] {escape(f['error'])}", highlight=False)


@app.command()
def formats(as_json: JsonOpt = False) -> None:
    """List the flow formats that `ingest --format` takes."""
    from cellwall.ingest.base import get_source, source_names

    rows = [{"name": n, "title": get_source(n).title} for n in source_names()]
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        out.print(f"{r['name']:<12} {r['title']}")


# --------------------------------------------------------------------------- flows


@flows_app.command("query")
def flows_query(
    since: Annotated[str | None, typer.Option(help="ISO 8601 time or span such as 30d.")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601 time or span.")] = None,
    ip: Annotated[str | None, typer.Option(help="Either end has this address.")] = None,
    src: Annotated[str | None, typer.Option(help="Source address.")] = None,
    dst: Annotated[str | None, typer.Option(help="Destination address.")] = None,
    port: Annotated[int | None, typer.Option(help="Destination port.")] = None,
    proto: Annotated[str | None, typer.Option(help="tcp, udp, icmp or a number.")] = None,
    action: Annotated[str | None, typer.Option(help="ACCEPT or REJECT.")] = None,
    source_format: Annotated[str | None, typer.Option("--source-format")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows (0: all).")] = 50,
    count: Annotated[bool, typer.Option("--count", help="Only count the matching flows.")] = False,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write CSV or Parquet here.")
    ] = None,
    now: NowOpt = None,
    home: HomeOpt = None,
    lake: LakeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Filter the flows in the lake by time, address, port, protocol and action."""
    from cellwall.services.flows import query_flows

    with handled():
        ws = workspace(home, lake)
        result = query_flows(
            ws,
            since=parse_time(since, now, "--since"),
            until=parse_time(until, now, "--until"),
            ip=ip,
            src=src,
            dst=dst,
            port=port,
            proto=proto,
            action=action,
            fmt=source_format,
            limit=limit,
            count_only=count,
            out=out_file,
        )
        if as_json:
            emit_json(result)
            return
        if count or out_file is not None:
            out.print(
                f"{result['count']:,} flows" + (f" written to {out_file}" if out_file else "")
            )
            return
        _print_rows(result["rows"])
        out.print(f"{len(result['rows'])} of {result['count']:,} matching flows")


def _print_rows(rows: list[dict[str, Any]]) -> None:
    from cellwall.services.flows import PROTOCOLS

    names = {v: k for k, v in PROTOCOLS.items()}
    table = Table(show_edge=False)
    for c in (
        "start",
        "src",
        "sport",
        "dst",
        "dport",
        "proto",
        "bytes",
        "packets",
        "action",
        "source",
    ):
        table.add_column(c, no_wrap=True)
    for r in rows:
        table.add_row(
            r["start"].strftime("%Y-%m-%d %H:%M:%S"),
            r["src_ip"],
            "" if r["src_port"] is None else str(r["src_port"]),
            r["dst_ip"],
            "" if r["dst_port"] is None else str(r["dst_port"]),
            names.get(r["proto"], str(r["proto"])),
            "" if r["bytes"] is None else f"{r['bytes']:,}",
            "" if r["packets"] is None else f"{r['packets']:,}",
            r["action"] or "",
            f"{r['lineage_format']}:{Path(r['lineage_file']).name}:{r['lineage_pos']}",
        )
    out.print(table)
