"""`cellwall dbproxy`: run the database firewall, and review what it learned."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cellwall.cli.app import app
from cellwall.cli.common import AsOpt, HomeOpt, JsonOpt, emit_json, err, handled, out, workspace
from cellwall.errors import UsageError

__all__ = ["dbproxy_app"]

dbproxy_app = typer.Typer(
    help="The database firewall: a PostgreSQL proxy that learns and blocks query shapes.",
    invoke_without_command=True,
)
review_app = typer.Typer(help="Review the learned fingerprints.", no_args_is_help=True)
dbproxy_app.add_typer(review_app, name="review")
app.add_typer(dbproxy_app, name="dbproxy")


@dbproxy_app.callback()
def dbproxy(
    ctx: typer.Context,
    listen: Annotated[str | None, typer.Option(help="HOST:PORT to accept clients on.")] = None,
    upstream: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT of the PostgreSQL server, or its Unix-socket directory "
            "(/run/postgresql, port 5432; /dir:PORT for another)."
        ),
    ] = None,
    mode: Annotated[str, typer.Option(help="learn, alert or enforce.")] = "learn",
    alerts: Annotated[
        Path | None, typer.Option(help="JSON-lines alert file (default HOME/dbproxy/alerts.jsonl).")
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="Certificate for client TLS.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Private key for client TLS.")] = None,
    require_tls: Annotated[bool, typer.Option(help="Refuse cleartext clients.")] = False,
    upstream_tls: Annotated[
        str, typer.Option(help="disable, prefer, require, verify-ca or verify-full.")
    ] = "disable",
    upstream_ca: Annotated[Path | None, typer.Option(help="CA file to verify the server.")] = None,
    upstream_server_name: Annotated[
        str | None, typer.Option(help="Server name for TLS verification (default: the host).")
    ] = None,
    max_message: Annotated[int, typer.Option(help="Largest query message buffered, in bytes.")] = 16
    << 20,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Proxy processes sharing the port (SO_REUSEPORT); about one per core.",
        ),
    ] = 1,
    no_inventory: Annotated[
        bool, typer.Option("--no-inventory", help="Identify clients by address only.")
    ] = False,
    home: HomeOpt = None,
    actor: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the proxy (with --listen and --upstream), or review what it learned."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"home": home}
        return
    from cellwall.dbfw.proxy import ProxyConfig, parse_hostport
    from cellwall.dbfw.tls import TLSConfig, UpstreamTLS
    from cellwall.services.dbfw import parse_mode as _mode
    from cellwall.services.dbfw import run_proxy

    with handled():
        if listen is None or upstream is None:
            raise UsageError(
                "give --listen HOST:PORT and --upstream HOST:PORT",
                hint="or a subcommand: cellwall dbproxy review --help",
            )
        try:
            up_tls = UpstreamTLS(upstream_tls)
        except ValueError:
            raise UsageError(
                f"--upstream-tls {upstream_tls!r}: use " + ", ".join(m.value for m in UpstreamTLS)
            ) from None
        if max_message < 1024:
            raise UsageError("--max-message must be at least 1024")
        tls = TLSConfig(tls_cert, tls_key, require_tls, up_tls, upstream_ca, upstream_server_name)
        config = ProxyConfig(
            parse_hostport(listen, "--listen"),
            parse_hostport(upstream, "--upstream"),
            tls,
            max_message=max_message,
        )

        def ready(port: int) -> None:
            more = f" in {workers} processes" if workers > 1 else ""
            err.print(
                f"cellwall dbproxy: {mode} mode, listening on "
                f"{config.listen[0]}:{port}{more}, upstream {upstream}"
            )

        stats = run_proxy(
            workspace(home),
            config,
            _mode(mode),
            alerts=alerts,
            use_inventory=not no_inventory,
            actor=actor,
            on_ready=ready,
            workers=workers,
        )
        if as_json:
            emit_json(stats)
        else:
            err.print(
                "cellwall dbproxy stopped: " + ", ".join(f"{k} {v}" for k, v in stats.items())
            )


def _home(ctx: typer.Context, home: Path | None) -> Path | None:
    parent = ctx.obj or {}
    return home or parent.get("home")


@review_app.command("list")
def review_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="learned, approved or rejected.")] = None,
    source: Annotated[
        str | None, typer.Option(help="Only this source workload or address.")
    ] = None,
    user: Annotated[str | None, typer.Option(help="Only this database user.")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List learned fingerprints per identity, with counts and first and last seen."""
    from cellwall.services.dbfw import list_fingerprints

    with handled():
        rows = list_fingerprints(
            workspace(_home(ctx, home)), status=status, source=source, user=user
        )
        if as_json:
            emit_json({"fingerprints": rows})
            return
        table = Table("id", "identity", "fingerprint", "status", "count", "last seen", "sample")
        for r in rows:
            i = r["identity"]
            table.add_row(
                str(r["id"]),
                escape(f"{i['source']} {i['user']}@{i['database']} {i['application']}"),
                r["fingerprint"],
                r["status"],
                str(r["count"]),
                r["last_seen"][:19],
                escape(r["sample"][:80]),
            )
        out.print(table)


def _review(
    ctx: typer.Context,
    ids: list[int],
    decision: str,
    note: str,
    home: Path | None,
    actor: str | None,
    as_json: bool,
) -> None:
    from cellwall.services.dbfw import review_fingerprints

    with handled():
        rows = review_fingerprints(
            workspace(_home(ctx, home)), ids, decision, actor=actor, note=note
        )
        if as_json:
            emit_json({"fingerprints": rows})
        else:
            for r in rows:
                out.print(f"{r['id']} {r['fingerprint']}: {r['status']}")
            sys.stdout.flush()


@review_app.command("approve")
def review_approve(
    ctx: typer.Context,
    ids: Annotated[list[int], typer.Argument(help="Fingerprint ids from `review list`.")],
    note: Annotated[str, typer.Option(help="Why; goes to the audit log.")] = "",
    home: HomeOpt = None,
    actor: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve fingerprints: allowed, including structural indicators they trip."""
    _review(ctx, ids, "approved", note, home, actor, as_json)


@review_app.command("reject")
def review_reject(
    ctx: typer.Context,
    ids: Annotated[list[int], typer.Argument(help="Fingerprint ids from `review list`.")],
    note: Annotated[str, typer.Option(help="Why; goes to the audit log.")] = "",
    home: HomeOpt = None,
    actor: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Reject fingerprints: blocked in enforce mode from now on."""
    _review(ctx, ids, "rejected", note, home, actor, as_json)
