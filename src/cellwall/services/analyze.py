"""The analysis use cases: reach, the class matrix, invariants, blast radius, exposure, lint,
and the demo's analysis stage.

Each takes the workspace and the command's choices, reads the policy (``--policy DIR``, else
the active one), the inventory (``--inventory FILE``, else the loaded one) and, for evidence,
the lake's conversations, and returns a typed result (:mod:`cellwall.analyze.results`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from cellwall.analyze.blast import (
    Weights,
    exposure,
    flat_scenario,
    graph_scenario,
    policy_scenario,
)
from cellwall.analyze.invariants import evidence, prove, selectors_of
from cellwall.analyze.lint import lint
from cellwall.analyze.observed import Observed
from cellwall.analyze.reach import class_matrix, parse_end, reach
from cellwall.analyze.results import (
    BlastResult,
    ExposureResult,
    InvariantReport,
    LintReport,
    MatrixResult,
    ReachResult,
    Scenario,
)
from cellwall.analyze.space import Space
from cellwall.analyze.vulns import load_vulnerabilities
from cellwall.errors import EmptyWindowError, UsageError
from cellwall.model.inventory import Workload
from cellwall.model.policy import Invariant, PolicySet, Selector, Service, parse_service
from cellwall.workspace import Workspace

__all__ = [
    "Sources",
    "analyze_blast",
    "analyze_exposure",
    "analyze_invariants",
    "analyze_lint",
    "analyze_matrix",
    "analyze_reach",
    "demo_analysis",
    "parse_services",
]


@dataclass(frozen=True, slots=True)
class Sources:
    """Where the policy and the inventory come from (None: the workspace's)."""

    policy: Path | None = None
    inventory: Path | None = None


def parse_services(texts: Sequence[str]) -> tuple[Service, ...]:
    try:
        return tuple(parse_service(t) for t in texts)
    except ValueError as exc:
        raise UsageError(f"--service: {exc}", "write tcp/443, udp/53, icmp/8 or any") from None


def _inputs(ws: Workspace, src: Sources) -> tuple[str, PolicySet, list[Workload]]:
    from cellwall.services.replay import policy_for, workloads_for

    name = str(src.policy) if src.policy is not None else "the active policy"
    return name, policy_for(ws, src.policy), workloads_for(ws, src.inventory)


def _conversations(ws: Workspace, since: datetime | None, until: datetime | None) -> Any:
    """The window's conversations (None when the lake is empty and no window was asked)."""
    from cellwall.services.replay import window_conversations

    if not ws.lake.exists():
        if since is not None or until is not None:
            raise EmptyWindowError("no flows in that window", hint="the lake is empty")
        return None
    try:
        return window_conversations(ws, since, until).to_pyarrow()
    except EmptyWindowError:
        if since is not None or until is not None:
            raise
        return None


def _observed(
    ws: Workspace, ps: PolicySet, workloads: list[Workload], since: Any, until: Any
) -> Observed | None:
    from cellwall.evidence.dns import scan_dns

    conv = _conversations(ws, since, until)
    if conv is None:
        return None
    return Observed(conv, ps, workloads, scan_dns(ws.lake))


def analyze_reach(
    ws: Workspace,
    source: str,
    target: str,
    *,
    src: Sources = Sources(),
    services: Sequence[str] = (),
    effective: bool = False,
    draft: Path | None = None,
) -> ReachResult:
    """What SOURCE may open to TARGET; with ``draft``, the same under the draft policy."""
    name, ps, workloads = _inputs(ws, src)
    names = [w.name for w in workloads]
    a, b = parse_end(source, names), parse_end(target, names)
    svc = parse_services(services)
    result = reach(
        Space(ps, workloads, [a, b]),
        a,
        b,
        services=svc,
        effective=effective,
        policy=name,
        names=(source, target),
    )
    if draft is not None:
        from cellwall.services.policy import read_policy_dir

        other = read_policy_dir(ws, draft)
        after = reach(
            Space(other, workloads, [a, b]),
            a,
            b,
            services=svc,
            effective=effective,
            policy=f"the draft {draft}",
            names=(source, target),
        )
        result = replace(result, draft=after)
    return result


def analyze_matrix(
    ws: Workspace,
    *,
    src: Sources = Sources(),
    services: Sequence[str] = (),
    effective: bool = False,
) -> MatrixResult:
    name, ps, workloads = _inputs(ws, src)
    return class_matrix(
        Space(ps, workloads), services=parse_services(services), effective=effective, policy=name
    )


def _iplist_yaml(ps: PolicySet, skip: set[str]) -> str:
    docs = [
        "apiVersion: cellwall/v1\nkind: IPList\nmetadata: "
        + json.dumps({"name": il.name})
        + "\nspec: "
        + json.dumps({"cidrs": list(il.cidrs), "except": list(il.except_), "fqdns": list(il.fqdns)})
        + "\n"
        for il in ps.iplists
        if il.name not in skip
    ]
    return "---\n".join(docs)


def _invariants(ps: PolicySet, file: Path | None) -> tuple[PolicySet, list[Invariant]]:
    """The invariants of ``file`` (which may name the policy's IP lists), else the
    policy's own; and the policy with the file's IP lists added."""
    if file is None:
        return ps, [i for s in ps.invariants for i in s.invariants]
    from cellwall.policy.loader import load_policy, load_policy_texts

    if not file.is_file():
        raise UsageError(
            f"--invariants {file}: no such file", "give a YAML file of kind: Invariant"
        )
    alone = load_policy([file])
    own = {il.name for il in alone.policy_set.iplists}
    texts = {str(file): file.read_text(encoding="utf-8-sig")}
    lists = _iplist_yaml(ps, own)
    if lists:
        texts["<the policy's IP lists>"] = lists
    loaded = load_policy_texts(texts)
    loaded.raise_for_errors()
    extra = loaded.policy_set
    known = {il.name for il in ps.iplists}
    iplists = ps.iplists + tuple(il for il in extra.iplists if il.name not in known)
    return replace(ps, iplists=iplists), [i for s in extra.invariants for i in s.invariants]


def analyze_invariants(
    ws: Workspace,
    *,
    src: Sources = Sources(),
    file: Path | None = None,
    effective: bool = False,
    with_evidence: bool = True,
    since: datetime | None = None,
    until: datetime | None = None,
) -> InvariantReport:
    """Prove every invariant (of ``file``, else of the policy) and weigh the evidence."""
    name, ps, workloads = _inputs(ws, src)
    ps, invariants = _invariants(ps, file)
    if not invariants:
        where = str(file) if file is not None else name
        raise UsageError(f"{where} has no invariants", "give --invariants FILE (kind: Invariant)")
    space = Space(ps, workloads, selectors_of(invariants))
    observed = _observed(ws, ps, workloads, since, until) if with_evidence else None
    results = []
    for inv in invariants:
        result = prove(space, inv, effective=effective)
        if observed is not None:
            result = replace(result, evidence=evidence(observed, inv))
        results.append(result)
    window = None
    if observed is not None:
        window = {
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "conversations": observed.count,
        }
    return InvariantReport(name, effective, tuple(results), window)


def _weights(workloads: list[Workload], vulns: Sequence[Path]) -> Weights:
    found = load_vulnerabilities(vulns, [w.name for w in workloads]) if vulns else {}
    return Weights.of(workloads, found)


def _sentence(source: str, hops: int, scenarios: Sequence[Scenario]) -> str:
    where = {
        "flat": "on a flat network",
        "observed": "along observed traffic",
        "proposed": "under the proposed policy",
        "active": "under the policy",
    }
    parts = [f"{s.reached} {where.get(s.name, s.name)}" for s in scenarios]
    parts[0] = parts[0].replace(" ", " workloads ", 1)
    text = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]
    return f"a compromised {source} reaches {text} (within {hops} hop(s))"


@dataclass(frozen=True, slots=True)
class BlastQuery:
    source: str
    hops: int = 4
    vulns: tuple[Path, ...] = ()
    proposed: Path | None = None
    observed: bool = True
    since: datetime | None = None
    until: datetime | None = None


def _observed_sources(observed: Observed, sel: Selector, names: set[str]) -> set[str]:
    if sel.address_terms:
        return {c for c, _ in observed.edges(observed.match(sel))}
    return names


def analyze_blast(ws: Workspace, q: BlastQuery, *, src: Sources = Sources()) -> BlastResult:
    """What a compromised source reaches: flat, observed, proposed, active."""
    import time

    _, ps, workloads = _inputs(ws, src)
    sel = parse_end(q.source, [w.name for w in workloads])
    weights = _weights(workloads, q.vulns)
    space = Space(ps, workloads, [sel])
    start = space.select(sel)
    sources = {w for c in np.flatnonzero(start[: space.k]) for w in space.members[c]}
    if not start.any():
        raise UsageError(f"{q.source!r} matches no workload or address", "check the selector")
    scenarios = [flat_scenario(sources, space.workloads, weights)]
    observed = _observed(ws, ps, workloads, q.since, q.until) if q.observed else None
    if observed is not None:
        starts = _observed_sources(observed, sel, sources)
        scenarios.append(
            graph_scenario(
                "observed", observed.edges(), starts, q.hops, weights, set(space.workloads)
            )
        )
    if q.proposed is not None:
        from cellwall.services.policy import read_policy_dir

        draft = Space(read_policy_dir(ws, q.proposed), workloads, [sel])
        scenarios.append(policy_scenario("proposed", draft, draft.select(sel), q.hops, weights))
    t0 = time.perf_counter()
    scenarios.append(policy_scenario("active", space, start, q.hops, weights))
    seconds = round(time.perf_counter() - t0, 4)
    text = _sentence(q.source, q.hops, scenarios)
    return BlastResult(q.source, len(sources), q.hops, tuple(scenarios), text, seconds)


def analyze_exposure(
    ws: Workspace,
    *,
    src: Sources = Sources(),
    hops: int = 4,
    vulns: Sequence[Path] = (),
    top: int = 20,
) -> ExposureResult:
    name, ps, workloads = _inputs(ws, src)
    return exposure(Space(ps, workloads), hops, _weights(workloads, vulns), policy=name, top=top)


def analyze_lint(ws: Workspace, *, src: Sources = Sources(), today: date | None) -> LintReport:
    """Lint the policy (with the loader's diagnostics against the inventory and today)."""
    from cellwall.inventory import InventoryStore
    from cellwall.policy.loader import load_policy
    from cellwall.policy.store import PolicyStore
    from cellwall.services.replay import workloads_for

    workloads = workloads_for(ws, src.inventory)
    convention = InventoryStore(ws.engine).convention()
    if src.policy is not None:
        loaded = load_policy([src.policy], convention=convention, workloads=workloads, today=today)
        loaded.raise_for_errors()
        name = str(src.policy)
    else:
        store = PolicyStore(ws.engine)
        info = store.active()
        if info is None:
            raise UsageError("no policy is active", "give --policy DIR, or activate a version")
        loaded = store.get(info.version).read(
            convention=convention, workloads=workloads, today=today
        )
        name = f"v{info.version}"
    return lint(Space(loaded.policy_set, workloads), loaded.diagnostics, policy=name)


def demo_analysis(ws: Workspace, out_dir: Path, proposed: Path | None = None) -> dict[str, Any]:
    """The demo's analysis stage: invariants, a blast radius (before and after, with the
    proposed policy in ``proposed`` when given) and lint, written to OUT/analysis; returns
    the summary that the demo prints."""
    folder = out_dir / "analysis"
    folder.mkdir(parents=True, exist_ok=True)
    inv = analyze_invariants(ws)
    _, _, workloads = _inputs(ws, Sources())
    names = sorted(w.name for w in workloads)
    source = "pay-web-1" if "pay-web-1" in names else names[0]
    has_proposal = proposed is not None and any(proposed.glob("**/*.yaml"))
    blast = analyze_blast(ws, BlastQuery(source, proposed=proposed if has_proposal else None))
    report = analyze_lint(ws, today=None)
    for file, doc in (
        ("invariants.json", inv.to_dict()),
        ("blast-radius.json", blast.to_dict()),
        ("lint.json", report.to_dict()),
    ):
        (folder / file).write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return {
        "dir": str(folder),
        "invariants": len(inv.results),
        "failed": [r.id for r in inv.failed],
        "blast": {s.name: s.reached for s in blast.scenarios},
        "sentence": blast.sentence,
        "lint": report.to_dict()["counts"],
    }
