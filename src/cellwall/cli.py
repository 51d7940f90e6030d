"""The ``cellwall`` command (Typer + Rich). Thin: every command calls a service."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cellwall.errors import CellwallError, UsageError
from cellwall.workspace import Workspace

app = typer.Typer(
    name="cellwall",
    help="Micro-segmentation: see, decide, prove, enforce and watch.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
flows_app = typer.Typer(help="Look at the flows in the lake.", no_args_is_help=True)
app.add_typer(flows_app, name="flows")

out = Console()
err = Console(stderr=True)

HomeOpt = Annotated[
    Path | None, typer.Option("--home", help="Workspace directory (else $CELLWALL_HOME).")
]
LakeOpt = Annotated[Path | None, typer.Option("--lake", help="Flow lake directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
NowOpt = Annotated[
    str | None, typer.Option("--now", help="The time that relative spans count back from.")
]

F = TypeVar("F", bound=Callable[..., Any])


def emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")


@contextmanager
def handled() -> Iterator[None]:
    """Turn cellwall errors into a message on stderr and their exit code."""
    try:
        yield
    except CellwallError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
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


# --------------------------------------------------------------------------- ingest


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

            summary = ingest_paths(ws, paths, fmt=fmt, options=opts, progress=progress)
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
            Path(f["path"]).name, f["format"], f["status"], f"{f['read']:,}",
            f"{f['stored']:,}", f"{f['duplicate']:,}", q,
        )
    out.print(table)
    q = ", ".join(f"{k}={v}" for k, v in doc["quarantined"].items()) or "none"
    ig = ", ".join(f"{k}={v}" for k, v in doc["ignored"].items()) or "none"
    out.print(
        f"read {doc['read']:,}  stored {doc['stored']:,}  duplicate {doc['duplicate']:,}  "
        f"quarantined {doc['quarantined_total']:,} ({q})  ignored ({ig})"
    )
    rate = doc["records_per_s"]
    out.print(f"{doc['seconds']:.2f} s" + (f", {rate:,} records/s" if rate else "")
              + f"; lake: {doc['lake']}")
    if any(doc["quarantined"].values()):
        out.print(f"quarantine: {Path(doc['lake']) / 'quarantine'}")
    for f in doc["files"]:
        if f["error"]:
            err.print(f"[red]failed[/] {f['error']}", highlight=False)


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
    out_file: Annotated[Path | None, typer.Option("--out", help="Write CSV or Parquet here.")] = None,
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
            ip=ip, src=src, dst=dst, port=port, proto=proto, action=action,
            fmt=source_format, limit=limit, count_only=count, out=out_file,
        )
        if as_json:
            emit_json(result)
            return
        if count or out_file is not None:
            out.print(f"{result['count']:,} flows" + (f" written to {out_file}" if out_file else ""))
            return
        _print_rows(result["rows"])
        out.print(f"{len(result['rows'])} of {result['count']:,} matching flows")


def _print_rows(rows: list[dict[str, Any]]) -> None:
    cols = ["start", "src_ip", "src_port", "dst_ip", "dst_port", "proto", "bytes", "packets",
            "action", "lineage_format"]
    table = Table(show_edge=False)
    for c in cols:
        table.add_column(c)
    for r in rows:
        table.add_row(*["" if r.get(c) is None else str(r[c]) for c in cols])
    out.print(table)


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
