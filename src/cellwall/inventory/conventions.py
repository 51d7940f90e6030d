"""Label conventions: apply their aliases, and check workloads against them.

Each finding is a :class:`~cellwall.errors.Diagnostic` at the workload's origin (file:line)
that names the workload, the key and the fix:

=======================  ========  ============================================================
code                     severity  meaning
=======================  ========  ============================================================
``convention-required``  error     a required key is missing
``convention-value``     error     a value is not one of the allowed values
``convention-alias``     warning   a label still uses an alias key (load with the convention)
``alias-applied``        info      an alias key was renamed to its key while loading
``alias-conflict``       warning   an alias and its key (or two aliases) disagree; key wins
=======================  ========  ============================================================
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import replace

from cellwall.errors import Diagnostic
from cellwall.model.inventory import Workload
from cellwall.model.labels import LabelConvention, Labels

__all__ = ["K8S_ALIASES", "apply_aliases", "check_conventions"]

# Kubernetes' recommended labels, and the older k8s-app, mean our standard keys.
K8S_ALIASES: Mapping[str, str] = {
    "app.kubernetes.io/name": "app",
    "app.kubernetes.io/component": "role",
    "k8s-app": "app",
}


def _at(w: Workload, code: str, message: str, hint: str, severity: str) -> Diagnostic:
    s = w.source
    return Diagnostic(s.file, s.line, s.col, code, message, hint, severity)


def _rename(
    w: Workload, aliases: Mapping[str, str], report: bool
) -> tuple[Labels, list[Diagnostic]]:
    """The labels with aliases renamed. The real key wins over an alias; the first alias wins."""
    diags: list[Diagnostic] = []
    kept = {k: v for k, v in w.labels.items() if k not in aliases}
    for alias, value in w.labels.items():
        target = aliases.get(alias)
        if target is None:
            continue
        if target in kept and kept[target] != value:
            msg = (
                f"workload `{w.name}`: label `{alias}={value}` is an alias of `{target}`, "
                f"which is already `{kept[target]}`; `{alias}` is dropped"
            )
            diags.append(
                _at(w, "alias-conflict", msg, f"make `{alias}` and `{target}` agree", "warning")
            )
            continue
        kept[target] = value
        if report:
            msg = f"workload `{w.name}`: alias `{alias}` → `{target}` applied ({target}={value})"
            diags.append(_at(w, "alias-applied", msg, f"write `{target}` in the source", "info"))
    return Labels.of(kept), diags


def apply_aliases(
    workloads: Iterable[Workload], aliases: Mapping[str, str], *, report: bool = True
) -> tuple[list[Workload], list[Diagnostic]]:
    """Rename alias keys to their keys (``Environment`` → ``env``) in every workload.

    With ``report``, each renaming is an ``alias-applied`` info diagnostic.
    """
    out: list[Workload] = []
    diags: list[Diagnostic] = []
    for w in workloads:
        if not any(k in aliases for k in w.labels):
            out.append(w)
            continue
        labels, found = _rename(w, aliases, report)
        out.append(replace(w, labels=labels))
        diags.extend(found)
    return out, diags


def check_conventions(
    workloads: Iterable[Workload], convention: LabelConvention
) -> list[Diagnostic]:
    """Every way in which ``workloads`` break ``convention``, sorted by place."""
    aliases = convention.alias_map()
    diags: list[Diagnostic] = []
    for w in workloads:
        for alias, value in w.labels.items():
            if alias in aliases:
                target = aliases[alias]
                msg = f"workload `{w.name}`: label `{alias}` is an alias of `{target}`"
                hint = (
                    f"rename it to `{target}: {value}`, or load the inventory with the convention"
                )
                diags.append(_at(w, "convention-alias", msg, hint, "warning"))
        effective = {aliases.get(k, k): v for k, v in w.labels.items()}
        for key in convention.required:
            if key not in effective:
                allowed = convention.allowed(key)
                example = f"<{'|'.join(allowed)}>" if allowed else "VALUE"
                msg = f"workload `{w.name}` lacks the required label `{key}`"
                diags.append(_at(w, "convention-required", msg, f"add `{key}: {example}`", "error"))
        for key, value in sorted(effective.items()):
            allowed = convention.allowed(key)
            if allowed is None or value in allowed:
                continue
            close = difflib.get_close_matches(value, allowed, n=1, cutoff=0.4)
            fix = f"did you mean `{key}: {close[0]}`?" if close else f"use one of {list(allowed)}"
            msg = (
                f"workload `{w.name}`: label `{key}` has value `{value}`, "
                f"not one of [{', '.join(allowed)}]"
            )
            diags.append(_at(w, "convention-value", msg, fix, "error"))
    return sorted(diags, key=lambda d: (d.file or "", d.line or 0, d.code, d.message))
