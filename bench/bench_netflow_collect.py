"""Benchmark: the live collector beside nfcapd, on one export stream over loopback.

The sender paces v9 datagrams (30 records each, from bench_netflow's generator) at
``BENCH_NETFLOW_RATE`` records per second (default 400 000) for about 3 s x
``BENCH_SCALE``, and sends each datagram both to ``cellwall collect`` (a subprocess) and to
nfdump's ``nfcapd``. After the stream, both are stopped with SIGTERM and their stores are
counted: the lake's rows for cellwall, ``nfdump -r`` for nfcapd. Figures: the offered rate,
what each stored, and loss. ``ratio`` is cellwall's stored records over nfcapd's.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("bench_netflow", HERE / "bench_netflow.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _send(datagrams: list[bytes], ports: list[int], rate: float, per: int) -> float:
    """Send every datagram to every port, paced at ``rate`` records/s; returns seconds."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    started = time.perf_counter()
    burst = 50
    for i in range(0, len(datagrams), burst):
        due = started + i * per / rate
        while (now := time.perf_counter()) < due:
            time.sleep(min(due - now, 0.001))
        for d in datagrams[i : i + burst]:
            for p in ports:
                sock.sendto(d, ("127.0.0.1", p))
    sock.close()
    return time.perf_counter() - started


def _nfdump_count(folder: Path) -> int:
    files = sorted(folder.rglob("nfcapd.*"))
    total = 0
    for f in files:
        out = subprocess.run(
            ["nfdump", "-r", str(f), "-q", "-o", "csv"], capture_output=True, text=True, check=False
        )
        total += sum(1 for line in out.stdout.splitlines() if line and line[0].isdigit())
    return total


def run() -> dict[str, Any]:
    scale = float(os.environ.get("BENCH_SCALE", "1"))
    rate = float(os.environ.get("BENCH_NETFLOW_RATE", "400000"))
    gen = _generator()
    records = int(rate * 3 * scale) // gen.RECORDS_PER_DATAGRAM * gen.RECORDS_PER_DATAGRAM
    datagrams = gen.generate(records, ipfix=False)
    work = Path(tempfile.mkdtemp(prefix="cellwall-bench-collect-"))
    ours_port, their_port = _free_port(), _free_port()
    nf_dir = work / "nfcapd"
    nf_dir.mkdir()
    have_nfcapd = shutil.which("nfcapd") is not None
    nfcapd = (
        subprocess.Popen(
            ["nfcapd", "-b", "127.0.0.1", "-p", str(their_port), "-w", str(nf_dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if have_nfcapd
        else None
    )
    collector = subprocess.Popen(
        [sys.executable, "-c", "from cellwall.cli import main; main()", "collect",
         "--listen", f"udp://127.0.0.1:{ours_port}", "--home", str(work / "home"),
         "--json", "--batch-seconds", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        assert collector.stdout is not None
        json.loads(collector.stdout.readline())  # listening
        time.sleep(1.0)  # nfcapd binds too
        ports = [ours_port] + ([their_port] if nfcapd else [])
        seconds = _send(datagrams, ports, rate, gen.RECORDS_PER_DATAGRAM)
        time.sleep(1.5)
    finally:
        collector.send_signal(signal.SIGTERM)
        out, _ = collector.communicate(timeout=120)
        if nfcapd is not None:
            nfcapd.send_signal(signal.SIGTERM)
            nfcapd.wait(timeout=60)
    final = json.loads(out.strip().splitlines()[-1])
    theirs = _nfdump_count(nf_dir) if nfcapd else 0
    shutil.rmtree(work, ignore_errors=True)
    return {
        "name": "netflow-collect-loopback",
        "records_sent": records,
        "offered_records_per_s": round(records / seconds),
        "cellwall_stored": final["stored"],
        "cellwall_loss": records - final["stored"],
        "cellwall_dropped_queue_full": final["datagrams_dropped_queue_full"],
        "nfcapd_stored": theirs,
        "nfcapd_loss": records - theirs if nfcapd else None,
        "ratio": round(final["stored"] / theirs, 3) if theirs else None,
    }


if __name__ == "__main__":
    print(run())
