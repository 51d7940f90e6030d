"""The compile use case: a policy and an inventory become enforcement artefacts.

:func:`compile_policy` is the pure entry point (the agent, bundles and ``lab verify`` call
it); :func:`run_compile` serves ``cellwall compile``; :func:`demo_compile` compiles the demo
workspace's active policy. A rule whose ``expires`` date has passed is *expired* and is refused
unless ``allow_expired`` is given; a rule past its ``review_by`` date is only noted as overdue.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from cellwall.errors import UsageError
from cellwall.model.inventory import Workload
from cellwall.model.policy import PolicySet
from cellwall.policy.ir import PolicyIR
from cellwall.targets.base import Artefact, Artefacts, get_target, target_names
from cellwall.targets.plan import Estate
from cellwall.workspace import Workspace

__all__ = [
    "CompileRequest",
    "compile_policy",
    "demo_compile",
    "expired_rules",
    "files_by_host",
    "make_estate",
    "overdue_rules",
    "run_compile",
    "write_artefacts",
]


@dataclass(frozen=True, slots=True)
class CompileRequest:
    target: str
    out: Path
    host: str | None = None
    all_hosts: bool = False
    policy_dir: Path | None = None
    inventory: Path | None = None
    allow_expired: bool = False
    at: datetime | None = None
    today: date | None = None


def expired_rules(ps: PolicySet, today: date) -> list[tuple[str, date]]:
    """(rule id, expires) for every rule whose last valid day is before ``today``."""
    return [(r.id, r.expires) for _, r in ps.rules() if r.expires is not None and r.expires < today]


def overdue_rules(ps: PolicySet, today: date) -> list[tuple[str, date]]:
    """(rule id, review_by) for every rule whose review date is before ``today``."""
    return [
        (r.id, r.review_by)
        for _, r in ps.rules()
        if r.review_by is not None and r.review_by < today
    ]


def _listed(found: Sequence[tuple[str, date]], field: str, most: int = 10) -> str:
    shown = ", ".join(f"{rid} ({field} {d.isoformat()})" for rid, d in found[:most])
    return shown + (f" and {len(found) - most} more" if len(found) > most else "")


def _check_expiry(ps: PolicySet, today: date, allow_expired: bool) -> list[str]:
    notes = []
    if overdue := overdue_rules(ps, today):
        notes.append(f"{len(overdue)} rule(s) overdue for review: {_listed(overdue, 'review_by')}")
    found = expired_rules(ps, today)
    if not found:
        return notes
    if not allow_expired:
        raise UsageError(
            f"{len(found)} rule(s) expired: {_listed(found, 'expires')}",
            hint="renew them (move expires forward) or remove them, or pass --allow-expired",
        )
    listed = _listed(found, "expires")
    return [*notes, f"expired rules compiled because --allow-expired was given: {listed}"]


def make_estate(ps: PolicySet, workloads: Sequence[Workload], at: datetime | None = None) -> Estate:
    """The policy lowered over ``workloads`` at ``at`` (default: now), ready to compile."""
    return Estate(PolicyIR(ps, workloads), workloads, at)


def compile_policy(
    ps: PolicySet,
    workloads: Sequence[Workload],
    target: str,
    *,
    host: str | None = None,
    at: datetime | None = None,
    allow_expired: bool = False,
    today: date | None = None,
    estate: Estate | None = None,
) -> Artefacts:
    """Artefacts of ``target`` for one host, or for all (``host`` None).

    Raises UsageError for an unknown target or host, and for expired rules unless
    ``allow_expired``. Pass ``estate`` (from :func:`make_estate`) to share the lowering
    between calls.
    """
    t = get_target(target)
    notes = _check_expiry(ps, today or (at or datetime.now(UTC)).date(), allow_expired)
    est = estate or make_estate(ps, workloads, at)
    if host is not None and host not in est.hosts:
        raise UsageError(f"no workload called {host!r} in the inventory")
    arts = t.compile(est, host)
    arts.notes.extend(notes)
    return arts


def write_artefacts(arts: Artefacts, out: Path) -> list[Path]:
    """Write each file and ``unsupported.json`` under ``out`` (created if needed)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for a in arts.files:
        p = out / a.path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(a.text)
        written.append(p)
    report = out / "unsupported.json"
    report.write_text(arts.report_json())
    return [*written, report]


def run_compile(ws: Workspace, req: CompileRequest) -> dict[str, Any]:
    """``cellwall compile``: check the request, compile, write, and summarise."""
    from cellwall.services.replay import policy_for, workloads_for

    if req.target not in target_names():
        raise UsageError(f"unknown target {req.target!r}", hint="use " + ", ".join(target_names()))
    if (req.host is None) == (not req.all_hosts):
        raise UsageError("give exactly one of --host H and --all")
    ps = policy_for(ws, req.policy_dir)
    workloads = workloads_for(ws, req.inventory)
    arts = compile_policy(
        ps,
        workloads,
        req.target,
        host=req.host,
        at=req.at,
        allow_expired=req.allow_expired,
        today=req.today,
    )
    paths = write_artefacts(arts, req.out)
    return {**_summary(arts), "out": str(req.out), "written": len(paths)}


def _summary(arts: Artefacts) -> dict[str, Any]:
    rep = arts.report()
    return {
        "target": arts.target,
        "files": len(arts.files),
        "hosts": len({a.host for a in arts.files if a.host is not None}),
        "unsupported": rep["unsupported"],
        "notes": rep["notes"],
    }


def _demo_instant(workloads: Sequence[Workload]) -> datetime | None:
    """The last lease start: every workload alive then holds its address."""
    starts = [a.start for w in workloads for a in w.addresses if a.start is not None]
    return max(starts) if starts else None


def demo_compile(ws: Workspace, out_dir: Path) -> dict[str, Any]:
    """Compile the workspace's active policy (the demo's) for every host to nftables under
    ``out_dir/nftables`` and to Kubernetes NetworkPolicy under ``out_dir/k8s``; counts per
    target. Expired rules are compiled (the demo's dates are synthetic) and noted."""
    from cellwall.services.replay import policy_for, workloads_for

    ps = policy_for(ws, None)
    workloads = workloads_for(ws, None)
    at = _demo_instant(workloads)
    estate = make_estate(ps, workloads, at)
    doc: dict[str, Any] = {"at": at.isoformat() if at else None}
    for target in ("nftables", "k8s"):
        arts = compile_policy(
            ps, workloads, target, at=at, allow_expired=True, estate=estate, today=date.today()
        )
        dest = out_dir / target
        if dest.exists():
            shutil.rmtree(dest)
        write_artefacts(arts, dest)
        doc[target] = _summary(arts) | {"unsupported": len(arts.report()["unsupported"])}
    return doc


def files_by_host(arts: Artefacts) -> dict[str, Artefact]:
    """Per host, its artefact (per-host targets)."""
    return {a.host: a for a in arts.files if a.host is not None}
