"""Peak memory of one ingest, at full size against a tenth of it, in the same run.

Ingests one VPC v2 file of N records (100 M at BENCH_SCALE=1) in a fresh process and reads
that process's peak resident memory; the baseline is the same at N/10. A ratio near 1 means
memory does not grow with the input. Target: under 2 GiB at 100 M records.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vpcgen import write_vpc

CHILD = """
import json, resource, sys, time
from cellwall.allocator import tune_allocator
tune_allocator()  # as the CLI does at start
from cellwall.services.ingest import ingest_paths
from cellwall.workspace import Workspace
t = time.perf_counter()
doc = ingest_paths(Workspace.resolve(sys.argv[2]), [sys.argv[1]], fmt="vpc").to_dict()
print(json.dumps({"stored": doc["stored"], "seconds": time.perf_counter() - t,
                  "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _measure(records: int, tmp: Path) -> dict[str, float]:
    src = tmp / f"vpc-{records}.log"
    write_vpc(src, records)
    try:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(src), str(tmp / f"home-{records}")],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        src.unlink()
    doc = json.loads(out)
    assert doc["stored"] == records, doc
    return doc


def run(records: int | None = None) -> dict[str, object]:
    scale = float(os.environ.get("BENCH_SCALE", "1"))
    records = records or int(100_000_000 * scale)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        small = _measure(records // 10, Path(tmp))
        large = _measure(records, Path(tmp))
    return {
        "name": "ingest-peak-memory",
        "records": records,
        "peak_mib": round(large["peak_kib"] / 1024),
        "baseline_peak_mib_at_tenth": round(small["peak_kib"] / 1024),
        "ratio": round(large["peak_kib"] / small["peak_kib"], 2),
        "records_per_s": round(records / large["seconds"]),
    }


if __name__ == "__main__":
    print(run())
