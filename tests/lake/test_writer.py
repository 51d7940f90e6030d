"""The lake's transactions: idempotence, crash recovery, quarantine, the writer lock."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cellwall.errors import LockedError
from cellwall.ingest.base import Rejects
from cellwall.lake.layout import LakeLayout
from cellwall.lake.manifest import Manifest
from cellwall.lake.writer import StagedIngest, recover
from cellwall.model.flow_schema import conform
from cellwall.services.ingest import ingest_paths
from cellwall.workspace import Workspace
from tests.flowfiles import make_rows, write_csv


def lake_rows(ws: Workspace) -> int:
    files = list((ws.lake / "flows").glob("day=*/*.parquet"))
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def test_same_file_twice_adds_nothing(ws: Workspace, tmp_path: Path, mapping: Path) -> None:
    f = write_csv(tmp_path / "a.csv", make_rows(500))
    first = ingest_paths(ws, [f], fmt="csv", options={"mapping": str(mapping)}).to_dict()
    assert first["stored"] == 500 and first["duplicate"] == 0
    second = ingest_paths(ws, [f], fmt="csv", options={"mapping": str(mapping)}).to_dict()
    assert second["stored"] == 0 and second["duplicate"] == 500 and second["read"] == 500
    assert lake_rows(ws) == 500


def test_gzip_of_an_ingested_file_is_a_duplicate(
    ws: Workspace, tmp_path: Path, mapping: Path
) -> None:
    f = write_csv(tmp_path / "a.csv", make_rows(300))
    gz = tmp_path / "a.csv.gz"
    gz.write_bytes(gzip.compress(f.read_bytes()))
    ingest_paths(ws, [f], fmt="csv", options={"mapping": str(mapping)})
    again = ingest_paths(ws, [gz], fmt="csv", options={"mapping": str(mapping)}).to_dict()
    assert again["duplicate"] == 300 and again["stored"] == 0
    assert lake_rows(ws) == 300
    assert not any((ws.lake / "_staging").iterdir())


def test_partitions_by_utc_day(ws: Workspace, tmp_path: Path, mapping: Path) -> None:
    rows = make_rows(100, start=1_762_041_600 - 50 * 60, step=60)  # straddles midnight UTC
    f = write_csv(tmp_path / "a.csv", rows)
    ingest_paths(ws, [f], fmt="csv", options={"mapping": str(mapping)})
    days = sorted(p.name for p in (ws.lake / "flows").iterdir())
    assert days == ["day=2025-11-01", "day=2025-11-02"]
    first = pq.read_table(next((ws.lake / "flows" / "day=2025-11-01").glob("*.parquet")))
    assert first.num_rows == 50


def test_truncated_gzip_keeps_the_good_records(
    ws: Workspace, tmp_path: Path, mapping: Path
) -> None:
    f = write_csv(tmp_path / "a.csv", make_rows(20000))
    data = gzip.compress(f.read_bytes())
    gz = tmp_path / "cut.csv.gz"
    gz.write_bytes(data[: len(data) // 2])
    doc = ingest_paths(ws, [gz], fmt="csv", options={"mapping": str(mapping)}).to_dict()
    assert doc["quarantined"].get("truncated-gzip") == 1
    assert 0 < doc["stored"] < 20000
    q = [
        json.loads(line)
        for p in (ws.lake / "quarantine").glob("*.jsonl")
        for line in p.read_text().splitlines()
    ]
    cut = [r for r in q if r["reason"] == "truncated-gzip"]
    assert cut[0]["file"] == str(gz) and cut[0]["unit"] == "offset" and cut[0]["pos"] > 0


def test_bad_file_fails_alone(ws: Workspace, tmp_path: Path, mapping: Path) -> None:
    good = write_csv(tmp_path / "good.csv", make_rows(10))
    missing = tmp_path / "nope.csv"
    doc = ingest_paths(ws, [missing, good], fmt="csv", options={"mapping": str(mapping)}).to_dict()
    assert doc["failed_files"] == 1 and doc["stored"] == 10
    assert "nope.csv" in doc["files"][0]["error"]


def _staged_commit_crash(ws: Workspace) -> tuple[LakeLayout, Manifest, StagedIngest]:
    layout = LakeLayout(ws.ensure().lake)
    manifest = Manifest(ws.engine)
    staged = StagedIngest(layout)
    n = 10
    table = conform(
        {
            "start": pa.array(
                [1_762_000_000_000_000 + i * 86_400_000_000 for i in range(n)],
                pa.timestamp("us", tz="UTC"),
            ),
            "src_ip": ["10.0.0.1"] * n,
            "dst_ip": ["10.0.0.2"] * n,
            "proto": [6] * n,
            "lineage_format": ["csv"] * n,
            "lineage_file": ["x"] * n,
            "lineage_pos": list(range(n)),
        },
        n,
    )
    staged.write_flows(table)
    rej = Rejects("x")
    rej.add(99, "bad-ip", "nope")
    staged.write_rejects(rej)
    return layout, manifest, staged


def test_crash_in_the_middle_of_a_commit_rolls_forward(ws: Workspace) -> None:
    layout, manifest, staged = _staged_commit_crash(ws)
    files = staged.close()
    manifest.begin_commit(
        staged.txn,
        path="x",
        fmt="csv",
        raw_key="r",
        content_key="c",
        counts={"read": 11, "stored": 10},
        staged=files,
    )
    # The process dies after moving only the first file into place.
    first = files[0]
    Path(first.final).parent.mkdir(parents=True, exist_ok=True)
    os.replace(first.staged, first.final)
    assert lake_rows(ws) == 1
    result = recover(layout, manifest)
    assert result["rolled_forward"] == 1
    assert lake_rows(ws) == 10
    assert manifest.find(raw_key="r") is not None
    assert len(list(layout.quarantine.glob("*.jsonl"))) == 1
    assert not layout.staging.exists() or not any(layout.staging.iterdir())


def test_crash_before_commit_leaves_nothing(ws: Workspace) -> None:
    layout, manifest, staged = _staged_commit_crash(ws)
    staged.close()  # staged, never committed: the process died here
    assert any(layout.staging.iterdir())
    assert recover(layout, manifest)["discarded"] == 1
    assert lake_rows(ws) == 0 and manifest.find(raw_key="r") is None


def _cli(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cellwall.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.real
def test_kill_9_mid_ingest_then_rerun(tmp_path: Path, mapping: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "CELLWALL_HOME": str(home)}
    files = [
        write_csv(tmp_path / f"f{i}.csv", make_rows(300_000, start=1_762_000_000 + i))
        for i in range(3)
    ]
    args = ["ingest", *map(str, files), "--format", "csv", "-o", f"mapping={mapping}", "--json"]
    proc = _cli(*args, env=env)
    staging = home / "lake" / "_staging"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if staging.exists() and any(staging.glob("*/flows/*/*.parquet")):
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    ws = Workspace.resolve(home)
    partial = lake_rows(ws)
    assert partial % 300_000 == 0  # whole files only: nothing partial is visible
    rerun = _cli(*args, env=env)
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr.decode()
    doc = json.loads(stdout)
    assert doc["stored"] + doc["duplicate"] == 900_000
    assert lake_rows(ws) == 900_000
    assert not any(staging.iterdir())


@pytest.mark.real
def test_second_writer_is_refused(ws: Workspace, tmp_path: Path, mapping: Path) -> None:
    ws.ensure()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import filelock,sys,time; l=filelock.FileLock(sys.argv[1]); l.acquire(); "
            "print('held', flush=True); time.sleep(30)",
            str(ws.home / "writer.lock"),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        f = write_csv(tmp_path / "a.csv", make_rows(5))
        with pytest.raises(LockedError, match="another cellwall process"):
            ingest_paths(ws, [f], fmt="csv", options={"mapping": str(mapping)})
    finally:
        holder.kill()
        holder.communicate()
    assert lake_rows(ws) == 0
