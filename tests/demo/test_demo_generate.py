"""End to end: determinism, truth edges in the flows, attacks, churn, size and memory."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cellwall.demo import DemoConfig, DemoResult, generate
from cellwall.errors import UsageError

from .conftest import START, VPC
from .flowread import (
    Owners,
    Record,
    attack_keys,
    key,
    truth,
    vpc_requests,
    zeek_records,
)


def _digest(out: Path) -> dict[str, str]:
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


def test_same_seed_and_config_give_identical_bytes(tmp_path: Path) -> None:
    config = replace(VPC, days=1, flows=6000, gzip=True)
    generate(tmp_path / "a", config)
    generate(tmp_path / "b", config)
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert a == b and len(a) > 30
    generate(tmp_path / "c", replace(config, seed=config.seed + 1))
    c = _digest(tmp_path / "c")
    assert set(c) == set(a)
    assert c["truth.json"] != a["truth.json"] and c["inventory.yaml"] != a["inventory.yaml"]
    differ = [name for name in a if name.startswith("flows/") and a[name] != c[name]]
    assert len(differ) == sum(name.startswith("flows/") for name in a)


def _observed(records: list[Record], owners: Owners) -> Counter[tuple[str, str, str]]:
    seen: Counter[tuple[str, str, str]] = Counter()
    for r in records:
        client, server = owners.at(r.src, r.start), owners.at(r.dst, r.start)
        if client and server:
            seen[client, server, f"{'tcp' if r.proto == 6 else 'udp'}/{r.dport}"] += 1
    return seen


def _edge_key(e: dict[str, object]) -> tuple[str, str, str]:
    def name(end: object) -> str:
        assert isinstance(end, dict)
        return str(end["workload"]) if "workload" in end else "iplist:" + str(end["iplist"])

    return name(e["client"]), name(e["server"]), str(e["service"])


def test_every_truth_edge_appears_in_zeek_flows(zeek_run: tuple[Path, DemoResult]) -> None:
    out, _ = zeek_run
    t = truth(out)
    attacks = attack_keys(out)
    records = [r for r in zeek_records(out) if key(r) not in attacks]
    seen = _observed(records, Owners.from_truth(t))
    # Nine days from a Monday hold every schedule: steady, daily, Sunday's ETL, the rare task.
    for e in t["edges"]:
        assert e["conversations"] > 0
        assert seen[_edge_key(e)] == e["conversations"], e
    # Without the attacks, no conversation falls outside the intended edges.
    assert sum(seen.values()) == len(records)


def test_every_steady_and_daily_edge_appears_in_vpc_flows(vpc_run: tuple[Path, DemoResult]) -> None:
    out, _ = vpc_run
    t = truth(out)
    attacks = attack_keys(out)
    records = [r for r in vpc_requests(out) if key(r) not in attacks]
    seen = _observed(records, Owners.from_truth(t))
    for e in t["edges"]:
        if e["schedule"].startswith(("steady", "daily")):
            assert seen[_edge_key(e)] == e["conversations"] > 0, e
        else:  # two weekdays: no weekly ETL and no rare task
            assert e["conversations"] == seen[_edge_key(e)] == 0


def test_schedules_fire_at_their_times(zeek_run: tuple[Path, DemoResult]) -> None:
    out, _ = zeek_run
    t = truth(out)
    for e in t["edges"]:
        first = datetime.fromisoformat(e["first_seen"].replace("Z", "+00:00"))
        if e["purpose"] == "nightly database backup":
            assert first.hour in (1, 2)
        elif e["purpose"].startswith("weekly reporting ETL"):
            assert first.weekday() == 6 and first.hour in (2, 3)
            assert e["first_seen"][:10] == e["last_seen"][:10]
        elif "(rare)" in e["purpose"]:
            assert (first.hour, first.minute) == (10, 30)


def test_attacks_are_present_and_marked(zeek_run: tuple[Path, DemoResult]) -> None:
    out, result = zeek_run
    t = truth(out)
    rows = (out / "truth" / "attacks.csv").read_text().splitlines()[1:]
    assert len(rows) == result.attack_conversations
    stages = {s["id"]: s for s in t["attacks"]["stages"]}
    assert set(stages) == {"sqli", "scan", "lateral", "exfil"}
    by_key = {key(r): r for r in zeek_records(out)}
    owners = Owners.from_truth(t)
    found: defaultdict[str, list[Record]] = defaultdict(list)
    for line in rows:
        f = line.split(",")
        k = (int(f[3]) // 1_000_000, f[6], int(f[7]), f[8], int(f[9]))
        assert k in by_key, line
        found[f[0]].append(by_key[k])
    scan = found["scan"]
    assert len({(r.dst, r.dport) for r in scan}) == len(scan) >= 100
    assert {owners.at(r.src, r.start) for r in scan} == {"ord-web-1"}
    lateral = {(owners.at(r.dst, r.start), r.dport) for r in found["lateral"]}
    assert ("pay-db-1", 22) in lateral and any(port == 445 for _, port in lateral)
    exfil = found["exfil"]
    assert sum(r.out_bytes for r in exfil) > 1_000_000_000
    assert {owners.at(r.dst, r.start) for r in exfil} == {"iplist:exfil-drop"}
    assert {owners.at(r.dst, r.start) for r in found["sqli"]} >= {"ord-web-1", "ord-db-1"}


def test_pods_change_addresses_in_the_flows(vpc_run: tuple[Path, DemoResult]) -> None:
    out, _ = vpc_run
    owners = Owners.from_truth(truth(out))
    ips_of: defaultdict[str, set[str]] = defaultdict(set)
    users_of: defaultdict[str, set[str]] = defaultdict(set)
    for r in vpc_requests(out):
        name = owners.at(r.src, r.start)
        if name and not name.startswith("iplist:"):
            ips_of[name].add(r.src)
            users_of[r.src].add(name)
    assert max(len(v) for v in ips_of.values()) >= 2  # a pod restarted with a new address
    assert any(len(v) >= 2 for v in users_of.values())  # an address served two workloads


def test_volume_follows_the_day(zeek_run: tuple[Path, DemoResult]) -> None:
    out, _ = zeek_run
    t = truth(out)
    owners = Owners.from_truth(t)
    eu_web = {
        w["name"]
        for w in t["workloads"]
        if (w["labels"]["role"], w["labels"]["loc"]) == ("web", "eu-west-1")
    }
    by_hour: Counter[int] = Counter()
    for r in zeek_records(out):
        if owners.at(r.src, r.start) == "iplist:internet" and owners.at(r.dst, r.start) in eu_web:
            by_hour[datetime.fromtimestamp(r.start, UTC).hour] += 1
    # Customers of the EU sites (UTC+1) come in the afternoon, hardly at night.
    assert sum(by_hour[h] for h in (12, 13, 14, 15)) > 3 * sum(by_hour[h] for h in (1, 2, 3, 4))


def test_bad_configs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        generate(tmp_path, DemoConfig(start=datetime(2026, 11, 2)))
    with pytest.raises(UsageError):
        generate(tmp_path, replace(VPC, fmt="netflow"))  # type: ignore[arg-type]
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "old.log").write_text("x")
    with pytest.raises(UsageError):
        generate(tmp_path, VPC)


PEAK_RSS = """
import resource, sys
from datetime import datetime, UTC
from pathlib import Path
from cellwall.demo import DemoConfig, generate
r = generate(Path(sys.argv[1]), DemoConfig(seed=5, start=datetime(2026, 11, 2, tzinfo=UTC),
             days=2, flows=int(sys.argv[2]), chunk=50_000))
print(r.records, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _peak(out: Path, flows: int) -> tuple[int, int]:
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, str(out), str(flows)],
        capture_output=True,
        text=True,
        check=True,
    )
    records, kib = done.stdout.split()
    return int(records), int(kib) * 1024


def test_memory_stays_bounded(tmp_path: Path) -> None:
    small_records, small = _peak(tmp_path / "small", 100_000)
    big_records, big = _peak(tmp_path / "big", 2_000_000)
    assert big_records > 1_800_000 > 10 * small_records
    # 2M records held at once would take several hundred MB; streaming keeps the growth small.
    assert big - small < 120 * 2**20, (small, big)


def test_start_must_be_on_the_hour() -> None:
    with pytest.raises(UsageError):
        DemoConfig(start=START.replace(minute=30)).validate()
