"""Fuzzing the loaders: whatever the input, they return diagnostics with a place; no crash."""

from __future__ import annotations

import json
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellwall.inventory.loader import LoadResult, load_inventory_text


def check(r: LoadResult, name: str) -> None:
    for d in r.diagnostics:
        assert d.file == name, d
        assert d.code and d.message
    for d in r.errors:
        assert d.line is not None and d.line >= 1, d
    assert len({w.name for w in r.workloads}) == len(r.workloads)


csv_alphabet = st.sampled_from(list('name,addresses,owner"\n\r 10.0.1:@.Z-T\tabc\x00é'))
csv_text = st.one_of(
    st.text(csv_alphabet, max_size=200),
    st.text(csv_alphabet, max_size=200).map(lambda t: "name,addresses,owner,app,env\n" + t),
    st.text(max_size=200).map(lambda t: "name,addresses,owner\n" + t),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(csv_text)
def test_csv_loader_never_crashes(text: str) -> None:
    check(load_inventory_text(text, "fuzz.csv", fmt="csv"), "fuzz.csv")


yaml_alphabet = st.sampled_from(
    list("apiVersion:cellwall/v1kindWorkloadmetadataspec{}[],-&*!|>#'\"\n \t?%@`~")
)
yaml_text = st.one_of(
    st.text(yaml_alphabet, max_size=200),
    st.text(yaml_alphabet, max_size=200).map(
        lambda t: "apiVersion: cellwall/v1\nkind: Workload\nmetadata: {name: x}\n" + t
    ),
    st.text(max_size=120),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(yaml_text)
def test_yaml_loader_never_crashes(text: str) -> None:
    check(load_inventory_text(text, "fuzz.yaml", fmt="yaml"), "fuzz.yaml")
    check(load_inventory_text(text, "fuzz.json", fmt="json"), "fuzz.json")


# Documents that look like inventory, with every field possibly of the wrong shape.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 300),
    st.sampled_from(["10.0.0.1", "fd00::1", "10.0.0.300", "x", "", "2026-11-01T00:00:00Z", "None"]),
    st.text(max_size=8),
)
keys = st.sampled_from(
    [
        "apiVersion", "kind", "metadata", "spec", "name", "owner", "namespace", "labels",
        "addresses", "ip", "from", "until", "required", "values", "aliases", "status", "podIP",
        "podIPs", "phase", "startTime", "clusterIP", "clusterIPs", "selector", "template",
        "items", "hostNetwork", "containerStatuses", "Reservations", "Instances", "InstanceId",
        "Tags", "Key", "Value", "NetworkInterfaces", "PrivateIpAddresses", "PrivateIpAddress",
        "State", "Attachment", "AttachTime", "Association", "PublicIp", "app", "env",
    ]
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=25,
)
kinds = st.sampled_from(
    ["Workload", "LabelConvention", "Pod", "PodList", "Service", "Deployment", "CronJob",
     "Namespace", "NamespaceList", "List", "Policy", None, 3]
)  # fmt: skip
apis = st.sampled_from(["cellwall/v1", "v1", "apps/v1", "cellwall/v9", None])


@st.composite
def documents(draw: st.DrawFn) -> Any:
    doc = draw(st.dictionaries(keys, values, max_size=5))
    if draw(st.booleans()):
        doc["apiVersion"], doc["kind"] = draw(apis), draw(kinds)
    if draw(st.booleans()):
        doc = {
            "Reservations": draw(st.lists(st.dictionaries(keys, values, max_size=4), max_size=3))
        }
    return doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(documents(), min_size=1, max_size=4))
def test_shaped_documents_never_crash(docs: list[Any]) -> None:
    text = yaml.safe_dump_all(docs)
    check(load_inventory_text(text, "shaped.yaml"), "shaped.yaml")
    check(load_inventory_text(json.dumps(docs[0]), "shaped.json"), "shaped.json")
