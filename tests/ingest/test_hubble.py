"""The Cilium Hubble adapter: flow.proto's JSON to flows, DNS evidence, and bad lines.

The lines are written here the way ``hubble observe -o jsonpb`` (a ``GetFlowsResponse``
per line) and ``-o json`` (the bare flow) write them: flow.proto field names, enum names,
RFC 3339 times with nanoseconds.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from cellwall.evidence.dns import names_for, scan_dns
from cellwall.ingest.base import Chunk, detect
from cellwall.ingest.hubble import HubbleSource
from cellwall.ingest.hubble_mapping import EVENT_KEYS, VERDICT_ACTIONS
from cellwall.services.ingest import ingest_paths
from cellwall.workspace import Workspace

T0 = "2024-05-01T10:00:00.123456789Z"


def endpoint(ns: str | None, pod: str | None, *labels: str) -> dict[str, Any]:
    out: dict[str, Any] = {"ID": 7, "identity": 1234, "labels": list(labels)}
    if ns is not None:
        out["namespace"] = ns
    if pod is not None:
        out["pod_name"] = pod
    return out


def flow(
    *,
    time: str = T0,
    src: str = "10.0.0.1",
    dst: str = "10.0.0.2",
    l4: dict[str, Any] | None = None,
    verdict: str = "FORWARDED",
    **extra: Any,
) -> dict[str, Any]:
    """A flow as flow.proto's JSON has it (a TCP SYN from web to api by default)."""
    out: dict[str, Any] = {
        "time": time,
        "uuid": "1f0c2d3e-0000-4000-8000-000000000001",
        "verdict": verdict,
        "ethernet": {"source": "aa:bb:cc:dd:ee:01", "destination": "aa:bb:cc:dd:ee:02"},
        "IP": {"source": src, "destination": dst, "ipVersion": "IPv4"},
        "l4": l4
        if l4 is not None
        else {"TCP": {"source_port": 41234, "destination_port": 8080, "flags": {"SYN": True}}},
        "source": endpoint("shop", "web-1", "k8s:app=web", "k8s:io.kubernetes.pod.namespace=shop"),
        "destination": endpoint("shop", "api-1", "k8s:app=api"),
        "Type": "L3_L4",
        "node_name": "kind-worker",
        "event_type": {"type": 4, "sub_type": 3},
        "traffic_direction": "EGRESS",
        "trace_observation_point": "TO_STACK",
        "is_reply": False,
        "Summary": "TCP Flags: SYN",
    }
    out.update(extra)
    return out


def jsonpb(f: dict[str, Any]) -> str:
    return json.dumps({"flow": f, "node_name": f.get("node_name"), "time": f.get("time")})


def read(text: str | bytes, **options: str) -> list[Chunk]:
    data = text.encode() if isinstance(text, str) else text
    source = HubbleSource({"workers": "1", **options})
    return list(source.read(io.BytesIO(data), "hubble.json"))


def flows_of(chunks: list[Chunk]) -> list[dict[str, Any]]:
    return [row for c in chunks for row in c.flows.to_pylist()]


def rejects_of(chunks: list[Chunk]) -> list[tuple[int, str]]:
    return [(r["pos"], r["reason"]) for c in chunks for r in c.rejects.table().to_pylist()]


def test_a_jsonpb_flow_maps_to_every_column() -> None:
    [row] = flows_of(read(jsonpb(flow()) + "\n"))
    assert row["start"] == datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    got = {k: v for k, v in row.items() if v is not None and k != "start"}
    assert got == {
        "src_ip": "10.0.0.1",
        "src_port": 41234,
        "dst_ip": "10.0.0.2",
        "dst_port": 8080,
        "proto": 6,
        "action": "ACCEPT",
        "tcp_flags": 2,
        "direction": "egress",
        "src_initiated": True,
        "exporter": "kind-worker",
        "source_id": "1f0c2d3e-0000-4000-8000-000000000001",
        "lineage_format": "hubble",
        "lineage_file": "hubble.json",
        "lineage_pos": 1,
    }


def test_bare_json_and_jsonpb_give_the_same_flows() -> None:
    records = [flow(), flow(verdict="DROPPED", drop_reason_desc="POLICY_DENIED")]
    wrapped = flows_of(read("".join(jsonpb(f) + "\n" for f in records)))
    bare = flows_of(read("".join(json.dumps(f) + "\n" for f in records)))
    assert wrapped == bare and len(bare) == 2


def test_the_response_node_name_serves_when_the_flow_has_none() -> None:
    f = flow()
    del f["node_name"]
    line = json.dumps({"flow": f, "node_name": "node-7", "time": T0})
    assert flows_of(read(line + "\n"))[0]["exporter"] == "node-7"


@pytest.mark.parametrize(
    ("verdict", "action"),
    [*VERDICT_ACTIONS.items(), ("VERDICT_UNKNOWN", None)],
)
def test_verdict_becomes_the_action(verdict: str, action: str | None) -> None:
    [row] = flows_of(read(jsonpb(flow(verdict=verdict)) + "\n"))
    assert row["action"] == action


def test_drop_reasons_are_kept() -> None:
    lines = [
        flow(verdict="DROPPED", drop_reason_desc="POLICY_DENIED"),
        flow(verdict="AUDIT", drop_reason_desc="POLICY_DENIED"),
        flow(verdict="DROPPED", drop_reason_desc="DROP_REASON_UNKNOWN"),
        flow(),
    ]
    rows = flows_of(read("".join(jsonpb(f) + "\n" for f in lines)))
    assert [(r["action"], r["drop_reason"]) for r in rows] == [
        ("REJECT", "POLICY_DENIED"),
        ("ACCEPT", "POLICY_DENIED"),
        ("REJECT", None),
        ("ACCEPT", None),
    ]


def test_a_reply_is_oriented_not_reversed() -> None:
    reply = flow(
        src="10.0.0.2",
        dst="10.0.0.1",
        l4={
            "TCP": {
                "source_port": 8080,
                "destination_port": 41234,
                "flags": {"SYN": True, "ACK": True},
            }
        },
        is_reply=True,
    )
    unknown = flow()
    del unknown["is_reply"]
    rows = flows_of(read(jsonpb(reply) + "\n" + jsonpb(unknown) + "\n"))
    assert (rows[0]["src_ip"], rows[0]["src_port"], rows[0]["dst_port"]) == (
        "10.0.0.2",
        8080,
        41234,
    )
    assert rows[0]["src_initiated"] is False and rows[0]["tcp_flags"] == 0x12
    assert rows[1]["src_initiated"] is None


@pytest.mark.parametrize(
    ("l4", "proto", "sport", "dport", "flags"),
    [
        ({"UDP": {"source_port": 5353, "destination_port": 53}}, 17, 5353, 53, None),
        ({"SCTP": {"source_port": 1, "destination_port": 2}}, 132, 1, 2, None),
        ({"ICMPv4": {"type": 8}}, 1, 8, None, None),
        ({"ICMPv6": {"type": 1, "code": 4}}, 58, 1, 4, None),
        ({"TCP": {"source_port": 1, "destination_port": 2}}, 6, 1, 2, 0),
        (
            {"TCP": {"source_port": 1, "destination_port": 2, "flags": {
                "FIN": True, "RST": True, "PSH": True, "ACK": True, "URG": True,
                "ECE": True, "CWR": True, "NS": True}}},
            6, 1, 2, 0x1FD,
        ),
    ],
)  # fmt: skip
def test_transports_ports_and_flags(
    l4: dict[str, Any], proto: int, sport: int, dport: int | None, flags: int | None
) -> None:
    [row] = flows_of(read(jsonpb(flow(l4=l4)) + "\n"))
    assert (row["proto"], row["src_port"], row["dst_port"], row["tcp_flags"]) == (
        proto,
        sport,
        dport,
        flags,
    )


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("http://api.shop:8080/v1/items?id=3#x", "/v1/items"),
        ("https://api.shop", "/"),
        ("/health", "/health"),
    ],
)
def test_l7_http_fills_the_http_columns(url: str, path: str) -> None:
    l7 = {"type": "RESPONSE", "latency_ns": "1000", "http": {
        "code": 503, "method": "POST", "url": url, "protocol": "HTTP/1.1",
        "headers": [{"key": "x", "value": "y"}]}}  # fmt: skip
    [row] = flows_of(read(jsonpb(flow(l7=l7, Type="L7")) + "\n"))
    assert (row["http_method"], row["http_path"], row["http_status"]) == ("POST", path, 503)


def test_times_keep_microseconds_and_offsets() -> None:
    lines = [
        flow(time="2024-05-01T10:00:00.999999999Z"),
        flow(time="2024-05-01T12:00:00+02:00"),
        flow(time="2024-05-01T10:00:00Z"),
    ]
    starts = [r["start"] for r in flows_of(read("".join(jsonpb(f) + "\n" for f in lines)))]
    assert starts == [
        datetime(2024, 5, 1, 10, 0, 0, 999999, tzinfo=UTC),
        datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC),
        datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC),
    ]


def dns_response(
    time: str = T0, query: str = "api.example.com.", ips: list[str] | None = None
) -> dict[str, Any]:
    return flow(
        time=time,
        src="10.96.0.10",
        dst="10.0.0.1",
        l4={"UDP": {"source_port": 53, "destination_port": 40000}},
        is_reply=True,
        Type="L7",
        l7={"type": "RESPONSE", "dns": {"query": query, "ips": ips or ["93.184.216.34"],
            "ttl": 300, "rcode": 0, "qtypes": ["A"], "rrtypes": ["A"]}},
    )  # fmt: skip


def test_dns_responses_are_flows_and_evidence() -> None:
    request = flow(
        l4={"UDP": {"source_port": 40000, "destination_port": 53}},
        Type="L7",
        l7={"type": "REQUEST", "dns": {"query": "api.example.com.", "qtypes": ["A"]}},
    )
    chunks = read(
        jsonpb(request)
        + "\n"
        + jsonpb(dns_response(ips=["93.184.216.34", "2606:2800:220:1::"]))
        + "\n"
    )
    assert len(flows_of(chunks)) == 2 and sum(c.read for c in chunks) == 2
    dns = pa.concat_tables([c.dns for c in chunks if c.dns is not None]).to_pylist()
    got = [
        (d["ip"], d["name"], d["ttl_s"], d["client_ip"], d["source"], d["lineage_pos"]) for d in dns
    ]
    assert got == [
        ("93.184.216.34", "api.example.com", 300, "10.0.0.1", "hubble", 2),
        ("2606:2800:220:1::", "api.example.com", 300, "10.0.0.1", "hubble", 2),
    ]  # fmt: skip
    assert dns[0]["valid_until"] == datetime(2024, 5, 1, 10, 5, 0, 123456, tzinfo=UTC)


def test_other_responses_are_counted_as_ignored() -> None:
    status = {"state_change": "NODE_CONNECTED", "node_names": ["a"]}
    lost = {"source": "PERF_EVENT_RING_BUFFER", "num_events_lost": 3}
    lines = [
        json.dumps({"node_status": status, "time": T0}),
        json.dumps({"lost_events": lost, "node_name": "a", "time": T0}),
        "",
        "   ",
        jsonpb(flow()),
    ]  # fmt: skip
    chunks = read("\n".join(lines) + "\n")
    ignored: Counter[str] = Counter()
    for c in chunks:
        ignored.update(c.ignored)
    assert ignored == Counter(node_status=1, lost_events=1, blank=2)
    assert len(flows_of(chunks)) == 1 and sum(c.read for c in chunks) == 5


BAD = [
    ("not json at all", "bad-json"),
    ("[1, 2]", "bad-json"),
    ('{"flow": {"time": 5}}', "bad-field"),
    (json.dumps(flow(verdict=2)), "bad-field"),  # type: ignore[arg-type]
    (json.dumps({"hello": "world"}), "not-a-flow"),
    (jsonpb({k: v for k, v in flow().items() if k != "time"}), "no-timestamp"),
    (jsonpb(flow(time="yesterday")), "bad-field"),
    (jsonpb(flow(time="2024-13-01T00:00:00Z")), "bad-field"),
    (jsonpb({k: v for k, v in flow().items() if k != "IP"}), "missing-field"),
    (jsonpb(flow(src="10.0.0.300")), "bad-ip"),
    (jsonpb(flow(l4={})), "missing-field"),
    (jsonpb(flow(l4={"UDP": {"source_port": 70000, "destination_port": 1}})), "bad-field"),
    (jsonpb(flow(l4={"ICMPv4": {"type": 300}})), "bad-field"),
    ('{"flow": {"time": "' + T0 + '"}} {"flow": {}}', "bad-json"),
]


@pytest.mark.parametrize("block_size", ["64", "1000000"])
def test_bad_lines_are_rejected_with_their_line_and_the_rest_kept(block_size: str) -> None:
    lines: list[str | bytes] = []
    want: list[tuple[int, str]] = []
    for text, reason in BAD:
        lines.append(jsonpb(flow()))
        lines.append(text)
        want.append((len(lines), reason))
    lines.append(b'{"flow": {"time": "\xff\xfe"}}')
    want.append((len(lines), "not-text"))
    lines.append(jsonpb(flow()))
    data = b"\n".join(x if isinstance(x, bytes) else x.encode() for x in lines) + b"\n"
    data += b'{"flow": {"tim'  # cut by the end of the input
    want.append((len(lines) + 1, "truncated"))
    chunks = read(data, block_size=block_size)
    assert sorted(rejects_of(chunks)) == want
    assert [r["lineage_pos"] for r in flows_of(chunks)] == [
        i for i in range(1, len(lines) + 1) if i not in {w[0] for w in want}
    ]
    assert sum(c.read for c in chunks) == len(lines) + 1


#: Lines of both kinds and their fates: a flow (its source), a reject (its reason), or an
#: event counted as ignored (its key).
KINDS = [
    (jsonpb(flow()), "10.0.0.1"),
    (json.dumps({"flow": flow(), "verdict": 5}), "10.0.0.1"),  # not a response's key: ignored
    (json.dumps(flow(src="10.0.0.9")), "10.0.0.9"),  # a bare flow
    (json.dumps({"flow": flow(), "l4": {"TCP": {"source_port": "x"}}}), "10.0.0.1"),
    (json.dumps({"flow": {**flow(), "verdict": 5}}), "bad-field"),  # inside the flow: refused
    (json.dumps({**flow(), "verdict": 5}), "bad-field"),  # a bare flow's own: refused
    (json.dumps({"flow": 5}), "bad-field"),
    (json.dumps({"node_status": {}, "IP": {"source": 5}}), "node_status"),
    (json.dumps({"flow": flow(), "IP": {"source": "10.0.0.7"}}), "10.0.0.1"),
    (json.dumps({"lost_events": {}}), "lost_events"),
    (json.dumps({"hello": "world"}), "not-a-flow"),
    ("null", "bad-json"),
    (json.dumps(flow(src="10.0.0.8", is_reply=True)), "10.0.0.8"),
    (jsonpb(flow()), "10.0.0.1"),
]


def _fates(chunks: list[Chunk]) -> tuple[dict[int, str], Counter[str]]:
    fates = {r["lineage_pos"]: r["src_ip"] for r in flows_of(chunks)}
    fates.update({pos: reason for pos, reason in rejects_of(chunks)})
    ignored: Counter[str] = Counter()
    for c in chunks:
        ignored.update(c.ignored)
    return fates, ignored


@pytest.mark.parametrize("start", [0, 2])  # a block that starts with a response, or a bare flow
def test_each_line_is_read_by_the_schema_of_its_kind_whatever_its_neighbours(start: int) -> None:
    """A response's flow is read from ``flow`` (other top-level keys are not a response's and
    are ignored); a bare flow from the top; an event only counted. Which kind a block starts
    with, and the block size, change nothing."""
    kinds = KINDS[start:] + KINDS[:start]
    text = "\n".join(line for line, _ in kinds) + "\n"
    want = {n: fate for n, (_, fate) in enumerate(kinds, 1) if fate not in EVENT_KEYS}
    for block_size in ("64", "1000000"):
        chunks = read(text, block_size=block_size)
        fates, ignored = _fates(chunks)
        assert fates == want
        assert ignored == Counter(node_status=1, lost_events=1)
        assert sum(c.read for c in chunks) == len(kinds)
    alone = {}
    for n, (line, _) in enumerate(kinds, 1):
        fates, _ignored = _fates(read(line + "\n"))
        assert len(fates) <= 1
        for fate in fates.values():
            alone[n] = fate
    assert alone == want
    rows = flows_of(read(text))
    assert [r["src_initiated"] for r in rows if r["src_ip"] == "10.0.0.8"] == [False]
    messages = {r["pos"]: r["message"] for c in read(text) for r in c.rejects.table().to_pylist()}
    for n, (line, fate) in enumerate(kinds, 1):
        if fate == "bad-field":
            assert ("/verdict" if '"verdict": 5' in line else "/flow") in messages[n]


def test_block_size_and_threads_do_not_change_the_result() -> None:
    lines = [jsonpb(flow(src=f"10.0.{i // 250}.{i % 250}")) for i in range(300)]
    lines[77] = "garbage"
    data = "\n".join(lines) + "\n"
    one = read(data)
    many = list(
        HubbleSource({"workers": "2", "block_size": "2000"}).read(
            io.BytesIO(data.encode()), "hubble.json"
        )
    )
    assert flows_of(one) == flows_of(many) and rejects_of(one) == rejects_of(many)  # fmt: skip


def test_sniff_tells_hubble_from_zeek_json() -> None:
    assert HubbleSource.sniff((jsonpb(flow()) + "\n").encode())
    assert HubbleSource.sniff((json.dumps(flow()) + "\n").encode())
    assert not HubbleSource.sniff(
        b'{"ts":1.0,"uid":"C1","id.orig_h":"1.2.3.4","verdict":1,"IP":2}\n'
    )
    assert detect((jsonpb(flow()) + "\n").encode(), "f") is HubbleSource


def test_ingest_stores_flows_and_dns_evidence_in_one_transaction(
    ws: Workspace, tmp_path: Path
) -> None:
    path = tmp_path / "hubble.json"
    lines = [jsonpb(flow()), jsonpb(dns_response()), "junk"]
    path.write_text("\n".join(lines) + "\n")
    summary = ingest_paths(ws, [path]).to_dict()
    assert (summary["read"], summary["stored"], summary["dns"]) == (3, 2, 1)
    assert summary["quarantined"] == {"bad-json": 1}
    assert list((ws.lake / "dns").glob("day=2024-05-01/*.parquet"))
    assert scan_dns(ws.lake).num_rows == 1
    ts = pa.array([datetime(2024, 5, 1, 10, 1, tzinfo=UTC)] * 2, pa.timestamp("us", tz="UTC"))
    names = names_for(ws.lake, pa.array(["93.184.216.34", "10.0.0.2"]), ts)
    assert names.to_pylist() == ["api.example.com", None]
    again = ingest_paths(ws, [path]).to_dict()
    assert again["duplicate"] == 2 and scan_dns(ws.lake).num_rows == 1
