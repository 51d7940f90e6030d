# ruff: noqa: E501
"""The Kubernetes cross-check: IBM's network-config-analyzer (``nca``) reads the compiled
NetworkPolicies with the same pods and namespaces; its connectivity map must equal
cellwall's judge (with the modes) for every pod pair on every probed service.

The fixture holds the cases where label-based targets went wrong: ``cidrs`` and IP-list
terms whose range holds pods (``lan-api``, ``api-lan``: a pod is the workload, never an
IP-list member), a pod inside the admin networks and a pod that is a controller. Whether an
``ipBlock`` matches pod addresses is the CNI's choice (NCA: no; Calico: yes), so a small
NetworkPolicy reader (:func:`_np_allowed`) holds the objects to the judge under both
readings."""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
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
    "tool-1": ("tools", "10.8.2.1", {"app": "tools"}),  # visibility: no object
    "adm-1": ("ops", "10.99.0.7", {"app": "ops", "role": "admin"}),  # in the admin networks
    "ctl-1": ("ops", "10.98.0.10", {"app": "ops", "role": "ctl"}),  # a controller
}
POLICY = """
apiVersion: cellwall/v1
kind: PolicySettings
metadata: {name: settings}
spec:
  management:
    admin_networks: [10.99.0.0/24]
    services: [tcp/22]
    controllers: [10.98.0.10]
    control_services: [tcp/7443]
---
apiVersion: cellwall/v1
kind: IPList
metadata: {name: lan}
spec: {cidrs: [10.8.0.0/16]}
---
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
    - {id: lan-api, from: {cidrs: [10.0.0.0/8]}, to: {role: api}, services: [tcp/9000]}
    - {id: api-lan, from: {role: api}, to: {iplist: lan}, services: [tcp/9100]}
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
---
apiVersion: cellwall/v1
kind: Policy
metadata: {name: tools}
spec: {scope: {app: tools}, mode: visibility, rules: []}
---
apiVersion: cellwall/v1
kind: Policy
metadata: {name: ops}
spec: {scope: {app: ops}, mode: full, rules: []}
"""
SERVICES = [(6, 8443), (6, 8445), (6, 8446), (6, 5432), (6, 80), (17, 53), (6, 22), (6, 7443),
            (6, 9000), (6, 9100)]  # fmt: skip
_NAMES = {6: "TCP", 17: "UDP", 132: "SCTP"}


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


def _compiled(tmp: Path) -> tuple[Any, list[Workload], Path]:
    (tmp / "policy").mkdir()
    (tmp / "policy" / "p.yaml").write_text(POLICY)
    workloads = _workloads()
    res = load_policy([tmp / "policy"], workloads=workloads)
    assert not [d for d in res.diagnostics if d.severity == "error"], res.diagnostics
    arts = compile_policy(res.policy_set, workloads, "k8s", at=AT, today=AT.date())
    assert arts.unsupported == [], arts.unsupported
    write_artefacts(arts, tmp / "out")
    return res.policy_set, workloads, tmp / "out"


def _probes() -> tuple[list[tuple[str, str]], dict[str, str]]:
    ip = {f"{ns}/{n}": v[1] for n, v in PODS.items() for ns in (v[0],)}
    return [(a, b) for a in ip for b in ip if a != b], ip


def test_nca_connectivity_equals_judge(tmp_path: Path) -> None:
    ps, workloads, out = _compiled(tmp_path)
    pods, nss = _inputs(tmp_path)
    nca = shutil.which("nca") or str(Path(__import__("sys").executable).parent / "nca")
    r = subprocess.run(
        [nca, "--connectivity", str(out), "-p", str(pods), "-n", str(nss),
         "-o", "txt_no_fw_rules"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    conns: dict[tuple[str, str], str] = {}
    for line in r.stdout.splitlines():
        m = re.match(r"(\S+)\[Pod\] => (\S+)\[Pod\] : (.*)$", line)
        if m:
            conns[(m[1], m[2])] = conns.get((m[1], m[2]), "") + m[3]
    assert conns, r.stdout + r.stderr
    pairs, ip = _probes()
    probes = [(ip[a], ip[b], p, port) for a, b in pairs for p, port in SERVICES]
    blocked = iter(judged_blocked(ps, workloads, probes))
    wrong = []
    for a, b in pairs:
        for p, port in SERVICES:
            want = not next(blocked)
            got = _allows(conns.get((a, b), ""), p, port)
            if want != got:
                wrong.append((a, b, p, port, want, got))
    assert not wrong, wrong
    assert len(probes) == 720
    assert any(_allows(c, 6, 5432) for c in conns.values())
    assert _allows(conns[("ops/adm-1", "shop/db-1")], 6, 22)  # management:admin, by address
    assert _allows(conns[("shop/web-1", "ops/ctl-1")], 6, 7443)  # management:control


# -- a NetworkPolicy reader, with ipBlock matching pod addresses or not -------------------


def _selects(sel: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if sel is None:
        return True
    if any(labels.get(k) != v for k, v in sel.get("matchLabels", {}).items()):
        return False
    for e in sel.get("matchExpressions", []):
        k, op, vals = e["key"], e["operator"], e.get("values", [])
        ok = {
            "In": k in labels and labels[k] in vals,
            "NotIn": k not in labels or labels[k] not in vals,
            "Exists": k in labels,
            "DoesNotExist": k not in labels,
        }[op]
        if not ok:
            return False
    return True


def _in_block(block: dict[str, Any], addr: str) -> bool:
    a = ipaddress.ip_address(addr)
    nets = [ipaddress.ip_network(block["cidr"])]
    if not any(a in n for n in nets if n.version == a.version):
        return False
    return not any(
        a in e for e in map(ipaddress.ip_network, block.get("except", [])) if e.version == a.version
    )


def _np_allowed(
    docs: list[dict[str, Any]],
    eps: dict[str, tuple[str, dict[str, str]]],
    src: str,
    dst: str,
    proto: int,
    port: int,
    pod_ips: bool,
) -> bool:
    """The CNI's decision for ``src`` → ``dst`` (addresses; ``eps``: pod address →
    namespace and labels): the source pod's egress and the destination pod's ingress; an
    address that is no pod enforces nothing and is matched by ``ipBlock`` s only; an
    ``ipBlock`` matches a pod's address only with ``pod_ips``."""

    def side(me: str, peer: str, kind: str, key: str) -> bool:
        if me not in eps:
            return True
        ns, lbl = eps[me]
        mine = [
            d["spec"]
            for d in docs
            if d["metadata"]["namespace"] == ns
            and _selects(d["spec"]["podSelector"], lbl)
            and kind in d["spec"]["policyTypes"]
        ]
        if not mine:
            return True
        pns, plbl = eps.get(peer, ("", {}))
        for spec in mine:
            for rule in spec.get(kind.lower(), []):
                peers = rule.get(key)
                hit = peers is None or any(
                    ((pod_ips or peer not in eps) and _in_block(p["ipBlock"], peer))
                    if "ipBlock" in p
                    else (
                        peer in eps
                        and (pns == ns if "namespaceSelector" not in p else
                             _selects(p["namespaceSelector"], {"kubernetes.io/metadata.name": pns}))
                        and _selects(p.get("podSelector"), plbl)
                    )
                    for p in peers
                )  # fmt: skip
                ports = rule.get("ports")
                if hit and (
                    ports is None
                    or any(
                        x.get("protocol", "TCP") == _NAMES.get(proto)
                        and ("port" not in x or x["port"] <= port <= x.get("endPort", x["port"]))
                        for x in ports
                    )
                ):
                    return True
        return False

    return side(src, dst, "Egress", "to") and side(dst, src, "Ingress", "from")


def _pod_eps() -> dict[str, tuple[str, dict[str, str]]]:
    return {ip: (ns, lbl) for ns, ip, lbl in PODS.values()}


@pytest.mark.parametrize("pod_ips", [False, True], ids=["ipblock-not-pods", "ipblock-pods"])
def test_networkpolicies_equal_judge_whether_ipblocks_match_pods_or_not(
    tmp_path: Path, pod_ips: bool
) -> None:
    ps, workloads, out = _compiled(tmp_path)
    docs = [yaml.safe_load(f.read_text()) for f in sorted(out.rglob("*.yaml"))]
    pairs, ip = _probes()
    probes = [(ip[a], ip[b], p, port) for a, b in pairs for p, port in SERVICES]
    blocked = iter(judged_blocked(ps, workloads, probes))
    wrong = []
    for a, b in pairs:
        for p, port in SERVICES:
            want = not next(blocked)
            if want != _np_allowed(docs, _pod_eps(), ip[a], ip[b], p, port, pod_ips):
                wrong.append((a, b, p, port, want))
    assert not wrong, wrong


@pytest.mark.parametrize("pod_ips", [False, True], ids=["ipblock-not-pods", "ipblock-pods"])
@pytest.mark.parametrize("estate", ["fixture", "edge"])
def test_networkpolicies_equal_judge_on_the_lab_probes(estate: str, pod_ips: bool) -> None:
    """The lab's probes (class representatives, IP lists, the unmanaged space, the admin
    networks, the controllers; IPv4 and IPv6) through the NetworkPolicy reader."""
    from cellwall.services.compile import make_estate
    from tests.targets.common import fixture_estate
    from tests.targets.oracle_probes import compare, edge_estate, endpoints, lab_probes

    ps, workloads = fixture_estate() if estate == "fixture" else edge_estate()
    plan, probes = lab_probes(ps, workloads, AT)
    est = make_estate(plan.policy, plan.workloads, AT)
    docs, unsupported = [], {}
    for host in plan.hosts:
        arts = compile_policy(
            plan.policy, plan.workloads, "k8s", host=host.name, at=AT, today=AT.date(),
            estate=est,
        )  # fmt: skip
        docs += [yaml.safe_load(f.text) for f in arts.files]
        unsupported.update({u.rule_id: u.reason for u in arts.unsupported})
    for r in est.ir.rules:  # L7 narrowing: enforced at L4 by NetworkPolicy, not probed
        if any(x.http_methods or x.http_paths for x, _ in r.narrowed):
            unsupported.setdefault(r.id, "L7 HTTP")
    eps = {
        ip: (lbl.get("namespace", "default"), {k: v for k, v in lbl.items() if k != "namespace"})
        for ip, lbl in endpoints(plan).items()
    }
    res = compare(
        plan,
        probes,
        lambda s, d, p, n: _np_allowed(docs, eps, s, d, p, n, pod_ips),
        unsupported,
    )
    assert res.wrong == [], str(res)
    assert res.agreed > 400 and res.through > 50
