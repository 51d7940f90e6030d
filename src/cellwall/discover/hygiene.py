"""Label hygiene: workloads whose behaviour contradicts their labels, and label suggestions.

Behaviour is a set of *features* read off the workload-level map: for each edge, the
server gets ``in  <client's class> <service>`` and the client gets ``out <server's class>
<service>``, where a class is the peer's ``app,role,env`` (or its external node).
Features that more than ``max_share`` of all workloads show (DNS, NTP, monitoring) are
dropped. A claimed class's *profile* is the features that at least half of its other
members show. A workload is scored against every profile by Jaccard similarity. It is a
finding when another class fits clearly better than its own (score at least ``min_score``
and ``margin`` above its own; ``singleton_score`` when it is alone in its class), and the
suggestion is that class's labels. A workload whose class has two or more other members and
whose behaviour covers at most ``outlier_score`` of their profile is a finding too (extra
behaviour, such as a compromised host's scan, does not count against it), with a suggestion
only when some class fits. Unmanaged addresses get a suggestion the same way. Every finding
lists the edges behind it.

The work is on the map's edges and the workloads (thousands of rows, not flows).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cellwall.discover.edges import Edge, Grouping
from cellwall.model.inventory import Workload

__all__ = ["Finding", "label_hygiene"]

KEYS = ("app", "role", "env")
Feature = tuple[str, str, str]  # direction, peer class, service


@dataclass(frozen=True, slots=True)
class Finding:
    subject: str  # workload name or unmanaged:IP
    claimed: dict[str, str]
    suggested: dict[str, str]
    own_score: float
    best_score: float
    evidence: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        wrong = {k: v for k, v in self.suggested.items() if self.claimed.get(k) != v}
        return {
            "subject": self.subject,
            "claimed": self.claimed,
            "suggested": self.suggested,
            "changes": wrong,
            "own_score": round(self.own_score, 3),
            "best_score": round(self.best_score, 3),
            "evidence": self.evidence,
        }


def _jaccard(a: set[Feature], b: set[Feature]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def label_hygiene(
    edges: Sequence[Edge],
    workloads: Sequence[Workload],
    *,
    min_score: float = 0.5,
    margin: float = 0.2,
    max_share: float = 0.1,
    singleton_score: float = 0.8,
    outlier_score: float = 0.4,
) -> list[Finding]:
    """Findings from workload-level edges (``client``/``server`` are workload names)."""
    role = Grouping("role", KEYS)
    by_name = {w.name: w for w in workloads}

    def cls(node: str) -> str:
        w = by_name.get(node)
        return role.node(w) if w is not None else node

    feats: dict[str, set[Feature]] = defaultdict(set)
    why: dict[str, dict[Feature, str]] = defaultdict(dict)
    for e in edges:
        f_in: Feature = ("in", cls(e.client), e.service)
        f_out: Feature = ("out", cls(e.server), e.service)
        line = f"{e.client} -> {e.server} {e.service}: {e.conversations} conversations"
        feats[e.server].add(f_in)
        why[e.server].setdefault(f_in, line)
        feats[e.client].add(f_out)
        why[e.client].setdefault(f_out, line)
    # features most workloads share (DNS, NTP, monitoring, logs) say nothing about a role
    df: Counter[Feature] = Counter(f for fs in feats.values() for f in fs)
    common = {f for f, n in df.items() if n > max_share * len(feats)}
    for fs in feats.values():
        fs -= common
    members: dict[str, list[str]] = defaultdict(list)
    for w in workloads:
        if all(k in w.labels for k in KEYS) and w.name in feats:
            members[role.node(w)].append(w.name)

    def profile(klass: str, without: str) -> set[Feature]:
        others = [m for m in members[klass] if m != without]
        counts: Counter[Feature] = Counter(f for m in others for f in feats[m])
        return {f for f, n in counts.items() if 2 * n >= len(others)}

    findings: list[Finding] = []
    subjects = [x.name for x in workloads if x.name in feats]
    subjects += sorted(n for n in feats if n.startswith("unmanaged:"))
    for name in subjects:
        who = by_name.get(name)
        own = role.node(who) if who is not None and all(k in who.labels for k in KEYS) else None
        scores = {k: _jaccard(feats[name], profile(k, name)) for k in members if k != own}
        scores = {k: v for k, v in scores.items() if any(m != name for m in members[k])}
        best = max(sorted(scores), key=lambda k: scores[k]) if scores else None
        best_score = scores[best] if best is not None else 0.0
        peers_in_own = len([m for m in members.get(own or "", []) if m != name])
        own_score = _jaccard(feats[name], profile(own, name)) if own and peers_in_own else 0.0
        fits_better = best_score >= min_score and best_score >= own_score + margin
        if own and peers_in_own == 0:  # alone in its class: nothing to compare it with
            fits_better = best_score >= singleton_score
        own_profile = profile(own, name) if own and peers_in_own >= 2 else set()
        covered = len(feats[name] & own_profile) / len(own_profile) if own_profile else 1.0
        outlier = covered <= outlier_score
        if not (fits_better or outlier):
            continue
        if best is None or best_score < min_score:
            best = None
        suggested = dict(part.split("=", 1) for part in best.split(",")) if best else {}
        shown = feats[name] & profile(best, name) if best else feats[name]
        shared = sorted(shown)
        findings.append(
            Finding(
                subject=name,
                claimed={k: who.labels[k] for k in KEYS if who is not None and k in who.labels},
                suggested=suggested,
                own_score=own_score,
                best_score=best_score,
                evidence=[why[name][f] for f in shared[:10]],
            )
        )
    return findings
