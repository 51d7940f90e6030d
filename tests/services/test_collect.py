"""The live collector: real export datagrams over loopback into a collector process."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cellwall.ingest.netflow import NetflowSource
from cellwall.ingest.netflow_pcap import iter_frames
from cellwall.services.collect import Collector, CollectSettings, parse_listen
from cellwall.workspace import Workspace
from tests.ingest.test_netflow_templates import data_set, ipfix, record

pytestmark = pytest.mark.real

SOFTFLOWD = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "flows" / "softflowd"
PCAPS = [SOFTFLOWD / "softflowd_netflow_v9.pcap", SOFTFLOWD / "softflowd_netflow_v5.pcap"]
EXPECTED = 89 + 74
KEY = ["src_ip", "dst_ip", "src_port", "dst_port", "proto", "bytes", "packets", "start"]


def datagrams(paths: list[Path]) -> list[bytes]:
    out = []
    for p in paths:
        with open(p, "rb") as f:
            out += [fr.data for fr in iter_frames(f) if fr.skip is None]
    return out


def file_flows(paths: list[Path]) -> Counter[tuple[Any, ...]]:
    rows: Counter[tuple[Any, ...]] = Counter()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in NetflowSource().read(f, str(p)):
                rows.update(tuple(r.values()) for r in chunk.flows.select(KEY).to_pylist())
    return rows


def lake_table(home: Path) -> pa.Table:
    files = sorted((home / "lake" / "flows").glob("day=*/*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else pa.table({})


def start(home: Path, *args: str) -> tuple[subprocess.Popen[str], int]:
    cmd = [sys.executable, "-c", "from cellwall.cli import main; main()", "collect"]
    proc = subprocess.Popen(
        [*cmd, "--listen", "udp://127.0.0.1:0", "--home", str(home), "--json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())
    return proc, int(first["listening"][1])


def send(port: int, payloads: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for p in payloads:
            s.sendto(p, ("127.0.0.1", port))


def wait_for(stdout: IO[str], test: Any, seconds: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = stdout.readline()
        if not line:
            break
        doc: dict[str, Any] = json.loads(line)
        if test(doc):
            return doc
    raise AssertionError("the collector never reported the expected state")


def test_batches_commit_on_time_and_equal_the_file_decode(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc, port = start(home, "--batch-seconds", "0.3")
    try:
        send(port, datagrams(PCAPS))
        assert proc.stdout is not None
        doc = wait_for(proc.stdout, lambda d: d["stored"] >= EXPECTED)
        assert doc["datagrams_dropped_queue_full"] == 0
        # committed while running: the lake has the flows before any shutdown
        table = lake_table(home)
        assert table.num_rows == EXPECTED
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    final = json.loads(out.strip().splitlines()[-1])
    assert final["final"] and final["records_decoded"] == EXPECTED
    assert final["datagrams_received"] == len(datagrams(PCAPS))
    got = Counter(tuple(r.values()) for r in table.select(KEY).to_pylist())
    assert got == file_flows(PCAPS)
    assert set(table["exporter"].to_pylist()) == {"127.0.0.1"}
    assert set(table["lineage_file"].to_pylist()) == {"udp://127.0.0.1:0"}


def test_sigterm_commits_what_it_has_and_counts_what_waited(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc, port = start(home, "--batch-seconds", "3600", "--batch-records", "1000000")
    try:
        orphan = ipfix(data_set([record()], tid=999))  # its template never comes
        send(port, [orphan, *datagrams(PCAPS)])
        assert proc.stdout is not None
        doc = wait_for(proc.stdout, lambda d: d["records_in_batch"] >= EXPECTED)
        assert doc["stored"] == 0 and doc["sets_waiting_for_template"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    final = json.loads(out.strip().splitlines()[-1])
    assert final["stored"] == EXPECTED
    assert final["quarantined"] == {"no-template": 1}
    assert lake_table(home).num_rows == EXPECTED
    [line] = (home / "lake" / "quarantine").glob("*.jsonl")
    assert json.loads(line.read_text())["reason"] == "no-template"


def test_a_full_queue_drops_and_counts_instead_of_growing(tmp_path: Path) -> None:
    ws = Workspace.resolve(tmp_path / "home")
    collector = Collector(ws, CollectSettings("udp://127.0.0.1:0", queue_datagrams=4))
    receiver = __import__("threading").Thread(target=collector.receive, daemon=True)
    receiver.start()
    try:
        payloads = datagrams(PCAPS[:1])
        send(collector.address[1], payloads)
        deadline = time.monotonic() + 10
        while collector.counters.received < len(payloads) and time.monotonic() < deadline:
            time.sleep(0.01)
        snap = collector.snapshot()
        assert snap["datagrams_received"] == len(payloads)
        assert snap["queue_depth"] == 4
        assert snap["datagrams_dropped_queue_full"] == len(payloads) - 4
        assert collector.rcvbuf >= 1 << 20
    finally:
        collector.stop()
        receiver.join()
        collector.sock.close()


def test_listen_urls() -> None:
    assert parse_listen("udp://0.0.0.0:2055") == ("0.0.0.0", 2055)
    assert parse_listen("udp://[::1]:9995") == ("::1", 9995)
    for bad in ("tcp://1.2.3.4:5", "udp://host", "2055", "udp://:99999"):
        with pytest.raises(Exception, match="udp://HOST:PORT"):
            parse_listen(bad)
