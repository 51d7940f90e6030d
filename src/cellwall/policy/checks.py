"""Checks across documents, after each document is read on its own.

In order: names given twice (the first one wins), rule and invariant ids given twice, IP list
references, label keys and values against the label convention and the workloads; then the
warnings (selectors that match no workload,
rules past their review date or without an owner, a mode on an unscoped policy). Findings go
to the document that holds the place they point at. "Matches no workload" is only said of
documents without errors: a selector with an error would say it for the wrong reason.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from cellwall.inventory.nodes import N
from cellwall.model.inventory import Workload
from cellwall.model.labels import LabelConvention
from cellwall.model.policy import Invariant, Policy, Rule, Selector
from cellwall.policy.documents import Parsed
from cellwall.policy.selectors import SELECTOR_KEYS

__all__ = ["Judge", "check_documents", "matches"]


@dataclass(frozen=True, slots=True)
class Judge:
    """What documents are checked against; each part is optional."""

    convention: LabelConvention | None = None
    workloads: Sequence[Workload] | None = None
    today: date | None = None


def _where(node: N | None, p: Parsed) -> str:
    line = node.line if node is not None else p.doc.line
    return f"{p.ctx.file}:{line}" if line is not None else p.ctx.file


def _names(parsed: list[Parsed]) -> None:
    first: dict[tuple[str, str], Parsed] = {}
    for p in parsed:
        name = "" if p.kind == "PolicySettings" else p.name
        if name is None:
            continue
        key = (p.kind, name)
        if key not in first:
            first[key] = p
            continue
        seen = first[key]
        what = "PolicySettings" if not name else f"{p.kind} `{name}`"
        msg = f"{what} is also defined at {_where(seen.name_node or seen.doc, seen)}"
        hint = "give each its own name" if name else "keep one PolicySettings document"
        p.ctx.error(p.name_node or p.doc, "duplicate-name", msg, hint)


def _ids(parsed: list[Parsed]) -> None:
    for kind, code in (("Policy", "duplicate-rule-id"), ("Invariant", "duplicate-invariant-id")):
        first: dict[str, tuple[N, Parsed]] = {}
        for p in (p for p in parsed if p.kind == kind):
            for rid, node in p.ids:
                if rid not in first:
                    first[rid] = (node, p)
                    continue
                where = _where(*first[rid])
                msg = f"id `{rid}` is also used at {where}"
                p.ctx.error(node, code, msg, "ids are unique across the policy directory")


def _iplists(parsed: list[Parsed]) -> None:
    lists = {p.name: p for p in parsed if p.kind == "IPList" and p.name is not None}
    for p in parsed:
        for ref in p.ctx.iplists:
            target = lists.get(ref.name)
            if target is None:
                close = difflib.get_close_matches(ref.name, sorted(lists), n=1)
                hint = f"did you mean `{close[0]}`?" if close else "define it with kind: IPList"
                p.ctx.error(ref.node, "unknown-iplist", f"no IP list is named `{ref.name}`", hint)
            elif not target.ok:
                msg = f"IP list `{ref.name}` is left out: it has errors at {_where(None, target)}"
                p.ctx.error(ref.node, "unknown-iplist", msg, "fix the IP list")


def _key_hint(key: str, known: set[str], convention: LabelConvention | None) -> str:
    aliases = convention.alias_map() if convention is not None else {}
    if key in aliases:
        return f"`{key}` is an alias of `{aliases[key]}`; write `{aliases[key]}`"
    close = difflib.get_close_matches(key, sorted(known), n=1)
    close = close or difflib.get_close_matches(key, SELECTOR_KEYS, n=1)
    if close:
        return f"did you mean `{close[0]}`?"
    return f"known keys: {', '.join(sorted(known))}" if known else "no label key is known"


def _labels(parsed: list[Parsed], judge: Judge) -> None:
    conv, workloads = judge.convention, judge.workloads or ()
    if conv is None and not workloads:
        return  # nothing to judge label keys and values against
    known = {k for w in workloads for k in w.labels}
    if conv is not None:
        known |= set(conv.required) | {k for k, _ in conv.values}
    for p in parsed:
        for ref in p.ctx.labels:
            if ref.key_node is not None and ref.key not in known:
                msg = f"no workload and no label convention has the label key `{ref.key}`"
                p.ctx.error(ref.key_node, "unknown-label-key", msg, _key_hint(ref.key, known, conv))
                continue
            allowed = conv.allowed(ref.key) if conv is not None else None
            if allowed is None:
                continue
            for value, node in ref.values:
                if value in allowed:
                    continue
                close = difflib.get_close_matches(value, allowed, n=1)
                hint = f"did you mean `{close[0]}`?" if close else f"allowed: {', '.join(allowed)}"
                msg = f"`{value}` is not an allowed value of `{ref.key}`"
                p.ctx.error(node, "unknown-label-value", msg, hint)


def matches(sel: Selector, w: Workload) -> bool:
    """Whether a workload matches a selector's workload terms (no scope, no addresses)."""
    if sel.any:
        return True
    if sel.address_terms:
        return False
    return (
        all(w.labels.get(t.key) in t.values for t in sel.labels)
        and not any(matches(n, w) for n in sel.negations)
        and (sel.workload is None or sel.workload == w.name)
    )


def _no_match(p: Parsed, sel: Selector, node: N, pool: Sequence[Workload], what: str) -> None:
    if sel.workload_terms and not any(matches(sel, w) for w in pool):
        hint = "check the selector against `cellwall inventory list`"
        p.ctx.warn(node, "selector-no-match", f"{what} matches no workload", hint)


def _policy_warnings(p: Parsed, policy: Policy, judge: Judge) -> None:
    if policy.mode is not None and policy.scope is None:
        hint = "add a scope, or set the default mode with kind: PolicySettings"
        msg = f"policy `{policy.name}` has a mode but no scope; the mode applies to nothing"
        p.ctx.warn(p.doc.at("spec", "mode"), "mode-unscoped", msg, hint)
    workloads = judge.workloads or ()
    scope, in_scope = policy.scope, list(workloads)
    if scope is not None and workloads and p.ok:
        in_scope = [w for w in workloads if matches(scope, w)]
        _no_match(p, scope, p.doc.at("spec", "scope") or p.doc, workloads, "the scope")
    for rule, node in p.sites:
        if not isinstance(rule, Rule):
            continue
        if rule.owner is None and policy.owner is None:
            msg = f"rule `{rule.id}` has no owner, and neither has policy `{policy.name}`"
            p.ctx.warn(node, "no-owner", msg, "set metadata.owner, or owner: on the rule")
        if judge.today is not None and rule.review_by is not None and rule.review_by < judge.today:
            msg = f"rule `{rule.id}` was due for review on {rule.review_by.isoformat()}"
            hint = "review it, then move review_by forward"
            p.ctx.warn(node.get("review_by"), "review-overdue", msg, hint)
        if judge.today is not None and rule.expires is not None and rule.expires < judge.today:
            msg = f"rule `{rule.id}` expired on {rule.expires.isoformat()}; compilers refuse it"
            hint = "renew it (move expires forward) or remove it"
            p.ctx.warn(node.get("expires"), "rule-expired", msg, hint)
        if not workloads or not p.ok or (scope is not None and not in_scope):
            continue
        for side, sel in (("from", rule.from_), ("to", rule.to)):
            scoped = scope is not None and sel.label_based
            scoped = scoped and not (side == "from" and rule.from_outside_scope)
            what = f"`{side}` of rule `{rule.id}`" + (" within the scope" if scoped else "")
            sel_node = node.get(side) or node
            _no_match(p, sel, sel_node, in_scope if scoped else workloads, what)


def _invariant_warnings(p: Parsed, judge: Judge) -> None:
    workloads = judge.workloads or ()
    if not workloads or not p.ok:
        return
    for inv, inv_node in p.sites:
        if not isinstance(inv, Invariant):
            continue
        body = inv_node.get(inv.kind)
        for side, sel in (("from", inv.from_), ("to", inv.to)):
            node = body.get(side) if body is not None else None
            _no_match(p, sel, node or inv_node, workloads, f"`{side}` of `{inv.id}`")


def check_documents(parsed: list[Parsed], judge: Judge) -> None:
    """Add the findings across documents to each document's context."""
    _names(parsed)
    _ids(parsed)
    _iplists(parsed)
    _labels(parsed, judge)
    for p in parsed:
        if isinstance(p.value, Policy):
            _policy_warnings(p, p.value, judge)
        elif p.kind == "Invariant":
            _invariant_warnings(p, judge)
