"""`cellwall analyze reach|matrix|invariants|blast-radius|exposure|lint`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cellwall.cli.app import app
from cellwall.cli.common import (
    HomeOpt,
    InventoryOpt,
    JsonOpt,
    LakeOpt,
    NowOpt,
    PolicyOpt,
    emit_json,
    handled,
    out,
    parse_time,
    workspace,
)

analyze_app = typer.Typer(
    help="Proofs and findings: reachability, invariants, blast radius, exposure and lint.",
    no_args_is_help=True,
)
app.add_typer(analyze_app, name="analyze")

ServiceOpt = Annotated[
    list[str] | None, typer.Option("--service", help="Only these services (repeatable).")
]
EffectiveOpt = Annotated[
    bool,
    typer.Option("--effective", help="Apply the modes: count what enforcement lets through."),
]
SinceOpt = Annotated[str | None, typer.Option(help="Evidence from this time (ISO 8601 or 7d).")]
UntilOpt = Annotated[str | None, typer.Option(help="Evidence until this time.")]
HopsOpt = Annotated[int, typer.Option("--hops", min=1, help="At most this many hops.")]
VulnsOpt = Annotated[
    list[Path] | None,
    typer.Option("--vulns", help="Trivy or Grype JSON, or a CSV of CVEs (repeatable)."),
]


def _print(result: Any, as_json: bool) -> None:
    if as_json:
        emit_json(result.to_dict())
    else:
        out.print(str(result), highlight=False, markup=False)


def _sources(policy: Path | None, inventory: Path | None) -> Any:
    from cellwall.services.analyze import Sources

    return Sources(policy, inventory)


@analyze_app.command("reach")
def analyze_reach_command(
    source: Annotated[str, typer.Argument(help="FROM: a workload or a selector.")],
    target: Annotated[str, typer.Argument(help="TO: a workload or a selector.")],
    service: ServiceOpt = None,
    draft: Annotated[
        Path | None, typer.Option("--draft", help="What-if: also under this draft policy.")
    ] = None,
    effective: EffectiveOpt = False,
    policy: PolicyOpt = None,
    inventory: InventoryOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What FROM may open to TO (selectors such as app=payments,role=web, {role: web},
    iplist:internet, 10.0.0.0/8, any; or workloads)."""
    from cellwall.services.analyze import analyze_reach

    with handled():
        result = analyze_reach(
            workspace(home),
            source,
            target,
            src=_sources(policy, inventory),
            services=service or (),
            effective=effective,
            draft=draft,
        )
        _print(result, as_json)


@analyze_app.command("matrix")
def analyze_matrix_command(
    service: ServiceOpt = None,
    effective: EffectiveOpt = False,
    policy: PolicyOpt = None,
    inventory: InventoryOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The class-level reachability matrix: label classes and address ranges, and which
    pairs the policy allows."""
    from cellwall.services.analyze import analyze_matrix

    with handled():
        result = analyze_matrix(
            workspace(home),
            src=_sources(policy, inventory),
            services=service or (),
            effective=effective,
        )
        _print(result, as_json)


@analyze_app.command("invariants")
def analyze_invariants_command(
    invariants: Annotated[
        Path | None,
        typer.Option("--invariants", help="A file of kind: Invariant (else the policy's own)."),
    ] = None,
    effective: EffectiveOpt = False,
    evidence: Annotated[
        bool, typer.Option(help="Also weigh the lake's conversations as evidence.")
    ] = True,
    since: SinceOpt = None,
    until: UntilOpt = None,
    policy: PolicyOpt = None,
    inventory: InventoryOpt = None,
    home: HomeOpt = None,
    lake: LakeOpt = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Prove each invariant against the policy (exit 1 when one fails), with a
    counterexample for each failure and the observed evidence."""
    from cellwall.services.analyze import analyze_invariants

    with handled():
        report = analyze_invariants(
            workspace(home, lake),
            src=_sources(policy, inventory),
            file=invariants,
            effective=effective,
            with_evidence=evidence,
            since=parse_time(since, now, "--since"),
            until=parse_time(until, now, "--until"),
        )
        _print(report, as_json)
        if report.failed:
            raise typer.Exit(1)


@analyze_app.command("blast-radius")
def analyze_blast_command(
    source: Annotated[str, typer.Argument(help="The compromised workload, or a selector.")],
    hops: HopsOpt = 4,
    vulns: VulnsOpt = None,
    proposed: Annotated[
        Path | None, typer.Option("--proposed", help="A proposed policy to compare.")
    ] = None,
    observed: Annotated[
        bool, typer.Option(help="Compare with the observed conversations of the lake.")
    ] = True,
    since: SinceOpt = None,
    until: UntilOpt = None,
    policy: PolicyOpt = None,
    inventory: InventoryOpt = None,
    home: HomeOpt = None,
    lake: LakeOpt = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What an attacker holding SOURCE reaches within --hops: on a flat network, along the
    observed traffic, under a proposed policy and under the policy."""
    from cellwall.services.analyze import BlastQuery, analyze_blast

    with handled():
        q = BlastQuery(
            source,
            hops,
            tuple(vulns or ()),
            proposed,
            observed,
            parse_time(since, now, "--since"),
            parse_time(until, now, "--until"),
        )
        _print(analyze_blast(workspace(home, lake), q, src=_sources(policy, inventory)), as_json)


@analyze_app.command("exposure")
def analyze_exposure_command(
    hops: HopsOpt = 4,
    vulns: VulnsOpt = None,
    top: Annotated[int, typer.Option(help="How many workloads to list.")] = 20,
    policy: PolicyOpt = None,
    inventory: InventoryOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Each workload's exposure score under the policy, highest first."""
    from cellwall.services.analyze import analyze_exposure

    with handled():
        result = analyze_exposure(
            workspace(home), src=_sources(policy, inventory), hops=hops, vulns=vulns or (), top=top
        )
        _print(result, as_json)


@analyze_app.command("lint")
def analyze_lint_command(
    fail_on: Annotated[
        str | None,
        typer.Option("--fail-on", help="Exit 1 on a finding of this severity or worse."),
    ] = None,
    policy: PolicyOpt = None,
    inventory: InventoryOpt = None,
    home: HomeOpt = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Shadowed, overridden and redundant rules, allow/deny conflicts, rules too broad or
    matching nothing, and rules past review or without an owner."""
    from datetime import UTC, datetime

    from cellwall.errors import UsageError
    from cellwall.services.analyze import analyze_lint

    levels = ("error", "warning", "info")
    with handled():
        if fail_on is not None and fail_on not in levels:
            raise UsageError(f"--fail-on {fail_on!r}", "use error, warning or info")
        when = parse_time(now, None, "--now") or datetime.now(UTC)
        report = analyze_lint(workspace(home), src=_sources(policy, inventory), today=when.date())
        _print(report, as_json)
        if fail_on is not None:
            worst = levels[: levels.index(fail_on) + 1]
            if any(f.severity in worst for f in report.findings):
                raise typer.Exit(1)
