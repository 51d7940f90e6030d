"""`cellwall bundle keygen|sign|verify`, `cellwall agent`, `cellwall lab verify|clean`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from cellwall.cli.app import app
from cellwall.cli.common import (
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

__all__ = ["agent_command", "bundle_app", "lab_app"]

bundle_app = typer.Typer(help="Signed policy bundles: keygen, sign, verify.", no_args_is_help=True)
lab_app = typer.Typer(
    help="The real-kernel proof that enforcement equals intent.", no_args_is_help=True
)
app.add_typer(bundle_app, name="bundle")
app.add_typer(lab_app, name="lab")

KeyOpt = Annotated[Path, typer.Option("--key", help="The ed25519 key (PEM).")]


def _span(text: str) -> timedelta:
    from cellwall.model.times import parse_span

    span = parse_span(text)
    if span is None or span.total_seconds() <= 0:
        raise UsageError(f"--valid {text!r}: give a span such as 7d or 12h")
    return span


@bundle_app.command("keygen")
def keygen_command(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for NAME.key and NAME.pub.")],
    name: Annotated[str, typer.Option(help="File name stem of the key pair.")] = "bundle",
    json_out: JsonOpt = False,
) -> None:
    """Make an ed25519 key pair for signing bundles."""
    from cellwall.services.enforce import run_keygen

    with handled():
        doc = run_keygen(out_dir, name)
        emit_json(doc) if json_out else out.print(
            f"wrote {doc['private_key']}, {doc['public_key']}"
        )


@bundle_app.command("sign")
def sign_command(
    root: Annotated[
        Path, typer.Argument(help="Directory of artefacts (`cellwall compile --out`).")
    ],
    key: KeyOpt,
    serial: Annotated[int, typer.Option(help="Serial: above every serial signed before.")],
    valid: Annotated[str, typer.Option(help="How long the bundle stays valid.")] = "7d",
    version: Annotated[str, typer.Option(help="A version label (default: the time).")] = "",
    policy: Annotated[
        Path | None,
        typer.Option(
            help="Policy directory whose management tier to record (default: the "
            "workspace's active policy)."
        ),
    ] = None,
    no_management: Annotated[
        bool,
        typer.Option(
            "--no-management",
            help="Sign without a management tier: the agent then cannot refuse a ruleset "
            "that locks out its control channel. Not recommended.",
        ),
    ] = False,
    json_out: JsonOpt = False,
    home: HomeOpt = None,
    now: NowOpt = None,
) -> None:
    """Hash every artefact into manifest.json and sign it (manifest.sig), with the policy's
    management tier so that the agent refuses a ruleset that would lock it out."""
    from cellwall.services.enforce import SignRequest, run_sign

    with handled():
        req = SignRequest(
            root,
            key,
            serial,
            _span(valid),
            version,
            policy,
            parse_time(now, None, "--now"),
            no_management,
        )
        doc = run_sign(None if no_management else workspace(home), req)
        if json_out:
            emit_json(doc)
        else:
            out.print(
                f"signed serial {doc['serial']} ({doc['hosts']} hosts, {doc['files']} files), "
                f"expires {doc['expires']}"
            )


@bundle_app.command("verify")
def verify_command(
    path: Annotated[Path, typer.Argument(help="Bundle directory or tar.")],
    key: KeyOpt,
    state: Annotated[
        Path | None, typer.Option(help="Agent state dir: refuse serials below its last.")
    ] = None,
    json_out: JsonOpt = False,
    now: NowOpt = None,
) -> None:
    """Check the signature, every file hash, the expiry and the serial. Exit 1 if rejected."""
    from cellwall.services.enforce import run_verify

    with handled():
        doc = run_verify(path, key, state=state, now=parse_time(now, None, "--now"))
        emit_json(doc) if json_out else out.print(
            f"ok: serial {doc['serial']}, {doc['hosts']} hosts"
        )


@app.command("agent")
def agent_command(
    bundle: Annotated[str, typer.Option("--bundle", help="Bundle URL (file://PATH).")],
    host: Annotated[str, typer.Option("--host", help="This host's name in the bundle.")],
    state: Annotated[Path, typer.Option("--state", help="The agent's state directory.")],
    key: Annotated[Path, typer.Option("--key", help="The bundle signer's public key.")],
    once: Annotated[bool, typer.Option("--once", help="Run one cycle and stop.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between cycles.")] = 30.0,
    netns: Annotated[
        str | None, typer.Option("--netns", help="Apply inside this network namespace.")
    ] = None,
    drop_log: Annotated[
        bool,
        typer.Option(
            "--drop-log/--no-drop-log",
            help="Collect drop logs (NFLOG via ulogd) as agent-drops rows in STATE/drops.jsonl.",
        ),
    ] = True,
    json_out: JsonOpt = False,
) -> None:
    """Fetch, verify and apply the signed bundle; guard the table; report counters and drops."""
    from cellwall.enforce.agent import AgentConfig
    from cellwall.services.enforce import run_agent

    with handled():
        config = AgentConfig(bundle, host, state, key, netns, drop_log=drop_log)
        results = run_agent(config, once=once, interval=interval)
        last = results[-1]
        if json_out:
            emit_json(last.to_dict())
        else:
            out.print(
                f"{last.outcome}: serial {last.serial}"
                + (f" ({last.reason})" if last.reason else "")
                + (", table repaired" if last.repaired else "")
                + f", {last.reported} counter rows reported"
                + (f", {last.drops} drops logged" if drop_log else ""),
                highlight=False,
            )
        if last.outcome in ("rejected", "refused"):
            raise typer.Exit(1)


@lab_app.command("verify")
def lab_verify_command(
    inventory: Annotated[Path | None, typer.Option(help="Inventory file.")] = None,
    policy: Annotated[Path | None, typer.Option(help="Policy directory.")] = None,
    sample: Annotated[
        int | None, typer.Option(min=1, help="Probe this many label classes (a sample).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds a probe waits for an answer.")] = 0.3,
    at: Annotated[
        str | None, typer.Option("--at", help="The instant whose addresses count (else now).")
    ] = None,
    target: Annotated[
        str, typer.Option(help="The host target to apply: nftables, or iptables (with ipset).")
    ] = "nftables",
    ends: Annotated[
        bool,
        typer.Option(
            help="Also probe address ends: IP lists, the internet, admin networks, controllers."
        ),
    ] = True,
    json_out: JsonOpt = False,
    home: HomeOpt = None,
    now: NowOpt = None,
) -> None:
    """Build namespaces, apply the compiled rulesets, probe, compare. Exit 1 on a
    disagreement."""
    from cellwall.services.enforce import lab_verify

    with handled():
        result = lab_verify(
            workspace(home),
            policy,
            inventory,
            sample=sample,
            timeout=timeout,
            at=parse_time(at, now, "--at"),
            target=target,
            ends=ends,
        )
        if json_out:
            emit_json(result.to_dict())
        else:
            out.print(str(result), highlight=False, markup=False)
        if result.exit_code:
            raise typer.Exit(result.exit_code)


@lab_app.command("clean")
def lab_clean_command() -> None:
    """Delete every lab namespace left behind."""
    from cellwall.services.enforce import lab_clean

    with handled():
        gone = lab_clean()
        out.print(f"removed {len(gone)} namespace(s)")
