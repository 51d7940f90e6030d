"""A real exporter and a real collector: softflowd to both ``cellwall collect`` and nfcapd.

The test makes a network namespace, and in it TCP and UDP traffic over IPv4 and IPv6 on
the loopback interface. Two softflowd processes watch that interface (one exports to
cellwall's collector, one to nfdump's ``nfcapd``: softflowd sends to one destination) and
are told to shut down, which exports every flow. nfdump's decode (``nfdump -o csv``) and
cellwall's lake must then hold the same records: 5-tuple, bytes and packets.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.real

NFCAPD_PORT = 9995
TRAFFIC = r"""
import socket, threading
sinks = []
for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    for port in (5300, 5301, 5302, 5303, FILLER):  # bound: no ICMP port unreachable
        sink = socket.socket(family, socket.SOCK_DGRAM); sink.bind((host, port)); sinks.append(sink)
def tcp(family, host, port, n):
    srv = socket.socket(family); srv.bind((host, port)); srv.listen(64)
    def serve():
        for i in range(n):
            c, _ = srv.accept(); c.recv(65536); c.sendall(b"r" * (700 * i + 1)); c.close()
    t = threading.Thread(target=serve); t.start()
    for i in range(n):
        c = socket.create_connection((host, port)); c.sendall(b"q" * (50 + i))
        while c.recv(65536): pass
        c.close()
    t.join(); srv.close()
def udp(family, host, n, port=None, size=20):
    s = socket.socket(family, socket.SOCK_DGRAM)
    for i in range(n):
        s.sendto(b"u" * (size + i % 50), (host, port or 5300 + i % 4))
tcp(socket.AF_INET, "127.0.0.1", 8080, 12)
udp(socket.AF_INET, "127.0.0.1", 30)
if IPV6:
    tcp(socket.AF_INET6, "::1", 8081, 5)
    udp(socket.AF_INET6, "::1", 9)
# Filler: softflowd reads the capture ring in blocks; this pushes the traffic above through.
udp(socket.AF_INET, "127.0.0.1", 1500, port=FILLER, size=1300)
"""
FILLER = 9
PROTOS = {"TCP": 6, "UDP": 17, "ICMP": 1, "ICMP6": 58}


def ns(name: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", name, *cmd]


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"cw-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(ns(name, "ip", "link", "set", "lo", "up"), check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def softflowd(name: str, tmp: Path, tag: str, port: int, version: str, quiet: str) -> Any:
    # -B: 1 MiB of capture ring. libpcap hands packets over a block at a time, so the
    # filler pushes the traffic through; with 64 KiB, a busy machine dropped packets to one
    # exporter and not the other (hundreds, seen in softflowctl's statistics).
    cmd = ["softflowd", "-d", "-i", "lo", "-B", str(1 << 20), "-v", version]
    cmd += ["-n", f"127.0.0.1:{port}", "-p", str(tmp / f"{tag}.pid"), "-c", str(tmp / f"{tag}.ctl")]
    return subprocess.Popen(
        ns(name, *cmd, quiet), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


#: A burst to the filler port (bound, so that no ICMP answer makes a flow of its own)
PROBE = f"""
import socket
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); sink.bind(("127.0.0.1", {FILLER}))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(60):
    s.sendto(b"p" * 1300, ("127.0.0.1", {FILLER}))
"""


def statistic(name: str, ctl: Path, label: str) -> int:
    text = subprocess.run(
        ns(name, "softflowctl", "-c", str(ctl), "statistics"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = re.search(rf"{label}: (\d+)", text)
    assert found, text
    return int(found.group(1))


def wait_capturing(name: str, ctls: list[Path], seconds: float = 30) -> None:
    """Until every softflowd's capture is live: filler bursts (left out of the comparison)
    until each has received packets. A fixed sleep loses the first connections on a busy
    machine, to one exporter and not the other."""
    deadline = time.monotonic() + seconds
    while True:
        subprocess.run(ns(name, sys.executable, "-c", PROBE), check=True)
        if all(statistic(name, c, "Packets received by libpcap") for c in ctls):
            return
        assert time.monotonic() < deadline, "softflowd never started capturing"
        time.sleep(0.1)


def wait_processed(name: str, ctls: list[Path], seconds: float = 30) -> None:
    """Until every softflowd has processed what it captured: the count holds still."""
    deadline = time.monotonic() + seconds
    last: list[int] = []
    while True:
        now = [statistic(name, c, "Packets processed") for c in ctls]
        if now == last:
            return
        assert time.monotonic() < deadline, "softflowd never caught up"
        last = now
        time.sleep(0.3)


def wait_path(path: Path, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def nfdump_keys(folder: Path) -> Counter[tuple[Any, ...]]:
    out: Counter[tuple[Any, ...]] = Counter()
    for f in sorted(folder.glob("nfcapd.*")):
        text = subprocess.run(
            ["nfdump", "-r", str(f), "-o", "csv"], capture_output=True, text=True, check=True
        ).stdout.split("\nSummary")[0]
        for r in csv.DictReader(text.splitlines()):
            proto = PROTOS.get(r["pr"]) or int(r["pr"])
            sp, dp = int(r["sp"]), int(r["dp"])
            if FILLER in (sp, dp):
                continue
            out[(r["sa"], r["da"], sp, dp, proto, int(r["ibyt"]), int(r["ipkt"]))] += 1
    return out


def lake_keys(home: Path) -> Counter[tuple[Any, ...]]:
    files = sorted((home / "lake" / "flows").glob("day=*/*.parquet"))
    assert files
    table = pa.concat_tables([pq.read_table(f) for f in files])
    cols = ["src_ip", "dst_ip", "src_port", "dst_port", "proto", "bytes", "packets"]
    rows = table.select(cols).to_pylist()
    return Counter(tuple(r.values()) for r in rows if FILLER not in (r["src_port"], r["dst_port"]))


@pytest.mark.parametrize("version", ["5", "9", "10"])
def test_softflowd_export_lands_equal_in_cellwall_and_nfcapd(
    netns: str, tmp_path: Path, version: str
) -> None:
    home, nf_dir = tmp_path / "home", tmp_path / "nfcapd"
    nf_dir.mkdir()
    run_cellwall = "from cellwall.cli import main; main()"
    collector = subprocess.Popen(
        ns(netns, sys.executable, "-c", run_cellwall, "collect", "--listen",
           "udp://127.0.0.1:0", "--home", str(home), "--json", "--batch-seconds", "0.5"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    nfcapd = subprocess.Popen(
        ns(netns, "nfcapd", "-b", "127.0.0.1", "-p", str(NFCAPD_PORT), "-w", str(nf_dir)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    exporters: list[subprocess.Popen[bytes]] = []
    try:
        assert collector.stdout is not None
        port = int(json.loads(collector.stdout.readline())["listening"][1])
        quiet = f"not udp port {port} and not udp port {NFCAPD_PORT}"  # not the exports
        exporters = [
            softflowd(netns, tmp_path, "a", port, version, quiet),
            softflowd(netns, tmp_path, "b", NFCAPD_PORT, version, quiet),
        ]
        ctls = [tmp_path / f"{tag}.ctl" for tag in ("a", "b")]
        for ctl in ctls:
            wait_path(ctl)
        wait_capturing(netns, ctls)
        script = f"IPV6 = {version != '5'}\nFILLER = {FILLER}\n" + TRAFFIC
        subprocess.run(ns(netns, sys.executable, "-c", script), check=True, timeout=60)
        wait_processed(netns, ctls)
        drops = [statistic(netns, c, "Packets dropped by libpcap") for c in ctls]
        assert drops == [0, 0], f"softflowd lost packets in capture: {drops}"
        for tag, proc in zip(("a", "b"), exporters, strict=True):
            ctl = str(tmp_path / f"{tag}.ctl")
            subprocess.run(ns(netns, "softflowctl", "-c", ctl, "shutdown"), check=True)
            proc.wait(timeout=20)
        time.sleep(1.5)  # the last batch
    finally:
        for proc in exporters:
            if proc.poll() is None:
                proc.kill()
        collector.send_signal(signal.SIGTERM)
        out, err = collector.communicate(timeout=30)
        nfcapd.send_signal(signal.SIGTERM)
        nfcapd.wait(timeout=30)
    assert collector.returncode == 0, err
    final = json.loads(out.strip().splitlines()[-1])
    assert final["records_rejected"] == {} and final["datagrams_dropped_queue_full"] == 0
    theirs = nfdump_keys(nf_dir)
    ours = lake_keys(home)
    tcp4 = [k for k in ours if k[4] == 6 and ":" not in k[0]]
    assert len(tcp4) >= 24  # 12 connections, each way
    if version != "5":
        assert any(":" in k[0] for k in ours)
    assert ours == theirs
