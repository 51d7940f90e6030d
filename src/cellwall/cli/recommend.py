"""`cellwall recommend`: least-privilege rules from the observed traffic, with evidence."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from cellwall.cli.app import app
from cellwall.cli.common import (
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

__all__ = ["recommend_command"]

Window = tuple[datetime | None, datetime | None]


def _now(now: str | None) -> datetime:
    return parse_time(now, None, "--now") or datetime.now(UTC)


def parse_window(text: str, now: datetime, option: str) -> Window:
    """``30d`` (the span before now), ``all``, or ``A..B`` (times or spans, either empty)."""
    from cellwall.model.times import parse_instant

    text = text.strip()
    if text == "all":
        return None, None
    try:
        if ".." in text:
            a, b = text.split("..", 1)
            lo = parse_instant(a, now) if a.strip() else None
            hi = parse_instant(b, now) if b.strip() else None
            if lo is not None and hi is not None and lo >= hi:
                raise ValueError(f"{text!r} ends before it starts")
            return lo, hi
        return parse_instant(text, now), now
    except ValueError as exc:
        raise UsageError(
            f"{option} {text!r}: {exc}", hint="write 30d, all, or START..END"
        ) from None


def _print(doc: dict[str, Any]) -> None:
    out.print(
        f"{doc['rules']} rules in {doc['policies']} policies at {doc['granularity']} "
        f"granularity; coverage {doc['coverage']:.4%} of {doc['conversations']:,} conversations",
        highlight=False,
    )
    for reason, n in doc["excluded"].items():
        out.print(
            f"left out ({reason}): {n['edges']} edges, {n['conversations']:,} conversations",
            highlight=False,
        )
    for key in ("tighten", "remove"):
        for item in doc.get(key, []):
            out.print(escape(f"{key}: {item}"), highlight=False)
    for w in doc["warnings"]:
        err.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
    for f in doc.get("files", []):
        out.print(f"wrote {escape(f)}", highlight=False)


def _yaml_to_stdout(doc: dict[str, Any]) -> None:
    from cellwall.recommend import proposal_files

    files = proposal_files(doc["proposal"])
    texts = [t for name, t in sorted(files.items()) if name.endswith(".yaml")]
    sys.stdout.write("---\n".join(texts))


def recommend_command(
    window: Annotated[
        str, typer.Option(help="The learning window: a span (30d), START..END, or all.")
    ] = "30d",
    granularity: Annotated[
        str, typer.Option(help="workload, role ({app, role, env}) or app ({app, env}).")
    ] = "role",
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Write the policy YAML and report.json here.")
    ] = None,
    compare: Annotated[
        tuple[str, str] | None,
        typer.Option(help="Compare the proposals of two windows: A B (each like --window)."),
    ] = None,
    incremental: Annotated[
        bool,
        typer.Option(help="Against the active policy: uncovered traffic, tighten, remove."),
    ] = False,
    idle_days: Annotated[
        int, typer.Option(help="Incremental: propose removing rules idle this many days.")
    ] = 30,
    iplists: Annotated[
        list[Path] | None,
        typer.Option("--iplists", help="YAML files whose IPList documents name external ends."),
    ] = None,
    min_days: Annotated[
        int | None, typer.Option(help="Minimum distinct days of evidence for a rule.")
    ] = None,
    home: HomeOpt = None,
    lake: LakeOpt = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Propose least-privilege rules from the traffic of a window, with evidence."""
    from cellwall.services.recommend import (
        RecommendQuery,
        compare_windows,
        recommend,
        recommend_incremental,
    )

    with handled():
        ws = workspace(home, lake)
        at = _now(now)
        settings = {"min_days": min_days} if min_days is not None else {}
        since, until = parse_window(window, at, "--window")
        q = RecommendQuery(
            since, until, granularity, out_dir, tuple(iplists or ()), idle_days, settings
        )
        if compare is not None:
            a = parse_window(compare[0], at, "--compare")
            b = parse_window(compare[1], at, "--compare")
            diff = compare_windows(ws, a, b, q)
            emit_json(diff.to_dict()) if as_json else out.print(escape(str(diff)))
            return
        doc = recommend_incremental(ws, q, at) if incremental else recommend(ws, q)
        if as_json:
            emit_json({k: v for k, v in doc.items() if k != "proposal"})
        elif out_dir is None:
            _yaml_to_stdout(doc)
        else:
            _print(doc)


app.command("recommend")(recommend_command)
