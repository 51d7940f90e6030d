"""`cellwall policy check|load|activate|list|show|diff`."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cellwall.cli.app import app
from cellwall.cli.common import (
    AsOpt,
    HomeOpt,
    JsonOpt,
    NowOpt,
    emit_json,
    handled,
    out,
    parse_time,
    workspace,
)
from cellwall.errors import UsageError

policy_app = typer.Typer(
    help="The policy: check and load directories, activate, list, show and diff versions.",
    no_args_is_help=True,
)
app.add_typer(policy_app, name="policy")

PathsArg = Annotated[
    list[Path], typer.Argument(help="Policy directories or YAML files (read together).")
]


def _today(now: str | None) -> date:
    """The date that review_by is compared with: --now's, else today's (UTC)."""
    when = parse_time(now, None, "--now") if now else None
    return (when or datetime.now(UTC)).date()


def _version(text: str | None) -> int | None:
    if text is None:
        return None
    digits = text.removeprefix("v")
    if not (digits.isascii() and digits.isdigit()):
        raise UsageError(f"{text!r} is not a policy version", "write a number such as 3 or v3")
    return int(digits)


def print_diagnostics(diags: list[dict[str, Any]]) -> None:
    """``file:line:col: severity code: message (hint: ...)``, one a line."""
    for d in diags:
        where = ":".join(
            str(x) for x in (d["file"] or "<input>", d["line"], d["col"]) if x is not None
        )
        colour = "red" if d["severity"] == "error" else "yellow"
        hint = f" (hint: {escape(d['hint'])})" if d["hint"] else ""
        out.print(
            f"{escape(where)}: [{colour}]{d['severity']}[/] {d['code']}: "
            f"{escape(d['message'])}{hint}",
            highlight=False,
        )


def _totals(doc: dict[str, Any]) -> str:
    return (
        f"{doc['policies']} policies, {doc['rules']} rules, {doc['iplists']} IP lists, "
        f"{doc['invariants']} invariants; {doc['errors']} errors, {doc['warnings']} warnings"
    )


@policy_app.command("check")
def policy_check(
    paths: PathsArg,
    now: NowOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate policy files against the loaded inventory; store nothing. Exit 2 on errors."""
    from cellwall.services.policy import check_policy

    with handled():
        doc = check_policy(workspace(home), paths, today=_today(now))
        if as_json:
            emit_json(doc)
        else:
            print_diagnostics(doc["diagnostics"])
            out.print(_totals(doc))
        if doc["errors"]:
            raise typer.Exit(2)


@policy_app.command("load")
def policy_load(
    paths: PathsArg,
    activate: Annotated[bool, typer.Option("--activate", help="Activate the version.")] = False,
    now: NowOpt = None,
    home: HomeOpt = None,
    actor: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check policy files and store them as a new version. Any error: exit 2, nothing stored."""
    from cellwall.services.policy import load_policy_dir

    with handled():
        doc = load_policy_dir(
            workspace(home), paths, today=_today(now), actor=actor, activate=activate
        )
        if as_json:
            emit_json(doc)
        else:
            print_diagnostics(doc["diagnostics"])
            out.print(_totals(doc))
            if doc["version"] is None:
                out.print("nothing was loaded")
            else:
                state = "new version" if doc["created"] else "unchanged: same as version"
                active = " (active)" if doc["activated"] else ""
                out.print(f"{state} {doc['version']}{active}")
        if doc["errors"]:
            raise typer.Exit(2)


@policy_app.command("activate")
def policy_activate(
    version: Annotated[
        str | None, typer.Argument(help="The version to activate (default: the newest).")
    ] = None,
    home: HomeOpt = None,
    actor: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make a stored version the active policy."""
    from cellwall.services.policy import activate_policy

    with handled():
        doc = activate_policy(workspace(home), _version(version), actor=actor)
        if as_json:
            emit_json(doc)
        else:
            out.print(f"version {doc['version']} is active")


@policy_app.command("list")
def policy_list(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """List the stored versions, oldest first; * marks the active one."""
    from cellwall.services.policy import list_policy_versions

    with handled():
        rows = list_policy_versions(workspace(home))
        if as_json:
            emit_json(rows)
            return
        table = Table(show_edge=False)
        for c in ("", "version", "loaded at", "by", "policies", "rules", "source", "hash"):
            table.add_column(c)
        for r in rows:
            table.add_row(
                "*" if r["active"] else "",
                str(r["version"]),
                r["loaded_at"],
                escape(r["actor"]),
                str(r["policies"]),
                str(r["rules"]),
                escape(r["source"]),
                r["content_hash"][:12],
            )
        out.print(table)
        out.print(f"{len(rows)} versions")


@policy_app.command("show")
def policy_show(
    version: Annotated[
        str | None, typer.Argument(help="The version (default: the active one, else the newest).")
    ] = None,
    files: Annotated[
        bool, typer.Option("--files", help="Print the YAML files exactly as they were loaded.")
    ] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a stored version: its record and its rules (or its files)."""
    from cellwall.services.policy import show_policy

    with handled():
        doc = show_policy(workspace(home), _version(version))
        if as_json:
            emit_json(doc)
            return
        if files:
            for name, text in doc["files"].items():
                sys.stdout.write(f"# --- {name}\n{text}")
                sys.stdout.write("" if text.endswith("\n") else "\n")
            return
        active = " (active)" if doc["active"] else ""
        out.print(
            f"version {doc['version']}{active}: loaded {doc['loaded_at']} by "
            f"{escape(doc['actor'])} from {escape(doc['source'])}",
            highlight=False,
        )
        for r in doc["rule_list"]:
            same = f" same {','.join(r['same'])}" if r["same"] else ""
            outside = " (from outside scope)" if r["from_outside_scope"] else ""
            out.print(
                escape(
                    f"{r['policy']}/{r['id']}: {r['action']} {r['from']}{outside} -> {r['to']} "
                    f"on {', '.join(r['services'])}{same}"
                ),
                highlight=False,
            )


@policy_app.command("diff")
def policy_diff(
    a: Annotated[str, typer.Argument(help="A version (3, v3, active) or a directory.")],
    b: Annotated[str, typer.Argument(help="A version (3, v3, active) or a directory.")],
    semantic: Annotated[
        bool, typer.Option(help="Also judge what changes for traffic (the semantic diff).")
    ] = True,
    since: Annotated[
        str | None,
        typer.Option(help="Observed conversations from this time (ISO 8601 or a span such as 7d)."),
    ] = None,
    home: HomeOpt = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What changed from A to B: rules added, removed and changed; then what it means for
    every class pair and for the conversations observed in the lake."""
    from cellwall.services.policy import diff_policy

    with handled():
        when = parse_time(since, now, "--since")
        result = diff_policy(workspace(home), a, b, semantic=semantic, since=when)
        if as_json:
            emit_json(result.to_dict())
        else:
            out.print(escape(str(result)), highlight=False)
