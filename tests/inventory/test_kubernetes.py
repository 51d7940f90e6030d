"""Kubernetes manifests and object lists as workloads."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from cellwall.inventory.identity import Resolver
from cellwall.inventory.loader import load_inventory_files, load_inventory_text
from cellwall.model.inventory import AddressLease
from cellwall.model.labels import Labels
from tests.flowfiles import TESTDATA

MANIFESTS = """\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels:
    kubernetes.io/metadata.name: shop
    env: prod
    team: payments
---
apiVersion: v1
kind: Pod
metadata:
  name: web-7d9f8-abcde
  namespace: shop
  labels:
    app.kubernetes.io/name: web
    app.kubernetes.io/component: frontend
    pod-template-hash: 7d9f8
    team: checkout
  ownerReferences:
  - apiVersion: apps/v1
    kind: ReplicaSet
    name: web-7d9f8
    controller: true
spec:
  containers:
  - name: web
    image: nginx:1.27
    ports:
    - containerPort: 8080
      protocol: TCP
  nodeName: node-1
status:
  phase: Running
  hostIP: 192.168.49.2
  podIP: 10.244.1.7
  podIPs:
  - ip: 10.244.1.7
  - ip: fd00:10:244:1::7
  startTime: "2026-11-01T10:00:00Z"
---
apiVersion: v1
kind: Pod
metadata:
  name: migrate-x1
  namespace: shop
  labels: {job-name: migrate}
spec:
  containers: [{name: m, image: busybox}]
status:
  phase: Succeeded
  podIP: 10.244.1.9
  startTime: "2026-11-01T09:00:00Z"
  containerStatuses:
  - name: m
    ready: false
    restartCount: 0
    state:
      terminated:
        exitCode: 0
        reason: Completed
        startedAt: "2026-11-01T09:00:01Z"
        finishedAt: "2026-11-01T09:05:00Z"
---
apiVersion: v1
kind: Pod
metadata: {name: kube-proxy-zz, namespace: kube-system, labels: {k8s-app: kube-proxy}}
spec: {hostNetwork: true, containers: [{name: p, image: kube-proxy}]}
status: {phase: Running, podIP: 192.168.49.2, startTime: "2026-11-01T00:00:00Z"}
---
apiVersion: v1
kind: Pod
metadata: {name: pending-1, namespace: shop}
spec: {containers: [{name: p, image: x}]}
status: {phase: Pending}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop, labels: {app: ignored-deployment-label}}
spec:
  replicas: 3
  selector: {matchLabels: {app.kubernetes.io/name: web}}
  template:
    metadata:
      labels: {app.kubernetes.io/name: web, app.kubernetes.io/component: frontend}
    spec:
      containers: [{name: web, image: nginx}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report, namespace: shop}
spec:
  schedule: "0 * * * *"
  jobTemplate:
    spec:
      template:
        metadata: {labels: {app: report}}
        spec: {containers: [{name: r, image: x}], restartPolicy: Never}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop, creationTimestamp: "2026-10-01T00:00:00Z"}
spec:
  type: ClusterIP
  clusterIP: 10.96.12.34
  clusterIPs: [10.96.12.34]
  selector: {app.kubernetes.io/name: web}
  ports: [{port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: db-headless, namespace: shop}
spec: {clusterIP: None, selector: {app: db}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: shop}
spec: {podSelector: {}, policyTypes: [Ingress]}
"""
T = datetime(2026, 11, 1, tzinfo=UTC)


def test_manifests_become_workloads() -> None:
    r = load_inventory_text(MANIFESTS, "k8s.yaml")
    assert r.errors == []
    by = {w.name: w for w in r.workloads}
    assert sorted(by) == [
        "kube-system/kube-proxy-zz",
        "shop/cronjob/report",
        "shop/deployment/web",
        "shop/migrate-x1",
        "shop/pending-1",
        "shop/service/db-headless",
        "shop/service/web",
        "shop/web-7d9f8-abcde",
    ]
    web = by["shop/web-7d9f8-abcde"]
    assert web.kind == "pod" and web.source.line == 10
    # own labels win over the namespace's; aliases map the recommended labels
    assert web.labels == Labels.of(
        {"app": "web", "role": "frontend", "pod-template-hash": "7d9f8", "team": "checkout"},
        namespace="shop",
        env="prod",
    )
    start = T.replace(hour=10)
    assert web.addresses == (
        AddressLease("10.244.1.7", start),
        AddressLease("fd00:10:244:1::7", start),
    )
    assert by["shop/migrate-x1"].addresses == (
        AddressLease("10.244.1.9", T.replace(hour=9), T.replace(hour=9, minute=5)),
    )
    assert by["kube-system/kube-proxy-zz"].addresses == ()
    assert by["kube-system/kube-proxy-zz"].labels == Labels.of(
        app="kube-proxy", namespace="kube-system"
    )
    assert by["shop/pending-1"].addresses == ()
    dep = by["shop/deployment/web"]
    assert (dep.kind, dep.addresses) == ("deployment", ())
    assert dep.labels == Labels.of(
        app="web", role="frontend", namespace="shop", env="prod", team="payments"
    )
    assert by["shop/cronjob/report"].labels["app"] == "report"
    svc = by["shop/service/web"]
    assert svc.kind == "service"
    assert svc.addresses == (AddressLease("10.96.12.34", datetime(2026, 10, 1, tzinfo=UTC)),)
    assert svc.labels == Labels.of(app="web", namespace="shop", env="prod", team="payments")
    assert by["shop/service/db-headless"].addresses == ()
    info = {(d.code, d.line) for d in r.diagnostics}
    assert ("k8s-host-network", 65) in info
    assert any(d.code == "k8s-skipped" and "NetworkPolicy" in d.message for d in r.diagnostics)


def test_bad_object_is_reported_and_the_others_load() -> None:
    text = (
        "apiVersion: v1\nkind: PodList\nitems:\n"
        "- metadata: {name: a, namespace: x}\n  status: {podIP: 10.0.0.1}\n"
        "- metadata: {namespace: x}\n"
        "- metadata: {name: c, namespace: x}\n  status: {podIP: 10.0.0.999}\n"
        "- metadata: {name: d, namespace: x, labels: {app: [1]}}\n"
    )
    r = load_inventory_text(text, "pods.yaml")
    assert [w.name for w in r.workloads] == ["x/a"]
    assert [(d.code, d.line) for d in r.errors] == [
        ("missing-field", 6),
        ("k8s-object", 7),
        ("bad-type", 9),
    ]
    assert "10.0.0.999" in r.errors[1].message


REAL = TESTDATA / "k8s" / "nca" / "tests" / "k8s_testcases"


@pytest.mark.real
def test_real_pod_and_service_lists_with_ip_reuse() -> None:
    base = REAL / "example_podlist" / "services1"
    r = load_inventory_files([base / "pods_list.yaml", base / "services_list.yaml"])
    assert r.errors == []
    by = {w.name: w for w in r.workloads}
    assert len([w for w in r.workloads if w.kind == "pod"]) == 11
    assert by["default/service/demo"].ips() == ("10.111.43.154",)
    assert by["default/demo-764c97f6fd-452fq"].labels["app"] == "demo"
    ctrl = by["ingress-nginx/ingress-nginx-controller-6d5f55986b-5twct"]
    assert ctrl.labels["app"] == "ingress-nginx" and ctrl.labels["role"] == "controller"
    # 172.17.0.3 served a finished admission job first, then the controller
    resolver = Resolver(r.workloads)
    ts = pa.array(
        [datetime(2022, 1, 27, 18, 7, 5, tzinfo=UTC), datetime(2022, 1, 27, 18, 8, tzinfo=UTC)],
        pa.timestamp("us", tz="UTC"),
    )
    owners = resolver.owners(pa.array(["172.17.0.3", "172.17.0.3"]), ts).to_pylist()
    assert owners == [
        "ingress-nginx/ingress-nginx-admission-create-jxzfd",
        "ingress-nginx/ingress-nginx-controller-6d5f55986b-5twct",
    ]
    # host-network pods do not claim the node address
    assert resolver.owners(pa.array(["192.168.49.2"]), ts[:1]).to_pylist() == [None]


@pytest.mark.real
def test_real_json_pod_and_namespace_lists() -> None:
    base = REAL / "all_resources_in_same_dir"
    r = load_inventory_files([base / "pods_list.json", base / "ns_list.json"])
    assert r.errors == []
    pods = [w for w in r.workloads if w.kind == "pod"]
    assert len(pods) > 10
    default = [w for w in pods if w.labels["namespace"] == "default"]
    assert default and all(w.labels["unique-label"] == "defaultNameSpace" for w in default)
    first = next(w for w in pods if w.name == "default/cog-agents-d54st")
    assert first.source.line == 5 and first.labels["tier"] == "agent"


@pytest.mark.real
def test_real_deployment_manifests() -> None:
    path = (
        REAL
        / "example_policies/onlineboutique-test-connectivity-wo-fw-rules/kubernetes-manifests.yaml"
    )
    r = load_inventory_files([path])
    assert r.errors == []
    kinds = {w.kind for w in r.workloads}
    assert kinds == {"deployment", "service"}
    dep = next(w for w in r.workloads if w.name == "default/deployment/emailservice")
    assert dep.labels == Labels.of(app="emailservice", namespace="default")
    assert dep.source.line == 19
