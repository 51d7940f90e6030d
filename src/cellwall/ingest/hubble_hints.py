"""Inventory hints from Hubble flows: the pods seen, as cellwall Workload YAML.

Every flow end that Hubble names as a pod (``namespace`` and ``pod_name`` set) is a hint
that this pod held that address when the flow was seen. :func:`hints_yaml` turns the pods of
Hubble files into ``apiVersion: cellwall/v1, kind: Workload`` documents that
``cellwall inventory load`` takes:

- the name is ``NAMESPACE/POD`` and the label ``namespace`` is set, as for a Kubernetes
  ``Pod`` manifest (docs/inventory.md);
- labels are the pod's Cilium labels of source ``k8s:`` (``k8s:app=web`` gives ``app:
  web``), less Cilium's own (``io.kubernetes.pod.namespace``, ``io.cilium.k8s.*``);
  a label that is not a valid cellwall label is left out;
- each address is limited to when it was seen: ``from`` the first flow, ``until`` one
  microsecond after the last (the interval is half-open). A pod that was seen under an
  address only once owns it for that instant: hints are evidence, not a lease.

Reserved identities (``reserved:world``, ``reserved:host``) and ends without a pod name give
no hints. The documents are sorted by name, so the output is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from cellwall.ingest.hubble import parsed_blocks
from cellwall.ingest.stream import open_input
from cellwall.model.labels import check_label_key, check_label_value
from cellwall.model.net import canonical_ips

__all__ = ["hints_yaml", "pod_sightings", "workload_documents"]

_SKIP_PREFIXES = ("io.kubernetes.pod.namespace", "io.cilium.k8s.", "io.cilium.")
_TS = pa.timestamp("us", tz="UTC")


def _ends(flows: pa.Array, start_us: np.ndarray) -> Iterator[pa.Table]:
    for side, ip in (("source", "source"), ("destination", "destination")):
        yield pa.table(
            {
                "namespace": pc.struct_field(flows, [side, "namespace"]),
                "pod": pc.struct_field(flows, [side, "pod_name"]),
                "ip": pc.struct_field(flows, ["IP", ip]),
                "labels": pc.struct_field(flows, [side, "labels"]),
                "ts": pa.array(start_us, pa.int64()),
            }
        )


def pod_sightings(paths: Iterable[str | Path]) -> pa.Table:
    """One row per (namespace, pod, ip): first and last time seen, and the pod's labels."""
    parts: list[pa.Table] = []
    for path in paths:
        stream = open_input(path)
        try:
            for block in parsed_blocks(stream, str(path), endpoints=True):  # type: ignore[arg-type]
                for end in _ends(block.flows, block.start_us):
                    named = pc.and_(pc.is_valid(end["pod"]), pc.is_valid(end["namespace"]))
                    named = pc.and_(named, pc.not_equal(end["pod"], ""))
                    parts.append(end.filter(named))
        finally:
            stream.close()
    if not parts:
        return pa.table(
            {
                "namespace": pa.array([], pa.string()),
                "pod": pa.array([], pa.string()),
                "ip": pa.array([], pa.string()),
                "first": pa.array([], _TS),
                "last": pa.array([], _TS),
                "labels": pa.array([], pa.list_(pa.string())),
            }
        )
    seen = pa.concat_tables(parts).combine_chunks()
    seen = seen.set_column(2, "ip", canonical_ips(seen["ip"]))
    seen = seen.append_column("row", pa.array(np.arange(seen.num_rows, dtype=np.int64)))
    grouped = seen.group_by(["namespace", "pod", "ip"], use_threads=False).aggregate(
        [("ts", "min"), ("ts", "max"), ("row", "max")]
    )
    labels = pc.take(seen["labels"], grouped["row_max"])  # the labels of the latest sighting
    return pa.table(
        {
            "namespace": grouped["namespace"],
            "pod": grouped["pod"],
            "ip": grouped["ip"],
            "first": grouped["ts_min"].cast(_TS),
            "last": grouped["ts_max"].cast(_TS),
            "labels": labels,
        }
    ).sort_by([("namespace", "ascending"), ("pod", "ascending"), ("first", "ascending")])


def _labels(raw: list[str] | None, namespace: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in raw or []:
        source, _, pair = item.partition(":")
        key, eq, value = pair.partition("=")
        if source != "k8s" or not eq or key.startswith(_SKIP_PREFIXES):
            continue
        try:
            out[check_label_key(key)] = check_label_value(key, value)
        except ValueError:
            continue
    out["namespace"] = namespace
    return dict(sorted(out.items()))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def workload_documents(sightings: pa.Table) -> list[dict[str, object]]:
    """Workload documents (dicts) from :func:`pod_sightings` rows, sorted by name."""
    pods: dict[str, dict[str, object]] = {}
    for row in sightings.to_pylist():
        if row["ip"] is None:
            continue
        name = f"{row['namespace']}/{row['pod']}"
        doc = pods.setdefault(
            name,
            {
                "apiVersion": "cellwall/v1",
                "kind": "Workload",
                "metadata": {"name": name},
                "spec": {"addresses": [], "labels": {}},
            },
        )
        spec = doc["spec"]
        assert isinstance(spec, dict)
        spec["labels"] = _labels(row["labels"], row["namespace"])
        until = row["last"] + timedelta(microseconds=1)
        spec["addresses"].append(
            {"ip": row["ip"], "from": _iso(row["first"]), "until": _iso(until)}
        )
    return [pods[k] for k in sorted(pods)]


def hints_yaml(paths: Iterable[str | Path]) -> str:
    """Workload YAML documents for the pods that Hubble files show (``inventory load`` input)."""
    docs = workload_documents(pod_sightings(paths))
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=None, width=100)
