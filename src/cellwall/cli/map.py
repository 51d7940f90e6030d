"""`cellwall map`: the dependency map over a time window."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from cellwall.cli.app import app
from cellwall.cli.common import HomeOpt, LakeOpt, NowOpt, err, handled, parse_time, workspace
from cellwall.errors import UsageError

__all__ = ["map_command"]


def map_command(
    since: Annotated[str | None, typer.Option(help="ISO 8601 time or span such as 7d.")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601 time or span.")] = None,
    group_by: Annotated[
        str,
        typer.Option(
            "--group-by", help="workload, class, role (app,role,env), app (app,env) or KEYS."
        ),
    ] = "role",
    fmt: Annotated[
        str, typer.Option("--format", help="json, graphml, csv, dot, svg or png.")
    ] = "json",
    label: Annotated[
        list[str] | None,
        typer.Option(
            "--label", help="KEY=VALUE; keep edges with a matching workload at either end."
        ),
    ] = None,
    service: Annotated[
        list[str] | None, typer.Option("--service", help="Only this service, e.g. tcp/5432.")
    ] = None,
    iplists: Annotated[
        list[Path] | None,
        typer.Option("--iplists", help="YAML files whose IPList documents name external ends."),
    ] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write here instead of stdout.")
    ] = None,
    hygiene: Annotated[
        bool,
        typer.Option("--hygiene", help="Print label-hygiene findings (JSON) instead of the map."),
    ] = False,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            envvar="CELLWALL_ENGINE",
            help="duckdb (embedded, the default) or spark (PySpark local mode).",
        ),
    ] = "duckdb",
    home: HomeOpt = None,
    lake: LakeOpt = None,
    now: NowOpt = None,
) -> None:
    """Draw the dependency map: who talks to whom, counted in conversations."""
    from cellwall.discover.render import FORMATS, render
    from cellwall.engine import ENGINES
    from cellwall.services.map import MapQuery, build_dependency_map, hygiene_report

    with handled():
        if fmt not in FORMATS:
            raise UsageError(f"--format {fmt!r}: use " + ", ".join(FORMATS))
        if engine not in ENGINES:
            raise UsageError(f"--engine {engine!r}: use " + " or ".join(ENGINES))
        if fmt == "png" and out_file is None and sys.stdout.isatty():
            raise UsageError("a PNG goes to a file", hint="add --out map.png")
        selector: dict[str, str] = {}
        for item in label or []:
            key, sep, value = item.partition("=")
            if not sep or not key or not value:
                raise UsageError(f"--label {item!r}: use KEY=VALUE")
            selector[key.strip()] = value.strip()
        query = MapQuery(
            since=parse_time(since, now, "--since"),
            until=parse_time(until, now, "--until"),
            group_by=group_by,
            labels=selector,
            services=tuple(service or ()),
            iplist_files=tuple(iplists or ()),
            engine=engine,
        )
        if hygiene:
            report = hygiene_report(workspace(home, lake), query)
            sys.stdout.write(json.dumps(report, indent=2) + "\n")
            return
        result = build_dependency_map(workspace(home, lake), query)
        data = render(result, fmt)
        if out_file is not None:
            out_file.write_bytes(data)
            totals = result.to_dict()["totals"]
            err.print(
                f"wrote {out_file}: {totals['nodes']} nodes, {totals['edges']} edges, "
                f"{totals['conversations']:,} conversations"
            )
        else:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()


app.command("map")(map_command)
