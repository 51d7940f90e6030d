"""Benchmark: the Zeek conn.log TSV adapter against a straightforward pure-Python parser.

``generate`` writes a realistic conn.log with NumPy and Arrow (no per-line Python): Zeek's
22 default fields, busy and quiet hosts drawn from pools (5 % IPv6), tcp/udp/icmp, unset
durations and counts, typical histories. The adapter reads it from memory with its default
threads; the baseline (split every line, convert every value in Python, with a cache for
addresses) reads a 200 000-line slice, and both are given as records per second. The
process CPU time per line is given too, as it does not depend on what else the machine
runs. Sizes scale with ``BENCH_SCALE`` (default 1.0).
"""

from __future__ import annotations

import io
import json
import os
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cellwall.ingest.parallel import worker_count
from cellwall.ingest.zeek import ZeekTsvSource
from cellwall.model.net import canonical_ip

_LAYOUT = """
ts time
uid string
id.orig_h addr
id.orig_p port
id.resp_h addr
id.resp_p port
proto enum
service string
duration interval
orig_bytes count
resp_bytes count
conn_state string
local_orig bool
local_resp bool
missed_bytes count
history string
orig_pkts count
orig_ip_bytes count
resp_pkts count
resp_ip_bytes count
tunnel_parents set[string]
ip_proto count
"""
FIELDS, TYPES = (
    list(c) for c in zip(*(r.split() for r in _LAYOUT.strip().splitlines()), strict=True)
)
_BASELINE_COLUMNS = [
    "start", "end", "src_ip", "src_port", "dst_ip", "dst_port", "proto", "bytes", "packets",
    "rev_bytes", "rev_packets", "source_id", "tcp_flags",
]  # fmt: skip
_B62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8)


def _strings(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def _pick(rng: np.random.Generator, options: list[str], n: int, p: list[float]) -> pa.Array:
    return pc.take(pa.array(options, pa.string()), pa.array(rng.choice(len(options), n, p=p)))


def _fixed6(us: np.ndarray) -> pa.Array:
    whole = _strings(us // 1_000_000)
    frac = pc.utf8_lpad(_strings(us % 1_000_000), 6, "0")
    return pc.binary_join_element_wise(whole, frac, ".")


def _hosts(
    rng: np.random.Generator, n: int, pool: int, pattern: str, first: tuple[int, int] = (0, 32)
) -> pa.Array:
    """``n`` addresses drawn from a pool of ``pool`` hosts, a few of them much busier."""
    parts = [rng.integers(*first, pool)] + [rng.integers(1, 255, pool) for _ in range(3)]
    if ":" in pattern:
        parts = [np.char.lower(np.char.mod("%x", p)) for p in parts[:2]]
    texts = [pattern.format(*row) for row in zip(*parts, strict=False)]
    weights = 1.0 / np.arange(1, pool + 1) ** 1.1
    return pc.take(pa.array(texts), pa.array(rng.choice(pool, n, p=weights / weights.sum())))


def _data_bytes(strings: pa.Array) -> bytes:
    """The concatenated values of a string array without nulls, straight from its buffer."""
    offsets = np.frombuffer(strings.buffers()[1], np.int32, len(strings) + 1, strings.offset * 4)
    return strings.buffers()[2].to_pybytes()[offsets[0] : offsets[-1]]


def generate(lines: int = 2_000_000, seed: int = 7) -> bytes:
    """A realistic conn.log (TSV with header and #close) of ``lines`` data lines."""
    rng = np.random.default_rng(seed)
    n = lines
    ts = 1_762_000_000_000_000 + np.cumsum(rng.integers(0, 4000, n))
    uid_bytes = _B62[rng.integers(0, 62, (n, 17))]
    uid = pc.binary_join_element_wise(
        "C", pc.cast(pa.array(uid_bytes.view("S17").ravel()), pa.string()), ""
    )
    v6 = pa.array(rng.random(n) < 0.05)
    orig_h = pc.if_else(v6, _hosts(rng, n, 300, "fd00::{}:{}"), _hosts(rng, n, 4000, "10.{}.{}.{}"))
    servers = pc.if_else(
        pa.array(rng.random(n) < 0.6),
        _hosts(rng, n, 500, "10.{}.{}.{}"),
        _hosts(rng, n, 20_000, "{}.{}.{}.{}", first=(1, 224)),
    )
    resp_h = pc.if_else(v6, _hosts(rng, n, 2000, "2001:db8:{}::{}"), servers)
    kind = rng.choice(3, n, p=[0.7, 0.27, 0.03])  # tcp, udp, icmp
    proto = pc.take(pa.array(["tcp", "udp", "icmp"]), pa.array(kind))
    ip_proto = np.array([6, 17, 1])[kind]
    orig_p = np.where(kind == 2, 8, rng.integers(32768, 61000, n))
    resp_p = np.where(
        kind == 2, 0, np.array([443, 80, 53, 22, 5432, 3306, 8443, 123])[rng.integers(0, 8, n)]
    )
    service = _pick(
        rng, ["-", "ssl", "http", "dns", "ssh", "postgresql"], n, [0.3, 0.3, 0.15, 0.15, 0.05, 0.05]
    )
    unset = rng.random(n) < 0.1
    duration = pc.if_else(pa.array(unset), "-", _fixed6(rng.integers(0, 30_000_000, n)))
    ob, rb = rng.integers(0, 200_000, n), rng.integers(0, 2_000_000, n)
    opk, rpk = ob // 1000 + 1, rb // 1000 + 1
    history = pc.if_else(
        pa.array(kind == 0),
        _pick(
            rng,
            ["ShADadFf", "ShADadfF", "S", "Sr", "ShAdDaFf", "^hADad", "ShADadR"],
            n,
            [0.5, 0.2, 0.1, 0.08, 0.07, 0.03, 0.02],
        ),
        _pick(rng, ["D", "Dd"], n, [0.3, 0.7]),
    )
    states = ["SF", "S0", "REJ", "S1", "OTH", "RSTO"]
    state = _pick(rng, states, n, [0.6, 0.15, 0.08, 0.07, 0.05, 0.05])
    cols = [
        _fixed6(ts),
        uid,
        orig_h,
        _strings(orig_p),
        resp_h,
        _strings(resp_p),
        proto,
        service,
        duration,
        pc.if_else(pa.array(unset), "-", _strings(ob)),
        pc.if_else(pa.array(unset), "-", _strings(rb)),
        state,
        _pick(rng, ["T", "F"], n, [0.8, 0.2]),
        _pick(rng, ["T", "F"], n, [0.5, 0.5]),
        pa.repeat(pa.scalar("0"), n),
        history,
        _strings(opk),
        _strings(ob + 40 * opk),
        _strings(rpk),
        _strings(rb + 40 * rpk),
        pa.repeat(pa.scalar("-"), n),
        _strings(ip_proto),
    ]
    rows = pc.binary_join_element_wise(*cols, "\t")
    header = (
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n"
        "#path\tconn\n#open\t2025-11-01-12-00-00\n#fields\t" + "\t".join(FIELDS) + "\n"
        "#types\t" + "\t".join(TYPES) + "\n"
    ).encode()
    rows = pc.binary_join_element_wise(rows, "", "\n")  # each row gets its newline
    chunks = rows.chunks if isinstance(rows, pa.ChunkedArray) else [rows]
    body = b"".join(_data_bytes(c) for c in chunks)
    return header + body + b"#close\t2025-11-01-13-00-00\n"


def baseline_parse(data: bytes) -> pa.Table:
    """A straightforward parser: split every line, convert every value in Python."""
    protos = {"tcp": 6, "udp": 17, "icmp": 1}
    ips: dict[str, str | None] = {}
    out: dict[str, list[object]] = {k: [] for k in _BASELINE_COLUMNS}
    names: list[str] = []
    for raw in data.decode().split("\n"):
        if raw.startswith("#fields"):
            names = raw.split("\t")[1:]
            continue
        if not raw or raw.startswith("#"):
            continue
        row = dict(zip(names, raw.split("\t"), strict=True))
        ts = round(float(row["ts"]) * 1e6)
        dur = row["duration"]
        for key in ("id.orig_h", "id.resp_h"):
            if row[key] not in ips:
                ips[row[key]] = canonical_ip(row[key])
        history = row["history"]
        flags = sum(
            bit
            for letters, bit in (("Ss", 2), ("Hh", 18), ("Aa", 16), ("Ff", 1), ("Rr", 4))
            if any(c in history for c in letters)
        )
        out["start"].append(ts)
        out["end"].append(None if dur == "-" else ts + round(float(dur) * 1e6))
        out["src_ip"].append(ips[row["id.orig_h"]])
        out["src_port"].append(int(row["id.orig_p"]))
        out["dst_ip"].append(ips[row["id.resp_h"]])
        out["dst_port"].append(int(row["id.resp_p"]))
        out["proto"].append(protos[row["proto"]])
        out["bytes"].append(int(row["orig_ip_bytes"]))
        out["packets"].append(int(row["orig_pkts"]))
        out["rev_bytes"].append(int(row["resp_ip_bytes"]))
        out["rev_packets"].append(int(row["resp_pkts"]))
        out["source_id"].append(row["uid"])
        out["tcp_flags"].append(flags if row["proto"] == "tcp" else None)
    return pa.table(out)


def _adapter_rows(data: bytes) -> int:
    rows = 0
    for chunk in ZeekTsvSource().read(io.BytesIO(data), "bench.log"):
        rows += chunk.flows.num_rows
        if len(chunk.rejects):
            raise AssertionError(f"the adapter rejected rows: {chunk.rejects.counts()}")
    return rows


def run(lines: int = 2_000_000) -> dict[str, object]:
    """Time the adapter on ``lines`` generated lines, and the baseline on a slice of them."""
    lines = max(1000, int(lines * float(os.environ.get("BENCH_SCALE", "1"))))
    data = generate(lines)
    _adapter_rows(generate(50_000, seed=1))  # warm up allocators and code paths
    cpu, started = time.process_time(), time.perf_counter()
    rows = _adapter_rows(data)
    adapter_s = time.perf_counter() - started
    cpu = time.process_time() - cpu
    if rows != lines:
        raise AssertionError(f"the adapter gave {rows} flows for {lines} lines")
    sample_lines = min(lines, 200_000)
    sample = generate(sample_lines, seed=3)
    started = time.perf_counter()
    base_rows = baseline_parse(sample).num_rows
    baseline_s = time.perf_counter() - started
    if base_rows != sample_lines:
        raise AssertionError("the baseline lost rows")
    rate, base_rate = rows / adapter_s, base_rows / baseline_s
    return {
        "name": "zeek-parse",
        "lines": lines,
        "records_per_s": round(rate),
        "baseline_records_per_s": round(base_rate),
        "ratio": round(rate / base_rate, 1),
        "mb_per_s": round(len(data) / adapter_s / 1e6, 1),
        "cpu_us_per_line": round(cpu / rows * 1e6, 3),
        "threads": worker_count({}, "zeek"),
    }


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000)))
