"""VPC v2 text into the lake, end to end, against a pure-Python split-and-convert parser.

The figure is records per second through ``ingest_paths`` (read, parse, validate, write
Parquet, commit), and its ratio to the baseline parser measured on the same file in the same
run. Target: at least 3 M records/s and at least 15x the baseline.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cellwall.services.ingest import ingest_paths
from cellwall.workspace import Workspace
from vpcgen import write_vpc


def baseline_parse(path: Path, limit: int) -> tuple[int, float]:
    """What a straightforward parser does: split each line, convert each field."""
    started = time.perf_counter()
    rows = []
    with open(path, encoding="utf-8") as f:
        header = f.readline().split()
        for i, line in enumerate(f):
            if i >= limit:
                break
            v = line.split()
            if len(v) != len(header) or v[13] != "OK":
                continue
            rows.append(
                (
                    str(ipaddress.ip_address(v[3])),
                    str(ipaddress.ip_address(v[4])),
                    int(v[5]),
                    int(v[6]),
                    int(v[7]),
                    int(v[8]),
                    int(v[9]),
                    datetime.fromtimestamp(int(v[10]), UTC),
                    datetime.fromtimestamp(int(v[11]), UTC),
                    v[12],
                )
            )
    return len(rows), time.perf_counter() - started


def run(records: int | None = None) -> dict[str, object]:
    scale = float(os.environ.get("BENCH_SCALE", "1"))
    records = records or int(3_000_000 * scale)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "vpc.log"
        write_vpc(src, records)
        n, secs = baseline_parse(src, min(records, 300_000))
        base_rate = n / secs
        ws = Workspace.resolve(Path(tmp) / "home")
        started = time.perf_counter()
        doc = ingest_paths(ws, [src], fmt="vpc").to_dict()
        elapsed = time.perf_counter() - started
        assert doc["stored"] == records, doc
    rate = records / elapsed
    return {
        "name": "vpc-into-lake",
        "records": records,
        "records_per_s": round(rate),
        "baseline_records_per_s": round(base_rate),
        "ratio": round(rate / base_rate, 1),
    }


if __name__ == "__main__":
    print(run())
