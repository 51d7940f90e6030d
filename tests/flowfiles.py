"""Small flow files of the generic CSV format, and where the shared test data lives."""

from __future__ import annotations

from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
TESTDATA = SHARED / "testdata"

MAPPING = """\
columns:
  start: ts
  src_ip: src
  dst_ip: dst
  src_port: sport
  dst_port: dport
  proto: proto
  bytes: octets
"""


def write_csv(path: Path, rows: list[tuple[object, ...]]) -> Path:
    lines = ["ts,src,dst,sport,dport,proto,octets"]
    lines += [",".join(str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def make_rows(n: int, start: int = 1_762_000_000, step: int = 37) -> list[tuple[object, ...]]:
    return [
        (
            start + i * step,
            f"10.0.{i % 200}.{i % 250 + 1}",
            "10.1.0.5",
            32768 + i % 20000,
            443,
            "tcp",
            100 + i,
        )
        for i in range(n)
    ]
