"""Rule counters as flow records: what the agent reports after each cycle.

Each counter of table ``inet cellwall`` that belongs to a rule (a named counter ``r_ID``,
``mgmt_admin``, ``mgmt_control``, or the not-allowed defaults ``na_in``/``na_out``; or an
inline ``counter`` on a rule whose ``comment`` is its id) gives one report row per cycle in
which its counter moved: the packets and bytes since the last report, ``ACCEPT`` for an
accepting rule and ``REJECT`` (with the rule id as ``drop_reason``) for a dropping one.
These rows are the ``agent-counters`` flow format (:mod:`cellwall.ingest.agent_counters`).

A rule that pins one address (``ip saddr 10.0.0.5``), a protocol or one destination port
fills those columns; an end that it does not pin is written as the unspecified address of
its family (``0.0.0.0`` or ``::``): a counter row is an aggregate, not a connection.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from cellwall.targets.nftables import counter_rule_id

__all__ = ["REPORT_FORMAT", "counter_rows", "rule_counters"]

REPORT_FORMAT = "cellwall-agent-counters/1"
_PROTOS = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "icmpv6": 58}
_VERDICTS = {"accept": "ACCEPT", "drop": "REJECT", "reject": "REJECT"}
_DIRECTIONS = {"input": "ingress", "output": "egress", "forward": "ingress"}


def _matches(rule: Mapping[str, Any]) -> dict[str, Any]:
    """The single address, protocol and port that a rule pins, if any."""
    facts: dict[str, Any] = {}
    for expr in rule.get("expr", []):
        m = expr.get("match")
        if not m or m.get("op") not in ("==", "in"):
            continue
        left, right = m.get("left", {}), m.get("right")
        payload = left.get("payload") if isinstance(left, dict) else None
        if payload is None:
            continue
        proto, fld = payload.get("protocol"), payload.get("field")
        if fld in ("saddr", "daddr") and isinstance(right, str) and not right.startswith("@"):
            facts["src_ip" if fld == "saddr" else "dst_ip"] = right
            facts["family"] = 6 if proto == "ip6" else 4
        elif fld == "dport" and proto in _PROTOS:
            facts["proto"] = _PROTOS[proto]
            if isinstance(right, int):
                facts["dst_port"] = right
        elif proto in _PROTOS and "proto" not in facts:
            facts["proto"] = _PROTOS[proto]
    return facts


def _named_id(name: str) -> str | None:
    if name in ("na_in", "na_out"):
        return "not-allowed"
    return counter_rule_id(name)


def rule_counters(listing: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(key, facts) for every counted rule with an id; facts hold packets, bytes, verdict.

    A rule's id is its comment (an inline ``counter``), or the rule behind its named
    counter (``counter name r_ID``, as the nftables compiler writes it). A named counter
    that several rules share is reported once, with the facts of its first rule.
    """
    entries = listing.get("nftables", [])
    named = {c["name"]: c for e in entries if isinstance(c := e.get("counter"), dict)}
    seen: set[str] = set()
    index: dict[str, int] = {}
    for entry in entries:
        rule = entry.get("rule")
        if not rule:
            continue
        exprs = rule.get("expr", [])
        ref = next((e["counter"] for e in exprs if "counter" in e), None)
        verdict = next((_VERDICTS[k] for e in exprs for k in e if k in _VERDICTS), None)
        if ref is None or verdict is None:
            continue
        chain = rule["chain"]
        if isinstance(ref, str):
            rule_id, counter = _named_id(ref), named.get(ref, {})
            key = f"counter/{ref}"
            if rule_id is None or key in seen:
                continue
            seen.add(key)
        elif rule.get("comment"):
            rule_id, counter = str(rule["comment"]), ref
            n = index[chain] = index.get(chain, -1) + 1
            key = f"{chain}/{n}/{rule_id}"
        else:
            continue
        facts = _matches(rule)
        facts.update(
            chain=chain,
            rule_id=rule_id,
            action=verdict,
            packets=int(counter.get("packets", 0)),
            bytes=int(counter.get("bytes", 0)),
        )
        yield key, facts


def counter_rows(
    listing: Mapping[str, Any],
    previous: Mapping[str, list[int]],
    *,
    host: str,
    serial: int | None,
    start: datetime,
    end: datetime,
    hooks: Mapping[str, str],
) -> tuple[list[dict[str, Any]], dict[str, list[int]]]:
    """Report rows for the counters that moved since ``previous``, and the new baseline.

    A counter below its baseline was reset (the table was re-applied): all of it is new.
    ``hooks`` maps a chain name to its hook, for the direction.
    """
    rows: list[dict[str, Any]] = []
    now: dict[str, list[int]] = {}
    for key, f in rule_counters(listing):
        packets, size = f["packets"], f["bytes"]
        now[key] = [packets, size]
        old = previous.get(key, [0, 0])
        dp, db = (packets, size) if packets < old[0] else (packets - old[0], size - old[1])
        if dp <= 0:
            continue
        unspecified = "::" if f.get("family") == 6 else "0.0.0.0"
        rows.append(
            {
                "format": REPORT_FORMAT,
                "host": host,
                "serial": serial,
                "start": start.isoformat(),
                "end": end.isoformat(),
                "rule_id": f["rule_id"],
                "chain": f["chain"],
                "direction": _DIRECTIONS.get(hooks.get(f["chain"], "")),
                "action": f["action"],
                "src_ip": f.get("src_ip", unspecified),
                "dst_ip": f.get("dst_ip", unspecified),
                "proto": f.get("proto", 0),
                "dst_port": f.get("dst_port"),
                "packets": dp,
                "bytes": db,
            }
        )
    return rows, now
