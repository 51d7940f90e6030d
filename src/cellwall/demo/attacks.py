"""The marked intrusion: SQL injection, a port scan, lateral movement and exfiltration.

An outside attacker injects SQL through the orders web front (web, api and database talk
on their usual, allowed paths, with unusual volumes), takes over the prod web pod
``ord-web-1``, scans the prod site from it, brute-forces SSH and tries SMB on other hosts,
and finally ships a large volume to an internet address. Every conversation is returned
with its attack id, so that the truth can name each one by its 5-tuple and start time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cellwall.demo.model import Estate
from cellwall.demo.traffic import (
    EPHEMERAL,
    H_REJ,
    H_SCAN_OPEN,
    H_SYN_ONLY,
    H_TCP_NORMAL,
    US,
    ZEEK_SERVICES,
    Conversations,
    Plan,
    packets,
)

__all__ = ["ATTACKS", "AttackSet", "Stage", "build_attacks"]

ATTACKS: tuple[tuple[str, str, str], ...] = (
    ("sqli", "T1190", "SQL injection through the orders web front, the api and the database"),
    ("scan", "T1046", "port scan of the prod site from the compromised web pod"),
    ("lateral", "T1021", "SSH brute force and SMB attempts from the web pod to other hosts"),
    ("exfil", "T1048", "exfiltration of a large volume to an internet address"),
)
FOOTHOLD = "ord-web-1"
# fmt: off
SCAN_PORTS = (
    21, 22, 23, 25, 53, 80, 110, 111, 135, 139, 143, 443, 445, 636, 993, 995, 1433, 1521, 2049,
    2379, 3306, 3389, 5432, 5601, 5900, 5985, 6379, 6443, 8000, 8080, 8443, 8888, 9000, 9090,
    9092, 9100, 9200, 10250, 11211, 27017,
)
# fmt: on
MINUTE = 60 * US


@dataclass(frozen=True, slots=True)
class Stage:
    """One attack: its id, MITRE ATT&CK technique, time window and size."""

    id: str
    technique: str
    description: str
    start_us: int
    end_us: int
    conversations: int

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "technique": self.technique,
            "description": self.description,
            "start_us": self.start_us,
            "end_us": self.end_us,
            "conversations": self.conversations,
        }


@dataclass
class AttackSet:
    """Attack conversations (sorted by start), the edge each rides (or -1), and the stages."""

    conv: Conversations
    rides: np.ndarray
    start: int
    info: list[Stage]


class _Intrusion:
    """Collects the attack conversations; each stage is one method."""

    def __init__(self, estate: Estate, plan: Plan, rng: np.random.Generator, t0: int) -> None:
        self.estate, self.plan, self.rng = estate, plan, rng
        self.t0 = t0 * US
        self.web = estate.workload(FOOTHOLD).index
        site = [w for w in estate.workloads if (w.env, w.loc) == ("prod", "eu-west-1")]
        self.apis = np.array([w.index for w in site if (w.app, w.role) == ("orders", "api")])
        self.others = np.array([w.index for w in site if w.index != self.web])
        self.edge_of = {(e.client, e.server, e.service.port): e.index for e in estate.edges}
        self.parts: list[Conversations] = []
        self.rides: list[np.ndarray] = []

    def add(
        self,
        attack: int,
        client: np.ndarray | int,
        server: np.ndarray | int,
        port: int,
        t_us: np.ndarray,
        *,
        ob: np.ndarray | int = 0,
        rb: np.ndarray | int = 0,
        dur: np.ndarray | float = 0.0,
        hist: np.ndarray | int | None = None,
        reject: np.ndarray | None = None,
        service: str = "-",
    ) -> None:
        """Conversations of one kind; scalars apply to all, ``hist`` None means a normal TCP one."""
        n = len(t_us)

        def full(x: np.ndarray | float, dtype: type) -> np.ndarray:
            return np.broadcast_to(np.asarray(x, dtype), (n,)).copy()

        c, s = full(client, np.int64), full(server, np.int64)
        h = self.rng.choice(H_TCP_NORMAL[:4], size=n) if hist is None else full(hist, np.uint8)
        o, r = full(ob, np.int64), full(rb, np.int64)
        op, rp = packets(np.full(n, 6, np.uint8), o, r)
        op = np.select([h == H_SCAN_OPEN, np.isin(h, [H_SYN_ONLY, H_REJ])], [2, 1], op)
        rp = np.select([h == H_SCAN_OPEN, h == H_REJ, h == H_SYN_ONLY], [1, 1, 0], rp)
        t_s = t_us // US
        res, nw = self.plan.resolver, len(self.estate.workloads)
        self.parts.append(
            Conversations(
                start_us=t_us.astype(np.int64),
                dur_us=(full(dur, np.float64) * US).astype(np.int64),
                src=res.resolve(c, t_s, self.rng),
                dst=res.resolve(s, t_s, self.rng),
                sport=self.rng.integers(*EPHEMERAL, size=n).astype(np.int32),
                dport=np.full(n, port, np.int32),
                proto=np.full(n, 6, np.uint8),
                ob=o,
                rb=r,
                op=op.astype(np.int64),
                rp=rp.astype(np.int64),
                hist=h.astype(np.uint8),
                reject=np.zeros(n, bool) if reject is None else reject,
                zsvc=np.full(n, ZEEK_SERVICES.index(service), np.uint8),
                edge=np.full(n, -1, np.int32),
                attack=np.full(n, attack, np.uint8),
                eni=np.where(s < nw, s, c).astype(np.int32),
            )
        )
        ride = [self.edge_of.get((int(a), int(b), port), -1) for a, b in zip(c, s, strict=True)]
        self.rides.append(np.array(ride, np.int64))

    def sqli(self) -> None:
        """120 requests over 16 minutes through web, api and db; the last 20 dump data."""
        rng, n = self.rng, 120
        t = self.t0 + np.arange(n) * 8 * US + rng.integers(0, 2 * US, n)
        dump = np.arange(n) >= n - 20
        rb = np.where(dump, rng.integers(200_000, 2_000_000, n), rng.integers(3000, 9000, n))
        api = rng.choice(self.apis, n)
        attacker = self.estate.external("attacker").index
        db = self.estate.workload("ord-db-1").index
        self.add(
            1,
            attacker,
            self.web,
            443,
            t,
            ob=rng.integers(900, 1400, n),
            rb=rb + 600,
            dur=rng.uniform(0.05, 0.4, n),
            service="ssl",
        )
        # The attacker's address is on the internet: that hop rides the internet → web edge.
        self.rides[-1] = np.full(
            n, self.edge_of[self.estate.external("internet").index, self.web, 443]
        )
        t = t + rng.integers(20_000, 80_000, n)
        self.add(
            1,
            self.web,
            api,
            8443,
            t,
            ob=rng.integers(900, 1600, n),
            rb=rb + 300,
            dur=rng.uniform(0.03, 0.3, n),
            service="ssl",
        )
        t = t + rng.integers(5_000, 20_000, n)
        self.add(
            1, api, db, 5432, t, ob=rng.integers(500, 2000, n), rb=rb, dur=rng.uniform(0.01, 0.2, n)
        )

    def scan(self) -> None:
        """25 hosts × 40 ports in random order: open ports answer, the rest drop or reset."""
        rng = self.rng
        targets = rng.choice(self.others, size=min(25, len(self.others)), replace=False)
        pairs = np.array([(h, p) for h in targets for p in SCAN_PORTS], np.int64)
        pairs = pairs[rng.permutation(len(pairs))]
        served = {(e.server, e.service.port) for e in self.estate.edges if e.service.proto == 6}
        is_open = np.array([(int(h), int(p)) in served for h, p in pairs])
        drop = ~is_open & (rng.random(len(pairs)) < 0.7)
        m = len(pairs)
        t = self.t0 + 20 * MINUTE + np.arange(m) * 250_000 + rng.integers(0, 200_000, m)
        hist = np.where(is_open, H_SCAN_OPEN, np.where(drop, H_SYN_ONLY, H_REJ))
        for port in SCAN_PORTS:  # one batch a port keeps ``add`` scalar in the port
            sel = pairs[:, 1] == port
            self.add(
                2,
                self.web,
                pairs[sel, 0],
                port,
                t[sel],
                dur=np.where(drop[sel], 0.0, 0.0008),
                hist=hist[sel],
                reject=drop[sel],
            )

    def lateral(self) -> None:
        """SSH brute force on three databases, two sessions, and SMB attempts."""
        rng = self.rng
        hosts = np.array(
            [self.estate.workload(h).index for h in ("ord-db-1", "pay-db-1", "cat-db-1")]
        )
        tries = np.repeat(hosts, 15)
        k = len(tries)
        t = self.t0 + 50 * MINUTE + np.arange(k) * 6 * US + rng.integers(0, US, k)
        self.add(
            3,
            self.web,
            tries,
            22,
            t,
            ob=rng.integers(1500, 2500, k),
            rb=rng.integers(2500, 3500, k),
            dur=rng.uniform(2, 4, k),
            service="ssh",
        )
        t = self.t0 + 60 * MINUTE + np.array([0, 600]) * US
        self.add(
            3,
            self.web,
            hosts[:2],
            22,
            t,
            ob=np.array([20_000, 35_000]),
            rb=np.array([80_000, 2_500_000]),
            dur=np.array([300.0, 420.0]),
            service="ssh",
        )
        smb = rng.choice(self.others, size=min(8, len(self.others)), replace=False)
        t = self.t0 + 75 * MINUTE + np.arange(len(smb)) * 3 * US
        self.add(3, self.web, smb, 445, t, dur=0.0006, hist=H_REJ)

    def exfil(self) -> None:
        """24 uploads of 60-100 MB to one internet address."""
        rng, n = self.rng, 24
        t = self.t0 + 90 * MINUTE + np.arange(n) * 150 * US + rng.integers(0, 10 * US, n)
        ob = rng.integers(60_000_000, 100_000_000, n)
        drop = self.estate.external("exfil-drop").index
        self.add(
            4,
            self.web,
            drop,
            443,
            t,
            ob=ob,
            rb=rng.integers(3000, 8000, n),
            dur=ob / 15e6,
            service="ssl",
        )


def build_attacks(estate: Estate, plan: Plan, seed: int, at: float) -> AttackSet:
    """The intrusion, starting at fraction ``at`` of the span (at least 4 h before its end)."""
    span = estate.end - estate.start
    t0 = max(estate.start, min(estate.start + int(span * at), estate.end - 4 * 3600)) // 60 * 60
    run = _Intrusion(estate, plan, np.random.default_rng([seed, 0xA77AC4]), t0)
    run.sqli()
    run.scan()
    run.lateral()
    run.exfil()
    conv = Conversations.concat(run.parts)
    order = np.argsort(conv.start_us, kind="stable")
    info: list[Stage] = []
    for i, (name, technique, text) in enumerate(ATTACKS, start=1):
        sel = conv.attack == i
        end = int((conv.start_us[sel] + conv.dur_us[sel]).max())
        first = int(conv.start_us[sel].min())
        info.append(Stage(name, technique, text, first, end, int(sel.sum())))
    return AttackSet(conv.take(order), np.concatenate(run.rides)[order], t0, info)
