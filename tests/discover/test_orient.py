"""Orientation: client/server evidence order, conversation ids, replies and two exporters."""

from __future__ import annotations

from typing import Any

from cellwall.discover.orient import conversations, orient
from tests.discover.conftest import table


def rows(t: Any) -> list[dict[str, Any]]:
    return sorted(t.to_pyarrow().to_pylist(), key=lambda r: (str(r["start"]), r["src_ip"]))


def vpc_pair(cport: int, t: float = 0, exporter: str = "aws:1:eni-a") -> list[dict[str, Any]]:
    """A VPC v2 request and its reply: no flags, no direction, one record per direction."""
    return [
        {"src_ip": "10.0.0.1", "src_port": cport, "dst_ip": "10.0.0.9", "dst_port": 5432,
         "t": t, "exporter": exporter, "bytes": 300},
        {"src_ip": "10.0.0.9", "src_port": 5432, "dst_ip": "10.0.0.1", "dst_port": cport,
         "t": t, "exporter": exporter, "bytes": 5000},
    ]  # fmt: skip


def test_vpc_reply_takes_its_conversations_orientation() -> None:
    recs = vpc_pair(41234) + vpc_pair(41999, t=30) + vpc_pair(52000, t=60)
    out = rows(orient(table(*recs)))
    assert {(r["client_ip"], r["server_ip"], r["service"]) for r in out} == {
        ("10.0.0.1", "10.0.0.9", "tcp/5432")
    }
    assert {r["orientation_evidence"] for r in out} == {"listening"}
    assert len({r["conversation_id"] for r in out}) == 3
    first = [r for r in out if r["client_port"] == 41234]
    assert {r["conversation_id"] for r in first} == {
        "6:10.0.0.1:41234>10.0.0.9:5432@2026-11-02T10:00:00.000000Z"
    }
    assert sorted(r["is_reply"] for r in first) == [False, True]


def test_same_conversation_seen_by_two_exporters_counts_once() -> None:
    recs = vpc_pair(41234, exporter="aws:1:eni-client") + vpc_pair(
        41234, t=1, exporter="aws:1:eni-server"
    )
    conv = conversations(table(*recs)).to_pyarrow().to_pylist()
    assert len(conv) == 1
    assert conv[0]["exporters"] == 2 and conv[0]["records"] == 4
    assert conv[0]["bytes"] == 5300  # the most one exporter saw each way, never the sum


def test_gap_rule_splits_a_reused_client_port() -> None:
    recs = vpc_pair(41234) + vpc_pair(41234, t=60) + vpc_pair(41234, t=60 + 121)
    conv = conversations(table(*recs)).order_by("start").to_pyarrow().to_pylist()
    assert [c["records"] for c in conv] == [4, 2]


def test_initiator_beats_ports() -> None:
    # Zeek-like biflow from a high port to a high port: only src_initiated can tell
    rec = {"src_ip": "10.0.0.5", "src_port": 50000, "dst_ip": "10.0.0.6", "dst_port": 40000,
           "src_initiated": True, "rev_bytes": 10, "rev_packets": 1}  # fmt: skip
    (c,) = conversations(table(rec)).to_pyarrow().to_pylist()
    assert (c["client_ip"], c["service"], c["orientation_evidence"]) == (
        "10.0.0.5",
        "tcp/40000",
        "initiator",
    )
    assert c["bytes"] == 110


def test_syn_and_reject_are_exporter_evidence() -> None:
    syn = {"src_ip": "10.0.0.7", "src_port": 22, "dst_ip": "10.0.0.8", "dst_port": 40000,
           "tcp_flags": 2}  # fmt: skip
    rej = {"src_ip": "10.0.0.7", "src_port": 60000, "dst_ip": "10.0.0.8", "dst_port": 139,
           "action": "REJECT", "t": 5}  # fmt: skip
    got = {(c["client_ip"], c["service"], c["orientation_evidence"])
           for c in conversations(table(syn, rej)).to_pyarrow().to_pylist()}  # fmt: skip
    assert got == {("10.0.0.7", "tcp/40000", "syn"), ("10.0.0.7", "tcp/139", "syn")}


def test_listening_beats_port_guessing() -> None:
    # 10.0.0.9 listens on 40000 (many client ports); its clients use port 80 (odd but seen)
    recs = [{"src_ip": "10.0.0.1", "src_port": 2000 + i, "dst_ip": "10.0.0.9", "dst_port": 40000,
             "t": i * 10} for i in range(3)]  # fmt: skip
    got = {(c["client_ip"], c["server_port"], c["orientation_evidence"])
           for c in conversations(table(*recs)).to_pyarrow().to_pylist()}  # fmt: skip
    assert got == {("10.0.0.1", 40000, "listening")}


def test_port_guess_is_the_last_resort() -> None:
    recs = [
        {"src_ip": "10.0.0.2", "src_port": 443, "dst_ip": "10.0.0.3", "dst_port": 51000},
        {"src_ip": "10.0.0.4", "src_port": 9000, "dst_ip": "10.0.0.5", "dst_port": 8000, "t": 1},
        {"src_ip": "10.0.0.6", "dst_ip": "10.0.0.7", "proto": 17, "src_port": 123, "dst_port": 123,
         "t": 2},
    ]  # fmt: skip
    got = {(c["client_ip"], c["server_ip"], c["service"], c["orientation_evidence"])
           for c in conversations(table(*recs)).to_pyarrow().to_pylist()}  # fmt: skip
    assert got == {
        ("10.0.0.3", "10.0.0.2", "tcp/443", "port"),
        ("10.0.0.4", "10.0.0.5", "tcp/8000", "port"),
        ("10.0.0.6", "10.0.0.7", "udp/123", "port"),
    }


def test_icmp_echo_reply_comes_from_the_server() -> None:
    recs = [
        {"src_ip": "10.0.0.1", "dst_ip": "10.0.0.2", "proto": 1, "src_port": 8, "dst_port": 0},
        {"src_ip": "10.0.0.2", "dst_ip": "10.0.0.1", "proto": 1, "src_port": 0, "dst_port": 0},
    ]
    out = rows(orient(table(*recs)))
    assert {(r["client_ip"], r["service"]) for r in out} == {("10.0.0.1", "icmp")}
