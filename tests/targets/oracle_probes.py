"""Probes for the semantic oracles: the lab's own probe generation, without namespaces.

:func:`lab_probes` plans a lab (:func:`cellwall.enforce.lab_plan.plan_lab`: class
representatives, the address ends for IP lists, the unmanaged space and the management tier,
and the probe points: both ends of every port range and one past) and lists its (client,
server, protocol, port) probes over IPv4 and IPv6. :func:`compare` holds an oracle's
decisions to the judge's: a probe whose deciding rule the target reported unsupported is
listed apart, never counted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from cellwall.enforce.lab_plan import LabHost, LabPlan, plan_lab
from cellwall.model.inventory import Workload
from cellwall.model.policy import PolicySet
from cellwall.policy.judge import judge
from cellwall.services.compile import compile_policy, make_estate
from cellwall.targets.plan import Estate

ECHO = {1: 8, 58: 128}


@dataclass(frozen=True, slots=True)
class OracleProbe:
    client: str
    server: str
    src: str
    dst: str
    proto: int
    port: int  # the ICMP type for ICMP


@dataclass
class Comparison:
    probes: int = 0
    agreed: int = 0
    through: int = 0
    wrong: list[tuple[OracleProbe, str | None, bool, bool]] = field(default_factory=list)
    apart: list[tuple[OracleProbe, str | None]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"{self.probes} probes, {self.agreed} agreed ({self.through} allowed), "
            f"{len(self.wrong)} disagreements, {len(self.apart)} under unsupported rules"
        ]
        for p, rule, want, got in self.wrong[:30]:
            lines.append(
                f"DISAGREE {p.client} → {p.server} {p.proto}/{p.port} ({p.src} → {p.dst}): "
                f"judge {'blocked' if want else 'allowed'} (rule {rule or '-'}), "
                f"target {'blocked' if got else 'allowed'}"
            )
        return "\n".join(lines)


def lab_probes(
    ps: PolicySet, workloads: Sequence[Workload], at: datetime, sample: int | None = None
) -> tuple[LabPlan, list[OracleProbe]]:
    plan = plan_lab(ps, workloads, sample=sample, at=at)
    out = []
    for c, s in plan.pairs:
        for proto, port in plan.points:
            for fam in (4, 6):
                if (proto == 1 and fam == 6) or (proto == 58 and fam == 4):
                    continue
                src, dst = c.address(fam), s.address(fam)
                if src and dst:
                    n = ECHO[proto] if port is None else port
                    out.append(OracleProbe(c.name, s.name, src, dst, proto, n))
    return plan, out


def compile_for_plan(
    plan: LabPlan, target: str, at: datetime, allow_expired: bool = False, per_host: bool = True
) -> tuple[list[str], dict[str, str], Estate]:
    """The ``target`` objects of every class the plan's probes reach (host by host, or in
    one go for a target that writes the whole estate at once), the rules the target reported
    unsupported (id: reason), and the estate they were compiled from."""
    estate = make_estate(plan.policy, plan.workloads, at)
    texts: list[str] = []
    unsupported: dict[str, str] = {}
    for host in [h.name for h in plan.hosts] if per_host else [None]:
        arts = compile_policy(
            plan.policy,
            plan.workloads,
            target,
            host=host,
            at=at,
            allow_expired=allow_expired,
            today=at.date(),
            estate=estate,
        )
        texts += [f.text for f in arts.files]
        unsupported.update({u.rule_id: u.reason for u in arts.unsupported})
    return texts, unsupported, estate


class Oracle(Protocol):
    def allowed(self, src: str, dst: str, proto: int, port: int) -> bool: ...


def check_target(
    ps: PolicySet,
    workloads: Sequence[Workload],
    at: datetime,
    sample: int | None = None,
    allow_expired: bool = False,
    *,
    target: str,
    oracle: Callable[[list[str], dict[str, dict[str, str]]], Oracle],
    per_host: bool = True,
    apart: Callable[[Estate], Mapping[str, str]] | None = None,
) -> Comparison:
    """The lab's probes for the estate, ``target`` compiled for them, and the ``oracle`` (made
    from the compiled texts and the plan's endpoints) held to the judge. ``apart`` names more
    rules to leave out of the count (what the oracle cannot probe), from the estate."""
    plan, probes = lab_probes(ps, workloads, at, sample)
    texts, unsupported, estate = compile_for_plan(plan, target, at, allow_expired, per_host)
    if apart is not None:
        for rule, reason in apart(estate).items():
            unsupported.setdefault(rule, reason)
    return compare(plan, probes, oracle(texts, endpoints(plan)).allowed, unsupported)


def endpoints(plan: LabPlan) -> dict[str, dict[str, str]]:
    """Address → labels of every workload of the (rewritten) inventory at the plan's time."""
    return {
        a.ip: dict(w.labels.items())
        for w in plan.workloads
        for a in w.addresses
        if a.covers(plan.at)
    }


def judged(plan: LabPlan, probes: Sequence[OracleProbe]) -> list[tuple[str | None, bool]]:
    """(deciding rule, blocked) from the judge, with the modes."""
    icmp = [p.proto in (1, 58) for p in probes]
    t = pa.table(
        {
            "client_ip": [p.src for p in probes],
            "server_ip": [p.dst for p in probes],
            "proto": pa.array([p.proto for p in probes], pa.uint8()),
            "server_port": pa.array(
                [-1 if i else p.port for p, i in zip(probes, icmp, strict=True)], pa.int32()
            ),
            "client_port": pa.array(
                [p.port if i else -1 for p, i in zip(probes, icmp, strict=True)], pa.int32()
            ),
            "start": pa.array([plan.at] * len(probes), pa.timestamp("us", tz="UTC")),
        }
    )
    out = judge(t, plan.policy, plan.workloads)
    return list(zip(out["rule_id"].to_pylist(), map(bool, out["blocked"].to_pylist()), strict=True))


def compare(
    plan: LabPlan,
    probes: Sequence[OracleProbe],
    allowed: Callable[[str, str, int, int], bool],
    unsupported: Mapping[str, str],
) -> Comparison:
    """The oracle's decision against the judge's ``blocked`` on every probe. Rules the target
    reported unsupported are apart; ``(not-allowed)`` puts apart the undecided probes on
    protocols other than TCP, UDP and SCTP (what that entry is about)."""
    res = Comparison(probes=len(probes))
    for p, (rule, want) in zip(probes, judged(plan, probes), strict=True):
        if rule in unsupported or (
            rule is None and "(not-allowed)" in unsupported and p.proto not in (6, 17, 132)
        ):
            res.apart.append((p, rule))
            continue
        got = not allowed(p.src, p.dst, p.proto, p.port)
        res.through += not got
        if got == want:
            res.agreed += 1
        else:
            res.wrong.append((p, rule, want, got))
    return res


def names(hosts: Sequence[LabHost]) -> list[str]:
    return [h.name for h in hosts]


def demo_estate(tmp: Path) -> tuple[PolicySet, list[Workload], datetime]:
    """The demo's inventory (seed 11) and policy, and the instant every workload is up."""
    from datetime import UTC

    from cellwall.demo import DemoConfig, generate
    from cellwall.demo.policy_docs import demo_policy_yaml
    from cellwall.inventory.loader import load_inventory_files
    from cellwall.policy.loader import load_policy_texts
    from cellwall.services.compile import _demo_instant

    start = datetime(2026, 11, 2, tzinfo=UTC)
    res = generate(tmp / "estate", DemoConfig(seed=11, start=start, days=1, flows=2000))
    workloads = list(load_inventory_files([res.documents["inventory"]]).workloads)
    ps = load_policy_texts(demo_policy_yaml(), workloads=workloads).policy_set
    return ps, workloads, _demo_instant(workloads) or start


EDGE_POLICY = """
apiVersion: cellwall/v1
kind: PolicySettings
metadata: {name: settings}
spec:
  default_mode: full
  management:
    admin_networks: [10.99.0.0/24]
    services: [tcp/22]
    controllers: [10.98.0.10]
    control_services: [tcp/7443]
---
apiVersion: cellwall/v1
kind: Policy
metadata: {name: shop}
spec:
  scope: {app: shop}
  mode: full
  rules:
    - id: lan-to-api
      from: {cidrs: [10.0.0.0/8]}
      to: {role: api}
      services: [tcp/8443]
---
apiVersion: cellwall/v1
kind: Policy
metadata: {name: tools}
spec:
  scope: {app: tools}
  mode: visibility
  rules: []
"""


def edge_estate() -> tuple[PolicySet, list[Workload]]:
    """Where label-based targets went wrong: a CIDR rule whose range holds workloads (a CIDR
    also matches them), a full-mode workload inside the admin networks, and a workload
    that is a controller."""
    from cellwall.policy.loader import load_policy_texts

    workloads = [
        Workload.of("api-1", labels={"app": "shop", "role": "api"}, addresses=["10.20.1.11"]),
        Workload.of("tool-1", labels={"app": "tools", "role": "x"}, addresses=["10.30.0.5"]),
        Workload.of("adm-1", labels={"app": "shop", "role": "admin"}, addresses=["10.99.0.7"]),
        Workload.of("ctl-1", labels={"app": "shop", "role": "ctl"}, addresses=["10.98.0.10"]),
    ]
    loaded = load_policy_texts({"edge.yaml": EDGE_POLICY}, workloads=workloads)
    assert loaded.ok, loaded.errors
    return loaded.policy_set, workloads
