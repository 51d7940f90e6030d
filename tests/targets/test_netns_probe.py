"""The compiled nftables in a real kernel: two hosts in network namespaces, a few probes.

A short check of semantics (the full proof is ``cellwall lab verify``): pay-web-1 and
pay-api-1 from the fixture estate, joined by a veth pair, each with its own ruleset.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellwall.services.compile import compile_policy
from tests.targets.common import AT, fixture_estate

PORTS = (8443, 8445, 8446, 443)
SERVER = """
import socket, sys, selectors
sel = selectors.DefaultSelector()
for fam, addr in ((socket.AF_INET, "10.1.2.10"), (socket.AF_INET6, "fd00:1::20")):
    for port in map(int, sys.argv[1:]):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port)); s.listen(16); sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        c, _ = key.fileobj.accept(); c.close()
"""
CLIENT = """
import socket, sys
ok = []
for host in sys.argv[2:]:
    for port in map(int, sys.argv[1].split(",")):
        try:
            socket.create_connection((host, port), timeout=0.5).close(); ok.append(f"{host}:{port}")
        except OSError:
            pass
print(" ".join(ok))
"""


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:6]
    web, api = f"cwweb-{tag}", f"cwapi-{tag}"
    for ns in (web, api):
        _sh("ip", "netns", "add", ns)
    try:
        _sh(
            "ip",
            "link",
            "add",
            f"w{tag}",
            "netns",
            web,
            "type",
            "veth",
            "peer",
            f"a{tag}",
            "netns",
            api,
        )
        for ns, dev, v4, v6 in ((web, f"w{tag}", "10.1.1.10/8", "fd00:1::10/64"),
                                (api, f"a{tag}", "10.1.2.10/8", "fd00:1::20/64")):  # fmt: skip
            _sh("ip", "-n", ns, "addr", "add", v4, "dev", dev)
            _sh("ip", "-n", ns, "addr", "add", v6, "dev", dev, "nodad")
            _sh("ip", "-n", ns, "link", "set", dev, "up")
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield web, api
    finally:
        for ns in (web, api):
            subprocess.run(["ip", "netns", "del", ns], check=False)


def test_kernel_enforces_the_plan(pair: tuple[str, str], tmp_path: Path) -> None:
    web, api = pair
    ps, workloads = fixture_estate()
    arts = compile_policy(ps, workloads, "nftables", at=AT, today=AT.date())
    files = {a.host: a.text for a in arts.files}
    for ns, host in ((web, "pay-web-1"), (api, "pay-api-1")):
        path = tmp_path / f"{host}.nft"
        path.write_text(files[host])
        _sh("ip", "netns", "exec", ns, "nft", "-f", str(path))
    server = subprocess.Popen(
        ["ip", "netns", "exec", api, sys.executable, "-c", SERVER, *map(str, PORTS)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        ports = ",".join(map(str, PORTS))
        r = subprocess.run(
            ["ip", "netns", "exec", web, sys.executable, "-c", CLIENT, ports,
             "10.1.2.10", "fd00:1::20"],
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
    finally:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()
    got = set(r.stdout.split())
    # web-to-api allows tcp/8443-8445; 8446 is not-allowed (full mode); 443 is denied by
    # no-api-ssh-from-web (tcp/1-1024)
    want = {f"{h}:{p}" for h in ("10.1.2.10", "fd00:1::20") for p in (8443, 8445)}
    assert got == want
    counters = subprocess.run(
        ["ip", "netns", "exec", api, "nft", "list", "counter", "inet", "cellwall", "r_web-to-api"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "packets 4 " in counters
