"""`cellwall review list|submit|approve|reject|retire|activate|revert|export|import`."""

from __future__ import annotations

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

review_app = typer.Typer(
    help="The review workflow: draft → proposed → approved → active → retired.",
    no_args_is_help=True,
)
app.add_typer(review_app, name="review")

RulesArg = Annotated[list[str], typer.Argument(help="Rule ids.")]
NoteOpt = Annotated[str, typer.Option("--note", help="Why; kept with the transition.")]


def _today(now: str | None) -> date:
    return (parse_time(now, None, "--now") or datetime.now(UTC)).date()


def _date(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a date", hint="write YYYY-MM-DD") from None


def _show(doc: Any, as_json: bool) -> None:
    if as_json:
        emit_json(doc)
    elif isinstance(doc, list):
        for item in doc:
            out.print(escape(f"{item['rule']}: {item['state']}"), highlight=False)
    else:
        out.print(escape(", ".join(f"{k}: {v}" for k, v in doc.items() if k != "diff")))


@review_app.command("list")
def review_list(
    state: Annotated[list[str] | None, typer.Option(help="Only rules in this state.")] = None,
    home: HomeOpt = None,
    actor: AsOpt = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the rules under review, with their dates; overdue and expired ones are marked."""
    from cellwall.services.review import list_review

    with handled():
        rows = list_review(workspace(home), actor=actor, today=_today(now), states=state or ())
        if as_json:
            emit_json(rows)
            return
        table = Table(show_edge=False)
        for c in ("rule", "policy", "kind", "state", "review by", "expires", "flows"):
            table.add_column(c)
        for r in rows:
            flag = " (overdue)" if r["overdue"] else ""
            gone = " (expired)" if r["expired"] else ""
            table.add_row(
                r["rule"],
                r["policy"],
                r["kind"],
                r["state"],
                f"{r['review_by'] or ''}{flag}",
                f"{r['expires'] or ''}{gone}",
                str(r["evidence"].get("conversations", "")),
            )
        out.print(table)
        out.print(f"{len(rows)} rules")


def _act(
    action: str,
    rules: list[str],
    note: str,
    home: Path | None,
    actor: str | None,
    as_json: bool,
    expires: str | None = None,
    review_by: str | None = None,
) -> None:
    from cellwall.services.review import act_on_rules

    with handled():
        done = act_on_rules(
            workspace(home),
            rules,
            action,
            actor=actor,
            note=note,
            expires=_date(expires, "--expires"),
            review_by=_date(review_by, "--review-by"),
        )
        _show(done, as_json)


@review_app.command("submit")
def review_submit(
    rules: RulesArg,
    note: NoteOpt = "",
    home: HomeOpt = None,
    actor: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Propose draft (or rejected) rules for approval."""
    _act("submit", rules, note, home, actor, as_json)


@review_app.command("approve")
def review_approve(
    rules: RulesArg,
    note: NoteOpt = "",
    expires: Annotated[str | None, typer.Option(help="Expiry date YYYY-MM-DD.")] = None,
    review_by: Annotated[str | None, typer.Option(help="Review-by date YYYY-MM-DD.")] = None,
    home: HomeOpt = None,
    actor: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve proposed rules (app owners: intra-app rules of their apps)."""
    _act("approve", rules, note, home, actor, as_json, expires, review_by)


@review_app.command("reject")
def review_reject(
    rules: RulesArg,
    note: NoteOpt = "",
    home: HomeOpt = None,
    actor: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Reject proposed or approved rules."""
    _act("reject", rules, note, home, actor, as_json)


@review_app.command("retire")
def review_retire(
    rules: RulesArg,
    note: NoteOpt = "",
    home: HomeOpt = None,
    actor: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Retire rules; they leave the policy at the next activation."""
    _act("retire", rules, note, home, actor, as_json)


@review_app.command("activate")
def review_activate(
    allow_expired: Annotated[bool, typer.Option(help="Keep expired rules.")] = False,
    home: HomeOpt = None,
    actor: AsOpt = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Load the approved and active rules as a new policy version and activate it."""
    from cellwall.services.review import activate_reviewed

    with handled():
        doc = activate_reviewed(
            workspace(home), actor=actor, today=_today(now), allow_expired=allow_expired
        )
        _show(doc, as_json)


@review_app.command("revert")
def review_revert(
    version: Annotated[int | None, typer.Argument(help="Version (default: the previous).")] = None,
    home: HomeOpt = None,
    actor: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Activate an earlier policy version and restore the review states of then."""
    from cellwall.services.review import revert_review

    with handled():
        _show(revert_review(workspace(home), actor=actor, version=version), as_json)


@review_app.command("export")
def review_export(
    folder: Annotated[Path, typer.Argument(help="Directory to write the YAML files into.")],
    home: HomeOpt = None,
    actor: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the whole review state as YAML (evidence and history in comments)."""
    from cellwall.services.review import export_review

    with handled():
        _show(export_review(workspace(home), folder, actor=actor), as_json)


@review_app.command("import")
def review_import(
    folder: Annotated[Path, typer.Argument(help="A directory written by `review export`.")],
    home: HomeOpt = None,
    actor: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Read review state (or new rules) from YAML files."""
    from cellwall.services.review import import_review

    with handled():
        _show(import_review(workspace(home), folder, actor=actor), as_json)
