"""Benchmark: the database firewall against a direct connection, in the same run.

A fresh PostgreSQL cluster (the tests' helper) gets a pgbench database (scale 5). The proxy
runs as ``cellwall dbproxy`` in its own process, first in learn mode for a short pgbench run,
then in enforce mode for the measurements, so every query is fingerprinted, checked against
the learned allow-list and screened by the indicators.

Figures, each beside its same-run baseline:

- ``prepared_ratio`` and ``simple_ratio``: pgbench select-only TPS through the proxy over
  direct TPS, with ``-M prepared`` and ``-M simple`` (4 clients, 2 threads; direct and
  proxied runs alternate twice, the best of each counts);
- ``added_p50_us``: the median latency of one client (pgbench ``--log``) through the proxy
  minus the direct median;
- ``classify_qps``: queries per second of ``Firewall.check`` (fingerprint, indicators,
  allow-list) on one core (process CPU time), over a mix of pgbench statements and the demo
  application's requests with fresh literals; ``classify_ratio`` is it over the 30k/s target.

``ratio`` is ``prepared_ratio``. Durations scale with ``BENCH_SCALE``.
"""

from __future__ import annotations

import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _pgbench(bindir: Path, port: int, args: list[str], cwd: Path) -> str:
    cmd = [
        str(bindir / "pgbench"),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-U",
        "postgres",
        "-n",
        *args,
        "shop",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def _tps(output: str) -> float:
    m = re.search(r"tps = ([\d.]+)", output)
    if m is None:
        raise RuntimeError(f"no tps in pgbench output: {output[-300:]}")
    return float(m.group(1))


def _p50_us(bindir: Path, port: int, seconds: int, work: Path, tag: str) -> float:
    logdir = work / tag
    logdir.mkdir()
    _pgbench(
        bindir,
        port,
        [
            "-S",
            "-M",
            "prepared",
            "-c",
            "1",
            "-j",
            "1",
            "-T",
            str(seconds),
            "-l",
            "--log-prefix",
            str(logdir / "tx"),
        ],
        work,
    )
    lat = [int(line.split()[2]) for f in logdir.iterdir() for line in f.read_text().splitlines()]
    return float(statistics.median(lat))


def _start_proxy(home: Path, pg_port: int, port: int, mode: str) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "cellwall.cli",
        "dbproxy",
        "--listen",
        f"127.0.0.1:{port}",
        "--upstream",
        f"127.0.0.1:{pg_port}",
        "--mode",
        mode,
        "--home",
        str(home),
        "--no-inventory",
    ]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()
    if "listening" not in line:
        proc.kill()
        raise RuntimeError(f"the proxy did not start: {line}{proc.stderr.read().decode()}")
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)


def classification_rate(n: int = 60_000) -> dict[str, float]:
    from cellwall.dbfw import (
        AlertSink,
        Classifier,
        ClientIdentity,
        Firewall,
        Mode,
        Profiles,
        libinjection_detector,
    )
    from cellwall.dbfw.demoapp import benign_requests

    rng = random.Random(5)
    pgb = [
        "SELECT abalance FROM pgbench_accounts WHERE aid = {a};",
        "UPDATE pgbench_accounts SET abalance = abalance + {d} WHERE aid = {a};",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
        "VALUES ({t}, {b}, {a}, {d}, CURRENT_TIMESTAMP);",
    ]
    mix = [r.sql for r in benign_requests(n // 2, seed=11)]
    mix += [
        rng.choice(pgb).format(
            a=rng.randrange(1, 10**6),
            d=rng.randrange(-5000, 5000),
            t=rng.randrange(1, 50),
            b=rng.randrange(1, 5),
        )
        for _ in range(n - len(mix))
    ]
    rng.shuffle(mix)
    who = ClientIdentity("app", "app", "app", "")
    fw = Firewall(Mode.LEARN, Classifier(libinjection_detector()), Profiles(), AlertSink())
    for sql in mix[:2000]:
        fw.check(who, sql)
    fw.mode = Mode.ENFORCE
    fresh = Firewall(Mode.ENFORCE, Classifier(libinjection_detector()), fw.profiles, AlertSink())
    started = time.process_time()
    blocked = sum(fresh.check(who, sql).block for sql in mix)
    cpu = time.process_time() - started
    return {"classify_qps": round(len(mix) / cpu), "classify_blocked": blocked}


def run(seconds: int = 10) -> dict[str, Any]:
    scale = float(os.environ.get("BENCH_SCALE", "1"))
    secs = max(3, int(seconds * scale))
    sys.path.insert(0, str(ROOT))
    from tests.dbfw.pgserver import free_port, start_postgres

    pg = start_postgres()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            _pgbench(pg.bindir, pg.port, ["-i", "-s", "5", "-q"], work)
            home, port = work / "home", free_port()
            proc = _start_proxy(home, pg.port, port, "learn")
            try:
                for m in ("prepared", "simple"):
                    _pgbench(pg.bindir, port, ["-S", "-M", m, "-c", "2", "-T", "2"], work)
            finally:
                _stop(proc)
            proc = _start_proxy(home, pg.port, port, "enforce")
            try:
                res: dict[str, float] = {}
                # alternate direct and proxied runs and keep the best of each: the machine
                # is shared, and drift between two long runs would bias the ratio
                for m in ("prepared", "simple"):
                    args = ["-S", "-M", m, "-c", "4", "-j", "2", "-T", str(max(2, secs // 2))]
                    for _ in range(2):
                        for key, p in (("direct", pg.port), ("proxy", port)):
                            tps = _tps(_pgbench(pg.bindir, p, args, work))
                            res[f"{key}_{m}_tps"] = max(res.get(f"{key}_{m}_tps", 0.0), tps)
                direct_p50 = _p50_us(pg.bindir, pg.port, max(3, secs // 2), work, "direct")
                proxy_p50 = _p50_us(pg.bindir, port, max(3, secs // 2), work, "proxy")
            finally:
                _stop(proc)
    finally:
        pg.stop()
    cls = classification_rate()
    prepared = res["proxy_prepared_tps"] / res["direct_prepared_tps"]
    return {
        "name": "dbproxy",
        **{k: round(v) for k, v in res.items()},
        "prepared_ratio": round(prepared, 3),
        "simple_ratio": round(res["proxy_simple_tps"] / res["direct_simple_tps"], 3),
        "direct_p50_us": round(direct_p50),
        "proxy_p50_us": round(proxy_p50),
        "added_p50_us": round(proxy_p50 - direct_p50),
        **cls,
        "classify_ratio": round(cls["classify_qps"] / 30_000, 2),
        "cores": os.cpu_count(),
        "ratio": round(prepared, 3),
    }


if __name__ == "__main__":
    print(run())
