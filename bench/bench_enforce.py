"""The cost of a new connection through a host holding 10k allowed (address, port) tuples.

Inside two network namespaces joined by a veth pair (nothing touches the host's own
ruleset), a small C load generator (compiled here with ``cc``) runs many client processes,
each connecting and resetting as fast as it can, against a C server whose processes accept
on one ``SO_REUSEPORT`` port. The server's namespace holds, in turn:

- **none**: no ruleset at all;
- **nft**: table ``inet cellwall`` with the 10k tuples in one concatenated set
  (``ip saddr . tcp dport @allowed``), established first, drop at the end, as the
  nftables compiler writes it;
- **iptables**: an ``iptables-legacy`` INPUT chain with the same 10k tuples as a linear list
  of rules (the load generator's tuple last), established first.

The machine is saturated (client, server and kernel share its cores), so the cost of a
connection is the inverse of the connections per second. Configurations are interleaved
over ``rounds`` and the median of each is kept. Figures are same-run ratios:
``nft_added`` = nft/none - 1 (target ≤ 5%), ``iptables_vs_nft`` = what iptables adds over
what nftables adds (target ≥ 10×).
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

NS_CLIENT, NS_SERVER = "cwbench-c", "cwbench-s"
CLIENT_IP, SERVER_IP, PORT = "10.77.0.2", "10.77.0.1", 8080

C_SOURCE = r"""
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int serve(int port, int procs) {
    int one = 1;
    for (int i = 0; i < procs; i++) {
        if (fork() == 0) {
            int s = socket(AF_INET, SOCK_STREAM, 0);
            setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
            struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
            if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 4096)) _exit(1);
            for (;;) { int c = accept(s, 0, 0); if (c >= 0) close(c); }
        }
    }
    pause();
    return 0;
}

static int load(const char *ip, int port, int procs, double secs) {
    int fds[2]; if (pipe(fds)) return 1;
    for (int i = 0; i < procs; i++) {
        if (fork() == 0) {
            struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
            inet_pton(AF_INET, ip, &a.sin_addr);
            struct linger l = {1, 0};
            long n = 0, fail = 0; double end = now() + secs;
            while (now() < end) {
                int s = socket(AF_INET, SOCK_STREAM, 0);
                setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof l);
                if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) n++; else fail++;
                close(s);
            }
            long out[2] = {n, fail};
            if (write(fds[1], out, sizeof out) != sizeof out) _exit(1);
            _exit(0);
        }
    }
    long total = 0, failed = 0;
    for (int i = 0; i < procs; i++) {
        long got[2];
        if (read(fds[0], got, sizeof got) == sizeof got) { total += got[0]; failed += got[1]; }
    }
    while (wait(0) > 0) {}
    printf("%ld %ld\n", total, failed);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 4 && !strcmp(argv[1], "serve")) return serve(atoi(argv[2]), atoi(argv[3]));
    if (argc >= 6 && !strcmp(argv[1], "load"))
        return load(argv[2], atoi(argv[3]), atoi(argv[4]), atof(argv[5]));
    fprintf(stderr, "usage: connbench serve PORT PROCS | load IP PORT PROCS SECONDS\n");
    return 2;
}
"""


def _sh(*args: str, ns: str | None = None, stdin: str | None = None) -> str:
    argv = ["ip", "netns", "exec", ns, *args] if ns else list(args)
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:8])}: {done.stderr.strip()}")
    return done.stdout


def _build(work: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler (cc) for the load generator")
    src, exe = work / "connbench.c", work / "connbench"
    src.write_text(C_SOURCE)
    _sh(cc, "-O2", "-o", str(exe), str(src))
    return exe


def _tuples(n: int, seed: int = 7) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    seen: set[tuple[str, int]] = set()
    while len(seen) < n - 1:
        seen.add(
            (
                f"10.{rng.randrange(100, 250)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                rng.randrange(1024, 65535),
            )
        )
    return [*sorted(seen), (CLIENT_IP, PORT)]


def _nft_ruleset(tuples: list[tuple[str, int]]) -> str:
    elements = ",\n".join(f"\t\t\t{a} . {p}" for a, p in tuples)
    return (
        "table inet cellwall {\n\tset allowed4 {\n\t\ttype ipv4_addr . inet_service\n"
        f"\t\telements = {{\n{elements}\n\t\t}}\n\t}}\n"
        "\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n"
        '\t\tct state established,related accept\n\t\tiif "lo" accept\n'
        "\t\tip saddr . tcp dport @allowed4 accept\n\t\tdrop\n\t}\n}\n"
    )


CONNTRACK_ONLY = (
    "table inet cellwall {\n\tchain input {\n"
    "\t\ttype filter hook input priority filter; policy accept;\n"
    "\t\tct state established,related accept\n\t}\n}\n"
)


def _iptables_rules(tuples: list[tuple[str, int]]) -> str:
    lines = [
        "*filter",
        ":INPUT ACCEPT [0:0]",
        "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A INPUT -i lo -j ACCEPT",
    ]
    lines += [f"-A INPUT -s {a}/32 -p tcp -m tcp --dport {p} -j ACCEPT" for a, p in tuples]
    lines += ["-A INPUT -j DROP", "COMMIT", ""]
    return "\n".join(lines)


def _setup() -> None:
    for ns in (NS_CLIENT, NS_SERVER):
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)
        _sh("ip", "netns", "add", ns)
        _sh("ip", "-n", ns, "link", "set", "lo", "up")
    _sh(
        "ip",
        "-n",
        NS_CLIENT,
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        NS_SERVER,
    )
    for ns, ip in ((NS_CLIENT, CLIENT_IP), (NS_SERVER, SERVER_IP)):
        _sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        _sh("ip", "-n", ns, "link", "set", "eth0", "up")


def _teardown() -> None:
    for ns in (NS_CLIENT, NS_SERVER):
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)


def _configure(kind: str, tuples: list[tuple[str, int]]) -> None:
    subprocess.run(
        ["ip", "netns", "exec", NS_SERVER, "nft", "delete", "table", "inet", "cellwall"],
        capture_output=True,
        check=False,
    )
    subprocess.run(
        ["ip", "netns", "exec", NS_SERVER, "iptables-legacy", "-F", "INPUT"],
        capture_output=True,
        check=False,
    )
    if kind == "nft":
        _sh("nft", "-f", "-", ns=NS_SERVER, stdin=_nft_ruleset(tuples))
    elif kind == "conntrack":
        _sh("nft", "-f", "-", ns=NS_SERVER, stdin=CONNTRACK_ONLY)
    elif kind == "iptables":
        _sh("iptables-legacy-restore", ns=NS_SERVER, stdin=_iptables_rules(tuples))


def _measure(exe: Path, procs: int, seconds: float) -> float:
    out = _sh(str(exe), "load", SERVER_IP, str(PORT), str(procs), str(seconds), ns=NS_CLIENT)
    done, failed = (int(x) for x in out.split())
    if done == 0 or failed > done // 100:
        raise RuntimeError(f"the load generator failed: {done} connections, {failed} failures")
    return done / seconds


def run(
    tuples: int = 10_000, rounds: int = 3, seconds: float = 3.0, procs: int = 8
) -> dict[str, Any]:
    if os.geteuid() != 0:
        raise RuntimeError("the enforcement benchmark needs root (network namespaces)")
    scale = float(os.environ.get("BENCH_SCALE", "1"))
    seconds = max(1.0, seconds * scale)
    allowed = _tuples(tuples)
    rates: dict[str, list[float]] = {"none": [], "conntrack": [], "nft": [], "iptables": []}
    with tempfile.TemporaryDirectory(prefix="cwbench-") as tmp:
        exe = _build(Path(tmp))
        _setup()
        server = subprocess.Popen(
            ["ip", "netns", "exec", NS_SERVER, str(exe), "serve", str(PORT), "2"],
            start_new_session=True,
        )
        try:
            time.sleep(0.3)
            for _ in range(rounds):
                for kind in rates:
                    _configure(kind, allowed)
                    rates[kind].append(_measure(exe, procs, seconds))
        finally:
            os.killpg(server.pid, 15)
            server.wait()
            _teardown()
    cost = {k: 1e6 / statistics.median(v) for k, v in rates.items()}  # µs per connection
    nft_added = cost["nft"] - cost["none"]
    ipt_added = cost["iptables"] - cost["none"]
    lookup = cost["nft"] - cost["conntrack"]  # the 10k-tuple rules alone, conntrack on both
    floor = cost["none"] * 0.001
    return {
        "name": "enforce_new_connection",
        "tuples": tuples,
        **{f"conn_per_s_{k}": round(statistics.median(v)) for k, v in rates.items()},
        "us_per_conn_none": round(cost["none"], 2),
        "conntrack_added_pct": round(100 * (cost["conntrack"] - cost["none"]) / cost["none"], 2),
        "nft_added_pct": round(100 * nft_added / cost["none"], 2),
        "nft_rules_added_pct": round(100 * lookup / cost["conntrack"], 2),
        "iptables_added_pct": round(100 * ipt_added / cost["none"], 2),
        "iptables_vs_nft": round(ipt_added / max(nft_added, floor), 1),
        "iptables_rules_vs_nft_rules": round(
            (cost["iptables"] - cost["conntrack"]) / max(lookup, floor), 1
        ),
        "ratio": round(cost["nft"] / cost["none"], 3),
    }


if __name__ == "__main__":
    print(run())
