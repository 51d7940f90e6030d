"""Benchmark: the database firewall against a direct connection, in the same run.

A fresh PostgreSQL cluster (the tests' helper) gets a pgbench database (scale 5). The proxy
runs as ``cellwall dbproxy`` in its own process, first in learn mode for a short pgbench run,
then in enforce mode for the measurements, so every query is fingerprinted, checked against
the learned allow-list and screened by the indicators.

Figures, each beside its same-run baseline:

- ``prepared_ratio`` and ``simple_ratio``: pgbench select-only TPS through the proxy over
  direct TPS, with ``-M prepared`` and ``-M simple`` (4 clients, 2 threads both ways). After a
  warm-up of both paths, direct and proxied runs alternate in pairs, half of them direct
  first and half proxied first (ABBA), and the figure is the median of the pairs' ratios, so
  that the load of a shared machine, which drifts between runs, cancels within a pair.
  ``*_ratio_best`` is the best proxied TPS over the best direct TPS, as earlier runs gave it;
- ``proxy_cpu_us_prepared`` and ``proxy_cpu_us_simple``: CPU time (user + system, from
  ``/proc``) of the proxy process per proxied transaction, the median over the runs; it
  depends little on what else the machine runs. ``cpu_us_per_txn`` splits it out: the median
  CPU µs per transaction of pgbench, PostgreSQL and the proxy, direct and proxied. When the
  two cores are the limit, the ratio cannot pass direct CPU over proxied CPU;
- ``unix_prepared_ratio`` (and ``unix_proxy_cpu_us_prepared``): as ``prepared_ratio``, with
  the proxy reaching PostgreSQL on its Unix socket (``--upstream /socket/dir:PORT``) while
  pgbench still connects over TCP;
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
import resource
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


def _tps(output: str) -> tuple[float, int]:
    """TPS (without connection time) and the number of transactions of a pgbench run."""
    m = re.search(r"tps = ([\d.]+)", output)
    n = re.search(r"transactions actually processed: (\d+)", output)
    if m is None or n is None:
        raise RuntimeError(f"no tps in pgbench output: {output[-300:]}")
    return float(m.group(1)), int(n.group(1))


def _cpu_seconds(pid: int, children: bool = False) -> float:
    """User plus system CPU time of a process so far (with its exited children's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def _proxy_cpu(pid: int) -> float:
    """The proxy's CPU seconds, with its worker processes' (``--workers``)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return _cpu_seconds(pid) + sum(_cpu_seconds(int(c)) for c in children)


class _CpuMeter:
    """CPU seconds of pgbench (this process's exited children), of PostgreSQL (the
    postmaster and the backends it reaped) and of the proxy, between two readings."""

    def __init__(self, postmaster: int, proxy: int) -> None:
        self.postmaster, self.proxy = postmaster, proxy

    def read(self) -> tuple[float, float, float]:
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (
            ru.ru_utime + ru.ru_stime,
            _cpu_seconds(self.postmaster, children=True),
            _proxy_cpu(self.proxy),
        )


def _compare(
    bindir: Path, direct: int, port: int, meter: _CpuMeter, args: list[str], work: Path
) -> dict[str, float]:
    """Direct and proxied runs in ABBA pairs: the median ratio of the pairs, the best TPS of
    each path, and the median CPU time per transaction (µs) of pgbench, PostgreSQL and the
    proxy on each path."""
    ratios: list[float] = []
    best = {"direct": 0.0, "proxy": 0.0}
    cpu: dict[str, list[tuple[float, ...]]] = {"direct": [], "proxy": []}
    for order in (("direct", "proxy"), ("proxy", "direct")) * 2:
        got: dict[str, float] = {}
        for key in order:
            before = meter.read()
            tps, count = _tps(_pgbench(bindir, port if key == "proxy" else direct, args, work))
            time.sleep(0.2)  # let the postmaster reap the backends
            after = meter.read()
            cpu[key].append(
                tuple((b - a) * 1e6 / max(count, 1) for a, b in zip(before, after, strict=True))
            )
            got[key] = tps
            best[key] = max(best[key], tps)
        ratios.append(got["proxy"] / got["direct"])
    out = {
        "ratio": statistics.median(ratios),
        "direct_tps": best["direct"],
        "proxy_tps": best["proxy"],
        "ratio_best": best["proxy"] / best["direct"],
    }
    for key, runs in cpu.items():
        for i, part in enumerate(("pgbench", "postgres", "proxy")[: 3 if key == "proxy" else 2]):
            out[f"{key}:{part}"] = statistics.median(r[i] for r in runs)
    return out


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


def _meter(data: Path, proxy: subprocess.Popen[bytes]) -> _CpuMeter:
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    return _CpuMeter(postmaster, proxy.pid)


def _start_proxy(
    home: Path, upstream: str, port: int, mode: str, workers: int = 1
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "cellwall.cli",
        "dbproxy",
        "--listen",
        f"127.0.0.1:{port}",
        "--upstream",
        upstream,
        "--mode",
        mode,
        "--home",
        str(home),
        "--no-inventory",
        "--workers",
        str(workers),
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
    clients = os.environ.get("BENCH_DBPROXY_CLIENTS", "4")
    sys.path.insert(0, str(ROOT))
    from tests.dbfw.pgserver import free_port, start_postgres

    pg = start_postgres()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            _pgbench(pg.bindir, pg.port, ["-i", "-s", "5", "-q"], work)
            home, port = work / "home", free_port()
            tcp, unix = f"127.0.0.1:{pg.port}", f"{pg.data}:{pg.port}"
            proc = _start_proxy(home, tcp, port, "learn")
            try:
                for m in ("prepared", "simple"):
                    _pgbench(pg.bindir, port, ["-S", "-M", m, "-c", "2", "-T", "2"], work)
            finally:
                _stop(proc)
            run_secs = str(max(2, secs // 4))
            res: dict[str, float] = {}
            cpu_us: dict[str, dict[str, float]] = {}
            proc = _start_proxy(home, tcp, port, "enforce")
            try:
                for m in ("prepared", "simple"):
                    args = ["-S", "-M", m, "-c", clients, "-j", "2", "-T", "1"]
                    for p in (pg.port, port):  # warm both paths
                        _pgbench(pg.bindir, p, args, work)
                    args[-1] = run_secs
                    got = _compare(pg.bindir, pg.port, port, _meter(pg.data, proc), args, work)
                    res[f"direct_{m}_tps"] = got["direct_tps"]
                    res[f"proxy_{m}_tps"] = got["proxy_tps"]
                    res[f"{m}_ratio"] = got["ratio"]
                    res[f"{m}_ratio_best"] = got["ratio_best"]
                    res[f"proxy_cpu_us_{m}"] = got["proxy:proxy"]
                    cpu_us[m] = {k: round(v, 1) for k, v in got.items() if ":" in k}
                direct_p50 = _p50_us(pg.bindir, pg.port, max(3, secs // 2), work, "direct")
                proxy_p50 = _p50_us(pg.bindir, port, max(3, secs // 2), work, "proxy")
            finally:
                _stop(proc)
            proc = _start_proxy(home, unix, port, "enforce")
            try:
                args = ["-S", "-M", "prepared", "-c", clients, "-j", "2", "-T", run_secs]
                got = _compare(pg.bindir, pg.port, port, _meter(pg.data, proc), args, work)
                res["unix_prepared_ratio"] = got["ratio"]
                res["unix_proxy_cpu_us_prepared"] = got["proxy:proxy"]
            finally:
                _stop(proc)
            # One proxy process per core (--workers), as it is deployed on a shared host.
            workers = os.cpu_count() or 2
            proc = _start_proxy(home, tcp, port, "enforce", workers)
            try:
                for m in ("prepared", "simple"):
                    args = ["-S", "-M", m, "-c", clients, "-j", "2", "-T", run_secs]
                    got = _compare(pg.bindir, pg.port, port, _meter(pg.data, proc), args, work)
                    res[f"workers_{m}_ratio"] = got["ratio"]
                    res[f"workers_proxy_cpu_us_{m}"] = got["proxy:proxy"]
            finally:
                _stop(proc)
    finally:
        pg.stop()
    cls = classification_rate()
    prepared = res["prepared_ratio"]
    return {
        "name": "dbproxy",
        **{k: round(v) for k, v in res.items() if k.endswith("_tps")},
        **{k: round(v, 3) for k, v in res.items() if "ratio" in k},
        **{k: round(v, 1) for k, v in res.items() if "proxy_cpu" in k},
        "cpu_us_per_txn": cpu_us,
        "direct_p50_us": round(direct_p50),
        "proxy_p50_us": round(proxy_p50),
        "added_p50_us": round(proxy_p50 - direct_p50),
        **cls,
        "classify_ratio": round(cls["classify_qps"] / 30_000, 2),
        "cores": os.cpu_count(),
        "clients": int(clients),
        "workers": os.cpu_count() or 2,
        "ratio": round(prepared, 3),
    }


if __name__ == "__main__":
    print(run())
