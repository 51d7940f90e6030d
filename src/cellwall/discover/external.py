"""Ends that no workload owns: named IP lists first, then DNS names, else CIDR aggregates.

The work is done once per *distinct* address (a few thousand, not one per flow) with the
vectorised :class:`~cellwall.inventory.classify.IPClassifier`, and the result goes back into
the query as a small table. Node names:

| node | when |
|---|---|
| ``iplist:NAME`` | a named IP list holds the address (most specific CIDR wins) |
| ``dns:NAME`` | the flows carry a DNS name for it (``dns_name``) and no IP list holds it |
| ``unmanaged:IP`` | a private address that no workload owns: reported with its peers |
| ``cidr:NET/24`` | any other internet address, aggregated to its /24 (IPv6: /48) |
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import yaml

from cellwall.errors import UsageError
from cellwall.inventory.classify import INTERNET, UNMANAGED_PRIVATE, IPClassifier, IPListSpec

__all__ = ["EXTERNAL_SCHEMA", "classify_external", "load_iplists"]

EXTERNAL_SCHEMA = pa.schema([("ip", pa.string()), ("node", pa.string()), ("kind", pa.string())])
V4_AGGREGATE, V6_AGGREGATE = 24, 48


def load_iplists(paths: Sequence[Path]) -> dict[str, IPListSpec]:
    """The ``kind: IPList`` documents of YAML files (other documents are skipped)."""
    lists: dict[str, IPListSpec] = {}
    for path in paths:
        try:
            docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"cannot read IP lists from {path}: {exc}") from exc
        for doc in docs:
            if not isinstance(doc, dict) or doc.get("kind") != "IPList":
                continue
            name = str((doc.get("metadata") or {}).get("name", ""))
            spec = doc.get("spec") or {}
            if not name or not isinstance(spec, dict):
                raise UsageError(f"{path}: an IPList needs metadata.name and spec.cidrs")
            cidrs = [str(c) for c in spec.get("cidrs") or []]
            excepts = [str(c) for c in spec.get("except") or []]
            lists[name] = (cidrs, excepts)
    return lists


def _aggregate(ip: str) -> str:
    addr = ipaddress.ip_address(ip)
    prefix = V4_AGGREGATE if addr.version == 4 else V6_AGGREGATE
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def classify_external(
    ips: Sequence[str],
    iplists: Mapping[str, IPListSpec] | None = None,
    dns_names: Mapping[str, str] | None = None,
) -> pa.Table:
    """One row per address: its external ``node`` and ``kind`` (iplist, dns, unmanaged, cidr).

    ``ips`` are distinct addresses; the loop below runs once per distinct address.
    """
    classes = IPClassifier(iplists).classify(pa.array(list(ips), pa.string())).to_pylist()
    names = set(iplists or {})
    nodes: list[str] = []
    kinds: list[str] = []
    for ip, klass in zip(ips, classes, strict=True):
        if klass in names:
            node, kind = f"iplist:{klass}", "iplist"
        elif dns_names and ip in dns_names:
            node, kind = f"dns:{dns_names[ip]}", "dns"
        elif klass == UNMANAGED_PRIVATE or klass != INTERNET:
            node, kind = f"unmanaged:{ip}", "unmanaged"
        else:
            node, kind = f"cidr:{_aggregate(ip)}", "cidr"
        nodes.append(node)
        kinds.append(kind)
    return pa.table([list(ips), nodes, kinds], schema=EXTERNAL_SCHEMA)
