"""Load inventory files of any supported kind, all diagnostics at once.

A file is CSV or a YAML/JSON stream (by extension, else by content). Each YAML/JSON document
is routed by what it holds: ``apiVersion: cellwall/v1`` documents (``Workload``,
``LabelConvention``), AWS ``describe-instances`` output (``Reservations``), or Kubernetes
objects (any other ``apiVersion`` with a ``kind``). After reading every file,
:func:`load_inventory_files`

1. gives Kubernetes objects their namespace's labels (namespaces loaded in the same call);
2. applies the label convention's aliases (the given convention, then the conventions found in
   the files), and the built-in Kubernetes aliases to Kubernetes workloads;
3. reports a workload name given twice (the later one is left out) and an address that two
   workloads own at the same time.

Loading never raises for bad content: it returns diagnostics. :meth:`LoadResult.raise_for_errors`
turns errors into one :class:`~cellwall.errors.InventoryError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cellwall.errors import Diagnostic, InventoryError
from cellwall.inventory.aws import is_aws_doc, load_aws_doc
from cellwall.inventory.conventions import K8S_ALIASES, apply_aliases
from cellwall.inventory.identity import lease_conflicts
from cellwall.inventory.kubernetes import (
    K8sResult,
    inherit_namespace_labels,
    is_k8s_doc,
    load_k8s_doc,
)
from cellwall.inventory.nodes import N, diag, read_documents
from cellwall.inventory.yaml_csv import convention_from_doc, load_csv, workload_from_doc
from cellwall.model.inventory import Workload
from cellwall.model.labels import LabelConvention

__all__ = [
    "FORMATS",
    "LoadResult",
    "detect_format",
    "load_inventory_file",
    "load_inventory_files",
    "load_inventory_text",
]

FORMATS = ("auto", "csv", "yaml", "json")
API_VERSION = "cellwall/v1"
_OTHER_CELLWALL_KINDS = ("Policy", "IPList", "Invariant", "RoleBinding")
_K8S_KINDS = {"pod", "service", "deployment", "statefulset", "daemonset", "replicaset"}
_K8S_KINDS |= {"replicationcontroller", "job", "cronjob"}


@dataclass
class LoadResult:
    """Workloads and conventions read from inventory files, and every finding on the way."""

    workloads: list[Workload] = field(default_factory=list)
    conventions: list[LabelConvention] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    def convention(self) -> LabelConvention | None:
        """The conventions of the files merged in order (later ones win per key)."""
        merged: LabelConvention | None = None
        for c in self.conventions:
            merged = c if merged is None else merged.merge(c)
        return merged

    def raise_for_errors(self) -> None:
        """Raise one InventoryError that carries every error, if there is any."""
        if self.errors:
            n = len(self.errors)
            raise InventoryError(
                f"the inventory has {n} error{'s' if n > 1 else ''}",
                "fix each place listed; workloads with errors were left out",
                self.errors,
            )


def detect_format(path: str, text: str) -> str:
    """``csv``, ``json`` or ``yaml``: by extension, else by the first characters."""
    ext = os.path.splitext(path)[1].lower()
    if ext in (".csv", ".json"):
        return ext[1:]
    if ext in (".yaml", ".yml"):
        return "yaml"
    head = text.lstrip("\ufeff \t\r\n")
    if head[:1] in ("{", "["):
        return "json"
    first = head.split("\n", 1)[0].replace(" ", "")
    return "csv" if first.startswith("name,addresses,owner") else "yaml"


def _route(doc: N, file: str, out: LoadResult, k8s: K8sResult) -> None:
    if not isinstance(doc.value, dict):
        hint = "an inventory document is a mapping with apiVersion and kind"
        out.diagnostics.append(diag(file, doc, "unknown-document", "not a mapping", hint))
        return
    if is_aws_doc(doc):
        workloads, diags = load_aws_doc(doc, file)
        out.workloads.extend(workloads)
        out.diagnostics.extend(diags)
        return
    api, kind = doc.get("apiVersion"), doc.get("kind")
    api_text = api.value if api is not None and isinstance(api.value, str) else None
    kind_text = kind.value if kind is not None and isinstance(kind.value, str) else None
    cellwall = api_text is not None and api_text.startswith("cellwall/")
    if not cellwall and api_text is None and kind_text in ("Workload", "LabelConvention"):
        hint = f"add apiVersion: {API_VERSION}"
        out.diagnostics.append(diag(file, doc, "bad-api-version", "no apiVersion", hint, "warning"))
        cellwall = True
    if cellwall:
        _cellwall(doc, file, api_text, kind_text, out)
    elif is_k8s_doc(doc):
        load_k8s_doc(doc, file, k8s)
    else:
        msg = "neither a cellwall, a Kubernetes nor an AWS describe-instances document"
        hint = f"start the document with apiVersion: {API_VERSION} and kind: Workload"
        out.diagnostics.append(diag(file, doc, "unknown-document", msg, hint))


def _cellwall(doc: N, file: str, api: str | None, kind: str | None, out: LoadResult) -> None:
    if api is not None and api != API_VERSION:
        msg = f"apiVersion {api} is not supported"
        out.diagnostics.append(diag(file, doc, "bad-api-version", msg, f"use {API_VERSION}"))
    elif kind == "Workload":
        w, diags = workload_from_doc(doc, file)
        out.diagnostics.extend(diags)
        out.workloads.extend([w] if w is not None else [])
    elif kind == "LabelConvention":
        c, diags = convention_from_doc(doc, file)
        out.diagnostics.extend(diags)
        out.conventions.extend([c] if c is not None else [])
    elif kind in _OTHER_CELLWALL_KINDS:
        msg = f"a {kind} is not an inventory document; it is skipped"
        hint = "load policy documents with `cellwall policy load`"
        out.diagnostics.append(diag(file, doc, "not-inventory", msg, hint, "warning"))
    else:
        msg = f"unknown kind {kind!r}"
        hint = "inventory kinds are Workload and LabelConvention"
        out.diagnostics.append(diag(file, doc.get("kind") or doc, "unknown-kind", msg, hint))


def _parse(text: str, file: str, fmt: str, out: LoadResult, k8s: K8sResult) -> None:
    if fmt not in FORMATS:
        raise InventoryError(f"unknown inventory format {fmt!r}", f"use one of {FORMATS}")
    fmt = detect_format(file, text) if fmt == "auto" else fmt
    if fmt == "csv":
        workloads, diags = load_csv(text, file)
        out.workloads.extend(workloads)
        out.diagnostics.extend(diags)
        return
    for item in read_documents(text, file, is_json=fmt == "json"):
        if isinstance(item, Diagnostic):
            out.diagnostics.append(item)
        else:
            _route(item, file, out, k8s)


def _decode(data: bytes, file: str) -> str | Diagnostic:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        msg = f"byte {exc.start} is not UTF-8"
        return Diagnostic(file, line, col, "encoding", msg, "save the file as UTF-8")


def _effective(
    out: LoadResult, given: LabelConvention | None, file: str | None
) -> LabelConvention | None:
    """The given convention merged with the files' conventions (the files' win per key)."""
    try:
        found = out.convention()
        return given.merge(found) if given and found else (found or given)
    except ValueError as exc:
        hint = "make the conventions agree"
        out.diagnostics.append(Diagnostic(file, None, None, "bad-convention", str(exc), hint))
        return given


def _finish(
    out: LoadResult, k8s: K8sResult, convention: LabelConvention | None, files: list[str]
) -> LoadResult:
    out.diagnostics.extend(k8s.diagnostics)
    for (file, kind), count in sorted(k8s.skipped.items()):
        msg = f"{count} Kubernetes object(s) of kind {kind} hold no workload; skipped"
        out.diagnostics.append(Diagnostic(file, None, None, "k8s-skipped", msg, "", "info"))
    workloads = out.workloads + inherit_namespace_labels(k8s.workloads, k8s.namespaces)
    effective = _effective(out, convention, files[0] if len(files) == 1 else None)
    if effective is not None and effective.aliases:
        workloads, diags = apply_aliases(workloads, effective.alias_map())
        out.diagnostics.extend(diags)
    k8s_at = [i for i, w in enumerate(workloads) if w.kind in _K8S_KINDS]
    renamed, diags = apply_aliases([workloads[i] for i in k8s_at], K8S_ALIASES, report=False)
    out.diagnostics.extend(diags)
    for i, w in zip(k8s_at, renamed, strict=True):
        workloads[i] = w
    out.workloads = _dedupe(workloads, out.diagnostics)
    out.diagnostics.extend(lease_conflicts(out.workloads))
    if not out.workloads and not out.conventions and not out.errors:
        where = files[0] if len(files) == 1 else None
        hint = (
            "an inventory holds Workload documents, CSV rows, Kubernetes objects or AWS instances"
        )
        msg = "no workloads found"
        out.diagnostics.append(Diagnostic(where, None, None, "empty", msg, hint, "warning"))
    return out


def _dedupe(workloads: list[Workload], diags: list[Diagnostic]) -> list[Workload]:
    seen: dict[str, Workload] = {}
    for w in workloads:
        first = seen.get(w.name)
        if first is None:
            seen[w.name] = w
            continue
        s = w.source
        msg = f"workload `{w.name}` is also defined at {first.source}; this one is left out"
        hint = "give each workload its own name"
        diags.append(Diagnostic(s.file, s.line, s.col, "duplicate-workload", msg, hint))
    return list(seen.values())


def load_inventory_files(
    paths: Iterable[str | os.PathLike[str]],
    *,
    convention: LabelConvention | None = None,
    fmt: str = "auto",
) -> LoadResult:
    """Read inventory files together (so that namespaces and conventions apply across them)."""
    out, k8s, files = LoadResult(), K8sResult(), []
    for path in paths:
        file = os.fspath(path)
        files.append(file)
        try:
            data = Path(file).read_bytes()
        except OSError as exc:
            msg, hint = f"cannot read: {exc.strerror or exc}", "check the path and permissions"
            out.diagnostics.append(Diagnostic(file, None, None, "unreadable", msg, hint))
            continue
        text = _decode(data, file)
        if isinstance(text, Diagnostic):
            out.diagnostics.append(text)
        else:
            _parse(text, file, fmt, out, k8s)
    return _finish(out, k8s, convention, files)


def load_inventory_file(
    path: str | os.PathLike[str], *, convention: LabelConvention | None = None, fmt: str = "auto"
) -> LoadResult:
    """Read one inventory file; see :func:`load_inventory_files`."""
    return load_inventory_files([path], convention=convention, fmt=fmt)


def load_inventory_text(
    text: str,
    name: str = "<input>",
    *,
    convention: LabelConvention | None = None,
    fmt: str = "auto",
) -> LoadResult:
    """Read inventory text (standard input, tests); ``name`` stands for the file in diagnostics."""
    out, k8s = LoadResult(), K8sResult()
    _parse(text.removeprefix("\ufeff"), name, fmt, out, k8s)
    return _finish(out, k8s, convention, [name])
