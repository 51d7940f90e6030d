"""The inventory use cases: load, check against conventions, list, and who-owns-this-address."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from cellwall.errors import Diagnostic, UsageError
from cellwall.inventory import (
    InventoryStore,
    Resolver,
    check_conventions,
    load_inventory_files,
)
from cellwall.model.inventory import Workload
from cellwall.model.labels import LabelConvention
from cellwall.model.net import canonical_ip
from cellwall.services.authz import authorize
from cellwall.state.audit import AuditLog
from cellwall.workspace import Workspace

__all__ = ["check_inventory", "list_workloads", "load_inventory", "who_owns"]


def _store(ws: Workspace) -> InventoryStore:
    return InventoryStore(ws.engine)


def _convention(
    ws: Workspace, conventions: Path | None
) -> tuple[LabelConvention | None, list[Diagnostic]]:
    if conventions is None:
        return _store(ws).convention(), []
    result = load_inventory_files([conventions])
    conv = result.convention()
    if conv is None:
        raise UsageError(
            f"{conventions}: holds no `kind: LabelConvention` document", diagnostics=result.errors
        )
    return conv, result.errors


def load_inventory(
    ws: Workspace,
    paths: Sequence[Path],
    *,
    source: str | None = None,
    conventions: Path | None = None,
    actor: str | None = None,
) -> dict[str, Any]:
    """Load files; each file is its own source unless ``source`` names one for all of them.

    A source's earlier workloads are replaced; other sources are untouched. Workloads with
    errors are left out and reported; the good ones are stored.
    """
    groups = [(source, list(paths))] if source else [(str(p.resolve()), [p]) for p in paths]
    who = authorize(ws, actor, "inventory.load", ", ".join(g[0] or "" for g in groups)).name
    conv, diags = _convention(ws, conventions)
    store = _store(ws)
    loaded: list[dict[str, Any]] = []
    with ws.writer_lock(timeout=30):
        for name, files in groups:
            assert name is not None
            result = load_inventory_files(files, convention=conv)
            diags.extend(result.diagnostics)
            file_conv = result.convention()
            if file_conv is not None:
                store.save_convention(name, file_conv)
            readable = not any(d.code == "unreadable" for d in result.diagnostics)
            if result.workloads or (readable and file_conv is None):
                diags.extend(store.load(name, result.workloads))
            entry = {
                "source": name,
                "workloads": len(result.workloads),
                "conventions": len(result.conventions),
            }
            loaded.append(entry)
            errors = sum(1 for d in result.diagnostics if d.severity == "error")
            AuditLog(ws.engine).record(
                who,
                "inventory.load",
                name,
                "ok" if not errors else "partial",
                {**entry, "files": [str(f) for f in files], "errors": errors},
            )
    return {
        "sources": loaded,
        "workloads_total": len(store.current()),
        "errors": sum(1 for d in diags if d.severity == "error"),
        "warnings": sum(1 for d in diags if d.severity != "error"),
        "diagnostics": [d.to_dict() for d in diags],
    }


def check_inventory(ws: Workspace, *, conventions: Path | None = None) -> dict[str, Any]:
    """Check the loaded workloads against the label conventions."""
    conv, diags = _convention(ws, conventions)
    if conv is None:
        raise UsageError(
            "no label convention is loaded",
            hint="load a `kind: LabelConvention` file with `inventory load`, or pass --conventions",
        )
    workloads = _store(ws).current()
    findings = diags + check_conventions(workloads, conv)
    return {
        "workloads": len(workloads),
        "errors": sum(1 for d in findings if d.severity == "error"),
        "warnings": sum(1 for d in findings if d.severity != "error"),
        "findings": [d.to_dict() for d in findings],
    }


def _workload_doc(w: Workload) -> dict[str, Any]:
    return {
        "name": w.name,
        "kind": w.kind,
        "owner": w.owner,
        "labels": dict(w.labels.items()),
        "addresses": [str(a) for a in w.addresses],
        "source": str(w.source),
    }


def list_workloads(
    ws: Workspace, *, at: datetime | None = None, selector: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    workloads = _store(ws).current(at)
    if selector:
        workloads = [w for w in workloads if all(w.labels.get(k) == v for k, v in selector.items())]
    return [_workload_doc(w) for w in sorted(workloads, key=lambda w: w.name)]


def who_owns(
    ws: Workspace,
    ips: Sequence[str],
    *,
    at: datetime | None = None,
    iplists: dict[str, tuple[list[str], list[str]]] | None = None,
) -> list[dict[str, Any]]:
    """For each address: the workload that owned it at ``at`` (now by default), or its class."""
    canon = []
    for ip in ips:
        c = canonical_ip(ip)
        if c is None:
            raise UsageError(f"{ip!r} is not an IP address")
        canon.append(c)
    when = at or datetime.now(UTC)
    workloads = _store(ws).current()
    with Resolver(workloads, iplists) as resolver:
        ts = pa.array([when] * len(canon), pa.timestamp("us", tz="UTC"))
        table = resolver.resolve(pa.array(canon, pa.string()), ts).to_pylist()
    by_name = {w.name: w for w in workloads}
    out = []
    for ip, row in zip(canon, table, strict=True):
        owner = row["owner"]
        out.append(
            {
                "ip": ip,
                "at": when.isoformat(),
                "workload": owner,
                "labels": dict(by_name[owner].labels.items()) if owner else None,
                "class": row["address_class"],
            }
        )
    return out
