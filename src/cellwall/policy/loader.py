"""Load a policy directory (or files, or texts) into a :class:`~cellwall.model.policy.PolicySet`.

Every file ``*.yaml`` / ``*.yml`` under a directory is read, in name order; each holds one or
more documents separated by ``---``. Loading never raises for bad content: it returns every
finding at once, each with ``file:line:col``, a stable code and a hint (the codes are listed
in docs/policy.md, Diagnostics). A document with an error is left out; the others load.

The label checks and the "matches no workload" warnings need the label convention and the
workloads; the review-date warning needs ``today``. Each is optional and the check is skipped
without it; nothing here reads the wall clock or the workspace.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

from cellwall.errors import Diagnostic, InputError
from cellwall.inventory.nodes import N, diag, read_documents
from cellwall.model.inventory import Workload
from cellwall.model.labels import LabelConvention
from cellwall.model.policy import (
    InvariantSet,
    IPList,
    Policy,
    PolicySet,
    RoleBinding,
    Settings,
)
from cellwall.policy.checks import Judge, check_documents
from cellwall.policy.documents import KINDS, Parsed, read_document

__all__ = [
    "API_VERSION",
    "LoadResult",
    "load_policy",
    "load_policy_texts",
    "policy_files",
]

API_VERSION = "cellwall/v1"
SUFFIXES = (".yaml", ".yml")
_INVENTORY_KINDS = ("Workload", "LabelConvention")
_HINTS = {"duplicate-key": "remove one of them", "yaml-syntax": "fix the syntax at this place"}


@dataclass
class LoadResult:
    """The policy set of the documents without errors, every finding, and the texts read
    (relative file name -> text, what the policy store keeps)."""

    policy_set: PolicySet
    diagnostics: list[Diagnostic]
    texts: dict[str, str] = field(default_factory=dict)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_for_errors(self) -> None:
        """Raise one InputError that carries every error, if there is any."""
        if self.errors:
            n = len(self.errors)
            raise InputError(
                f"the policy has {n} error{'s' if n > 1 else ''}",
                "fix each place listed; nothing was loaded",
                self.errors,
            )


def _route(doc: N, file: str, parsed: list[Parsed], diags: list[Diagnostic]) -> None:
    if not isinstance(doc.value, dict):
        hint = f"start the document with apiVersion: {API_VERSION} and kind: Policy"
        diags.append(diag(file, doc, "bad-document", "a policy document is a mapping", hint))
        return
    api, kind = doc.get("apiVersion"), doc.get("kind")
    api_text = api.value if api is not None and isinstance(api.value, str) else None
    kind_text = kind.value if kind is not None and isinstance(kind.value, str) else None
    if api_text != API_VERSION:
        msg = "no apiVersion" if api is None else f"apiVersion {api.value!r} is not supported"
        diags.append(diag(file, api or doc, "bad-api-version", msg, f"use {API_VERSION}"))
    elif kind_text in KINDS:
        try:
            parsed.append(read_document(kind_text, doc, file))
        except RecursionError:
            diags.append(diag(file, doc, "bad-document", "the document nests too deep"))
    elif kind_text in _INVENTORY_KINDS:
        msg = f"a {kind_text} is not a policy document; it is skipped"
        hint = "load inventory documents with `cellwall inventory load`"
        diags.append(diag(file, kind, "not-policy", msg, hint, "warning"))
    else:
        close = difflib.get_close_matches(str(kind_text), list(KINDS), n=1)
        hint = f"did you mean {close[0]}?" if close else f"policy kinds: {', '.join(KINDS)}"
        msg = "no kind" if kind is None else f"unknown kind {kind.value!r}"
        diags.append(diag(file, kind or doc, "unknown-kind", msg, hint))


def _policy_set(parsed: list[Parsed]) -> PolicySet:
    values = [p.value for p in parsed if p.ok and p.value is not None]
    settings = [v for v in values if isinstance(v, Settings)]
    return PolicySet(
        tuple(v for v in values if isinstance(v, Policy)),
        tuple(v for v in values if isinstance(v, IPList)),
        tuple(v for v in values if isinstance(v, InvariantSet)),
        tuple(v for v in values if isinstance(v, RoleBinding)),
        settings[0] if settings else Settings(),
    )


def _order(d: Diagnostic) -> tuple[str, int, int]:
    return (d.file or "", d.line or 0, d.col or 0)


def _load(
    named: Sequence[tuple[str, str, str | Diagnostic]], judge: Judge, where: str
) -> LoadResult:
    """``named``: (display name, relative name, text or a reading problem) per file."""
    parsed: list[Parsed] = []
    diags: list[Diagnostic] = []
    texts: dict[str, str] = {}
    for display, rel, text in named:
        if isinstance(text, Diagnostic):
            diags.append(text)
            continue
        texts[rel] = text
        for item in read_documents(text.removeprefix("\ufeff"), display):
            if isinstance(item, Diagnostic):
                diags.append(item if item.hint else replace(item, hint=_HINTS.get(item.code, "")))
            else:
                _route(item, display, parsed, diags)
    check_documents(parsed, judge)
    for p in parsed:
        diags.extend(p.ctx.diags)
    if not parsed and not any(d.severity == "error" for d in diags):
        hint = "a policy directory holds YAML files with kind: Policy, IPList, ... documents"
        diags.append(Diagnostic(where, None, None, "empty", "no policy documents found", hint))
    diags.sort(key=_order)
    return LoadResult(_policy_set(parsed), diags, texts)


def _read(path: Path, display: str) -> str | Diagnostic:
    try:
        data = path.read_bytes()
    except OSError as exc:
        msg, hint = f"cannot read: {exc.strerror or exc}", "check the path and permissions"
        return Diagnostic(display, None, None, "unreadable", msg, hint)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        msg = f"byte {exc.start} is not UTF-8"
        return Diagnostic(display, line, col, "encoding", msg, "save the file as UTF-8")


def policy_files(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """(display name, name relative to ``path``) of each policy file under a directory, in
    name order (hidden files and directories are skipped); a file is itself."""
    root = Path(path)
    shown = os.path.normpath(os.fspath(path))
    if not root.is_dir():
        return [(shown, root.name)]
    out = []
    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root)
        hidden = any(part.startswith(".") for part in rel.parts)
        if f.suffix.lower() in SUFFIXES and f.is_file() and not hidden:
            out.append((os.path.join(shown, *rel.parts), rel.as_posix()))
    return out


def load_policy(
    paths: Iterable[str | os.PathLike[str]],
    *,
    convention: LabelConvention | None = None,
    workloads: Sequence[Workload] | None = None,
    today: date | None = None,
) -> LoadResult:
    """Load policy directories and files together (names and ids are unique across them)."""
    named: list[tuple[str, str, str | Diagnostic]] = []
    seen: set[str] = set()
    given = [os.fspath(p) for p in paths]
    for path in given:
        if not Path(path).exists():
            msg, hint = "no such file or directory", "check the path"
            named.append((path, path, Diagnostic(path, None, None, "unreadable", msg, hint)))
            continue
        for display, rel in policy_files(path):
            key = rel if rel not in seen else display
            seen.add(key)
            named.append((display, key, _read(Path(display), display)))
    where = os.path.normpath(given[0]) if len(given) == 1 else "<policy>"
    return _load(named, Judge(convention, workloads, today), where)


def load_policy_texts(
    texts: Mapping[str, str],
    *,
    convention: LabelConvention | None = None,
    workloads: Sequence[Workload] | None = None,
    today: date | None = None,
    prefix: str = "",
) -> LoadResult:
    """Load policy texts (file name -> YAML), in name order; ``prefix`` is put before each
    name in diagnostics (a stored version is shown as ``v3:payments.yaml``)."""
    named: list[tuple[str, str, str | Diagnostic]] = [
        (prefix + name, name, texts[name]) for name in sorted(texts)
    ]
    return _load(named, Judge(convention, workloads, today), prefix + "<policy>")
