"""Flow files in the real formats: AWS VPC flow logs (default v2) and Zeek ``conn.log``.

One writer per format, one interface: a :class:`FlowWriter` subclass declares its name and
registers itself. A writer streams the conversations of each slice into the current file
(one per hour or per day) and opens the next one when a slice crosses into it. Lines are
formatted column-wise with Arrow; nothing loops over records in Python.

- VPC: every direction of a conversation is its own record (request, then reply), with
  the interface and account of the managed end; a rejected SYN has no reply. ``NODATA``
  and ``SKIPDATA`` records appear now and then, as in real logs.
- Zeek: one biflow row per conversation with ``uid``, ``history`` and ``conn_state``,
  framed by the standard ``#separator`` ... ``#types`` header and a ``#close`` line.
  As in Zeek, ``duration``, ``orig_bytes`` and ``resp_bytes`` are unset (``-``) when the
  duration is zero.
"""

from __future__ import annotations

import gzip
import io
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from cellwall.demo.model import Estate
from cellwall.demo.traffic import HISTORIES, STATES, US, ZEEK_SERVICES, Conversations, IpText

__all__ = ["VPC_HEADER", "ZEEK_FIELDS", "ZEEK_TYPES", "FlowWriter", "writer_for"]

VPC_HEADER = (
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes "
    "start end action log-status"
)
ZEEK_FIELDS = (
    "ts",
    "uid",
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
    "proto",
    "service",
    "duration",
    "orig_bytes",
    "resp_bytes",
    "conn_state",
    "local_orig",
    "local_resp",
    "missed_bytes",
    "history",
    "orig_pkts",
    "orig_ip_bytes",
    "resp_pkts",
    "resp_ip_bytes",
    "tunnel_parents",
)
ZEEK_TYPES = (
    "time",
    "string",
    "addr",
    "port",
    "addr",
    "port",
    "enum",
    "string",
    "interval",
    "count",
    "count",
    "string",
    "bool",
    "bool",
    "count",
    "string",
    "count",
    "count",
    "count",
    "count",
    "set[string]",
)
BASE62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8)
_REGISTRY: dict[str, type[FlowWriter]] = {}


def _register(cls: type[FlowWriter]) -> type[FlowWriter]:
    _REGISTRY[cls.name] = cls
    return cls


def writer_for(name: str) -> type[FlowWriter]:
    return _REGISTRY[name]


def _csv(columns: dict[str, pa.Array], delimiter: str) -> bytes:
    sink = pa.BufferOutputStream()
    options = pacsv.WriteOptions(
        include_header=False,
        delimiter=delimiter,
        quoting_style="none",
        null_string="-",
        batch_size=1 << 16,
    )
    pacsv.write_csv(pa.table(columns), sink, write_options=options)
    return bytes(sink.getvalue())


def _fixed6(us: np.ndarray) -> pa.Array:
    """Microseconds as seconds with exactly six decimals, as Zeek writes times."""
    sec = pc.cast(pa.array(us // US), pa.string())
    frac = pc.utf8_lpad(pc.cast(pa.array(us % US), pa.string()), width=6, padding="0")
    return pc.binary_join_element_wise(sec, frac, ".")


def _private(ips: np.ndarray) -> np.ndarray:
    private: np.ndarray = ((ips >> 24) == 10) | ((ips >> 20) == 0xAC1) | ((ips >> 16) == 0xC0A8)
    return private


class FlowWriter(ABC):
    """Streams slices of conversations into one file per hour or per day under ``root``."""

    name: ClassVar[str]

    def __init__(self, root: Path, estate: Estate, ips: IpText, *, gzip: bool, per: str) -> None:
        self.root, self.estate, self.ips = root, estate, ips
        self.gzip, self.per = gzip, per
        self.ip_text = pa.array(ips.text.tolist(), pa.string())
        self.files: list[Path] = []
        self.records = 0
        self.other = 0
        self._raw: io.BufferedWriter | None = None
        self._out: io.BufferedIOBase | None = None
        self._key = -1

    def window(self, t: int) -> tuple[int, int]:
        size = 3600 if self.per == "hour" else 86400
        return t // size * size, t // size * size + size

    def write(self, conv: Conversations, t0: int, t1: int, rng: np.random.Generator) -> None:
        start, _ = self.window(t0)
        if start != self._key:
            self.close()
            self._open(start)
        assert self._out is not None
        self._out.write(self.render(conv, t0, t1, rng))

    def _open(self, start: int) -> None:
        path = self.root / self.relpath(datetime.fromtimestamp(start, UTC))
        if self.gzip:
            path = path.with_name(path.name + ".gz")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._raw = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._out = (
            gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, compresslevel=1, mtime=0)
            if self.gzip
            else self._raw
        )
        self._key = start
        self.files.append(path)
        self._out.write(self.header(start))

    def close(self) -> None:
        if self._out is None or self._raw is None:
            return
        self._out.write(self.footer(self.window(self._key)[1]))
        if self._out is not self._raw:
            self._out.close()
        self._raw.close()
        self._out = self._raw = None

    def ip(self, ips: np.ndarray) -> pa.Array:
        return self.ip_text.take(pa.array(self.ips.index(ips)))

    @abstractmethod
    def relpath(self, start: datetime) -> str: ...

    @abstractmethod
    def header(self, start: int) -> bytes: ...

    def footer(self, end: int) -> bytes:
        return b""

    @abstractmethod
    def render(self, conv: Conversations, t0: int, t1: int, rng: np.random.Generator) -> bytes:
        """The lines of one slice; adds to ``records`` and ``other``."""


@_register
class VpcWriter(FlowWriter):
    name = "vpc"

    def __init__(self, root: Path, estate: Estate, ips: IpText, *, gzip: bool, per: str) -> None:
        super().__init__(root, estate, ips, gzip=gzip, per=per)
        self.accounts = pa.array([w.account for w in estate.workloads], pa.string())
        self.enis = pa.array([w.eni for w in estate.workloads], pa.string())

    def relpath(self, start: datetime) -> str:
        return f"{start:%Y/%m/%d}/cellwall-demo_vpcflowlogs_{start:%Y%m%dT%H%M}Z.log"

    def header(self, start: int) -> bytes:
        return (VPC_HEADER + "\n").encode()

    def render(self, conv: Conversations, t0: int, t1: int, rng: np.random.Generator) -> bytes:
        n = len(conv)
        reps = 1 + (~conv.reject & (conv.rp > 0))
        rows = np.repeat(np.arange(n), reps)
        reply = (np.arange(len(rows)) - (np.cumsum(reps) - reps)[rows]) == 1
        # Occasional records of an interface with no traffic, or whose records were lost.
        k_no = int(rng.poisson(0.3 + len(rows) / 5000))
        k_skip = int(rng.poisson(0.02 + len(rows) / 200_000))
        k = k_no + k_skip
        status = np.concatenate(
            [np.zeros(len(rows), np.int8), np.ones(k_no, np.int8), np.full(k_skip, 2, np.int8)]
        )
        special_start = rng.integers(t0, t1, size=k)
        special_eni = rng.integers(0, len(self.estate.workloads), size=k)
        r = conv.take(rows)
        start = np.concatenate([r.start_us // US, special_start])
        end = np.concatenate([(r.start_us + r.dur_us) // US, np.minimum(special_start + 59, t1)])
        order = np.argsort(start, kind="stable")
        flow = status[order] == 0
        pos = order[flow]  # positions in the flow records, in output order
        rep = reply[pos]
        src = np.where(rep, r.dst[pos], r.src[pos])
        dst = np.where(rep, r.src[pos], r.dst[pos])
        pk = np.where(rep, r.rp[pos], r.op[pos])
        payload = np.where(rep, r.rb[pos], r.ob[pos])
        hdr = np.where(r.proto[pos] == 6, 52, 28)
        eni = np.concatenate([r.eni, special_eni])[order]
        m = len(order)

        def spread(values: np.ndarray, dtype: pa.DataType) -> pa.Array:
            return pa.array(_scatter(flow, values), dtype, mask=~flow)

        def spread_ip(values: np.ndarray) -> pa.Array:
            idx = _scatter(flow, self.ips.index(values))
            return self.ip_text.take(pa.array(idx, mask=~flow))

        cols = {
            "version": pa.array(np.full(m, 2, np.int8)),
            "account": self.accounts.take(pa.array(eni)),
            "interface": self.enis.take(pa.array(eni)),
            "srcaddr": spread_ip(src),
            "dstaddr": spread_ip(dst),
            "srcport": spread(np.where(rep, r.dport[pos], r.sport[pos]), pa.int32()),
            "dstport": spread(np.where(rep, r.sport[pos], r.dport[pos]), pa.int32()),
            "protocol": spread(r.proto[pos], pa.uint8()),
            "packets": spread(pk, pa.int64()),
            "bytes": spread(payload + pk * hdr, pa.int64()),
            "start": pa.array(start[order]),
            "end": pa.array(end[order]),
            "action": pa.array(["ACCEPT", "REJECT"]).take(
                pa.array(_scatter(flow, r.reject[pos].astype(np.int8)), mask=~flow)
            ),
            "status": pa.array(["OK", "NODATA", "SKIPDATA"]).take(pa.array(status[order])),
        }
        self.records += len(rows)
        self.other += k
        return _csv(cols, " ")


def _scatter(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.zeros(len(mask), values.dtype)
    out[mask] = values
    return out


@_register
class ZeekWriter(FlowWriter):
    name = "zeek"

    def relpath(self, start: datetime) -> str:
        if self.per == "day":
            return f"{start:%Y-%m-%d}/conn.log"
        return f"{start:%Y-%m-%d}/conn.{start:%H}:00:00-{(start.hour + 1) % 24:02d}:00:00.log"

    def header(self, start: int) -> bytes:
        opened = datetime.fromtimestamp(start, UTC)
        lines = [
            "#separator \\x09",
            "#set_separator\t,",
            "#empty_field\t(empty)",
            "#unset_field\t-",
            "#path\tconn",
            f"#open\t{opened:%Y-%m-%d-%H-%M-%S}",
            "#fields\t" + "\t".join(ZEEK_FIELDS),
            "#types\t" + "\t".join(ZEEK_TYPES),
        ]
        return ("\n".join(lines) + "\n").encode()

    def footer(self, end: int) -> bytes:
        return f"#close\t{datetime.fromtimestamp(end, UTC):%Y-%m-%d-%H-%M-%S}\n".encode()

    def render(self, conv: Conversations, t0: int, t1: int, rng: np.random.Generator) -> bytes:
        n = len(conv)
        raw = np.empty((n, 18), np.uint8)
        raw[:, 0] = ord("C")
        raw[:, 1:] = BASE62[rng.integers(0, 62, size=(n, 17))]
        offsets = pa.py_buffer(np.arange(0, 18 * n + 1, 18, dtype=np.int32).tobytes())
        uid = pa.StringArray.from_buffers(n, offsets, pa.py_buffer(raw.tobytes()))
        unset = conv.dur_us == 0
        hist_text = pa.array([h for h, _ in HISTORIES])
        hist_state = np.array([s for _, s in HISTORIES], np.int64)
        tcp = conv.proto == 6
        hdr = np.where(tcp, 52, 28)
        flags = pa.array(["F", "T"])
        cols = {
            "ts": _fixed6(conv.start_us),
            "uid": uid,
            "orig_h": self.ip(conv.src),
            "orig_p": pa.array(conv.sport),
            "resp_h": self.ip(conv.dst),
            "resp_p": pa.array(conv.dport),
            "proto": pa.array(["udp", "tcp"]).take(pa.array(tcp.astype(np.int8))),
            "service": pa.array(ZEEK_SERVICES).take(pa.array(conv.zsvc)),
            "duration": pc.if_else(pa.array(unset), None, _fixed6(conv.dur_us)),
            "orig_bytes": pa.array(conv.ob, mask=unset),
            "resp_bytes": pa.array(conv.rb, mask=unset),
            "conn_state": pa.array(STATES).take(pa.array(hist_state[conv.hist])),
            "local_orig": flags.take(pa.array(_private(conv.src).astype(np.int8))),
            "local_resp": flags.take(pa.array(_private(conv.dst).astype(np.int8))),
            "missed_bytes": pa.array(np.zeros(n, np.int8)),
            "history": hist_text.take(pa.array(conv.hist)),
            "orig_pkts": pa.array(conv.op),
            "orig_ip_bytes": pa.array(conv.ob + conv.op * hdr),
            "resp_pkts": pa.array(conv.rp),
            "resp_ip_bytes": pa.array(conv.rb + conv.rp * hdr),
            "tunnel_parents": pa.array(["(empty)"]).take(pa.array(np.zeros(n, np.int8))),
        }
        self.records += n
        return _csv(cols, "\t")
