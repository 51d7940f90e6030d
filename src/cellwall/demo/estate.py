"""The workloads of the demo estate, their addresses over time, and the ends outside it.

Seven applications (plus shared infrastructure) run in four sites: prod in two regions,
staging in one and dev in the other. VMs keep one address for all time. Pods get a new
address from their site's pod pool each time they restart; a freed address goes to the
back of the pool's queue, so that a different pod picks it up later (IP reuse).
"""

from __future__ import annotations

import hashlib
import heapq
import ipaddress
from collections import deque
from dataclasses import dataclass

import numpy as np

from cellwall.demo.config import DemoConfig
from cellwall.demo.dependencies import build_edges
from cellwall.demo.model import Estate, External, Lease, Mislabel, Workload, WorkloadKind

__all__ = ["APPS", "ENVS", "INFRA", "LOCS", "SITES", "build_estate"]

EU, US = "eu-west-1", "us-east-1"
LOCS = (EU, US)
ENVS = ("prod", "staging", "dev")
SITES: tuple[tuple[str, str], ...] = (("prod", EU), ("prod", US), ("staging", EU), ("dev", US))
ACCOUNTS = {"prod": "210987654321", "staging": "345678901234", "dev": "456789012345"}
SUFFIX = {("prod", EU): "", ("prod", US): "-use1", ("staging", EU): "-stg", ("dev", US): "-dev"}
HOUR = 3600


@dataclass(frozen=True, slots=True)
class Tier:
    role: str
    kind: WorkloadKind
    replicas: int
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class App:
    name: str
    short: str
    owner: str
    tiers: tuple[Tier, ...]
    prod_locs: tuple[str, ...] = (EU, US)


APPS: tuple[App, ...] = (
    App(
        "payments",
        "pay",
        "team-payments",
        (
            Tier("web", "pod", 3),
            Tier("api", "pod", 3),
            Tier("db", "vm", 2, (("data", "pci"),)),
            Tier("cache", "vm", 2),
        ),
    ),
    App(
        "orders",
        "ord",
        "team-orders",
        (
            Tier("web", "pod", 3),
            Tier("api", "pod", 3),
            Tier("db", "vm", 2),
            Tier("queue", "vm", 3),
            Tier("worker", "pod", 2),
        ),
    ),
    App(
        "catalog",
        "cat",
        "team-catalog",
        (
            Tier("web", "pod", 2),
            Tier("api", "pod", 3),
            Tier("db", "vm", 2),
            Tier("cache", "vm", 2),
            Tier("search", "vm", 3),
        ),
    ),
    App(
        "identity",
        "idn",
        "team-identity",
        (Tier("api", "pod", 3), Tier("db", "vm", 2, (("data", "pii"),)), Tier("cache", "vm", 2)),
    ),
    App(
        "shipping",
        "shp",
        "team-logistics",
        (Tier("api", "pod", 2), Tier("db", "vm", 1), Tier("worker", "pod", 2)),
        (EU,),
    ),
    App("notifications", "ntf", "team-comms", (Tier("worker", "pod", 2),), (EU,)),
    App(
        "reporting",
        "rpt",
        "team-data",
        (Tier("etl", "vm", 1), Tier("db", "vm", 1), Tier("web", "vm", 1)),
        (EU,),
    ),
)
INFRA = App(
    "infra",
    "",
    "team-platform",
    (
        Tier("dns", "vm", 2),
        Tier("ntp", "vm", 1),
        Tier("ldap", "vm", 1),
        Tier("monitor", "vm", 1),
        Tier("backup", "vm", 1),
        Tier("logs", "vm", 1),
        Tier("bastion", "vm", 1),
    ),
    LOCS,
)
# First octets of the public blocks that internet clients come from (none is reserved).
PUBLIC_FIRST_OCTETS = (23, 31, 37, 46, 62, 77, 81, 86, 91, 94, 109, 151, 176, 185, 188, 212, 217)
POD_POOL_SPARE = 5


@dataclass
class _Draft:
    name: str
    owner: str
    kind: WorkloadKind
    labels: dict[str, str]
    leases: list[Lease]


def _ip(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def _eni(name: str) -> str:
    return "eni-" + hashlib.blake2b(name.encode(), digest_size=9).hexdigest()[:17]


def _site_drafts(env: str, loc: str) -> list[_Draft]:
    """The workloads of one site, in a fixed order, with VM addresses."""
    drafts: list[_Draft] = []
    lnum, enum = LOCS.index(loc) + 1, ENVS.index(env)
    for slot, app in enumerate((*APPS, INFRA)):
        if env == "prod" and loc not in app.prod_locs:
            continue
        third = enum * 32 + (20 if app is INFRA else slot)
        host = 10
        for tier in app.tiers:
            replicas = tier.replicas if env == "prod" else 1
            for n in range(1, replicas + 1):
                stem = f"{app.short}-{tier.role}" if app.short else tier.role
                labels = {"app": app.name, "role": tier.role, "env": env, "loc": loc}
                labels.update(dict(tier.extra))
                owner = "team-security" if tier.role == "bastion" else app.owner
                leases: list[Lease] = []
                if tier.kind == "vm":
                    leases.append(Lease(_ip(f"10.{lnum}.{third}.{host}")))
                    host += 1
                drafts.append(
                    _Draft(f"{stem}{SUFFIX[env, loc]}-{n}", owner, tier.kind, labels, leases)
                )
    return drafts


def _churn(
    pods: list[_Draft], pool: list[int], start: int, end: int, rng: np.random.Generator
) -> None:
    """Give each pod a sequence of leases from the pool; FIFO reuse of freed addresses."""
    free = deque(pool[i] for i in rng.permutation(len(pool)))
    births = start - rng.integers(1, 48 * HOUR, size=len(pods))
    events: list[tuple[int, int]] = [(int(b), i) for i, b in enumerate(births)]
    heapq.heapify(events)
    held: dict[int, tuple[int, int]] = {}
    while events:
        t, i = heapq.heappop(events)
        if i in held:
            ip, since = held.pop(i)
            pods[i].leases.append(Lease(ip, since, t))
            free.append(ip)
        ip = free.popleft()
        life = max(3 * HOUR, int(rng.exponential(30 * HOUR)))
        if t + life >= end:
            pods[i].leases.append(Lease(ip, t, end))
            continue
        held[i] = (ip, t)
        heapq.heappush(events, (t + life, i))


# fmt: off
# name, CIDRs, the addresses traffic uses ("A+N": N addresses from A), internal?, in policy?
EXTERNAL_ENDS: tuple[tuple[str, tuple[str, ...], str, bool, bool, str], ...] = (
    ("internet", ("0.0.0.0/0", "::/0"), "", False, True, "customers and the internet"),
    ("corp-vpn", ("10.250.0.0/24",), "10.250.0.10+60", True, True,
     "staff on the corporate VPN (unmanaged)"),
    ("legacy-nas", ("10.3.0.20/32",), "10.3.0.20", True, True,
     "backup NAS that is in no inventory (unmanaged)"),
    ("payment-gateway", ("203.0.113.8/29",), "203.0.113.10+3", False, True,
     "card payment SaaS API"),
    ("carrier-api", ("198.51.100.16/28",), "198.51.100.17+2", False, True,
     "parcel carrier SaaS API"),
    ("email-api", ("192.0.2.32/28",), "192.0.2.33+2", False, True, "transactional e-mail SaaS API"),
    ("package-mirror", ("203.0.113.128/26",), "203.0.113.130+2", False, True, "OS package mirror"),
    ("upstream-dns", ("192.0.2.53/32", "192.0.2.54/32"), "192.0.2.53+2", False, True,
     "upstream DNS resolvers"),
    ("ntp-pool", ("198.51.100.120/29",), "198.51.100.121+2", False, True, "public NTP servers"),
    ("attacker", ("203.0.113.66/32",), "203.0.113.66", False, False,
     "the intruder's address (attack traffic only)"),
    ("exfil-drop", ("192.0.2.200/32",), "192.0.2.200", False, False,
     "where the intruder sends stolen data (attack traffic only)"),
)
# fmt: on
PRIVATE = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")


def _externals(first: int, rng: np.random.Generator) -> list[External]:
    """The ends outside the estate; internet clients are 4 096 addresses in public blocks."""
    octets = rng.choice(np.array(PUBLIC_FIRST_OCTETS), size=4096)
    rest = rng.integers(1 << 8, 1 << 24, size=4096)
    clients = tuple(sorted({int(o) << 24 | int(r) for o, r in zip(octets, rest, strict=True)}))
    out = []
    for i, (name, cidrs, spec, internal, in_policy, purpose) in enumerate(EXTERNAL_ENDS):
        exc: tuple[str, ...]
        if name == "internet":
            pool, exc, skew = clients, PRIVATE, 2.0
        else:
            base, _, count = spec.partition("+")
            pool = tuple(_ip(base) + k for k in range(int(count or 1)))
            exc, skew = (), 1.0
        out.append(External(first + i, name, cidrs, pool, internal, purpose, exc, skew, in_policy))
    return out


WRONG_ROLE = {
    "cache": "db",
    "db": "cache",
    "worker": "api",
    "api": "worker",
    "web": "api",
    "queue": "db",
    "search": "db",
    "etl": "worker",
}
WRONG_ENV = {"prod": "staging", "staging": "prod", "dev": "staging"}


def _mislabel(drafts: list[_Draft], count: int, rng: np.random.Generator) -> list[Mislabel]:
    """Choose ``count`` application workloads and give each one wrong claimed label."""
    apps = [a.name for a in APPS]
    chosen: set[int] = set()
    out: list[Mislabel] = []
    kinds = ("role", "app", "env")
    for k in range(count):
        key = kinds[k % 3]
        pool = [
            i
            for i, d in enumerate(drafts)
            if i not in chosen
            and d.labels["app"] != "infra"
            and d.labels["role"] in WRONG_ROLE
            and (k != 0 or d.labels["role"] == "cache")
        ]
        if not pool:
            break
        i = pool[int(rng.integers(len(pool)))]
        chosen.add(i)
        true = drafts[i].labels[key]
        if key == "role":
            wrong = WRONG_ROLE[true]
        elif key == "env":
            wrong = WRONG_ENV[true]
        else:
            others = [a for a in apps if a != true]
            wrong = others[int(rng.integers(len(others)))]
        out.append(Mislabel(drafts[i].name, key, wrong, true))
    return out


def build_estate(config: DemoConfig) -> Estate:
    """The estate for this seed and span: workloads, external ends, edges and mislabels."""
    rng = np.random.default_rng([config.seed, 0xE57A7E])
    start = int(config.start.timestamp())
    end = int(config.end.timestamp())
    drafts: list[_Draft] = []
    for env, loc in SITES:
        site = _site_drafts(env, loc)
        pods = [d for d in site if d.kind == "pod"]
        base = _ip(f"10.{LOCS.index(loc) + 1}.{ENVS.index(env) * 32 + 24}.10")
        _churn(pods, [base + k for k in range(len(pods) + POD_POOL_SPARE)], start, end, rng)
        drafts.extend(site)
    mislabels = _mislabel(drafts, config.mislabel, rng)
    wrong = {(m.workload, m.key): m.claimed for m in mislabels}
    workloads = []
    for i, d in enumerate(drafts):
        claimed = {k: wrong.get((d.name, k), v) for k, v in d.labels.items()}
        workloads.append(
            Workload(
                i,
                d.name,
                d.owner,
                d.kind,
                d.labels,
                claimed,
                tuple(d.leases),
                ACCOUNTS[d.labels["env"]],
                _eni(d.name),
            )
        )
    estate = Estate(start, end, workloads, _externals(len(workloads), rng), mislabels=mislabels)
    estate.edges = build_edges(estate, rng)
    return estate
