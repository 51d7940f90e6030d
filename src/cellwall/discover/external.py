"""Ends that no workload owns: named IP lists first, then DNS names, else CIDR aggregates.

The work is done once per *distinct* address (a few thousand, not one per flow) with the
vectorised :class:`~cellwall.inventory.classify.IPClassifier`, and the result goes back into
the query as a small table. Node names:

| node | when |
|---|---|
| ``iplist:NAME`` | a named IP list holds the address (most specific CIDR wins) |
| ``dns:NAME`` | no IP list holds it, and DNS named it at its flows' times (or ``dns_name``) |
| ``unmanaged:IP`` | a private address that no workload owns: reported with its peers |
| ``cidr:NET/24`` | any other internet address, aggregated to its /24 (IPv6: /48) |

DNS evidence (:mod:`cellwall.evidence.dns`: Zeek ``dns.log``, Hubble DNS) names an address
by time: :func:`evidence_names` asks :func:`~cellwall.evidence.dns.names_for` for the name
of the address at the start of each of its flows, and gives the address the name that held
for most of them (ties: the alphabetically first). A flow outside every answer's validity
names nothing, so an address that DNS named only before or after its flows stays a CIDR
aggregate.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from cellwall.errors import UsageError
from cellwall.evidence.dns import names_for
from cellwall.inventory.classify import INTERNET, UNMANAGED_PRIVATE, IPClassifier, IPListSpec

__all__ = ["EXTERNAL_SCHEMA", "classify_external", "evidence_names", "load_iplists"]

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


def evidence_names(lake_dir: Path, ends: pa.Table) -> dict[str, str]:
    """Address -> DNS name from the lake's evidence at the times of the address's flows.

    ``ends`` has columns ``ip`` (string), ``ts`` (timestamp) and ``n`` (how many flows had
    that end at that time); the caller keeps it small by passing only addresses that the
    evidence holds. Addresses that no answer named at any of their times are left out.
    """
    if ends.num_rows == 0:
        return {}
    names = names_for(lake_dir, ends["ip"].combine_chunks(), ends["ts"].combine_chunks())
    named = pa.table({"ip": ends["ip"], "name": names, "n": ends["n"]}).filter(pc.is_valid(names))
    if named.num_rows == 0:
        return {}
    votes = named.group_by(["ip", "name"]).aggregate([("n", "sum")])
    best = votes.sort_by([("ip", "ascending"), ("n_sum", "descending"), ("name", "ascending")])
    ips, chosen = best["ip"].to_pylist(), best["name"].to_pylist()
    out: dict[str, str] = {}
    for ip, name in zip(ips, chosen, strict=True):  # one row per (address, name)
        out.setdefault(ip, name)
    return out


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
