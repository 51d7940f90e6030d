"""Benchmark: the VPC Flow Logs adapter against a straightforward pure-Python parser.

The adapter parses an uncompressed default-format (v2) file into Arrow flows, every chunk,
as ``cellwall ingest`` drives it (``open_input``, then ``VpcFlowLogs.read``), without the
lake. The baseline splits each line, converts each field with ``int()``, checks each address
with :mod:`ipaddress` and builds column lists; it runs on a slice of the same file and is
scaled per record. Target: at least 3 M records/s on 2 cores, and at least 15x the baseline.

Sizes scale with ``BENCH_SCALE`` (default 1.0).
"""

from __future__ import annotations

import ipaddress
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cellwall.ingest.stream import open_input
from cellwall.ingest.vpc import VpcFlowLogs
from vpcgen import write_vpc

BASELINE_RECORDS = 200_000
ROUNDS = 3


def baseline_parse(path: Path, limit: int) -> tuple[int, float]:
    """Parse the first ``limit`` records the obvious way; (records, seconds)."""
    started = time.perf_counter()
    columns: dict[str, list[Any]] = {
        k: [] for k in ("src", "dst", "sport", "dport", "proto", "packets", "bytes", "start",
                        "end", "action", "exporter")
    }  # fmt: skip
    count = 0
    with open(path, encoding="utf-8") as f:
        f.readline()  # the header
        for line in f:
            if count >= limit:
                break
            count += 1
            v = line.split(" ")
            if len(v) != 14 or v[13].rstrip("\n") != "OK":
                continue
            columns["src"].append(str(ipaddress.ip_address(v[3])))
            columns["dst"].append(str(ipaddress.ip_address(v[4])))
            columns["sport"].append(int(v[5]))
            columns["dport"].append(int(v[6]))
            columns["proto"].append(int(v[7]))
            columns["packets"].append(int(v[8]))
            columns["bytes"].append(int(v[9]))
            columns["start"].append(datetime.fromtimestamp(int(v[10]), UTC))
            columns["end"].append(datetime.fromtimestamp(int(v[11]), UTC))
            columns["action"].append(v[12])
            columns["exporter"].append(f"aws:{v[1]}:{v[2]}")
    return count, time.perf_counter() - started


def adapter_parse(path: Path, workers: int) -> tuple[int, float, float]:
    """Parse the whole file with the adapter; (flows, wall seconds, CPU seconds)."""
    cpu, started = time.process_time(), time.perf_counter()
    flows = 0
    with open_input(path) as stream:
        for chunk in VpcFlowLogs({"workers": str(workers)}).read(stream, str(path)):
            flows += chunk.flows.num_rows
    return flows, time.perf_counter() - started, time.process_time() - cpu


def run(records: int = 3_000_000) -> dict[str, Any]:
    records = max(1000, int(records * float(os.environ.get("BENCH_SCALE", "1"))))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vpc-v2.log"
        size = write_vpc(path, records)
        n, secs = baseline_parse(path, min(records, BASELINE_RECORDS))
        base_rate = n / secs
        best: dict[int, tuple[float, float]] = {}
        for workers in (1, 2):
            for _ in range(ROUNDS):
                flows, wall, cpu = adapter_parse(path, workers)
                assert flows == records, (flows, records)
                best[workers] = min(best.get(workers, (wall, cpu)), (wall, cpu))
    wall, cpu = best[2]
    rate = records / wall
    return {
        "name": "vpc-parse",
        "records": records,
        "mb": round(size / 1e6),
        "records_per_s": round(rate),
        "records_per_s_1_worker": round(records / best[1][0]),
        "cpu_us_per_record": round(cpu / records * 1e6, 3),
        "cores": os.cpu_count(),
        "baseline_records_per_s": round(base_rate),
        "ratio": round(rate / base_rate, 1),
    }


if __name__ == "__main__":
    print(run())
