"""The review state as YAML files: export, import, and the texts that activation loads.

Each policy is one file, a valid policy document. Above each rule, comments carry what is
not policy: ``# review: {...}`` (state, kind, apps, expiry), ``# evidence: {...}`` and one
``# event: {...}`` per transition, each a JSON object on one line. ``bindings.yaml`` and
``iplists.yaml`` hold the role bindings and IP lists. Export then import gives the same
state, and exporting it again gives the same files.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from cellwall.errors import InputError
from cellwall.model.policy import RoleBinding
from cellwall.recommend.render import flow, iplists_yaml
from cellwall.review.store import Event, RuleRecord

__all__ = ["ImportedState", "policy_texts", "read_state", "state_texts"]

_RULE = re.compile(r"^\s*- id: (\S+)\s*$")
_NOTE = re.compile(r"^\s*# (review|evidence|event): (\{.*\})\s*$")
HEAD = "# cellwall review state"


def _rule_lines(rec: RuleRecord, events: Sequence[Event], with_review: bool) -> list[str]:
    pad = "    "
    lines = []
    if with_review:
        review = {
            "state": rec.state,
            "kind": rec.kind,
            "apps": list(rec.apps),
        }
        lines.append(f"{pad}# review: {json.dumps(review, sort_keys=True)}")
        lines.append(f"{pad}# evidence: {json.dumps(dict(rec.evidence), sort_keys=True)}")
        lines += [f"{pad}# event: {json.dumps(e.to_dict(), sort_keys=True)}" for e in events]
    doc = dict(rec.document)
    if rec.review_by:
        doc["review_by"] = rec.review_by
    if rec.expires:
        doc["expires"] = rec.expires
    lead = f"{pad}- "
    for key, value in doc.items():
        lines.append(f"{lead}{key}: {flow(value)}")
        lead = f"{pad}  "
    return lines


def _policy_text(
    group: Sequence[RuleRecord], events: Mapping[str, list[Event]], with_review: bool
) -> str:
    first = group[0]
    lines = [HEAD] if with_review else []
    lines += [
        "apiVersion: cellwall/v1",
        "kind: Policy",
        "metadata: " + flow({"name": first.policy, "owner": first.owner}),
        "spec:",
    ]
    if first.scope:
        lines.append("  scope: " + flow(dict(first.scope)))
    lines.append("  rules:")
    for rec in sorted(group, key=lambda r: r.rule_id):
        lines += _rule_lines(rec, events.get(rec.rule_id, []), with_review)
    return "\n".join(lines) + "\n"


def _bindings_yaml(bindings: Sequence[RoleBinding]) -> str:
    docs = []
    for b in bindings:
        spec: dict[str, Any] = {"role": b.role, "subjects": list(b.subjects)}
        if b.apps:
            spec["apps"] = list(b.apps)
        docs.append(
            f"apiVersion: cellwall/v1\nkind: RoleBinding\n"
            f"metadata: {flow({'name': b.name})}\nspec: {flow(spec)}\n"
        )
    return "---\n".join(docs)


def _texts(
    records: Iterable[RuleRecord],
    events: Iterable[Event],
    bindings: Sequence[RoleBinding],
    iplists: Mapping[str, tuple[Sequence[str], Sequence[str]]],
    with_review: bool,
) -> dict[str, str]:
    by_policy: dict[str, list[RuleRecord]] = defaultdict(list)
    for rec in records:
        by_policy[rec.policy].append(rec)
    by_rule: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        by_rule[e.rule_id].append(e)
    out = {
        f"{name}.yaml": _policy_text(group, by_rule, with_review)
        for name, group in sorted(by_policy.items())
    }
    if bindings:
        out["bindings.yaml"] = _bindings_yaml(bindings)
    if iplists:
        out["iplists.yaml"] = iplists_yaml(iplists)
    return out


def state_texts(
    records: Iterable[RuleRecord],
    events: Iterable[Event],
    bindings: Sequence[RoleBinding],
    iplists: Mapping[str, tuple[Sequence[str], Sequence[str]]],
) -> dict[str, str]:
    """The whole review state as files (``review export``)."""
    return _texts(records, events, bindings, iplists, True)


def policy_texts(
    records: Iterable[RuleRecord],
    bindings: Sequence[RoleBinding],
    iplists: Mapping[str, tuple[Sequence[str], Sequence[str]]],
) -> dict[str, str]:
    """The policy that activation loads: these rules, bindings and IP lists, no comments."""
    return _texts(records, (), bindings, iplists, False)


class ImportedState:
    """What a directory of exported (or hand-written) files holds."""

    def __init__(self) -> None:
        self.records: list[RuleRecord] = []
        self.events: list[Event] = []
        self.bindings: list[RoleBinding] = []
        self.iplists: dict[str, tuple[list[str], list[str]]] = {}


def _notes(text: str) -> dict[str, dict[str, list[Any]]]:
    """Per rule id, its comment payloads by tag, from the lines above ``- id:``."""
    out: dict[str, dict[str, list[Any]]] = {}
    pending: dict[str, list[Any]] = defaultdict(list)
    for line in text.splitlines():
        m = _NOTE.match(line)
        if m:
            pending[m.group(1)].append(json.loads(m.group(2)))
            continue
        r = _RULE.match(line)
        if r:
            out[r.group(1)] = dict(pending)
            pending = defaultdict(list)
    return out


def _guess_kind(rule: Mapping[str, Any], scope: Mapping[str, str] | None) -> str:
    if not scope:
        return "shared"
    if rule.get("from_outside_scope"):
        return "cross-app"
    sides = (rule.get("from") or {}, rule.get("to") or {})
    if any(k in s for s in sides for k in ("iplist", "cidrs", "fqdn")):
        return "external"
    return "intra-app"


def _record(
    rule: dict[str, Any], meta: Mapping[str, Any], notes: Mapping[str, list[Any]]
) -> RuleRecord:
    scope = meta.get("scope")
    review = (notes.get("review") or [{}])[0]
    review_by = rule.pop("review_by", None)
    expires = rule.pop("expires", None) or review.get("expires")  # older exports: a comment
    apps = review.get("apps")
    if apps is None:
        apps = sorted(
            {
                str(v)
                for s in (scope or {}, rule.get("from") or {})
                for k, v in s.items()
                if k == "app" and isinstance(v, str)
            }
        )
    return RuleRecord(
        str(rule["id"]),
        str(meta["name"]),
        str(meta.get("owner") or "security"),
        dict(scope) if scope else None,
        str(review.get("kind") or _guess_kind(rule, scope)),
        tuple(apps),
        rule,
        (notes.get("evidence") or [{}])[0],
        str(review.get("state") or "draft"),
        str(review_by) if review_by is not None else None,
        str(expires) if expires is not None else None,
    )


def _read_file(path: Path, state: ImportedState) -> None:
    text = path.read_text(encoding="utf-8")
    notes = _notes(text)
    for doc in yaml.safe_load_all(text):
        if not isinstance(doc, dict):
            continue
        kind, spec, meta = doc.get("kind"), doc.get("spec") or {}, doc.get("metadata") or {}
        if kind == "Policy":
            meta = {**meta, "scope": spec.get("scope")}
            for rule in spec.get("rules") or []:
                mine = notes.get(str(rule.get("id")), {})
                state.records.append(_record(dict(rule), meta, mine))
                state.events += [
                    Event(
                        str(rule["id"]),
                        e["at"],
                        e["actor"],
                        e["action"],
                        e["from"],
                        e["to"],
                        e["note"],
                    )
                    for e in mine.get("event", [])
                ]
        elif kind == "RoleBinding":
            state.bindings.append(
                RoleBinding(
                    str(meta["name"]),
                    str(spec["role"]),
                    tuple(spec.get("subjects") or ()),
                    tuple(spec.get("apps") or ()),
                )
            )
        elif kind == "IPList":
            state.iplists[str(meta["name"])] = (
                list(spec.get("cidrs") or []),
                list(spec.get("except") or []),
            )


def _recommended(folder: Path) -> dict[str, dict[str, Any]]:
    """The rules of a ``cellwall recommend --out`` report in ``folder``, by id."""
    path = folder / "report.json"
    if not path.is_file():
        return {}
    rules = json.loads(path.read_text(encoding="utf-8")).get("rules", [])
    return {str(r["id"]): r for r in rules}


def _with_report(rec: RuleRecord, found: Mapping[str, Any]) -> RuleRecord:
    evidence = {
        **found.get("evidence", {}),
        "confidence": found.get("confidence"),
        "coverage": found.get("coverage"),
    }
    return replace(
        rec,
        kind=str(found.get("kind", rec.kind)),
        apps=tuple(found.get("apps", rec.apps)),
        evidence=evidence,
    )


def read_state(folder: Path) -> ImportedState:
    """Read every ``*.yaml`` of ``folder`` (an InputError names a file it cannot read).
    Rules without review notes take kind, apps and evidence from a recommendation's
    ``report.json`` beside them."""
    state = ImportedState()
    paths = sorted(folder.glob("*.yaml")) if folder.is_dir() else [folder]
    try:
        for path in paths:
            _read_file(path, state)
        report = _recommended(folder) if folder.is_dir() else {}
    except (OSError, yaml.YAMLError, KeyError, ValueError, TypeError) as exc:
        raise InputError(
            f"{folder}: cannot read review state: {exc}",
            hint="export with `cellwall review export DIR`",
        ) from None
    state.records = [
        _with_report(r, report[r.rule_id]) if r.rule_id in report and not r.evidence else r
        for r in state.records
    ]
    return state
