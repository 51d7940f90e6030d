"""The YAML and CSV documents of the demo: inventory, label convention, policy.

Documents are written in the compact style of CONTRACTS.md (flow mappings for metadata,
labels, selectors and addresses), deterministically. A scalar is written plain only when
YAML reads it back as the same string; otherwise it is double-quoted.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cellwall.demo.model import Estate, External, Lease, Workload, ip_text

__all__ = [
    "conventions_yaml",
    "flow",
    "inventory_csv",
    "inventory_yaml",
    "iplist_doc",
    "policy_doc",
]

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*|\d{1,3}(\.\d{1,3}){3}(/\d{1,2})?")
_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}
LABEL_ORDER = ("app", "role", "env", "loc")


def scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, datetime):
        return when(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _WORDS:
        return text
    return json.dumps(text, ensure_ascii=False)


def flow(value: Any) -> str:
    """A value in YAML flow style."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{scalar(k)}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    return scalar(value)


def when(t: datetime | int) -> str:
    if isinstance(t, int):
        t = datetime.fromtimestamp(t, UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ordered(labels: Mapping[str, str]) -> dict[str, str]:
    """Labels with the standard keys first, then the custom keys in order."""
    keys = [k for k in LABEL_ORDER if k in labels] + sorted(set(labels) - set(LABEL_ORDER))
    return {k: labels[k] for k in keys}


def _address(lease: Lease) -> str:
    if lease.since is None and lease.until is None:
        return ip_text(lease.ip)
    item: dict[str, Any] = {"ip": ip_text(lease.ip)}
    if lease.since is not None:
        item["from"] = datetime.fromtimestamp(lease.since, UTC)
    if lease.until is not None:
        item["until"] = datetime.fromtimestamp(lease.until, UTC)
    return flow(item)


def workload_doc(w: Workload, labels: Mapping[str, str]) -> str:
    lines = [
        "apiVersion: cellwall/v1",
        "kind: Workload",
        "metadata: " + flow({"name": w.name, "owner": w.owner}),
        "spec:",
        "  addresses:",
        *(f"    - {_address(lease)}" for lease in w.leases),
        "  labels: " + flow(ordered(labels)),
    ]
    return "\n".join(lines) + "\n"


def inventory_yaml(estate: Estate, *, true_labels: bool = False) -> str:
    """Workload documents; with the claimed (possibly wrong) labels unless ``true_labels``."""
    docs = [workload_doc(w, w.labels if true_labels else w.claimed) for w in estate.workloads]
    return "---\n".join(docs)


def _csv_address(lease: Lease) -> str:
    if lease.since is None and lease.until is None:
        return ip_text(lease.ip)
    since = when(lease.since) if lease.since is not None else ""
    until = when(lease.until) if lease.until is not None else ""
    return f"{ip_text(lease.ip)}@{since}..{until}"


def inventory_csv(estate: Estate, *, true_labels: bool = False) -> str:
    """The same workloads as CSV: name, addresses, owner, then one column per label key."""
    keys = ordered({k: "" for w in estate.workloads for k in w.labels})
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(["name", "addresses", "owner", *keys])
    for w in estate.workloads:
        labels = w.labels if true_labels else w.claimed
        addresses = " ".join(_csv_address(lease) for lease in w.leases)
        out.writerow([w.name, addresses, w.owner, *(labels.get(k, "") for k in keys)])
    return buf.getvalue()


def conventions_yaml(estate: Estate) -> str:
    def values(key: str) -> list[str]:
        return sorted({w.labels[key] for w in estate.workloads if key in w.labels})

    spec = {
        "required": ["app", "role", "env", "loc"],
        "values": {
            "env": ["prod", "staging", "dev"],
            "loc": values("loc"),
            "role": values("role"),
            "data": values("data"),
        },
        "aliases": {"Environment": "env", "Application": "app", "Role": "role", "Region": "loc"},
    }
    lines = ["apiVersion: cellwall/v1", "kind: LabelConvention", "spec:"]
    lines += [f"  {k}: {flow(v)}" for k, v in spec.items()]
    return "\n".join(lines) + "\n"


def iplist_doc(ext: External) -> str:
    spec: dict[str, Any] = {"cidrs": list(ext.cidrs)}
    if ext.except_:
        spec["except"] = list(ext.except_)
    lines = [
        "apiVersion: cellwall/v1",
        "kind: IPList",
        "metadata: " + flow({"name": ext.name}),
        "spec: " + flow(spec),
    ]
    return "\n".join(lines) + "\n"


def policy_doc(name: str, owner: str, rules: Iterable[Mapping[str, Any]]) -> str:
    """An unscoped Policy; each rule is a mapping of id, from, to, services and metadata."""
    lines = [
        "apiVersion: cellwall/v1",
        "kind: Policy",
        "metadata: " + flow({"name": name, "owner": owner}),
        "spec:",
        "  rules:",
    ]
    for rule in rules:
        first = True
        for key, value in rule.items():
            lead = "    - " if first else "      "
            lines.append(f"{lead}{key}: {flow(value)}")
            first = False
    return "\n".join(lines) + "\n"


def join_docs(docs: Sequence[str]) -> str:
    return "---\n".join(docs)
