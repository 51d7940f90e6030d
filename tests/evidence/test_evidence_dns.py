"""DNS evidence rows, their validity, the lake's dns partitions and the names_for lookup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from cellwall.evidence.dns import (
    DNS_SCHEMA,
    MAX_TTL_S,
    MIN_TTL_S,
    dns_rows,
    names_for,
    names_in,
    scan_dns,
)
from cellwall.lake.layout import LakeLayout
from cellwall.lake.writer import StagedIngest

T0 = datetime(2024, 5, 1, 23, 59, 0, tzinfo=UTC)
US = 1_000_000
TS = pa.timestamp("us", tz="UTC")


def at(*seconds: float) -> pa.Array:
    return pa.array([T0 + timedelta(seconds=s) for s in seconds], TS)


def epoch(moment: datetime) -> int:
    return int(moment.timestamp() * US)


def rows(answers: list[tuple[float, str, list[str], list[float | None] | None]]) -> pa.Table:
    """Evidence from (seconds after T0, query, answers, ttls) records."""
    ttl_lists = [t if t is not None else [] for _, _, _, t in answers]
    return dns_rows(
        np.array([epoch(T0) + int(s * US) for s, _, _, _ in answers], np.int64),
        pa.array([q for _, q, _, _ in answers]),
        pa.array([a for _, _, a, _ in answers], pa.list_(pa.string())),
        pa.array(ttl_lists, pa.list_(pa.float64())),
        pa.array(["10.0.0.5"] * len(answers)),
        np.arange(1, len(answers) + 1, dtype=np.int64),
        source="test",
        file="test.log",
    )


def test_rows_name_ip_answers_by_the_query_and_clamp_the_ttl() -> None:
    table = rows(
        [
            (0, "WWW.Example.COM.", ["cdn.example.net", "192.0.2.1", "2001:DB8::1"], [5, 0, 1e9]),
            (1, "b.example", ["192.0.2.2", "192.0.2.3"], [None]),
            (2, "", ["192.0.2.4"], [60]),
        ]
    )
    assert table.schema == DNS_SCHEMA
    got = [(r["ip"], r["name"], r["ttl_s"], r["lineage_pos"]) for r in table.to_pylist()]
    assert got == [
        ("192.0.2.1", "www.example.com", 0, 1),
        ("2001:db8::1", "www.example.com", 1_000_000_000, 1),
        ("192.0.2.2", "b.example", None, 2),
        ("192.0.2.3", "b.example", None, 2),
    ]
    spans = [(r["valid_until"] - r["ts"]).total_seconds() for r in table.to_pylist()]
    assert spans == [MIN_TTL_S, MAX_TTL_S, MIN_TTL_S, MIN_TTL_S]


def test_a_sliced_list_column_pairs_answers_and_ttls_by_position() -> None:
    answers = pa.array([["192.0.2.9"], ["192.0.2.1", "192.0.2.2"]], pa.list_(pa.string()))[1:]
    ttls = pa.array([[1.0], [100.0, 200.0]], pa.list_(pa.float64()))[1:]
    table = dns_rows(
        np.array([0], np.int64), pa.array(["a"]), answers, ttls, None, np.array([1]),
        source="t", file="f",
    )  # fmt: skip
    assert table["ttl_s"].to_pylist() == [100, 200]
    assert table["client_ip"].to_pylist() == [None, None]


def test_most_recent_valid_answer_wins() -> None:
    evidence = rows(
        [
            (0, "long.example", ["192.0.2.1"], [3600]),
            (10, "short.example", ["192.0.2.1"], [60]),
            (10, "alpha.example", ["192.0.2.1"], [60]),
            (20, "other.example", ["192.0.2.2"], [60]),
        ]
    )
    names = names_in(
        evidence,
        pa.array(["192.0.2.1"] * 5 + ["192.0.2.2", "192.0.2.3", "not-an-ip"]),
        at(-1, 5, 30, 100, 3600, 20, 20, 20),
    )
    assert names.to_pylist() == [
        None,  # before any answer
        "long.example",
        "alpha.example",  # two answers at the same time: the first name
        "long.example",  # the newer ones expired, the older one still holds
        None,  # [ts, valid_until) is half-open
        "other.example",
        None,
        None,
    ]


def test_lookup_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="ips has 2 values and ts 1"):
        names_in(rows([]), pa.array(["192.0.2.1", "192.0.2.2"]), at(0))
    with pytest.raises(TypeError, match="timestamp"):
        names_in(rows([]), pa.array(["192.0.2.1"]), pa.array([1]))
    assert names_in(rows([]), pa.array([], pa.string()), at()).to_pylist() == []


def commit(lake: Path, table: pa.Table) -> None:
    staged = StagedIngest(LakeLayout(lake))
    staged.write_dns(table)
    for f in staged.close():
        target = Path(f.final)
        target.parent.mkdir(parents=True, exist_ok=True)
        Path(f.staged).rename(target)


def test_names_for_reads_the_partitions_that_can_answer(tmp_path: Path) -> None:
    evidence = rows(
        [
            (0, "late.example", ["192.0.2.1"], [7200]),  # 23:59 on 2024-05-01
            (120, "next-day.example", ["192.0.2.2"], [60]),  # 00:01 on 2024-05-02
        ]
    )
    commit(tmp_path, evidence)
    days = sorted(p.parent.name for p in (tmp_path / "dns").glob("*/*.parquet"))
    assert days == ["day=2024-05-01", "day=2024-05-02"]
    names = names_for(tmp_path, pa.array(["192.0.2.1", "192.0.2.2"]), at(3000, 150))
    assert names.to_pylist() == ["late.example", "next-day.example"]
    assert scan_dns(tmp_path).num_rows == 2
    none = names_for(tmp_path, pa.array(["192.0.2.1"]), pa.array([None], TS))
    assert none.to_pylist() == [None]
    assert names_for(tmp_path / "empty", pa.array(["192.0.2.1"]), at(0)).to_pylist() == [None]


def test_abort_leaves_no_dns_files(tmp_path: Path) -> None:
    staged = StagedIngest(LakeLayout(tmp_path))
    staged.write_dns(rows([(0, "a.example", ["192.0.2.1"], [60])]))
    staged.abort()
    assert not list(tmp_path.rglob("*.parquet"))
    assert scan_dns(tmp_path).num_rows == 0
