"""Fast synthetic VPC v2 text for the benchmarks (vectorised with Arrow, not per line)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

HEADER = (
    b"version account-id interface-id srcaddr dstaddr srcport dstport protocol packets "
    b"bytes start end action log-status\n"
)


def _ips(rng: np.random.Generator, n: int, pool: pa.Array) -> pa.Array:
    return pool.take(pa.array(rng.integers(0, len(pool), n)))


def _values(strings: pa.Array) -> bytes:
    """The concatenated bytes of a string array, straight from its data buffer."""
    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks()
    offsets = np.frombuffer(strings.buffers()[1], np.int32)[strings.offset :]
    first, last = int(offsets[0]), int(offsets[len(strings)])
    return strings.buffers()[2].to_pybytes()[first:last]


def write_vpc(
    path: Path, records: int, *, seed: int = 1, batch: int = 1_000_000, distinct_ips: int = 50_000
) -> int:
    """Write ``records`` default-format lines; returns the file size in bytes."""
    rng = np.random.default_rng(seed)
    octets = rng.integers(0, 256, (distinct_ips, 2))
    pool = pa.array([f"10.{a}.{b}.{i % 250 + 1}" for i, (a, b) in enumerate(octets)])
    start = 1_762_000_000
    with open(path, "wb") as out:
        out.write(HEADER)
        done = 0
        while done < records:
            n = min(batch, records - done)
            t0 = start + (done + np.arange(n)) // 2_000
            cols = [
                pa.array(np.full(n, "2")),
                pa.array(np.full(n, "123456789012")),
                pa.array(np.full(n, "eni-0a1b2c3d4e5f60718")),
                _ips(rng, n, pool),
                _ips(rng, n, pool),
                pc.cast(pa.array(rng.integers(32768, 61000, n)), pa.string()),
                pc.cast(pa.array(rng.choice([443, 5432, 6379, 8080, 53, 22], n)), pa.string()),
                pa.array(np.where(rng.random(n) < 0.95, "6", "17")),
                pc.cast(pa.array(rng.integers(1, 200, n)), pa.string()),
                pc.cast(pa.array(rng.integers(40, 200_000, n)), pa.string()),
                pc.cast(pa.array(t0), pa.string()),
                pc.cast(pa.array(t0 + 60), pa.string()),
                pa.array(np.where(rng.random(n) < 0.97, "ACCEPT", "REJECT")),
                pa.array(np.full(n, "OK")),
            ]
            lines = pc.binary_join_element_wise(*cols, " ")
            lines = pc.binary_join_element_wise(lines, pa.array(np.full(n, "")), "\n")
            out.write(_values(lines))
            done += n
    return path.stat().st_size
