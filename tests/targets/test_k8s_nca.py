# ruff: noqa: E501
"""The Kubernetes cross-check: IBM's network-config-analyzer (``nca``) reads the compiled
NetworkPolicies with the same pods and namespaces; its connectivity map must equal
cellwall's judge (with the modes) for every pod pair on every probed service."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from cellwall.model.inventory import Workload
from cellwall.policy.loader import load_policy
from cellwall.services.compile import compile_policy, write_artefacts
from tests.targets.common import AT, judged_blocked

PODS = {  # name: (namespace, ip, labels)
    "web-1": ("shop", "10.8.0.1", {"app": "shop", "role": "web"}),
    "web-2": ("shop", "10.8.0.2", {"app": "shop", "role": "web"}),
    "api-1": ("shop", "10.8.0.3", {"app": "shop", "role": "api"}),
    "db-1": ("shop", "10.8.0.4", {"app": "shop", "role": "db"}),
    "etl-1": ("data", "10.8.1.1", {"app": "etl"}),
    "dbg-1": ("data", "10.8.1.2", {"app": "etl", "debug": "yes"}),
}
POLICY = """
apiVersion: cellwall/v1
kind: Policy
metadata: {name: shop}
spec:
  scope: {app: shop}
  mode: full
  rules:
    - {id: web-api, from: {role: web}, to: {role: api}, services: [tcp/8443-8445]}
    - {id: api-db, from: {role: api}, to: {role: db}, services: [tcp/5432]}
    - {id: etl-db, from: {app: etl}, from_outside_scope: true, to: {role: db}, services: [tcp/5432]}
    - {id: api-any, from: {role: api}, to: {any: true}, services: [udp/53]}
---
apiVersion: cellwall/v1
kind: Policy
metadata: {name: data}
spec:
  scope: {app: etl}
  mode: full
  rules:
    - {id: etl-out, from: {app: etl}, to: {any: true}, from_outside_scope: false, services: [tcp/1-65535, udp/53]}
---
apiVersion: cellwall/v1
kind: Policy
metadata: {name: global}
spec:
  rules:
    - {id: no-debug-db, action: override-deny, from: {debug: "yes"}, to: {role: db}, services: [any]}
"""
SERVICES = [(6, 8443), (6, 8445), (6, 8446), (6, 5432), (6, 80), (17, 53)]
_NAMES = {6: "TCP", 17: "UDP"}


def _workloads() -> list[Workload]:
    return [
        Workload.of(f"{ns}/{n}", labels={**lbl, "namespace": ns}, addresses=[ip], kind="pod")
        for n, (ns, ip, lbl) in PODS.items()
    ]


def _inputs(tmp: Path) -> tuple[Path, Path]:
    pods = {"apiVersion": "v1", "kind": "PodList", "items": [
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": n, "namespace": ns, "labels": lbl},
         "spec": {"containers": [{"name": "c", "image": "x"}]},
         "status": {"podIP": ip, "podIPs": [{"ip": ip}]}}
        for n, (ns, ip, lbl) in PODS.items()
    ]}  # fmt: skip
    nss = {"apiVersion": "v1", "kind": "NamespaceList", "items": [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}}
        for ns in sorted({v[0] for v in PODS.values()})
    ]}  # fmt: skip
    (tmp / "pods.yaml").write_text(yaml.safe_dump(pods))
    (tmp / "ns.yaml").write_text(yaml.safe_dump(nss))
    return tmp / "pods.yaml", tmp / "ns.yaml"


def _allows(conn: str, proto: int, port: int) -> bool:
    if conn.strip() == "All connections":
        return True
    for protos, ports in re.findall(
        r"\{protocols:([A-Za-z,]+?)(?:,dst_ports:([0-9,\-]+))?\}", conn
    ):
        if _NAMES[proto] not in protos.split(","):
            continue
        if not ports:
            return True
        for part in ports.split(","):
            lo, _, hi = part.partition("-")
            if int(lo) <= port <= int(hi or lo):
                return True
    return False


def test_nca_connectivity_equals_judge(tmp_path: Path) -> None:
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "p.yaml").write_text(POLICY)
    workloads = _workloads()
    res = load_policy([tmp_path / "policy"], workloads=workloads)
    assert not [d for d in res.diagnostics if d.severity == "error"], res.diagnostics
    arts = compile_policy(res.policy_set, workloads, "k8s", at=AT, today=AT.date())
    write_artefacts(arts, tmp_path / "out")
    pods, nss = _inputs(tmp_path)
    nca = shutil.which("nca") or str(Path(__import__("sys").executable).parent / "nca")
    r = subprocess.run(
        [nca, "--connectivity", str(tmp_path / "out"), "-p", str(pods), "-n", str(nss),
         "-o", "txt_no_fw_rules"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    conns: dict[tuple[str, str], str] = {}
    for line in r.stdout.splitlines():
        m = re.match(r"(\S+)\[Pod\] => (\S+)\[Pod\] : (.*)$", line)
        if m:
            conns[(m[1], m[2])] = conns.get((m[1], m[2]), "") + m[3]
    assert conns, r.stdout + r.stderr
    ip = {f"{ns}/{n}": v[1] for n, v in PODS.items() for ns in (v[0],)}
    pairs = [(a, b) for a in ip for b in ip if a != b]
    probes = [(ip[a], ip[b], p, port) for a, b in pairs for p, port in SERVICES]
    blocked = iter(judged_blocked(res.policy_set, workloads, probes))
    wrong = []
    for a, b in pairs:
        for p, port in SERVICES:
            want = not next(blocked)
            got = _allows(conns.get((a, b), ""), p, port)
            if want != got:
                wrong.append((a, b, p, port, want, got))
    assert not wrong, wrong
    assert any(_allows(c, 6, 5432) for c in conns.values())
