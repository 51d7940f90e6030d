"""`cellwall demo generate|run`: the synthetic estate, end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from cellwall.cli.app import demo_app
from cellwall.cli.common import (
    JsonOpt,
    emit_json,
    err,
    handled,
    out,
    parse_time,
)

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
    tel = doc["telemetry"]
    if tel.get("flows"):
        same = [n for n, f in tel["files"].items() if f["same_as_the_slice"]]
        out.print(
            f"  telemetry  the first {tel['flows']:,} flows again as NetFlow v9, IPFIX and "
            f"Hubble: {len(same)} of {len(tel['files'])} files read back flow for flow; "
            f"DNS evidence names {tel['external_addresses_named']} of "
            f"{tel['external_addresses']} external addresses"
        )
    m = doc["map"]
    out.print(
        f"  map        {m['app_edges']} app-level and {m['role_edges']} role-level edges "
        "(conversations, bytes, first and last seen)"
    )
    pol, db = doc["policy"], doc["dbfw"]
    v = pol["verdicts"]
    out.print(
        f"  policy     version {pol['version']} active ({pol['errors']} errors); replay: "
        f"{v['allowed']:,} allowed, {v['denied']:,} denied, {v['not-allowed']:,} would be "
        f"blocked; {pol['would_block']:,} blocked under the modes; {pol['escaped']:,} escaped"
    )
    out.print(f"  recommend  {doc['recommend']['rules']} rules in {doc['recommend']['out']}")
    rv = doc["review"]
    out.print(
        f"  review     {rv['submitted']} rules proposed by sam; {rv['approved']} approved by "
        f"the payments owner; {rv['refused']} cross-app approval by an app owner refused"
    )
    an = doc["analysis"]
    out.print(
        f"  analysis   {an['invariants']} invariants, {len(an['failed'])} failing; "
        f"{an['sentence']}; lint {an['lint']['error']} errors, {an['lint']['warning']} warnings"
    )
    comp = doc["compile"]
    out.print(
        f"  compile    nftables for {comp['nftables']['hosts']} hosts, "
        f"{comp['k8s']['files']} Kubernetes objects; "
        f"{comp['nftables']['unsupported']} rule(s) a target cannot express, named in the report"
    )
    en = doc["enforce"]
    lab = en.get("lab")
    proof = (
        f"lab: {lab['probes']:,} real probes over {lab['classes']} classes, "
        f"{len(lab['disagreements'])} disagreements"
        if lab
        else "lab skipped (needs root, nft and ip)"
    )
    out.print(
        f"  enforce    bundle serial {en['serial']} signed for {en['hosts']} hosts and "
        f"verified; {proof}"
    )
    out.print(
        f"  dbfw       {db['attacks_blocked']} of {db['attack_requests']} injection attempts "
        f"blocked, {db['benign_blocked']} of {db['benign_requests']} ordinary queries blocked"
    )
    au = doc["audit"]
    out.print(
        f"  audit      {au['entries']} entries, hash chain "
        + ("intact" if au["intact"] else "[red]BROKEN[/]")
        + f" (head {au['head'][:16]}…)"
    )
    out.print("[bold]results[/]")
    out.print(f"  summary    {doc['out']}/summary.json")
    out.print(f"  estate     {doc['out']}/estate (flows, inventory.yaml, truth.json)")
    out.print(f"  workspace  {doc['workspace']}  (cellwall ... --home {doc['workspace']})")
    out.print(f"  telemetry  {doc['out']}/telemetry (v9/IPFIX pcaps, hubble.json, telemetry.json)")
    out.print(f"  map        {m['app_png']} (and .svg, .json; map-role.json, map-role.csv)")
    out.print(f"  policy     {pol['policy']} (replay: {pol['replay']}, explain.txt beside it)")
    out.print(f"  recommend  {doc['out']}/recommend (policy YAML with evidence, report.json)")
    out.print(f"  review     {doc['out']}/review (the review state as YAML, for git)")
    out.print(f"  analysis   {doc['out']}/analysis (invariants, blast radius, lint)")
    out.print(f"  compile    {doc['out']}/compile (nftables per host, k8s, unsupported.json)")
    out.print(f"  enforce    {doc['out']}/enforce (signed bundle, keys)")
    out.print(f"  dbfw       {doc['out']}/dbfw (alerts.jsonl, learned.json, summary.json)")
    out.print(f"  lake       {doc['lake']}")
    out.print(f"  try        cellwall flows query --home {doc['workspace']} --port 5432 --limit 10")
    out.print(f"             cellwall replay --home {doc['workspace']} --json")
    out.print(
        f"             cellwall explain --home {doc['workspace']} pay-web-1 pay-api-1 tcp/8443"
    )
