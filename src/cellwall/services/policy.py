"""The policy use cases: check, load, activate, list, show and diff policy versions.

Policy directories are checked against the workspace's loaded inventory (its label
convention and workloads) and today's date. A load with any error stores nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from cellwall.errors import Diagnostic, InputError, UsageError
from cellwall.inventory import InventoryStore
from cellwall.model.policy import PolicySet
from cellwall.policy.loader import LoadResult, load_policy
from cellwall.policy.rulediff import RuleDiff, rule_diff
from cellwall.policy.store import PolicyStore, VersionInfo
from cellwall.services.authz import authorize
from cellwall.state.audit import AuditLog
from cellwall.workspace import Workspace

__all__ = [
    "DiffResult",
    "activate_policy",
    "active_policy",
    "check_policy",
    "diff_policy",
    "list_policy_versions",
    "load_policy_dir",
    "read_policy_dir",
    "resolve_policy",
    "show_policy",
]


def _check(ws: Workspace, paths: Sequence[Path], today: date | None) -> LoadResult:
    inventory = InventoryStore(ws.engine)
    return load_policy(
        paths, convention=inventory.convention(), workloads=inventory.current(), today=today
    )


def _counts(diags: list[Diagnostic]) -> dict[str, Any]:
    return {
        "errors": sum(1 for d in diags if d.severity == "error"),
        "warnings": sum(1 for d in diags if d.severity == "warning"),
        "diagnostics": [d.to_dict() for d in diags],
    }


def _summary(ps: PolicySet) -> dict[str, int]:
    return {
        "policies": len(ps.policies),
        "rules": len(ps.rules()),
        "iplists": len(ps.iplists),
        "invariants": sum(len(s.invariants) for s in ps.invariants),
        "bindings": len(ps.bindings),
    }


def check_policy(ws: Workspace, paths: Sequence[Path], *, today: date | None) -> dict[str, Any]:
    """Validate policy files without storing them."""
    result = _check(ws, paths, today)
    return {**_summary(result.policy_set), **_counts(result.diagnostics)}


def load_policy_dir(
    ws: Workspace,
    paths: Sequence[Path],
    *,
    today: date | None,
    actor: str | None = None,
    activate: bool = False,
) -> dict[str, Any]:
    """Check and store a new version (unless it equals the newest); optionally activate it.

    With any error nothing is stored: the result has ``version`` None and the errors."""
    source = ", ".join(str(p) for p in paths)
    who = authorize(ws, actor, "policy.load", source).name
    if activate:
        authorize(ws, who, "policy.activate", source)
    with ws.writer_lock(timeout=30):
        result = _check(ws, paths, today)
        doc: dict[str, Any] = {**_summary(result.policy_set), **_counts(result.diagnostics)}
        if result.errors:
            details = {"source": source, "errors": len(result.errors)}
            AuditLog(ws.engine).record(who, "policy.load", source, "rejected", details)
            return {**doc, "version": None, "created": False, "activated": False}
        store = PolicyStore(ws.engine)
        info, created = store.load(result.policy_set, source, result.texts, actor=who)
        if activate:
            info = store.activate(info.version, actor=who)
    return {**doc, "version": info.version, "created": created, "activated": info.active}


def activate_policy(
    ws: Workspace, version: int | None, *, actor: str | None = None
) -> dict[str, Any]:
    """Activate a version (the newest when None)."""
    who = authorize(ws, actor, "policy.activate", f"v{version}" if version else "newest").name
    with ws.writer_lock(timeout=30):
        store = PolicyStore(ws.engine)
        if version is None:
            newest = store.newest()
            if newest is None:
                raise UsageError("no policy is loaded", "load one with `cellwall policy load DIR`")
            version = newest.version
        return store.activate(version, actor=who).to_dict()


def list_policy_versions(ws: Workspace) -> list[dict[str, Any]]:
    return [v.to_dict() for v in PolicyStore(ws.engine).versions()]


def _pick(store: PolicyStore, version: int | None) -> VersionInfo:
    """The version asked for, else the active one, else the newest."""
    if version is not None:
        return store.get(version).info
    info = store.active() or store.newest()
    if info is None:
        raise UsageError("no policy is loaded", "load one with `cellwall policy load DIR`")
    return info


def show_policy(ws: Workspace, version: int | None) -> dict[str, Any]:
    """A version: its record, its files' texts and its rules, one line each."""
    store = PolicyStore(ws.engine)
    stored = store.get(_pick(store, version).version)
    ps = stored.policy_set()
    rules = [
        {
            "policy": p.name,
            "id": r.id,
            "action": r.action,
            "from": str(r.from_),
            "to": str(r.to),
            "services": [str(s) for s in r.services],
            "same": list(r.same),
            "from_outside_scope": r.from_outside_scope,
        }
        for p, r in ps.rules()
    ]
    return {**stored.info.to_dict(), "files": dict(stored.texts), "rule_list": rules}


def read_policy_dir(ws: Workspace, path: Path) -> PolicySet:
    """The policy in a directory or file, checked like `policy check` (an InputError with
    every error when it has any)."""
    result = _check(ws, [path], None)
    if result.errors:
        n = len(result.errors)
        hint = f"run `cellwall policy check {path}`"
        raise InputError(f"{path}: the policy has {n} error(s)", hint, result.errors)
    return result.policy_set


def active_policy(ws: Workspace) -> PolicySet | None:
    """The active version's policy set, or None when no version is active."""
    store = PolicyStore(ws.engine)
    info = store.active()
    return None if info is None else store.get(info.version).policy_set()


def resolve_policy(ws: Workspace, spec: str) -> tuple[str, PolicySet]:
    """A policy named on the command line: a directory or file, ``active``, ``N`` or ``vN``."""
    path = Path(spec)
    if path.exists():
        return str(path), read_policy_dir(ws, path)
    store = PolicyStore(ws.engine)
    text = spec.removeprefix("v")
    if spec == "active":
        info = store.active()
        if info is None:
            raise UsageError("no policy version is active", "run `cellwall policy activate`")
        return f"v{info.version}", store.get(info.version).policy_set()
    if text.isascii() and text.isdigit():
        return f"v{int(text)}", store.get(int(text)).policy_set()
    raise UsageError(
        f"{spec!r} is neither a policy directory nor a version",
        "give a directory, a version number (3 or v3) or `active`",
    )


@dataclass
class DiffResult:
    """The written diff and, when asked for, the semantic diff from ``a`` to ``b``."""

    a: str
    b: str
    written: RuleDiff
    semantic: Any = None  # cellwall.policy.diff.PolicyDiff: to_dict() and str()

    def to_dict(self) -> dict[str, Any]:
        sem = self.semantic.to_dict() if self.semantic is not None else None
        return {"a": self.a, "b": self.b, "written": self.written.to_dict(), "semantic": sem}

    def __str__(self) -> str:
        lines = [f"written differences from {self.a} to {self.b}:", str(self.written)]
        if self.semantic is not None:
            lines += [
                "",
                f"what changes for traffic from {self.a} to {self.b}:",
                str(self.semantic),
            ]
        return "\n".join(lines)


def diff_policy(
    ws: Workspace, a: str, b: str, *, semantic: bool = True, since: datetime | None = None
) -> DiffResult:
    """The written (rule by rule) diff from ``a`` to ``b``, and the semantic diff: class
    triples, and the lake's conversations (from ``since``) whose verdict changes."""
    name_a, ps_a = resolve_policy(ws, a)
    name_b, ps_b = resolve_policy(ws, b)
    result = DiffResult(name_a, name_b, rule_diff(ps_a, ps_b))
    if semantic:
        from cellwall.policy.diff import semantic_diff

        result.semantic = semantic_diff(
            ps_a, ps_b, InventoryStore(ws.engine).current(), _observed(ws, since)
        )
    return result


def _observed(ws: Workspace, since: datetime | None) -> pa.Table | None:
    """The lake's conversations from ``since`` (None when the lake has none)."""
    from cellwall.errors import EmptyWindowError
    from cellwall.services.replay import window_conversations

    if not ws.lake.exists():
        return None
    try:
        table: pa.Table = window_conversations(ws, since, None).to_pyarrow()
    except EmptyWindowError:
        return None
    return table
