"""The cost of a new connection through a host holding 10k allowed (address, port) tuples.

Inside two network namespaces joined by a veth pair (nothing touches the host's own
ruleset), a small C load generator (compiled here with ``cc``) runs many client processes,
each connecting and resetting as fast as it can, against a C server whose processes accept
on one ``SO_REUSEPORT`` port. The server's namespace holds, in turn:

- **none**: no ruleset at all;
- **conntrack**: only ``ct state established,related accept``: the price of stateful
  filtering before any rule;
- **nft**: table ``inet cellwall`` with the 10k tuples in one concatenated set
  (``ip saddr . tcp dport @allowed``, a hash), established first, drop at the end;
- **compiled**: the same tuples in the shape the nftables compiler writes: an interval
  verdict map keyed by ``ip saddr . meta l4proto . th dport`` whose entries ``goto`` a rule
  chain (``counter name r_ID accept``), then the logged, rate-limited not-allowed drop;
- **iptables**: an ``iptables-legacy`` INPUT chain with the same 10k tuples as a linear list
  of rules (the load generator's tuple last), established first.

The iptables configuration runs in a server namespace of its own (a second veth from the
client): ``iptables-legacy`` creates the ``filter`` table in a namespace for good, and its
hooks would otherwise stay on the path of every later "none" and "nft" round.

Two costs per connection are measured, as same-run ratios to "none":

- **throughput** (``*_added_pct``): the machine is saturated (client, server and kernel share
  its cores), so the cost of a connection is the inverse of the connections per second;
- **CPU time** (``*_added_cpu_pct``): the user + system time of the load generator, the
  server processes and ``ksoftirqd``, per connection. On a machine shared with other work,
  throughput moves with what the neighbours take; CPU time per connection moves far less.

Each configuration gets a short warm-up after it is loaded; configurations are interleaved
over ``rounds``, and each figure is the median over rounds of the ratio to "none" measured in
the same round. Targets: ``nft_added`` ≤ 5%,
``iptables_vs_nft`` (what iptables adds over what nftables adds) ≥ 10×. The server's
conntrack table is sampled after each run (``ct_entries``, and ``ct_drops``: insert
failures, drops and early drops, which stay 0 unless the table overflows).
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

# Names carry the pid: two runs of the benchmark (two engineers, one machine) must not
# delete each other's namespaces.
NS_CLIENT, NS_SERVER, NS_IPT = (f"cwbench{os.getpid()}-{x}" for x in ("c", "s", "i"))
CLIENT_IP, SERVER_IP, PORT = "10.77.0.2", "10.77.0.1", 8080
IPT_CLIENT_IP, IPT_SERVER_IP = "10.78.0.2", "10.78.0.1"
KINDS = ("none", "conntrack", "nft", "compiled", "iptables")

C_SOURCE = r"""
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/resource.h>
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
    struct rusage ru; getrusage(RUSAGE_CHILDREN, &ru);
    printf("%ld %ld %.6f\n", total, failed, ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6
           + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
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


def _tuples(n: int, seed: int = 7, client: str = CLIENT_IP) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    seen: set[tuple[str, int]] = set()
    while len(seen) < n - 1:
        seen.add(
            (
                f"10.{rng.randrange(100, 250)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                rng.randrange(1024, 65535),
            )
        )
    return [*sorted(seen), (client, PORT)]


def _nft_ruleset(tuples: list[tuple[str, int]]) -> str:
    elements = ",\n".join(f"\t\t\t{a} . {p}" for a, p in tuples)
    return (
        "table inet cellwall {\n\tset allowed4 {\n\t\ttype ipv4_addr . inet_service\n"
        f"\t\telements = {{\n{elements}\n\t\t}}\n\t}}\n"
        "\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n"
        '\t\tct state established,related accept\n\t\tiif "lo" accept\n'
        "\t\tip saddr . tcp dport @allowed4 accept\n\t\tdrop\n\t}\n}\n"
    )


def _compiled_ruleset(tuples: list[tuple[str, int]]) -> str:
    elements = ",\n".join(f"\t\t\t{a} . 6 . {p} : goto allow_r" for a, p in tuples)
    return (
        "table inet cellwall {\n\tcounter r_r {\n\t}\n\tcounter na_in {\n\t}\n"
        "\tlimit log_rate {\n\t\trate 50/second burst 100 packets\n\t}\n"
        "\tmap in4_ports {\n\t\ttypeof ip saddr . meta l4proto . th dport : verdict\n"
        f"\t\tflags interval\n\t\telements = {{\n{elements}\n\t\t}}\n\t}}\n"
        "\tchain allow_r {\n\t\tcounter name r_r accept\n\t}\n"
        "\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n"
        '\t\tct state established,related accept\n\t\tiif "lo" accept\n'
        "\t\tmeta l4proto { tcp, udp, sctp } ip saddr . meta l4proto . th dport vmap @in4_ports\n"
        '\t\tlimit name log_rate log prefix "cw:drop:not-allowed " group 7 snaplen 128\n'
        "\t\tcounter name na_in drop\n\t}\n}\n"
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
    _teardown()
    for ns in (NS_CLIENT, NS_SERVER, NS_IPT):
        _sh("ip", "netns", "add", ns)
        _sh("ip", "-n", ns, "link", "set", "lo", "up")
    for dev, ns, cip, sip in (
        ("eth0", NS_SERVER, CLIENT_IP, SERVER_IP),
        ("eth1", NS_IPT, IPT_CLIENT_IP, IPT_SERVER_IP),
    ):
        _sh(
            "ip",
            "-n",
            NS_CLIENT,
            "link",
            "add",
            dev,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns,
        )
        for where, d, ip in ((NS_CLIENT, dev, cip), (ns, "eth0", sip)):
            _sh("ip", "-n", where, "addr", "add", f"{ip}/24", "dev", d)
            _sh("ip", "-n", where, "link", "set", d, "up")


def _teardown() -> None:
    for ns in (NS_CLIENT, NS_SERVER, NS_IPT):
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)


def _configure(kind: str, tuples: list[tuple[str, int]], ipt_tuples: list[tuple[str, int]]) -> None:
    subprocess.run(
        ["ip", "netns", "exec", NS_SERVER, "nft", "delete", "table", "inet", "cellwall"],
        capture_output=True,
        check=False,
    )
    if kind == "nft":
        _sh("nft", "-f", "-", ns=NS_SERVER, stdin=_nft_ruleset(tuples))
    elif kind == "compiled":
        _sh("nft", "-f", "-", ns=NS_SERVER, stdin=_compiled_ruleset(tuples))
    elif kind == "conntrack":
        _sh("nft", "-f", "-", ns=NS_SERVER, stdin=CONNTRACK_ONLY)
    elif kind == "iptables":
        _sh("iptables-legacy-restore", ns=NS_IPT, stdin=_iptables_rules(ipt_tuples))


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / _TICK


def _server_pids(server: subprocess.Popen[bytes]) -> list[int]:
    pids = [server.pid]
    for task in Path(f"/proc/{server.pid}/task").iterdir():
        pids += [int(x) for x in (task / "children").read_text().split()]
    return pids


def _ksoftirqd() -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and (d / "comm").read_text().startswith("ksoftirqd"):
                pids.append(int(d.name))
        except OSError:
            continue
    return pids


def _ct_stats(ns: str) -> tuple[int, int]:
    """(entries, insert failures + drops + early drops) of a namespace's conntrack table."""
    text = _sh("cat", "/proc/net/stat/nf_conntrack", ns=ns).splitlines()
    head = text[0].split()
    cols = [sum(int(line.split()[i], 16) for line in text[1:]) for i in range(len(head))]
    stat = dict(zip(head, cols, strict=True))
    entries = int(_sh("cat", "/proc/sys/net/netfilter/nf_conntrack_count", ns=ns) or 0)
    return entries, stat["insert_failed"] + stat["drop"] + stat["early_drop"]


def _measure(
    exe: Path, ip: str, procs: int, seconds: float, pids: list[int]
) -> tuple[float, float]:
    """(connections per second, CPU µs per connection) of one run of the load generator."""
    before = _cpu_seconds(pids)
    out = _sh(str(exe), "load", ip, str(PORT), str(procs), str(seconds), ns=NS_CLIENT)
    server_cpu = _cpu_seconds(pids) - before
    done, failed, client_cpu = (float(x) for x in out.split())
    if done == 0 or failed > done // 100:
        raise RuntimeError(f"the load generator failed: {done} connections, {failed} failures")
    return done / seconds, 1e6 * (client_cpu + server_cpu) / done


def run(
    tuples: int = 10_000, rounds: int = 7, seconds: float = 1.5, procs: int = 8
) -> dict[str, Any]:
    if os.geteuid() != 0:
        raise RuntimeError("the enforcement benchmark needs root (network namespaces)")
    scale = float(os.environ.get("BENCH_SCALE", "1"))
    seconds = max(1.0, seconds * scale)
    allowed = _tuples(tuples)
    ipt_allowed = _tuples(tuples, client=IPT_CLIENT_IP)
    rates: dict[str, list[float]] = {k: [] for k in KINDS}
    cpu: dict[str, list[float]] = {k: [] for k in KINDS}
    ct: dict[str, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory(prefix="cwbench-") as tmp:
        exe = _build(Path(tmp))
        _setup()
        servers = [
            subprocess.Popen(
                ["ip", "netns", "exec", ns, str(exe), "serve", str(PORT), "2"],
                start_new_session=True,
            )
            for ns in (NS_SERVER, NS_IPT)
        ]
        try:
            time.sleep(0.3)
            soft = _ksoftirqd()
            pids = {
                NS_SERVER: _server_pids(servers[0]) + soft,
                NS_IPT: _server_pids(servers[1]) + soft,
            }
            for _ in range(rounds):
                for kind in KINDS:
                    _configure(kind, allowed, ipt_allowed)
                    ns, ip = (
                        (NS_IPT, IPT_SERVER_IP) if kind == "iptables" else (NS_SERVER, SERVER_IP)
                    )
                    _measure(exe, ip, procs, 0.5, pids[ns])  # warm-up
                    rate, us = _measure(exe, ip, procs, seconds, pids[ns])
                    rates[kind].append(rate)
                    cpu[kind].append(us)
                    ct[kind] = _ct_stats(ns)
        finally:
            for server in servers:
                os.killpg(server.pid, 15)
                server.wait()
            _teardown()
    return _figures(tuples, rounds, seconds, rates, cpu, ct)


def _added(per_conn: dict[str, list[float]], kind: str, base: str = "none") -> float:
    """The median over rounds of what ``kind`` adds to ``base`` in the same round (%)."""
    pairs = zip(per_conn[kind], per_conn[base], strict=True)
    return 100 * statistics.median(k / b - 1 for k, b in pairs)


def _figures(
    tuples: int,
    rounds: int,
    seconds: float,
    rates: dict[str, list[float]],
    cpu: dict[str, list[float]],
    ct: dict[str, tuple[int, int]],
) -> dict[str, Any]:
    """Paired, same-round ratios (which cancel slow drifts in the neighbours' load)."""
    cost = {k: [1e6 / r for r in v] for k, v in rates.items()}  # µs per connection
    added = {k: _added(cost, k) for k in KINDS[1:]}
    added_cpu = {k: _added(cpu, k) for k in KINDS[1:]}
    floor = 0.1  # %: below this, nftables' cost is taken as 0.1% for the ratio
    return {
        "name": "enforce_new_connection",
        "tuples": tuples,
        **{f"conn_per_s_{k}": round(statistics.median(v)) for k, v in rates.items()},
        "us_per_conn_none": round(statistics.median(cost["none"]), 2),
        **{f"{k}_added_pct": round(v, 2) for k, v in added.items()},
        "nft_rules_added_pct": round(_added(cost, "nft", "conntrack"), 2),
        "iptables_vs_nft": round(added["iptables"] / max(added["nft"], floor), 1),
        **{f"cpu_us_per_conn_{k}": round(statistics.median(v), 2) for k, v in cpu.items()},
        **{f"{k}_added_cpu_pct": round(v, 2) for k, v in added_cpu.items()},
        "nft_rules_added_cpu_pct": round(_added(cpu, "nft", "conntrack"), 2),
        "iptables_vs_nft_cpu": round(added_cpu["iptables"] / max(added_cpu["nft"], floor), 1),
        "ct_entries": ct["nft"][0],
        "ct_drops": sum(v[1] for v in ct.values()),
        "rounds": rounds,
        "seconds": seconds,
        "ratio": round(1 + added["nft"] / 100, 3),
    }


if __name__ == "__main__":
    print(run())
