"""Reading demo output back in the tests, independently of the generator's internals.

Flow files are parsed as text; addresses are attributed to workloads by the leases in
``truth.json`` (which the inventory tests check against ``inventory.yaml``/``.csv``).
"""

from __future__ import annotations

import bisect
import gzip
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any


def read_text(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("utf-8")


def flow_files(out: Path) -> list[Path]:
    return sorted(p for p in (out / "flows").rglob("*") if p.is_file())


def truth(out: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((out / "truth.json").read_text())
    return doc


def _ts(text: str | None) -> float:
    if text is None:
        return float("inf")
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class Owners:
    """Who held an address at a time: a workload name, an IP list name, or None."""

    leases: dict[str, list[tuple[float, float, str]]]
    external: dict[str, str]

    @classmethod
    def from_truth(cls, t: dict[str, Any]) -> Owners:
        leases: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
        for w in t["workloads"]:
            for a in w["addresses"]:
                since = _ts(a["from"]) if a["from"] else float("-inf")
                leases[a["ip"]].append((since, _ts(a["until"]), w["name"]))
        for v in leases.values():
            v.sort()
        external = {ip: x["name"] for x in t["external"] for ip in x["ips"]}
        return cls(dict(leases), external)

    def at(self, ip: str, t: float) -> str | None:
        held = self.leases.get(ip)
        if held:
            i = bisect.bisect_right(held, (t, float("inf"), "")) - 1
            if i >= 0 and held[i][0] <= t < held[i][1]:
                return held[i][2]
            return None
        x = self.external.get(ip)
        return None if x is None else "iplist:" + x


@dataclass
class Record:
    """One conversation as a client sees it: start, 5-tuple, and the client's byte count."""

    start: float
    src: str
    sport: int
    dst: str
    dport: int
    proto: int
    out_bytes: int


def vpc_lines(out: Path) -> list[tuple[Path, list[str]]]:
    return [(p, read_text(p).splitlines()) for p in flow_files(out)]


def vpc_requests(out: Path) -> list[Record]:
    """VPC records from a client's ephemeral port: the request side of each conversation."""
    recs = []
    for _, lines in vpc_lines(out):
        for line in lines[1:]:
            f = line.split(" ")
            if f[13] != "OK":
                continue
            sport, dport = int(f[5]), int(f[6])
            if sport >= 32768 and dport < 32768:
                recs.append(Record(float(f[10]), f[3], sport, f[4], dport, int(f[7]), int(f[9])))
    return recs


def zeek_rows(out: Path) -> list[list[str]]:
    rows: list[list[str]] = []
    for p in flow_files(out):
        rows.extend(
            line.split("\t") for line in read_text(p).splitlines() if not line.startswith("#")
        )
    return rows


def zeek_records(out: Path) -> list[Record]:
    proto = {"tcp": 6, "udp": 17}
    return [
        Record(
            float(r[0]),
            r[2],
            int(r[3]),
            r[4],
            int(r[5]),
            proto[r[6]],
            int(r[9]) if r[9] != "-" else 0,
        )
        for r in zeek_rows(out)
    ]


def attack_keys(out: Path) -> set[tuple[int, str, int, str, int]]:
    """(start second, src, sport, dst, dport) of every marked attack conversation."""
    keys = set()
    for line in (out / "truth" / "attacks.csv").read_text().splitlines()[1:]:
        f = line.split(",")
        keys.add((int(f[3]) // 1_000_000, f[6], int(f[7]), f[8], int(f[9])))
    return keys


def key(r: Record) -> tuple[int, str, int, str, int]:
    return (int(r.start), r.src, r.sport, r.dst, r.dport)
