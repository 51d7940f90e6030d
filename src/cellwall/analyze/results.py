"""Typed results of the analyses: each renders as text for people and as JSON for tools.

Every result is a frozen dataclass with ``to_dict()`` (JSON-ready: plain lists, dicts,
strings and numbers, in a stable order) and ``__str__`` (the text that the CLI prints).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BlastResult",
    "Counterexample",
    "Evidence",
    "ExposureResult",
    "ExposureRow",
    "Finding",
    "Hop",
    "InvariantReport",
    "InvariantResult",
    "LintReport",
    "MatrixResult",
    "ReachPair",
    "ReachResult",
    "Scenario",
]


@dataclass(frozen=True)
class Hop:
    """One allowed (or permitted) conversation: concrete ends, a service, and the rules."""

    client: str
    server: str
    service: str
    verdict: str
    rule: str | None
    rules: tuple[str, ...] = ()
    unverified: bool = False
    blocked: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "server": self.server,
            "service": self.service,
            "verdict": self.verdict,
            "rule": self.rule,
            "rules": list(self.rules),
            "unverified": self.unverified,
            "blocked": self.blocked,
        }

    def __str__(self) -> str:
        by = f" by {self.rule}" if self.rule else ""
        extra = " (unverified)" if self.unverified else ""
        if self.verdict != "allowed":
            extra += "; enforcement blocks it" if self.blocked else "; the modes let it through"
        chain = f" [matching: {', '.join(self.rules)}]" if len(self.rules) > 1 else ""
        return f"{self.client} → {self.server} on {self.service}: {self.verdict}{by}{extra}{chain}"


@dataclass(frozen=True)
class Counterexample:
    hops: tuple[Hop, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"hops": [h.to_dict() for h in self.hops]}

    def __str__(self) -> str:
        return "\n".join(f"      {i}. {h}" for i, h in enumerate(self.hops, 1))


@dataclass(frozen=True)
class ReachPair:
    """Endpoints (cells or address ranges) of FROM and TO, and what passes between them."""

    client: str
    server: str
    workload_pairs: int
    services: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "server": self.server,
            "workload_pairs": self.workload_pairs,
            "services": list(self.services),
        }


@dataclass(frozen=True)
class ReachResult:
    source: str
    target: str
    policy: str
    effective: bool
    pairs: tuple[ReachPair, ...]
    example: Hop | None
    draft: ReachResult | None = None

    @property
    def reachable(self) -> bool:
        return bool(self.pairs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "to": self.target,
            "policy": self.policy,
            "effective": self.effective,
            "reachable": self.reachable,
            "workload_pairs": sum(p.workload_pairs for p in self.pairs),
            "pairs": [p.to_dict() for p in self.pairs],
            "example": self.example.to_dict() if self.example else None,
            "draft": self.draft.to_dict() if self.draft else None,
        }

    def __str__(self) -> str:
        how = "permitted under the modes" if self.effective else "allowed"
        n = sum(p.workload_pairs for p in self.pairs)
        lines = [f"{self.source} → {self.target} under {self.policy}: "]
        if not self.pairs:
            lines[0] += f"nothing is {how}"
        else:
            lines[0] += f"{how} for {n} workload pair(s) in {len(self.pairs)} class pair(s)"
        for p in self.pairs[:20]:
            lines.append(f"  {p.client} → {p.server}: {', '.join(p.services)}")
        if len(self.pairs) > 20:
            lines.append(f"  ... and {len(self.pairs) - 20} more")
        if self.example is not None:
            lines.append(f"  for example: {self.example}")
        if self.draft is not None:
            lines += ["", "what-if:", str(self.draft)]
        return "\n".join(lines)


@dataclass(frozen=True)
class MatrixResult:
    """The class-level matrix: endpoints (cells, then address ranges) and allowed pairs."""

    policy: str
    effective: bool
    names: tuple[str, ...]
    sizes: tuple[int, ...]
    edges: tuple[tuple[int, int], ...]
    workload_pairs: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "effective": self.effective,
            "endpoints": [
                {"name": n, "workloads": s} for n, s in zip(self.names, self.sizes, strict=True)
            ],
            "edges": [list(e) for e in self.edges],
            "workload_pairs": self.workload_pairs,
            "seconds": self.seconds,
        }

    def __str__(self) -> str:
        classes = sum(1 for s in self.sizes if s)
        lines = [
            f"{self.policy}: {classes} classes and {len(self.sizes) - classes} address ranges; "
            f"{len(self.edges)} allowed endpoint pairs, {self.workload_pairs} workload pairs "
            f"({self.seconds:.3f} s)"
        ]
        out_deg: dict[int, list[int]] = {}
        for a, b in self.edges:
            out_deg.setdefault(a, []).append(b)
        for a in sorted(out_deg, key=lambda x: (-len(out_deg[x]), x))[:15]:
            shown = ", ".join(self.names[b] for b in out_deg[a][:4])
            more = f", +{len(out_deg[a]) - 4}" if len(out_deg[a]) > 4 else ""
            lines.append(f"  {self.names[a]} → {len(out_deg[a])}: {shown}{more}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Evidence:
    """What the observed conversations of a window say about one invariant."""

    status: str  # consistent | contradicted | supported | no-data
    conversations: int
    sentence: str
    examples: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "conversations": self.conversations,
            "sentence": self.sentence,
            "examples": list(self.examples),
        }


@dataclass(frozen=True)
class InvariantResult:
    id: str
    kind: str
    holds: bool
    sentence: str
    violations: int = 0
    counterexample: Counterexample | None = None
    evidence: Evidence | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "holds": self.holds,
            "sentence": self.sentence,
            "violations": self.violations,
            "counterexample": self.counterexample.to_dict() if self.counterexample else None,
            "evidence": self.evidence.to_dict() if self.evidence else None,
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        mark = "PASS" if self.holds else "FAIL"
        lines = [f"  {mark} {self.id} ({self.kind}): {self.sentence}"]
        if self.counterexample is not None:
            lines += ["    counterexample:", str(self.counterexample)]
        if self.evidence is not None:
            lines.append(f"    observed: {self.evidence.status}: {self.evidence.sentence}")
        lines += [f"    note: {n}" for n in self.notes]
        return "\n".join(lines)


@dataclass(frozen=True)
class InvariantReport:
    policy: str
    effective: bool
    results: tuple[InvariantResult, ...]
    window: dict[str, Any] | None = None

    @property
    def failed(self) -> list[InvariantResult]:
        return [r for r in self.results if not r.holds]

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "effective": self.effective,
            "invariants": len(self.results),
            "failed": len(self.failed),
            "results": [r.to_dict() for r in self.results],
            "window": self.window,
        }

    def __str__(self) -> str:
        how = " (effective: the modes applied)" if self.effective else ""
        head = (
            f"{len(self.results)} invariant(s) against {self.policy}{how}: "
            f"{len(self.results) - len(self.failed)} hold, {len(self.failed)} fail"
        )
        return "\n".join([head, *(str(r) for r in self.results)])


@dataclass(frozen=True)
class Scenario:
    """What the source reaches under one network: flat, observed, proposed or active."""

    name: str
    reached: int
    weight: float
    vulnerable: int
    by_hop: tuple[int, ...]
    top: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.name,
            "reached": self.reached,
            "weight": self.weight,
            "vulnerable": self.vulnerable,
            "by_hop": list(self.by_hop),
            "top": list(self.top),
        }


@dataclass(frozen=True)
class BlastResult:
    source: str
    sources: int
    hops: int
    scenarios: tuple[Scenario, ...]
    sentence: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "source_workloads": self.sources,
            "hops": self.hops,
            "sentence": self.sentence,
            "scenarios": [s.to_dict() for s in self.scenarios],
            "seconds": self.seconds,
        }

    def __str__(self) -> str:
        lines = [self.sentence]
        for s in self.scenarios:
            hops = ", ".join(str(n) for n in s.by_hop)
            lines.append(
                f"  {s.name:9} {s.reached:6} workloads, weight {s.weight:g}, "
                f"{s.vulnerable} vulnerable; per hop: {hops}"
            )
            if s.top:
                lines.append(f"            most critical: {', '.join(s.top)}")
        return "\n".join(lines)


@dataclass(frozen=True)
class ExposureRow:
    workload: str
    score: float
    inbound: int
    unmanaged: bool
    weight: float
    cvss: float
    cves: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "score": self.score,
            "inbound_workloads": self.inbound,
            "reachable_from_unmanaged": self.unmanaged,
            "weight": self.weight,
            "max_cvss": self.cvss,
            "cves": self.cves,
        }


@dataclass(frozen=True)
class ExposureResult:
    policy: str
    hops: int
    rows: tuple[ExposureRow, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "hops": self.hops, "rows": [r.to_dict() for r in self.rows]}

    def __str__(self) -> str:
        lines = [f"exposure under {self.policy} within {self.hops} hop(s), highest first:"]
        for r in self.rows:
            ext = ", reachable from unmanaged addresses" if r.unmanaged else ""
            lines.append(
                f"  {r.score:8.3f}  {r.workload}: {r.inbound} workloads reach it{ext}; "
                f"weight {r.weight:g}, max CVSS {r.cvss:g} ({r.cves} CVEs)"
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class Finding:
    """One lint finding: the check's metadata, the rules, a sentence and a fix."""

    check: str
    severity: str
    rules: tuple[str, ...]
    sentence: str
    fix: str
    where: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity,
            "rules": list(self.rules),
            "sentence": self.sentence,
            "fix": self.fix,
            "where": self.where,
        }

    def __str__(self) -> str:
        where = f"{self.where}: " if self.where else ""
        return f"{where}{self.severity} {self.check}: {self.sentence} (fix: {self.fix})"


@dataclass(frozen=True)
class LintReport:
    policy: str
    findings: tuple[Finding, ...]
    checks: tuple[dict[str, str], ...] = field(default=())

    def count(self, severity: str) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "findings": [f.to_dict() for f in self.findings],
            "counts": {s: self.count(s) for s in ("error", "warning", "info")},
            "checks": list(self.checks),
        }

    def __str__(self) -> str:
        counts = ", ".join(f"{self.count(s)} {s}" for s in ("error", "warning", "info"))
        return "\n".join([*(str(f) for f in self.findings), f"{self.policy}: {counts}"])
