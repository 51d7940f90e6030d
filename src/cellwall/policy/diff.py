"""Semantic diff of two policy versions: what becomes allowed or blocked, at class level and
on observed conversations.

Both versions are judged by the same evaluator over the same probe set, so the diff cannot
disagree with replay. The probes are every label class of the inventory (one stand-in
workload per class, so that ``workload:`` selectors keep their workloads apart), one address
per CIDR boundary that either version names (the first address of each CIDR and of each
``except``, plus one public and one private address that no list names), and one service per
service atom of the two versions together. A class-level change is reported as (client,
server, service, before, after); services are merged into ranges where neighbouring atoms
change alike. ``fqdn`` terms need DNS evidence and are not probed here; observed
conversations cover them.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from cellwall.model.inventory import Workload
from cellwall.model.policy import ICMP_PROTOS, PolicySet
from cellwall.policy.classes import ClassTable, pinned_names
from cellwall.policy.ir import _all_selectors, _all_services
from cellwall.policy.judge import Judge
from cellwall.policy.service_atoms import ServiceAtoms

__all__ = ["PolicyDiff", "semantic_diff"]

_PROBE_NET = ipaddress.ip_network("198.18.0.0/15")  # RFC 2544 benchmarking: never a real peer
_AT = datetime(2000, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")


@dataclass
class PolicyDiff:
    """Class-level changes and, when conversations were given, observed changes."""

    changes: list[dict[str, str]] = field(default_factory=list)
    observed: Counter[tuple[str, str]] = field(default_factory=Counter)
    observed_examples: list[dict[str, Any]] = field(default_factory=list)
    probes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "class_changes": self.changes,
            "became_allowed": sum(1 for c in self.changes if c["after"] == "allowed"),
            "became_blocked": sum(1 for c in self.changes if c["before"] == "allowed"),
            "observed_changes": [
                {"before": b, "after": a, "conversations": n}
                for (b, a), n in sorted(self.observed.items())
            ],
            "observed_examples": self.observed_examples,
            "probes": self.probes,
        }

    def __str__(self) -> str:
        lines = [f"{len(self.changes)} class-level change(s) over {self.probes} probes"]
        for c in self.changes:
            lines.append(
                f"  {c['client']} → {c['server']} {c['service']}: {c['before']} → {c['after']}"
            )
        for (b, a), n in sorted(self.observed.items()):
            lines.append(f"  observed: {n} conversation(s) {b} → {a}")
        return "\n".join(lines)


def _stand_ins(workloads: Sequence[Workload], pins: set[str]) -> tuple[list[Workload], list[str]]:
    table = ClassTable(workloads, pins)
    hosts = _PROBE_NET.hosts()
    out, names = [], []
    for i, (labels, pin) in enumerate(table.keys):
        name = pin if pin is not None else f"class-{i}"
        out.append(Workload.of(name, labels=labels, addresses=[str(next(hosts))]))
        names.append(table.name(i))
    return out, names


def _addresses(a: PolicySet, b: PolicySet) -> list[str]:
    cidrs: set[str] = set()
    for ps in (a, b):
        for il in ps.iplists:
            cidrs.update(il.cidrs, il.except_)
        for s in _all_selectors(ps):
            cidrs.update(s.cidrs, s.except_)
        m = ps.settings.management
        cidrs.update(m.admin_networks, m.controllers)
    out = {"192.0.2.1", "10.255.255.254"}
    for c in cidrs:
        net = ipaddress.ip_network(c, strict=False)
        out.add(str(net.network_address))
        if net.num_addresses > 2:
            out.add(str(net.network_address + 1))
        top = int(net.broadcast_address)
        if top < (1 << net.max_prefixlen) - 1:
            out.add(
                str(
                    ipaddress.ip_address(top + 1)
                    if net.version == 6
                    else ipaddress.IPv4Address(top + 1)
                )
            )
    return sorted(out)


def _service_probes(atoms: ServiceAtoms) -> list[tuple[int, int, str]]:
    taken = {s.proto for s in atoms.slots}
    other = next(p for p in range(256) if p not in taken)
    out = []
    for slot in atoms.slots:
        proto = slot.proto if slot.proto is not None else other
        out.append((proto, -1, atoms.describe(slot.base)))
        for j, lo in enumerate(slot.cuts):
            out.append((proto, lo, atoms.describe(slot.base + 1 + j)))
    return out


def _probe_table(ends: list[str], services: list[tuple[int, int, str]]) -> pa.Table:
    n, s = len(ends), len(services)
    grid = np.meshgrid(np.arange(n), np.arange(n), np.arange(s), indexing="ij")
    ci, si, vi = (g.ravel() for g in grid)
    proto = np.asarray([p for p, _, _ in services], np.int64)[vi]
    port = np.asarray([q for _, q, _ in services], np.int64)[vi]
    icmp = np.isin(proto, ICMP_PROTOS)
    e = pa.array(ends, pa.string())
    return pa.table(
        {
            "client_ip": e.take(pa.array(ci)),
            "server_ip": e.take(pa.array(si)),
            "proto": pa.array(proto, pa.uint8()),
            "server_port": pa.array(np.where(icmp, -1, port), pa.int32()),
            "client_port": pa.array(np.where(icmp, port, 40000), pa.int32()),
            "start": pa.array(np.full(len(ci), _AT), TS),
            "svc": pa.array(vi, pa.int32()),
        }
    )


def _changes(
    probes: pa.Table, before: pa.Table, after: pa.Table, names: dict[str, str], services: list[str]
) -> list[dict[str, str]]:
    b = before["verdict"].to_pylist()
    a = after["verdict"].to_pylist()
    diff = [i for i in range(len(b)) if a[i] != b[i]]
    rows: dict[tuple[str, str, str, str], list[int]] = {}
    cip, sip, svc = probes["client_ip"], probes["server_ip"], probes["svc"]
    for i in diff:
        key = (names[cip[i].as_py()], names[sip[i].as_py()], b[i], a[i])
        rows.setdefault(key, []).append(int(svc[i].as_py()))
    out = []
    for (c, s, bv, av), svcs in sorted(rows.items()):
        for text in sorted({services[x] for x in svcs}):
            out.append({"client": c, "server": s, "service": text, "before": bv, "after": av})
    return out


def semantic_diff(
    a: PolicySet,
    b: PolicySet,
    workloads: Sequence[Workload],
    conversations: pa.Table | None = None,
    *,
    examples: int = 20,
) -> PolicyDiff:
    """What changes from ``a`` to ``b`` over these workloads (and these conversations)."""
    pins = pinned_names(_all_selectors(a)) | pinned_names(_all_selectors(b))
    stand_ins, class_names = _stand_ins(workloads, pins)
    addresses = _addresses(a, b)
    ends = [w.addresses[0].ip for w in stand_ins] + addresses
    names = {w.addresses[0].ip: n for w, n in zip(stand_ins, class_names, strict=True)}
    names.update({ip: f"address {ip}" for ip in addresses})
    atoms = ServiceAtoms([*_all_services(a), *_all_services(b)])
    services = _service_probes(atoms)
    probes = _probe_table(ends, services)
    with Judge(a, stand_ins) as ja, Judge(b, stand_ins) as jb:
        before, after = ja.judge(probes), jb.judge(probes)
    result = PolicyDiff(probes=probes.num_rows)
    result.changes = _changes(probes, before, after, names, [d for _, _, d in services])
    if conversations is not None and conversations.num_rows:
        _observed(result, a, b, workloads, conversations, examples)
    return result


def _observed(
    result: PolicyDiff,
    a: PolicySet,
    b: PolicySet,
    workloads: Sequence[Workload],
    conv: pa.Table,
    examples: int,
) -> None:
    with Judge(a, workloads) as ja, Judge(b, workloads) as jb:
        ident = ja.identify(conv)
        before = ja.judge(ident)["verdict"].cast(pa.string()).to_pylist()
        after = jb.judge(conv)["verdict"].cast(pa.string()).to_pylist()
    changed = [i for i in range(len(before)) if before[i] != after[i]]
    for i in changed:
        result.observed[(before[i], after[i])] += 1
    cols = ["client_ip", "server_ip", "service", "client_workload", "server_workload", "start"]
    keep = ident.select([c for c in cols if c in ident.column_names])
    for i in changed[:examples]:
        row = {k: v for k, v in keep.slice(i, 1).to_pylist()[0].items()}
        row["start"] = str(row.get("start"))
        row.update(before=before[i], after=after[i])
        result.observed_examples.append(row)
