"""Kubernetes objects (YAML or JSON, single objects or ``*List``) as workloads.

=========================  ==========================================================  =========
object                     becomes                                                     addresses
=========================  ==========================================================  =========
Pod                        workload ``NS/NAME``, kind ``pod``, its labels              its IPs
Deployment, StatefulSet,   workload ``NS/KIND/NAME`` (kind lower-cased), the pod       none
DaemonSet, ReplicaSet,     template's labels: a *class* of pods that carries labels
Job, CronJob, RC           for conventions and policy, but owns no address
Service                    workload ``NS/service/NAME``, kind ``service``, labels =    cluster IPs
                           the selector
Namespace                  no workload; its labels are defaults for the objects in
                           that namespace (see :func:`inherit_namespace_labels`)
=========================  ==========================================================  =========

Every namespaced workload gets the label ``namespace=NS``. A pod's IPs (``status.podIPs``,
else ``status.podIP``) are owned from ``status.startTime``; a pod that has finished
(``Succeeded``/``Failed``) owns them until its last container's ``finishedAt``, because the
cluster hands the address to the next pod. Pods on the host network own no address: the
address is the node's. A service's cluster IPs are owned from its ``creationTimestamp``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from cellwall.errors import Diagnostic
from cellwall.inventory.nodes import N, ShapeError, diag
from cellwall.inventory.yaml_csv import node_time
from cellwall.model.inventory import AddressLease, Origin, Workload
from cellwall.model.labels import Labels, check_label_key, check_label_value

__all__ = ["CONTROLLERS", "K8sResult", "inherit_namespace_labels", "is_k8s_doc", "load_k8s_doc"]

CONTROLLERS = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}
WORKLOAD_KINDS = {"Pod", "Service", "Namespace", *CONTROLLERS}
_NS_NAME_LABEL = "kubernetes.io/metadata.name"  # redundant with our `namespace` label


@dataclass
class K8sResult:
    """What one Kubernetes document held."""

    workloads: list[Workload] = field(default_factory=list)
    namespaces: dict[str, Labels] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)  # (file, kind)


def is_k8s_doc(doc: N) -> bool:
    api, kind = doc.get("apiVersion"), doc.get("kind")
    if api is None or kind is None or not isinstance(api.value, str):
        return False
    return not api.value.startswith("cellwall/") and isinstance(kind.value, str)


def load_k8s_doc(doc: N, file: str, result: K8sResult | None = None) -> K8sResult:
    """Add the workloads of one Kubernetes object or list to ``result``."""
    result = result or K8sResult()
    kind = doc.get("kind")
    item_kind = ""
    if kind is not None and isinstance(kind.value, str) and kind.value.endswith("List"):
        item_kind = kind.value.removesuffix("List")  # PodList items may omit their kind
        items = doc.get("items")
        try:
            objects = items.seq("items") if items is not None and items.value is not None else []
        except ShapeError as exc:
            result.diagnostics.append(exc.diagnostic(file, doc))
            return result
    else:
        objects = [doc]
    for obj in objects:
        try:
            _object(obj, file, result, item_kind)
        except ShapeError as exc:
            result.diagnostics.append(exc.diagnostic(file, obj))
        except ValueError as exc:
            hint = "fix the object, or leave it out of the inventory"
            result.diagnostics.append(diag(file, obj, "k8s-object", str(exc), hint))
    return result


def _labels(node: N | None, where: str) -> dict[str, str]:
    """Labels of a Kubernetes ``labels`` map; an empty value means absent."""
    out: dict[str, str] = {}
    if node is None or node.value is None:
        return out
    for key, value in node.map(where).items():
        text = value.opt_text(f"{where}.{key}")
        if text is not None:
            try:
                out[check_label_key(key)] = check_label_value(key, text)
            except ValueError as exc:
                raise ShapeError(value, "bad-label", str(exc)) from None
    return out


def _object(obj: N, file: str, result: K8sResult, default_kind: str = "") -> None:
    kind = obj.get("kind")
    kind_name = kind.text("kind") if kind is not None else default_kind
    if kind_name not in WORKLOAD_KINDS:
        result.skipped[(file, kind_name or "<no kind>")] += 1
        return
    meta = obj.get("metadata")
    if meta is None:
        raise ShapeError(obj, "missing-field", f"a {kind_name} needs `metadata`")
    name_node = meta.get("name")
    if name_node is None:
        raise ShapeError(meta, "missing-field", f"a {kind_name} needs `metadata.name`")
    name = name_node.text("metadata.name")
    if kind_name == "Namespace":
        labels = _labels(meta.get("labels"), "metadata.labels")
        labels.pop(_NS_NAME_LABEL, None)
        result.namespaces[name] = Labels.of(labels)
        return
    ns_node = meta.get("namespace")
    ns = (ns_node.opt_text("metadata.namespace") if ns_node else None) or "default"
    origin = Origin(file, obj.line, obj.col)
    if kind_name == "Pod":
        labels = _labels(meta.get("labels"), "metadata.labels")
        leases = _pod_leases(obj, file, f"{ns}/{name}", result)
        wname, wkind = f"{ns}/{name}", "pod"
    elif kind_name == "Service":
        labels = _labels(obj.at("spec", "selector"), "spec.selector")
        leases = _service_leases(obj, meta)
        wname, wkind = f"{ns}/service/{name}", "service"
    else:
        path = CONTROLLERS[kind_name]
        labels = _labels(obj.at(*path, "metadata", "labels"), ".".join(path) + ".metadata.labels")
        leases = []
        wname, wkind = f"{ns}/{kind_name.lower()}/{name}", kind_name.lower()
    labels["namespace"] = ns
    result.workloads.append(Workload(wname, None, Labels.of(labels), tuple(leases), origin, wkind))


def _ips(nodes: Iterable[N | None]) -> list[str]:
    out: list[str] = []
    for n in nodes:
        text = n.opt_text("an IP") if n is not None else None
        if text and text != "None" and text not in out:
            out.append(text)
    return out


def _pod_leases(obj: N, file: str, name: str, result: K8sResult) -> list[AddressLease]:
    status = obj.get("status")
    if status is None or status.value is None:
        return []
    pod_ips = status.get("podIPs")
    listed = [ip.get("ip") for ip in pod_ips.seq("status.podIPs")] if pod_ips else []
    ips = _ips(listed or [status.get("podIP")])
    if not ips:
        return []
    host_network = obj.at("spec", "hostNetwork")
    if host_network is not None and str(host_network.value).lower() == "true":
        msg = f"pod `{name}` uses the host network; its address {ips[0]} is the node's"
        hint = "load the node (a YAML/CSV workload) to own that address"
        result.diagnostics.append(diag(file, obj, "k8s-host-network", msg, hint, "info"))
        return []
    start = node_time(status.get("startTime"))
    until = None
    phase = status.get("phase")
    if phase is not None and phase.value in ("Succeeded", "Failed"):
        until = _finished(status)
        if until is None or (start is not None and until <= start):
            msg = f"pod `{name}` has finished and its end time is unknown; it owns no address"
            hint = "export pods with status.containerStatuses"
            result.diagnostics.append(diag(file, obj, "k8s-no-address", msg, hint, "info"))
            return []
    return [AddressLease(ip, start, until) for ip in ips]


def _finished(status: N) -> datetime | None:
    ends: list[datetime] = []
    statuses = status.get("containerStatuses")
    for cs in statuses.seq("status.containerStatuses") if statuses else []:
        end = node_time(cs.at("state", "terminated", "finishedAt"))
        if end is None:
            return None
        ends.append(end)
    return max(ends) if ends else None


def _service_leases(obj: N, meta: N) -> list[AddressLease]:
    spec = obj.get("spec")
    if spec is None or spec.value is None:
        return []
    listed = spec.get("clusterIPs")
    ips = _ips(listed.seq("spec.clusterIPs") if listed else [spec.get("clusterIP")])
    start = node_time(meta.get("creationTimestamp"))
    return [AddressLease(ip, start, None) for ip in ips]


def inherit_namespace_labels(
    workloads: Iterable[Workload], namespaces: Mapping[str, Labels]
) -> list[Workload]:
    """Give each workload its namespace's labels where it does not set those keys itself."""
    out: list[Workload] = []
    for w in workloads:
        ns = w.labels.get("namespace") if w.kind in _K8S_WORKLOAD_KINDS else None
        defaults = namespaces.get(ns) if ns is not None else None
        out.append(replace(w, labels=w.labels.merged_under(defaults)) if defaults else w)
    return out


_K8S_WORKLOAD_KINDS = {"pod", "service", *(k.lower() for k in CONTROLLERS)}
