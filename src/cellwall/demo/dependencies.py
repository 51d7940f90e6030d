"""The intended dependencies of the demo estate: who talks to whom, on what, and when.

Dependencies are written once per tier (``web`` to ``api`` on ``tcp/8443``) and expand to
one edge per pair of workloads. A cross-application dependency goes to the server app in
the same site, or, when that app does not run there, to its site in the same env. Traffic
rates are conversations an hour at scale 1; staging and dev see a fraction of prod's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from cellwall.demo.model import Edge, Estate, Schedule, Service

__all__ = ["SERVICES", "build_edges"]

_S = Service
SERVICES: dict[str, Service] = {
    s.name: s
    for s in (
        _S("https", 6, 443, "ssl", 1100, 14000, 0.8),
        _S("api", 6, 8443, "ssl", 800, 5000, 0.15),
        _S("api-http", 6, 8080, "http", 700, 6000, 0.1),
        _S("postgres", 6, 5432, "-", 450, 9000, 0.05),
        _S("pg-replication", 6, 5432, "-", 300, 400_000, 30.0, 0.5),
        _S("mysql", 6, 3306, "mysql", 350, 7000, 0.04),
        _S("redis", 6, 6379, "-", 90, 600, 0.005),
        _S("memcached", 6, 11211, "-", 80, 900, 0.004),
        _S("kafka", 6, 9092, "-", 4000, 300, 2.0),
        _S("elasticsearch", 6, 9200, "http", 600, 20000, 0.08),
        _S("es-transport", 6, 9300, "-", 20000, 20000, 5.0),
        _S("dns", 17, 53, "dns", 40, 120, 0.003, 0.3),
        _S("ntp", 17, 123, "ntp", 48, 48, 0.02, 0.05),
        _S("ldaps", 6, 636, "ssl", 900, 3000, 0.2),
        _S("node-exporter", 6, 9100, "http", 180, 45000, 0.03, 0.4),
        _S("syslog-tls", 6, 6514, "ssl", 40000, 200, 5.0),
        _S("ssh", 6, 22, "ssh", 4000, 12000, 120.0, 1.2),
        _S("backup-agent", 6, 9102, "-", 400, 2.0e9, 60.0, 0.6),
        _S("nfs", 6, 2049, "-", 3.0e9, 200_000, 90.0, 0.4),
        _S("etl-read", 6, 5432, "-", 2000, 3.0e8, 40.0, 0.5),
        _S("etl-mysql", 6, 3306, "mysql", 2000, 2.0e8, 40.0, 0.5),
        _S("etl-load", 6, 5432, "-", 2.0e8, 5000, 40.0, 0.5),
        _S("apt", 6, 443, "ssl", 2000, 4.0e6, 8.0, 1.0),
    )
}
ENV_SCALE = {"prod": 1.0, "staging": 0.15, "dev": 0.05}
APP_SERVICE = {"catalog": "api-http"}
DB_SERVICE = {"catalog": "mysql"}
CACHE_SERVICE = {"catalog": "memcached"}


def steady(rate: float, diurnal: bool = False) -> Schedule:
    return Schedule("steady", rate=rate, diurnal=diurnal)


class _Builder:
    """Collects edges, once per (client, server, proto, port)."""

    def __init__(self, estate: Estate) -> None:
        self.estate = estate
        self.by: dict[tuple[str, str, str, str], list[int]] = {}
        for w in estate.workloads:
            self.by.setdefault((w.env, w.loc, w.app, w.role), []).append(w.index)
        self.edges: list[Edge] = []
        self.seen: set[tuple[int, int, int, int]] = set()

    def group(self, env: str, loc: str, app: str, role: str) -> list[int]:
        return self.by.get((env, loc, app, role), [])

    def near(self, env: str, loc: str, app: str, role: str) -> list[int]:
        """The tier in this site, or else in the first site of this env that runs it."""
        here = self.group(env, loc, app, role)
        if here:
            return here
        for (e, _, a, r), members in self.by.items():
            if (e, a, r) == (env, app, role):
                return members
        return []

    def ext(self, name: str) -> list[int]:
        return [self.estate.external(name).index]

    def add(
        self,
        clients: Iterable[int],
        servers: Sequence[int],
        service: str,
        schedule: Schedule,
        purpose: str,
    ) -> None:
        svc = SERVICES[service]
        for c in clients:
            for s in servers:
                key = (c, s, svc.proto, svc.port)
                if c == s or key in self.seen:
                    continue
                self.seen.add(key)
                self.edges.append(Edge(len(self.edges), c, s, svc, schedule, purpose))


@dataclass(frozen=True, slots=True)
class Dep:
    """A dependency between tiers. An end is ``(app, role)``, or ``("ext", IP list name)``.

    ``near`` lets the server tier be in another site of the same env; ``rate`` is scaled
    by the env (``ENV_SCALE``).
    """

    client: tuple[str, str]
    server: tuple[str, str]
    service: str
    rate: float
    diurnal: bool
    purpose: str
    envs: tuple[str, ...] = ("prod", "staging", "dev")
    near: bool = False


DAY, FLAT = True, False  # whether a dependency follows the day


def _ext(name: str) -> tuple[str, str]:
    return ("ext", name)


def _app_deps() -> tuple[Dep, ...]:
    live = ("prod", "staging")
    deps: list[Dep] = []
    # fmt: off
    for a in ("payments", "orders", "catalog", "identity", "shipping"):
        deps += [
            Dep((a, "web"), (a, "api"), APP_SERVICE.get(a, "api"), 150, DAY,
                f"{a} web calls its api"),
            Dep((a, "api"), (a, "db"), DB_SERVICE.get(a, "postgres"), 60, DAY,
                f"{a} api queries its db"),
            Dep((a, "api"), (a, "cache"), CACHE_SERVICE.get(a, "redis"), 120, DAY,
                f"{a} api uses its cache"),
            Dep(_ext("internet"), (a, "web"), "https", 400, DAY,
                f"customers use the {a} site", ("prod",)),
            Dep(_ext("corp-vpn"), (a, "web"), "https", 20, DAY,
                f"staff test the {a} site", ("staging", "dev")),
        ]
    for a in ("payments", "orders", "catalog", "reporting"):
        deps.append(Dep((a, "web"), ("identity", "api"), "api", 50, DAY,
                        f"{a} web checks sessions with identity", near=True))
    for a in ("shipping", "notifications"):
        deps.append(Dep((a, "worker"), ("orders", "queue"), "kafka", 20, FLAT,
                        f"{a} worker consumes order events", near=True))
    deps += [
        Dep(("orders", "api"), ("orders", "queue"), "kafka", 60, DAY,
            "orders api publishes order events"),
        Dep(("orders", "worker"), ("orders", "queue"), "kafka", 30, FLAT,
            "orders worker consumes events"),
        Dep(("orders", "worker"), ("orders", "db"), "postgres", 20, FLAT,
            "orders worker updates order state"),
        Dep(("orders", "queue"), ("orders", "queue"), "kafka", 10, FLAT,
            "kafka brokers replicate"),
        Dep(("orders", "api"), ("payments", "api"), "api", 40, DAY,
            "orders charges through payments", near=True),
        Dep(("orders", "api"), ("catalog", "api"), "api-http", 60, DAY,
            "orders reads prices", near=True),
        Dep(("orders", "worker"), ("shipping", "api"), "api", 20, FLAT,
            "orders books shipments", near=True),
        Dep(("catalog", "api"), ("catalog", "search"), "elasticsearch", 80, DAY,
            "catalog api searches products"),
        Dep(("catalog", "search"), ("catalog", "search"), "es-transport", 6, FLAT,
            "search nodes form a cluster"),
        Dep(("payments", "api"), _ext("payment-gateway"), "https", 40, DAY,
            "payments authorises cards with the gateway", live),
        Dep(("shipping", "api"), _ext("carrier-api"), "https", 15, FLAT,
            "shipping books parcels with the carrier", live),
        Dep(("shipping", "api"), ("shipping", "db"), "postgres", 25, FLAT,
            "shipping api uses its db"),
        Dep(("shipping", "worker"), ("shipping", "db"), "postgres", 25, FLAT,
            "shipping worker uses its db"),
        Dep(("notifications", "worker"), _ext("email-api"), "https", 20, FLAT,
            "notifications sends e-mail"),
        Dep(("reporting", "web"), ("reporting", "db"), "postgres", 10, DAY,
            "dashboards query the warehouse"),
        Dep(_ext("corp-vpn"), ("reporting", "web"), "https", 10, DAY,
            "staff read dashboards"),
    ]
    # fmt: on
    return tuple(deps)


APP_DEPS = _app_deps()


def _app_edges(b: _Builder, env: str, loc: str) -> None:
    """The declared dependencies in one site, database replication, and the reporting ETL."""
    m = ENV_SCALE[env]

    def end(x: tuple[str, str], near: bool) -> list[int]:
        if x[0] == "ext":
            return b.ext(x[1])
        return b.near(env, loc, *x) if near else b.group(env, loc, *x)

    for d in APP_DEPS:
        if env in d.envs:
            b.add(
                end(d.client, False),
                end(d.server, d.near),
                d.service,
                steady(d.rate * m, d.diurnal),
                d.purpose,
            )
    for app in ("payments", "orders", "catalog", "identity", "shipping"):
        dbs = b.group(env, loc, app, "db")
        svc = "mysql" if DB_SERVICE.get(app) == "mysql" else "pg-replication"
        b.add(dbs[1:], dbs[:1], svc, steady(4 * m), f"{app} db replica streams from the primary")
    _reporting_edges(b, env, loc)


def _reporting_edges(b: _Builder, env: str, loc: str) -> None:
    etl = b.group(env, loc, "reporting", "etl")
    if not etl:
        return
    for k, (app, svc) in enumerate(
        (("payments", "etl-read"), ("orders", "etl-read"), ("catalog", "etl-mysql"))
    ):
        replicas = b.near(env, loc, app, "db")[-1:]
        b.add(
            etl,
            replicas,
            svc,
            Schedule("weekly", weekday=6, hour=2, minute=10 * k, runs=6),
            f"weekly reporting ETL extracts {app} data",
        )
    b.add(
        etl,
        b.group(env, loc, "reporting", "db"),
        "etl-load",
        Schedule("weekly", weekday=6, hour=3, minute=30, runs=10),
        "weekly reporting ETL loads the warehouse",
    )


def _infra_edges(b: _Builder, env: str, loc: str) -> None:
    """Shared services of one site: DNS, NTP, monitoring, logs, LDAP, bastion access."""
    m = max(ENV_SCALE[env], 0.2)
    site = [w for w in b.estate.workloads if (w.env, w.loc) == (env, loc)]
    vms = [w.index for w in site if w.kind == "vm"]
    every = [w.index for w in site]
    pci = [w.index for w in site if w.labels.get("data") == "pci"]

    def infra(role: str) -> list[int]:
        return b.group(env, loc, "infra", role)

    dns, ntp = infra("dns"), infra("ntp")
    # fmt: off
    b.add([i for i in every if i not in dns], dns, "dns", steady(20 * m), "name resolution")
    b.add(dns, b.ext("upstream-dns"), "dns", steady(100 * m), "resolvers forward upstream")
    b.add([i for i in vms if i not in ntp], ntp, "ntp", steady(1), "time sync")
    b.add(ntp, b.ext("ntp-pool"), "ntp", steady(4), "time servers sync upstream")
    b.add(infra("monitor"), every, "node-exporter", steady(60), "monitoring scrapes every host")
    b.add(every, infra("logs"), "syslog-tls", steady(6 * m), "log shipping")
    b.add(vms, infra("ldap"), "ldaps", steady(2), "host logins check LDAP")
    b.add(b.group(env, loc, "identity", "api"), infra("ldap"), "ldaps", steady(20 * m),
          "identity looks up staff accounts")
    b.add(infra("bastion"), [i for i in vms if i not in pci], "ssh", steady(0.03, DAY),
          "admins reach hosts through the bastion")
    b.add(b.ext("corp-vpn"), infra("bastion"), "ssh", steady(3, DAY), "admins log in to bastion")
    # fmt: on


def _infra_jobs(b: _Builder, env: str, loc: str, phase: int) -> None:
    """Jobs at fixed times: backups, the NAS copy, package updates, the rare PCI task."""
    site = [w for w in b.estate.workloads if (w.env, w.loc) == (env, loc)]
    backup, bastion = b.group(env, loc, "infra", "backup"), b.group(env, loc, "infra", "bastion")
    dbs = [w.index for w in site if w.role == "db" and w.kind == "vm"]
    for k, db in enumerate(dbs):
        at = Schedule("daily", hour=(60 + 5 * k) // 60, minute=(60 + 5 * k) % 60)
        b.add(backup, [db], "backup-agent", at, "nightly database backup")
    nas = Schedule("daily", hour=3, runs=4)
    b.add(backup, b.ext("legacy-nas"), "nfs", nas, "backups are copied to the NAS")
    pci = [w.index for w in site if w.labels.get("data") == "pci"]
    rare = Schedule("every", every_days=9, phase=phase, hour=10, minute=30)
    b.add(bastion, pci, "ssh", rare, "PCI key rotation through the bastion (rare)")
    for k, vm in enumerate(w.index for w in site if w.kind == "vm"):
        at = Schedule("daily", hour=6, minute=k % 60)
        b.add([vm], b.ext("package-mirror"), "apt", at, "daily package update")


def build_edges(estate: Estate, rng: np.random.Generator) -> list[Edge]:
    """Every intended dependency of the estate, in a fixed order."""
    b = _Builder(estate)
    phase = int(rng.integers(9))
    sites = sorted({(w.env, w.loc) for w in estate.workloads}, key=lambda s: (s[0] != "prod", s))
    for env, loc in sites:
        _app_edges(b, env, loc)
        _infra_edges(b, env, loc)
        _infra_jobs(b, env, loc, phase)
    return b.edges
