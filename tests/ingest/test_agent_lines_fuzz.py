"""Fuzzing the agent's JSON-lines formats (``agent-counters``, ``agent-drops``): no input
crashes them, every non-blank line is one stored row or one reject at its own line number,
and the good lines around a bad one are kept."""

from __future__ import annotations

import io
import json
import os
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellwall.ingest.agent_counters import AgentCountersSource
from cellwall.ingest.agent_drops import AgentDropsSource
from cellwall.ingest.agent_lines import AgentLinesSource

SETTINGS = settings(
    max_examples=int(os.environ.get("CELLWALL_FUZZ", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
COUNTER = {
    "format": "cellwall-agent-counters/1",
    "start": "2026-11-24T01:00:00Z",
    "end": "2026-11-24T01:01:00Z",
    "src_ip": "10.0.0.1",
    "dst_ip": "10.0.0.2",
    "dst_port": 5432,
    "proto": 6,
    "packets": 3,
    "bytes": 180,
    "action": "REJECT",
    "rule_id": "no-web-to-db",
    "host": "web-1",
}
DROP = {
    "format": "cellwall-agent-drops/1",
    "time": "2026-11-24T01:00:00.5Z",
    "src_ip": "10.0.0.1",
    "src_port": 40000,
    "dst_ip": "10.0.0.2",
    "dst_port": 5432,
    "proto": 6,
    "bytes": 60,
    "verdict": "drop",
    "rule_id": "no-web-to-db",
    "tcp_flags": 2,
    "direction": "egress",
    "host": "web-1",
}
VALUES = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=6)


@st.composite
def lines(draw: st.DrawFn, good: dict[str, Any]) -> tuple[bytes, bool]:
    """A line and whether it is certainly good."""
    kind = draw(st.sampled_from(["good", "mutated", "missing", "cut", "bytes", "array"]))
    if kind == "good":
        return json.dumps(good).encode(), True
    if kind == "mutated":
        doc = dict(good)
        doc[draw(st.sampled_from(sorted(good)))] = draw(VALUES)
        return json.dumps(doc).encode(), False
    if kind == "missing":
        doc = dict(good)
        del doc[draw(st.sampled_from(sorted(good)))]
        return json.dumps(doc).encode(), False
    if kind == "cut":
        text = json.dumps(good).encode()
        return text[: draw(st.integers(1, len(text) - 1))], False
    if kind == "array":
        return b"[1, 2]", False
    raw = draw(st.binary(min_size=1, max_size=40)).replace(b"\n", b" ").replace(b"\r", b" ")
    return raw, False


def _check(source: AgentLinesSource, body: list[tuple[bytes, bool]]) -> None:
    data = b"\n".join(line for line, _ in body) + b"\n"
    stored: list[int] = []
    rejected: list[int] = []
    for chunk in source.read(io.BytesIO(data), "f.jsonl"):
        assert isinstance(chunk.flows, pa.Table)
        stored += chunk.flows["lineage_pos"].to_pylist()
        rejected += chunk.rejects.table()["pos"].to_pylist()
    counted = [n for n, (line, _) in enumerate(body, start=1) if line.strip()]
    assert sorted(stored + rejected) == counted  # each line once: stored or rejected
    good = [n for n, (_, ok) in enumerate(body, start=1) if ok]
    assert set(good) <= set(stored)  # nothing good is lost


@SETTINGS
@given(st.lists(lines(COUNTER), min_size=1, max_size=12))
def test_agent_counters_account_for_every_line(body: list[tuple[bytes, bool]]) -> None:
    _check(AgentCountersSource(), body)


@SETTINGS
@given(st.lists(lines(DROP), min_size=1, max_size=12))
def test_agent_drops_account_for_every_line(body: list[tuple[bytes, bool]]) -> None:
    _check(AgentDropsSource(), body)
