"""Fuzzing the Hubble reader: no input crashes it, and every line is accounted for.

Every line is exactly one of a flow, a reject at its own line, or ignored (blank, another
kind of GetFlowsResponse). Lines are valid flows, flows with a value replaced by a random
JSON value, cut or spliced lines, and random bytes; small blocks and two workers exercise
block boundaries and ordering.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellwall.ingest.hubble import HubbleSource
from tests.ingest.test_hubble import dns_response, flow, jsonpb

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
PATHS = [
    ("time",),
    ("verdict",),
    ("IP",),
    ("IP", "source"),
    ("l4",),
    ("l4", "TCP", "source_port"),
    ("l4", "TCP", "flags"),
    ("source", "labels"),
    ("is_reply",),
    ("l7",),
    ("node_name",),
]


def _replace(record: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    node = record
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value
    return record


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    kind = draw(
        st.sampled_from(["flow", "bare", "dns", "mutated", "extra", "cut", "bytes", "json"])
    )
    if kind == "flow":
        return jsonpb(flow()).encode()
    if kind == "bare":
        return json.dumps(flow(is_reply=draw(st.booleans()))).encode()
    if kind == "dns":
        return jsonpb(dns_response()).encode()
    if kind == "mutated":
        record = _replace(flow(), draw(st.sampled_from(PATHS)), draw(JSON))
        wrap = draw(st.booleans())
        return (jsonpb(record) if wrap else json.dumps(record)).encode()
    if kind == "extra":  # a response with another top-level key: a bare flow's, or an event's
        key = draw(st.sampled_from(["verdict", "IP", "l4", "time", "node_name", "lost_events"]))
        return json.dumps({"flow": flow(), key: draw(JSON)}).encode()
    if kind == "cut":
        text = jsonpb(flow()).encode()
        return text[: draw(st.integers(0, len(text)))]
    if kind == "json":
        return json.dumps(draw(JSON)).encode()
    return draw(st.binary(max_size=40)).replace(b"\n", b"")


@SETTINGS
@given(st.lists(lines(), max_size=25), st.sampled_from(["64", "512", "100000"]))
def test_no_crash_and_every_line_accounted_for(items: list[bytes], block_size: str) -> None:
    data = b"".join(line + b"\n" for line in items)
    source = HubbleSource({"workers": "2", "block_size": block_size})
    chunks = list(source.read(io.BytesIO(data), "fuzz.json"))
    assert sum(c.read for c in chunks) == len(items)
    positions = [int(p) for c in chunks for p in c.flows["lineage_pos"].to_pylist()]
    positions += [r["pos"] for c in chunks for r in c.rejects.table().to_pylist()]
    assert len(positions) == len(set(positions))
    assert all(1 <= p <= len(items) for p in positions)


def _fates(data: bytes, block_size: str) -> list[tuple[Any, ...]]:
    """What became of each line, in line order: its flow, its reject, or what it was ignored as."""
    chunks = list(
        HubbleSource({"workers": "2", "block_size": block_size}).read(io.BytesIO(data), "f")
    )
    fates: list[tuple[Any, ...]] = []
    for c in chunks:
        for row in c.flows.to_pylist():
            fates.append((row.pop("lineage_pos"), "flow", sorted(row.items(), key=str)))
        for r in c.rejects.table().to_pylist():
            fates.append((r["pos"], "reject", r["reason"]))
    ignored = Counter[str]()
    for c in chunks:
        ignored.update(c.ignored)
    return [f[1:] for f in sorted(fates, key=lambda f: f[0])] + sorted(ignored.items())


@SETTINGS
@given(st.lists(lines(), min_size=1, max_size=12), st.sampled_from(["64", "100000"]))
def test_a_line_fares_the_same_alone_as_among_others(items: list[bytes], block_size: str) -> None:
    """Whatever kind a block starts with, and wherever the block edges fall, each line is read
    by the schema of its own kind: its fate is the one it has when read alone."""
    together = _fates(b"".join(line + b"\n" for line in items), block_size)
    alone: list[tuple[Any, ...]] = []
    ignored = Counter[str]()
    for line in items:
        for fate in _fates(line + b"\n", "100000"):
            if fate[0] in ("flow", "reject"):
                alone.append(fate)
            else:
                ignored[fate[0]] += fate[1]
    assert together == alone + sorted(ignored.items())
