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
from rich.markup import escape
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
inventory_app = typer.Typer(help="Labelled workloads and label conventions.", no_args_is_help=True)
app.add_typer(inventory_app, name="inventory")
demo_app = typer.Typer(help="The synthetic estate, end to end.", no_args_is_help=True)
app.add_typer(demo_app, name="demo")

# Scripts and pipes get wide lines rather than 80 columns of wrapped cells.
out = Console() if sys.stdout.isatty() else Console(width=200, soft_wrap=True)
err = Console(stderr=True)

HomeOpt = Annotated[
    Path | None, typer.Option("--home", help="Workspace directory (else $CELLWALL_HOME).")
]
LakeOpt = Annotated[Path | None, typer.Option("--lake", help="Flow lake directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
AsOpt = Annotated[str | None, typer.Option("--as", help="The acting person (else $CELLWALL_USER).")]
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


# --------------------------------------------------------------------------- inventory


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


# --------------------------------------------------------------------------- audit


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


# --------------------------------------------------------------------------- demo

SeedOpt = Annotated[int | None, typer.Option(help="Random seed (same seed, same bytes).")]
StartOpt = Annotated[str | None, typer.Option(help="UTC start, on the hour.")]
DaysOpt = Annotated[int | None, typer.Option(help="Days of traffic.")]
FlowsOpt = Annotated[int | None, typer.Option(help="About this many flow records.")]
FormatOpt = Annotated[str | None, typer.Option("--format", help="vpc or zeek.")]


def _demo_config(
    seed: int | None,
    start: str | None,
    days: int | None,
    flows: int | None,
    fmt: str | None,
    gz: bool | None = None,
) -> Any:
    from cellwall.services.demo import demo_config

    return demo_config(
        seed=seed,
        start=parse_time(start, None, "--start"),
        days=days,
        flows=flows,
        fmt=fmt,
        gzip=gz,
    )


def _bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=None),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
        transient=True,
    )


@demo_app.command("generate")
def demo_generate(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write into.")],
    seed: SeedOpt = None,
    start: StartOpt = None,
    days: DaysOpt = None,
    flows: FlowsOpt = None,
    fmt: FormatOpt = None,
    gz: Annotated[
        bool | None, typer.Option("--gzip/--no-gzip", help="Gzip the flow files.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the estate: flow files, inventory, conventions and the ground truth."""
    from cellwall.demo import generate

    with handled():
        config = _demo_config(seed, start, days, flows, fmt, gz)
        with _bar() as bar:
            task = bar.add_task("generate", total=config.flows, rate="")

            def progress(done: int, total: int) -> None:
                t = bar.tasks[0]
                rate = f"{t.completed / t.elapsed:,.0f} records/s" if t.elapsed else ""
                bar.update(task, completed=done, total=total, rate=rate)

            result = generate(out_dir, config, progress)
        doc = result.to_dict()
        if as_json:
            emit_json(doc)
            return
        out.print(
            f"{doc['records']:,} flow records in {doc['flow_files']} files, "
            f"{doc['workloads']} workloads, {doc['edges']} intended edges, "
            f"{doc['attack_conversations']} attack conversations "
            f"({doc['records_per_second']:,} records/s)"
        )
        out.print(f"written to {out_dir}; the ground truth is {doc['documents']['truth']}")


@demo_app.command("run")
def demo_run(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Directory for the estate and the workspace.")
    ] = Path("demo-output"),
    seed: SeedOpt = None,
    start: StartOpt = None,
    days: DaysOpt = None,
    flows: FlowsOpt = 200_000,
    fmt: FormatOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate the estate, ingest it, load and check the inventory, resolve identities."""
    from cellwall.services.demo import run_demo

    with handled():
        config = _demo_config(seed, start, days, flows, fmt)
        with _bar() as bar:
            tasks: dict[str, Any] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total, rate="")
                task = tasks[stage]
                t = next(x for x in bar.tasks if x.id == task)
                rate = f"{t.completed / t.elapsed:,.0f} records/s" if t.elapsed else ""
                bar.update(task, completed=done, total=total, rate=rate)

            doc = run_demo(out_dir, config, progress=progress)
        if as_json:
            emit_json(doc)
            return
        _print_demo(doc)


def _print_demo(doc: dict[str, Any]) -> None:
    e, i, inv, ident = doc["estate"], doc["ingest"], doc["inventory"], doc["identity"]
    out.print("[bold]cellwall demo[/]")
    out.print(
        f"  estate     {e['workloads']} workloads, {e['edges']} intended edges, "
        f"{e['records']:,} flow records ({e['attack_conversations']} attack "
        f"conversations marked)"
    )
    q = ", ".join(f"{k}={v}" for k, v in i["quarantined"].items()) or "none"
    out.print(
        f"  ingest     read {i['read']:,}, stored {i['stored']:,}, duplicate "
        f"{i['duplicate']:,}, quarantined {i['quarantined_total']:,} ({q}), "
        f"{i['records_per_s'] or 0:,} records/s"
    )
    out.print(
        f"  inventory  {inv['workloads_total']} workloads loaded, {inv['errors']} errors; "
        f"convention check: {doc['inventory_check']['errors']} errors, "
        f"{doc['inventory_check']['warnings']} warnings"
    )
    by = ", ".join(f"{k}={v:,}" for k, v in ident["by_class"].items())
    out.print(
        f"  identity   {ident['resolved_share']:.1%} of flow endpoints resolve to a "
        f"workload at the flow's time ({by}); {ident['workloads_seen']} of "
        f"{ident['workloads_total']} workloads seen in traffic"
    )
    out.print("[bold]results[/]")
    out.print(f"  summary    {doc['out']}/summary.json")
    out.print(f"  estate     {doc['out']}/estate (flows, inventory.yaml, truth.json)")
    out.print(f"  workspace  {doc['workspace']}  (cellwall ... --home {doc['workspace']})")
    out.print(f"  lake       {doc['lake']}")
    out.print(f"  try        cellwall flows query --home {doc['workspace']} --port 5432 --limit 10")


from cellwall.cli_map import map_command  # noqa: E402  (it uses the helpers above)

app.command("map")(map_command)


def main() -> None:
    app()


# -- collect: the live NetFlow/IPFIX collector --------------------------------------------


@app.command()
def collect(
    listen: Annotated[str, typer.Option("--listen", help="Where to listen: udp://HOST:PORT.")],
    batch_records: Annotated[
        int, typer.Option("--batch-records", help="Commit a batch at this many records.")
    ] = 100_000,
    batch_seconds: Annotated[
        float, typer.Option("--batch-seconds", help="Commit a batch at least this often.")
    ] = 5.0,
    queue_datagrams: Annotated[
        int, typer.Option("--queue", help="Datagrams queued before drops (bounded memory).")
    ] = 65_536,
    home: HomeOpt = None,
    lake: LakeOpt = None,
    actor: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the live NetFlow v5/v9/IPFIX collector into the lake until SIGTERM or Ctrl-C."""
    import signal

    from cellwall.services.collect import Collector, CollectSettings

    with handled():
        settings = CollectSettings(
            listen=listen,
            batch_records=batch_records,
            batch_seconds=batch_seconds,
            queue_datagrams=queue_datagrams,
        )
        collector = Collector(workspace(home, lake), settings, actor=actor)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: collector.stop())

        def report(doc: dict[str, Any]) -> None:
            if as_json:
                sys.stdout.write(json.dumps(doc, default=str) + "\n")
                sys.stdout.flush()
            else:
                err.print(
                    f"[bold]collect[/] {doc['datagrams_received']:,} datagrams, "
                    f"{doc['records_decoded']:,} records decoded, "
                    f"{doc['sets_waiting_for_template']} sets waiting for a template, "
                    f"{doc['datagrams_dropped_queue_full']:,} dropped, "
                    f"{doc['stored']:,} stored in {doc['batches_committed']} batches",
                    highlight=False,
                )

        report({**collector.snapshot(), "listening": list(collector.address[:2])})
        final = collector.run(report)
        report({**final, "final": True})


if __name__ == "__main__":  # pragma: no cover
    main()
