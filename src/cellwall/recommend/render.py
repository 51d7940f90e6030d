"""Writing a proposal: one policy YAML file per policy, the IP lists, and ``report.json``.

The YAML is deterministic (sorted policies and rules, stable ids, flow-style selectors as
in CONTRACTS.md) and loads with ``cellwall policy load``. Each rule's evidence is written
in comments above it, so that it travels with the rule through review and git without
being part of the policy. ``report.json`` is not read as policy (only ``*.yaml`` is).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cellwall.recommend.model import Proposal, ProposedPolicy, ProposedRule

__all__ = ["evidence_comments", "flow", "policy_yaml", "proposal_files", "write_proposal"]

_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./+-]*")
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    numeric = re.fullmatch(r"[0-9._:+-]+", text) is not None and "/" not in text
    if _PLAIN.fullmatch(text) and text.lower() not in _RESERVED and not numeric:
        return text
    return json.dumps(text, ensure_ascii=False)


def flow(value: Any) -> str:
    """A value in YAML flow style (``{role: web, env: [prod, staging]}``)."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_scalar(k)}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    return _scalar(value)


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"


def evidence_comments(rule: ProposedRule, indent: str = "    ") -> list[str]:
    ev = rule.evidence.to_dict()
    lines = [
        f"# {rule.kind}; confidence {rule.confidence:.2f}; coverage {rule.coverage:.4%}"
        + (f"; apps {', '.join(rule.apps)}" if rule.apps else ""),
        f"# evidence: {ev['conversations']} flows, {_size(ev['bytes'])}, {ev['days']} days, "
        f"{ev['first_seen']} .. {ev['last_seen']}, {ev['edges']} workload edges",
        *(f"# sample: {s}" for s in ev["samples"]),
        *(f"# note: {n}" for n in rule.notes),
    ]
    return [indent + line for line in lines]


def rule_lines(rule: ProposedRule, evidence: bool = True) -> list[str]:
    lines = evidence_comments(rule) if evidence else []
    lead = "    - "
    for key, value in rule.document().items():
        lines.append(f"{lead}{key}: {flow(value)}")
        lead = "      "
    return lines


def policy_yaml(policy: ProposedPolicy, header: Sequence[str] = (), evidence: bool = True) -> str:
    lines = [f"# {h}" for h in header]
    lines += [
        "apiVersion: cellwall/v1",
        "kind: Policy",
        "metadata: " + flow({"name": policy.name, "owner": policy.owner}),
        "spec:",
    ]
    if policy.scope is not None:
        lines.append("  scope: " + flow(dict(policy.scope)))
    lines.append("  rules:")
    for rule in policy.rules:
        lines += rule_lines(rule, evidence)
    return "\n".join(lines) + "\n"


def iplists_yaml(iplists: Mapping[str, tuple[Sequence[str], Sequence[str]]]) -> str:
    docs = []
    for name in sorted(iplists):
        cidrs, excepts = iplists[name]
        spec: dict[str, Any] = {"cidrs": list(cidrs)}
        if excepts:
            spec["except"] = list(excepts)
        docs.append(
            "apiVersion: cellwall/v1\nkind: IPList\n"
            f"metadata: {flow({'name': name})}\nspec: {flow(spec)}\n"
        )
    return "---\n".join(docs)


def proposal_files(proposal: Proposal, header: Sequence[str] = ()) -> dict[str, str]:
    """File name → text: one YAML per policy, ``iplists.yaml``, and ``report.json``."""
    files = {f"{p.name}.yaml": policy_yaml(p, header) for p in proposal.policies}
    if proposal.iplists:
        lead = "".join(f"# {h}\n" for h in header)
        files["iplists.yaml"] = lead + iplists_yaml(proposal.iplists)
    report = {
        "summary": proposal.summary(),
        "rules": [{"policy": p.name, **r.to_dict()} for p in proposal.policies for r in p.rules],
        "exclusions": [x.to_dict() for x in proposal.exclusions],
    }
    files["report.json"] = json.dumps(report, indent=1, default=str) + "\n"
    return files


def write_proposal(proposal: Proposal, out: Path, header: Sequence[str] = ()) -> list[Path]:
    """Write the files into ``out``; stale proposal files there (``*.yaml``) are removed."""
    out.mkdir(parents=True, exist_ok=True)
    files = proposal_files(proposal, header)
    for old in out.glob("*.yaml"):
        if old.name not in files and old.read_text(encoding="utf-8").startswith("# Proposed"):
            old.unlink()
    written = []
    for name, text in sorted(files.items()):
        path = out / name
        path.write_text(text, encoding="utf-8", newline="\n")
        written.append(path)
    return written
