"""Vectorised conversations: one NumPy pass per time slice, never a loop per flow.

A :class:`Plan` compiles the estate into arrays once. For each hour (cut into ``parts``
slices when it would hold more than ``chunk`` conversations) it draws Poisson counts per
steady edge, adds the scheduled firings, and shapes every conversation (addresses at that
time, ephemeral port, bytes, packets, duration, TCP history). Each slice has its own
random stream, seeded by (seed, hour, part), so that output is the same on every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from cellwall.demo.model import Estate

__all__ = [
    "HISTORIES",
    "STATES",
    "ZEEK_SERVICES",
    "Conversations",
    "IpText",
    "Plan",
    "Resolver",
]

HOUR = 3600
US = 1_000_000
EPHEMERAL = (32768, 61000)
ZEEK_SERVICES = ("-", "ssl", "http", "dns", "ntp", "ssh", "mysql")
STATES = ("SF", "S0", "REJ", "RSTO")
# (history, state index): the TCP and UDP shapes that conversations take.
HISTORIES = (
    ("ShADadFf", 0),
    ("ShADadfF", 0),
    ("ShAdDaFf", 0),
    ("ShADdaFf", 0),
    ("ShADadR", 3),
    ("Dd", 0),
    ("D", 1),
    ("S", 1),
    ("Sr", 2),
    ("ShR", 3),
)
H_TCP_NORMAL = np.array([0, 1, 2, 3, 4], np.uint8)
H_TCP_WEIGHTS = np.array([0.55, 0.2, 0.13, 0.09, 0.03])
H_UDP, H_SYN_ONLY, H_REJ, H_SCAN_OPEN = 5, 7, 8, 9
TZ = {"eu-west-1": 1, "us-east-1": -5}


@dataclass
class Conversations:
    """Conversations as columns. Bytes are payload bytes, as Zeek counts them."""

    start_us: np.ndarray
    dur_us: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    sport: np.ndarray
    dport: np.ndarray
    proto: np.ndarray
    ob: np.ndarray
    rb: np.ndarray
    op: np.ndarray
    rp: np.ndarray
    hist: np.ndarray
    reject: np.ndarray
    zsvc: np.ndarray
    edge: np.ndarray
    attack: np.ndarray
    eni: np.ndarray

    def __len__(self) -> int:
        return len(self.start_us)

    def take(self, index: np.ndarray) -> Conversations:
        return Conversations(*(getattr(self, f.name)[index] for f in fields(self)))

    @staticmethod
    def concat(parts: list[Conversations]) -> Conversations:
        return Conversations(
            *(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Conversations))
        )

    def sorted(self) -> Conversations:
        return self.take(np.argsort(self.start_us, kind="stable"))


def packets(proto: np.ndarray, ob: np.ndarray, rb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Packets each way: TCP adds the handshake, FINs and ACKs; UDP is one datagram per 1472."""
    tcp = proto == 6
    op = np.where(tcp, 3 + -(-ob // 1448) + -(-rb // 2896), np.maximum(1, -(-ob // 1472)))
    rp = np.where(tcp, 2 + -(-rb // 1448) + -(-ob // 2896), np.maximum(1, -(-rb // 1472)))
    return op.astype(np.int64), rp.astype(np.int64)


class Resolver:
    """The address of an endpoint at a time: leases for workloads, pools for external ends."""

    def __init__(self, estate: Estate) -> None:
        keys, ips = [], []
        for w in estate.workloads:
            for lease in w.leases:
                keys.append((w.index << 32) | max(lease.since or 0, 0))
                ips.append(lease.ip)
        order = np.argsort(np.array(keys, np.int64), kind="stable")
        self.keys = np.array(keys, np.int64)[order]
        self.ips = np.array(ips, np.uint32)[order]
        self.n_workloads = len(estate.workloads)
        sizes = [len(x.ips) for x in estate.externals]
        self.ext_off = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.ext_size = np.array(sizes, np.int64)
        self.ext_skew = np.array([x.skew for x in estate.externals], np.float64)
        self.ext_pool = np.array([ip for x in estate.externals for ip in x.ips], np.uint32)

    def resolve(self, ep: np.ndarray, t_s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = np.empty(len(ep), np.uint32)
        wl = ep < self.n_workloads
        if wl.any():
            key = (ep[wl].astype(np.int64) << 32) | t_s[wl].astype(np.int64)
            out[wl] = self.ips[np.searchsorted(self.keys, key, side="right") - 1]
        ext = ~wl
        if ext.any():
            x = ep[ext] - self.n_workloads
            u = rng.random(int(ext.sum())) ** self.ext_skew[x]
            pick = np.minimum((u * self.ext_size[x]).astype(np.int64), self.ext_size[x] - 1)
            out[ext] = self.ext_pool[self.ext_off[x] + pick]
        return out

    def all_ips(self) -> np.ndarray:
        return np.unique(np.concatenate([self.ips, self.ext_pool]))


class IpText:
    """Dotted-quad text for every address the estate can use, looked up column-wise."""

    def __init__(self, ips: np.ndarray) -> None:
        self.ips = np.unique(ips.astype(np.uint32))
        self.text = np.array(
            [f"{i >> 24}.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}" for i in self.ips.tolist()],
            dtype=object,
        )

    def index(self, ips: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.ips, ips)
        idx = np.minimum(idx, len(self.ips) - 1)
        if len(ips) and not np.array_equal(self.ips[idx], ips):
            raise ValueError("an address outside the estate's address table")
        return idx


def diurnal(hours: np.ndarray, tz: int) -> np.ndarray:
    """Traffic shape over absolute hours: low at night, peak mid-afternoon, half at weekends."""
    local = hours + tz
    hod = local % 24
    weekday = (local // 24 + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    day = 0.12 + 0.88 * (0.5 - 0.5 * np.cos(2 * np.pi * (hod - 3) / 24))
    return np.where(weekday >= 5, 0.5, 1.0) * day


class Plan:
    """The estate compiled to arrays, and the conversations of any slice of its span."""

    def __init__(self, estate: Estate, seed: int) -> None:
        self.estate = estate
        self.seed = seed
        self.resolver = Resolver(estate)
        edges = estate.edges
        nw = len(estate.workloads)
        self.client = np.array([e.client for e in edges], np.int64)
        self.server = np.array([e.server for e in edges], np.int64)
        self.proto = np.array([e.service.proto for e in edges], np.uint8)
        self.port = np.array([e.service.port for e in edges], np.int32)
        self.req = np.array([e.service.req for e in edges], np.float64)
        self.resp = np.array([e.service.resp for e in edges], np.float64)
        self.sigma = np.array([e.service.sigma for e in edges], np.float64)
        self.dur = np.array([e.service.dur for e in edges], np.float64)
        self.zsvc = np.array([ZEEK_SERVICES.index(e.service.zeek) for e in edges], np.uint8)
        self.eni = np.where(self.server < nw, self.server, self.client).astype(np.int32)
        sched = [e.schedule for e in edges]
        self.rate = np.array([s.rate if s.kind == "steady" else 0.0 for s in sched])
        locs = [estate.workloads[int(w)].loc for w in self.eni]
        # group 0: flat; 1..: diurnal in a time zone
        self.zones = sorted(set(TZ.values()))
        self.group = np.array(
            [
                1 + self.zones.index(TZ[loc]) if s.diurnal else 0
                for s, loc in zip(sched, locs, strict=True)
            ],
            np.int64,
        )
        steady = np.flatnonzero(self.rate > 0)
        self.sched = np.flatnonzero(self.rate == 0)
        kinds = ("daily", "weekly", "every")
        self.s_kind = np.array([kinds.index(sched[i].kind) for i in self.sched], np.int64)
        self.s_hour = np.array([sched[i].hour for i in self.sched], np.int64)
        self.s_minute = np.array([sched[i].minute for i in self.sched], np.int64)
        self.s_weekday = np.array([sched[i].weekday for i in self.sched], np.int64)
        self.s_every = np.array([sched[i].every_days for i in self.sched], np.int64)
        self.s_phase = np.array([sched[i].phase for i in self.sched], np.int64)
        self.s_runs = np.array([sched[i].runs for i in self.sched], np.int64)
        self.h0 = estate.start // HOUR
        self.hours = (estate.end - estate.start) // HOUR
        floor_rng = np.random.default_rng([seed, 3])
        floor_hour = floor_rng.integers(0, self.hours, size=len(steady))
        order = np.argsort(floor_hour, kind="stable")
        self.floor_edges = steady[order]
        self.floor_hours = floor_hour[order]
        self.scale = 1.0

    def factors(self, hours: np.ndarray) -> np.ndarray:
        """Shape factor per (group, hour) for absolute hour numbers."""
        rows = [np.ones(len(hours))] + [diurnal(hours, tz) for tz in self.zones]
        return np.vstack(rows)

    def expected_steady(self) -> float:
        """Steady conversations over the span at scale 1."""
        sums = self.factors(self.h0 + np.arange(self.hours)).sum(axis=1)
        return float((self.rate * sums[self.group]).sum())

    def fires(self, hour: int) -> tuple[np.ndarray, np.ndarray]:
        """Scheduled edges that fire in an absolute hour, and their run counts."""
        day, hod = divmod(hour, 24)
        weekday = (day + 3) % 7
        when = np.select(
            [self.s_kind == 0, self.s_kind == 1],
            [np.ones(len(self.sched), bool), self.s_weekday == weekday],
            (day - self.s_phase) % self.s_every == 0,
        )
        hit = when & (self.s_hour == hod)
        return self.sched[hit], self.s_runs[hit]

    def scheduled_total(self) -> int:
        return sum(int(self.fires(int(h))[1].sum()) for h in self.h0 + np.arange(self.hours))

    def parts(self, hour: int, chunk: int) -> int:
        f = self.factors(np.array([hour]))[:, 0]
        expected = self.scale * float((self.rate * f[self.group]).sum())
        return max(1, math.ceil(expected * 1.25 / chunk))

    def slice(self, hour: int, part: int, parts: int) -> Conversations:
        """The edge conversations of one slice of an absolute hour, sorted by start."""
        t0 = hour * HOUR + part * HOUR // parts
        t1 = hour * HOUR + (part + 1) * HOUR // parts
        rng = np.random.default_rng([self.seed, 1, hour, part])
        f = self.factors(np.array([hour]))[:, 0]
        counts = rng.poisson(self.rate * self.scale * f[self.group] / parts)
        if part == 0:
            lo, hi = np.searchsorted(self.floor_hours, [hour - self.h0, hour - self.h0 + 1])
            forced = self.floor_edges[lo:hi]
            counts[forced] = np.maximum(counts[forced], 1)
        eid = np.repeat(np.arange(len(counts)), counts)
        t_us = rng.integers(t0 * US, t1 * US, size=len(eid))
        # A firing late in the previous hour may run over into this one.
        s_eid, s_us = (
            np.concatenate(x)
            for x in zip(self._scheduled(hour - 1), self._scheduled(hour), strict=True)
        )
        keep = (s_us >= t0 * US) & (s_us < t1 * US)
        eid = np.concatenate([eid, s_eid[keep]])
        t_us = np.concatenate([t_us, s_us[keep]])
        return self.shape(eid, t_us, rng).sorted()

    def _scheduled(self, hour: int) -> tuple[np.ndarray, np.ndarray]:
        edges, runs = self.fires(hour)
        rng = np.random.default_rng([self.seed, 2, hour])
        eid = np.repeat(edges, runs)
        k = np.arange(len(eid)) - np.repeat(np.cumsum(runs) - runs, runs)
        minute = self.s_minute[np.searchsorted(self.sched, eid)]
        jitter = rng.integers(0, 5 * US, size=len(eid))
        return eid, hour * HOUR * US + minute * 60 * US + k * 20 * US + jitter

    def shape(self, eid: np.ndarray, t_us: np.ndarray, rng: np.random.Generator) -> Conversations:
        """Conversations of these edges starting at these times."""
        n = len(eid)
        t_s = t_us // US
        ob = np.maximum(1, rng.lognormal(np.log(self.req[eid]), self.sigma[eid])).astype(np.int64)
        rb = np.maximum(1, rng.lognormal(np.log(self.resp[eid]), self.sigma[eid])).astype(np.int64)
        dur = rng.lognormal(np.log(self.dur[eid]), 0.7)
        dur = np.clip(np.maximum(dur, (ob + rb) / 80e6), 0.0002, 590.0)
        proto = self.proto[eid]
        op, rp = packets(proto, ob, rb)
        hist = rng.choice(H_TCP_NORMAL, size=n, p=H_TCP_WEIGHTS)
        hist = np.where(proto == 6, hist, H_UDP).astype(np.uint8)
        return Conversations(
            start_us=t_us.astype(np.int64),
            dur_us=(dur * US).astype(np.int64),
            src=self.resolver.resolve(self.client[eid], t_s, rng),
            dst=self.resolver.resolve(self.server[eid], t_s, rng),
            sport=rng.integers(*EPHEMERAL, size=n).astype(np.int32),
            dport=self.port[eid],
            proto=proto,
            ob=ob,
            rb=rb,
            op=op,
            rp=rp,
            hist=hist,
            reject=np.zeros(n, bool),
            zsvc=self.zsvc[eid],
            edge=eid.astype(np.int32),
            attack=np.zeros(n, np.uint8),
            eni=self.eni[eid],
        )
