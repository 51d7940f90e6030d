"""Lint: findings about a policy's rules, each with the rule ids, a sentence and a fix.

Every check declares its id, severity, title and remediation in :data:`CHECKS`. The set
algebra is over the analysis space (:mod:`cellwall.analyze.space`), every endpoint pair and
every service atom, in both views the evaluator knows (narrowed services matching, and not):

- ``matches-nothing``: no (client, server) pair satisfies ``from``, ``to`` and ``same``;
- ``shadowed``: the rule matches but never decides: earlier rules with the same verdict
  decide everywhere it matches (it is contained in them);
- ``overridden``: the same, but a rule with another verdict decides somewhere: the rule
  does not do what it says;
- ``redundant``: the rule decides somewhere, but removing it leaves the canonical
  connectivity equal (:func:`cellwall.policy.connectivity.connectivity`);
- ``conflict``: an ``allow`` and a ``deny``/``override-deny`` rule both match some pairs on
  some services; the table of tiers settles it, the finding says which one wins;
- ``any-to-any``, ``whole-internet`` (a ``/0`` without ``except``), ``all-ports``: an
  ``allow`` rule that is too broad;
- ``no-match``, ``review-overdue``, ``no-owner``: the loader's diagnostics, with their place.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from cellwall.analyze.atoms import services_text
from cellwall.analyze.results import Finding, LintReport
from cellwall.analyze.space import Space
from cellwall.errors import Diagnostic
from cellwall.model.policy import PORT_PROTOS, PolicySet, Selector
from cellwall.policy.connectivity import connectivity
from cellwall.policy.ir import PolicyIR

__all__ = ["CHECKS", "Check", "lint"]

I32 = npt.NDArray[np.int32]
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Check:
    id: str
    severity: str
    title: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "severity": self.severity, "title": self.title, "fix": self.fix}


CHECKS = {c.id: c for c in (
    Check("matches-nothing", "error", "the rule matches no pair of endpoints",
          "fix its selectors or `same`, or remove it"),
    Check("shadowed", "warning", "earlier rules decide everywhere the rule matches",
          "remove the rule, or move what it should add before the rules that shadow it"),
    Check("overridden", "warning", "rules with another verdict decide everywhere it matches",
          "remove the rule, or narrow the rules that override it"),
    Check("redundant", "info", "removing the rule leaves connectivity equal",
          "remove the rule"),
    Check("conflict", "info", "an allow and a deny rule match the same traffic",
          "narrow one of them so they no longer overlap, or accept the precedence"),
    Check("any-to-any", "warning", "an allow rule from anything to anything",
          "name the clients and servers"),
    Check("whole-internet", "warning", "an allow rule on a /0 with no except",
          "use an IP list with the private ranges excepted, or the real ranges"),
    Check("all-ports", "warning", "an allow rule on every port of a protocol",
          "list the ports the service uses"),
    Check("no-match", "warning", "a selector matches no workload (loader)",
          "check the labels against `cellwall inventory list`"),
    Check("review-overdue", "warning", "the rule is past its review date (loader)",
          "review it, then move review_by forward"),
    Check("no-owner", "warning", "neither the rule nor its policy has an owner (loader)",
          "set metadata.owner, or owner: on the rule"),
)}  # fmt: skip
_FROM_LOADER = {"selector-no-match": "no-match", "review-overdue": "review-overdue",
                "no-owner": "no-owner"}  # fmt: skip
_RULE = re.compile(r"rule `([^`]+)`")


def _finding(check: str, rules: Sequence[str], sentence: str, where: str | None = None) -> Finding:
    c = CHECKS[check]
    return Finding(c.id, c.severity, tuple(rules), sentence, c.fix, where)


def _decisions(space: Space) -> tuple[I32, I32]:
    """The deciding rule per (client, server, atom), with narrowed services matching and
    without: -1 no rule, -2 the management tier, -3 no such pair (a workload with itself)."""
    g = space.ir.groups
    gs = g.ep_src[space.ir_endpoint]
    gd = g.ep_dst[space.ir_endpoint]
    n = space.n
    prof = g.pair_profiles(np.repeat(gs, n).astype(np.int32), np.tile(gd, n).astype(np.int32))
    out = []
    for table in (g.with_narrowed, g.plain):
        d = np.asarray(table[prof], np.int32).reshape(n, n, -1).copy()
        for atom in range(len(space.atoms)):
            one = np.zeros(len(space.atoms), bool)
            one[atom] = True
            d[:, :, atom][space.management_pairs(one)] = -2
        d[~space.distinct] = -3
        out.append(d)
    return out[0], out[1]


def _dead(space: Space, d_all: I32, d_plain: I32) -> Iterator[Finding]:
    ir = space.ir
    for lr in ir.rules:
        places = space.rect([lr.index]) & space.distinct
        if not places.any():
            yield _finding(
                "matches-nothing",
                [lr.id],
                f"rule `{lr.id}` ({lr.policy}) matches "
                "no pair of endpoints: no client, server and `same` fit together",
            )
            continue
        if (d_all == lr.index).any() or (d_plain == lr.index).any():
            continue
        codes = np.unique(d_all[places][:, ir.all_atoms[lr.index]])
        deciders = [int(c) for c in codes if c >= 0]
        other = [c for c in deciders if ir.rules[c].verdict != lr.verdict]
        ids = [ir.rules[c].id for c in deciders] + (["management"] if (codes == -2).any() else [])
        check = "overridden" if other else "shadowed"
        verb = "override" if other else "shadow"
        yield _finding(
            check,
            [lr.id, *ids],
            f"rule `{lr.id}` never decides: "
            f"{', '.join(f'`{i}`' for i in ids)} {verb} it everywhere it matches",
        )


def _fallback_same(space: Space, r: int, d: I32, cover: Mask) -> bool:
    """Where rule ``r`` decides in ``d``, does the next matching rule give the same verdict?"""
    ir = space.ir
    ii, jj, aa = np.nonzero(d == r)
    if not len(ii):
        return True
    left = np.ones(len(ii), bool)
    for q in ir.order.tolist():
        if ir.rank[q] <= ir.rank[r] or not left.any():
            continue
        hit = left & space.rect([q])[ii, jj] & cover[q][aa]
        if hit.any() and ir.rules[q].verdict != ir.rules[r].verdict:
            return False
        left &= ~hit
    return not left.any()  # where no rule is left, the verdict becomes not-allowed


def _without(ps: PolicySet, rule_id: str) -> PolicySet:
    policies = tuple(
        replace(p, rules=tuple(r for r in p.rules if r.id != rule_id)) for p in ps.policies
    )
    return replace(ps, policies=policies)


def _redundant(space: Space, d_all: I32, d_plain: I32) -> Iterator[Finding]:
    ir = space.ir
    base = None
    workloads = list(space.workloads.values())
    for lr in ir.rules:
        decides = (d_all == lr.index).any() or (d_plain == lr.index).any()
        if not decides:
            continue
        if not _fallback_same(space, lr.index, d_all, ir.all_atoms):
            continue  # a verdict changes where the rule decides: connectivity changes
        if base is None:
            base = connectivity(ir).triples
        after = connectivity(PolicyIR(_without(space.policy_set, lr.id), workloads)).triples
        if after == base:
            yield _finding(
                "redundant",
                [lr.id],
                f"removing rule `{lr.id}` ({lr.policy}) "
                "leaves the connectivity equal: later rules decide the same",
            )


def _conflicts(space: Space) -> Iterator[Finding]:
    ir = space.ir
    allows = [r for r in ir.rules if r.action == "allow"]
    for d in (r for r in ir.rules if r.action != "allow"):
        for a in allows:
            atoms = ir.all_atoms[a.index] & ir.all_atoms[d.index]
            if not atoms.any():
                continue
            both = space.rect([a.index]) & space.rect([d.index]) & space.distinct
            if not both.any():
                continue
            pairs = int(
                (np.outer(np.maximum(space.sizes, 1), np.maximum(space.sizes, 1)) * both).sum()
            )
            svc = ", ".join(services_text(space.atoms, atoms))
            if d.action == "override-deny":
                text = f"override-deny `{d.id}` beats allow `{a.id}`"
            else:
                text = f"allow `{a.id}` beats deny `{d.id}`"
            yield _finding(
                "conflict", [a.id, d.id], f"{text} for about {pairs} endpoint pair(s) on {svc}"
            )


def _zero(sel: Selector, ps: PolicySet) -> bool:
    cidrs, excepts = list(sel.cidrs), list(sel.except_)
    if sel.iplist is not None:
        il = ps.iplist(sel.iplist)
        if il is not None:
            cidrs += il.cidrs
            excepts += il.except_
    return any(c.endswith("/0") for c in cidrs) and not excepts


def _broad(space: Space) -> Iterator[Finding]:
    ps = space.policy_set
    for lr in space.ir.rules:
        if lr.action != "allow":
            continue
        r = lr.rule
        if space.src[lr.index].all() and space.dst[lr.index][: space.k].all():
            yield _finding(
                "any-to-any",
                [lr.id],
                f"allow rule `{lr.id}` lets every endpoint open every workload",
            )
        if _zero(r.from_, ps) or _zero(r.to, ps):
            yield _finding(
                "whole-internet",
                [lr.id],
                f"allow rule `{lr.id}` names a /0 "
                "with no except: every address, private ones included",
            )
        wide = [
            s
            for s in r.services
            if s.proto is None
            or (
                s.proto in PORT_PROTOS
                and (s.lo is None or (s.hi is not None and s.hi - s.lo >= 65535))
            )
        ]
        if wide:
            yield _finding(
                "all-ports",
                [lr.id],
                f"allow rule `{lr.id}` opens {', '.join(str(s) for s in wide)}: every port",
            )


def _loader(diagnostics: Sequence[Diagnostic]) -> Iterator[Finding]:
    for d in diagnostics:
        check = _FROM_LOADER.get(d.code)
        if check is None:
            continue
        found = _RULE.search(d.message)
        yield _finding(check, [found.group(1)] if found else [], d.message, d.location())


def lint(
    space: Space, diagnostics: Sequence[Diagnostic] = (), *, policy: str = "the policy"
) -> LintReport:
    """Every finding about the space's policy (and the loader's diagnostics)."""
    d_all, d_plain = _decisions(space)
    findings = [
        *_dead(space, d_all, d_plain),
        *_redundant(space, d_all, d_plain),
        *_conflicts(space),
        *_broad(space),
        *_loader(diagnostics),
    ]
    order = {"error": 0, "warning": 1, "info": 2}
    findings.sort(key=lambda f: (order[f.severity], f.check, f.rules))
    checks = tuple(c.to_dict() for c in CHECKS.values())
    return LintReport(policy, tuple(findings), checks)
