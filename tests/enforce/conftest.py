"""Fresh network namespaces for every agent test: the host's own ruleset is never touched.

``net`` is two namespaces joined by a veth pair: ``host`` (10.20.0.11, where the agent
applies its table) and ``controller`` (10.99.0.10, the management peer).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cellwall.enforce import netns
from cellwall.enforce.bundle import keygen, load_private_key, sign_bundle

HOST_IP, CONTROLLER_IP = "10.20.0.11", "10.99.0.10"
MANAGEMENT = {
    "admin_networks": ["10.99.0.0/24"],
    "services": ["tcp/22"],
    "controllers": [CONTROLLER_IP],
    "control_services": ["tcp/7443"],
}
_count = itertools.count()


@dataclass(frozen=True)
class Net:
    host: str
    controller: str


def _addressed(ns: str, ip: str) -> None:
    # The tests speak IPv4: without IPv6 on the link, no router solicitation or MLD report
    # leaves the namespace now and then to move the agent's drop counters.
    netns.run(["sysctl", "-q", "-w", "net.ipv6.conf.eth0.disable_ipv6=1"], ns)
    cmds = ["link set eth0 up", f"addr add {ip}/32 dev eth0", "route add 0.0.0.0/0 dev eth0"]
    netns.run(["ip", "-n", ns, "-batch", "-"], stdin="\n".join(cmds) + "\n")


@pytest.fixture
def net() -> Iterator[Net]:
    prefix = f"cwt{os.getpid() % 100000}x{next(_count)}"
    host, ctl = f"{prefix}-h", f"{prefix}-c"
    try:
        netns.add(host)
        netns.add(ctl)
        netns.run(
            [
                "ip",
                "-n",
                host,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ctl,
            ]
        )
        _addressed(host, HOST_IP)
        _addressed(ctl, CONTROLLER_IP)
        yield Net(host, ctl)
    finally:
        netns.clean(prefix + "-")


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return keygen(tmp_path / "keys")


def make_bundle(
    root: Path,
    key: Path,
    serial: int,
    rulesets: dict[str, str],
    *,
    management: dict[str, list[str]] | None = None,
    valid: timedelta = timedelta(hours=1),
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for old in root.iterdir():
        old.unlink()
    for host, text in rulesets.items():
        (root / f"{host}.nft").write_text(text)
    now = datetime.now(UTC)
    sign_bundle(
        root,
        load_private_key(key),
        serial=serial,
        expires=now + valid,
        management=MANAGEMENT if management is None else management,
        now=now - timedelta(seconds=5),
    )
    return root


def ruleset(web_port: int = 8080) -> str:
    """A hand-written host ruleset in the compiler's shape: management first."""
    return f"""
table inet cellwall {{
	counter mgmt_admin {{ }}
	counter mgmt_control {{ }}
	counter r_web {{ }}
	chain input {{
		type filter hook input priority filter; policy accept;
		ct state established,related accept
		iif "lo" accept
		ip saddr 10.99.0.0/24 tcp dport 22 counter name mgmt_admin accept
		tcp dport {web_port} counter name r_web accept
		counter drop comment "default-in"
	}}
	chain output {{
		type filter hook output priority filter; policy accept;
		ct state established,related accept
		oif "lo" accept
		ip daddr 10.99.0.10 tcp dport 7443 counter name mgmt_control accept
		counter drop comment "default-out"
	}}
}}
"""


DROP_EVERYTHING = """
table inet cellwall {
	chain input { type filter hook input priority filter; policy drop; }
	chain output { type filter hook output priority filter; policy drop; }
}
"""
