"""Drop logs as per-connection flow records: what the agent reports besides its counters.

The nftables compiler logs every drop (and, in visibility mode, every would-be drop) to NFLOG
group :data:`~cellwall.targets.nftables.LOG_GROUP` with the prefix ``cw:drop:ID`` or
``cw:would:ID`` (:func:`~cellwall.targets.nftables.log_prefix`), rate-limited by the table.
The agent does not parse netlink itself: it runs Debian's ``ulogd2`` (NFLOG input, JSON
output; packages ``ulogd2`` and ``ulogd2-json``) inside the host's network namespace, writing
one JSON object per logged packet to ``STATE/droplog/nflog.json``, and turns each new line
into one ``agent-drops`` row (:func:`drop_rows`) in ``STATE/drops.jsonl``
(:mod:`cellwall.ingest.agent_drops`).

::

    STATE/droplog/
      ulogd.conf    written by the agent (group, plugin directory, output file)
      ulogd.pid     the collector's process id (``ulogd -p``)
      ulogd.log     ulogd's own log
      nflog.json    ulogd's output; the agent remembers (inode, offset) of what it read
      nflog.json.old  the previous file after a rotation (renamed, then ``SIGHUP``)

Only lines whose prefix is one of the agent's (``cw:drop:`` or ``cw:would:``) become rows;
other lines in the file are counted as ``foreign``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cellwall.targets.nftables import LOG_GROUP

__all__ = [
    "DROPS_FORMAT",
    "Cursor",
    "DropCollector",
    "DropLogError",
    "drop_rows",
    "parse_prefix",
    "plugin_dir",
]

DROPS_FORMAT = "cellwall-agent-drops/1"
_VERDICTS = {"drop": "REJECT", "would": "ACCEPT"}
_HOOKS = {0: "ingress", 1: "ingress", 2: "ingress", 3: "egress", 4: "egress"}
_FLAGS = ("fin", "syn", "rst", "psh", "ack", "urg")
_ROTATE_BYTES = 4 << 20
_READY = "entering main loop"
_PLUGINS = ("NFLOG", "BASE", "IFINDEX", "IP2STR", "JSON")
_PLUGIN_FILES = {
    "NFLOG": "ulogd_inppkt_NFLOG.so",
    "BASE": "ulogd_raw2packet_BASE.so",
    "IFINDEX": "ulogd_filter_IFINDEX.so",
    "IP2STR": "ulogd_filter_IP2STR.so",
    "JSON": "ulogd_output_JSON.so",
}
_PLUGIN_DIRS = (
    "/usr/lib/x86_64-linux-gnu/ulogd",
    "/usr/lib/aarch64-linux-gnu/ulogd",
    "/usr/lib64/ulogd",
    "/usr/lib/ulogd",
    "/usr/local/lib/ulogd",
)


class DropLogError(Exception):
    """The drop collector cannot run here (no ``ulogd``, no plugin, or it would not start)."""


def parse_prefix(prefix: str) -> tuple[str, str] | None:
    """(verdict, rule id) of an agent log prefix (``cw:drop:ID `` → ("drop", "ID"))."""
    parts = prefix.strip().split(":", 2)
    if len(parts) != 3 or parts[0] != "cw" or parts[1] not in _VERDICTS or not parts[2]:
        return None
    return parts[1], parts[2]


def _time(doc: Mapping[str, Any]) -> datetime:
    sec, usec = doc.get("oob.time.sec"), doc.get("oob.time.usec")
    if isinstance(sec, int):
        return datetime.fromtimestamp(sec + int(usec or 0) / 1e6, UTC)
    return datetime.now(UTC)


def _proto(doc: Mapping[str, Any]) -> int:
    for key in ("ip.protocol", "ip6.nexthdr"):
        if isinstance(doc.get(key), int):
            return int(doc[key])
    return 0


def _row(doc: Mapping[str, Any], verdict: str, rule_id: str) -> dict[str, Any]:
    proto = _proto(doc)
    row: dict[str, Any] = {
        "format": DROPS_FORMAT,
        "time": _time(doc).isoformat(),
        "rule_id": rule_id,
        "verdict": verdict,
        "action": _VERDICTS[verdict],
        "direction": _HOOKS.get(int(doc.get("oob.hook", -1))),
        "src_ip": doc.get("src_ip"),
        "src_port": doc.get("src_port"),
        "dst_ip": doc.get("dest_ip"),
        "dst_port": doc.get("dest_port"),
        "proto": proto,
        "bytes": doc.get("ip.totlen") or doc.get("raw.pktlen"),
    }
    if proto == 6:
        row["tcp_flags"] = sum(1 << i for i, f in enumerate(_FLAGS) if doc.get(f"tcp.{f}"))
    for key in ("icmp.type", "icmpv6.type"):
        if isinstance(doc.get(key), int):
            row["icmp_type"] = doc[key]
    return row


def drop_rows(
    lines: Iterable[bytes], *, host: str, serial: int | None
) -> tuple[list[dict[str, Any]], int]:
    """``agent-drops`` rows from ulogd JSON lines, and how many lines were not the agent's."""
    rows: list[dict[str, Any]] = []
    foreign = 0
    for raw in lines:
        try:
            doc = json.loads(raw)
        except ValueError:
            foreign += 1
            continue
        tagged = parse_prefix(str(doc.get("oob.prefix", ""))) if isinstance(doc, dict) else None
        if tagged is None or not doc.get("src_ip") or not doc.get("dest_ip"):
            foreign += 1
            continue
        row = _row(doc, *tagged)
        row["host"], row["serial"] = host, serial
        rows.append(row)
    return rows, foreign


def plugin_dir(candidates: Iterable[str] = _PLUGIN_DIRS) -> Path | None:
    """The directory that holds ulogd's NFLOG and JSON plugins, if any."""
    for c in candidates:
        d = Path(c)
        if all((d / f).exists() for f in _PLUGIN_FILES.values()):
            return d
    return None


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the agent stopped reading ``nflog.json``: its inode and byte offset."""

    inode: int = 0
    offset: int = 0


class DropCollector:
    """Runs ``ulogd`` for one host (in ``netns``) and hands back the new log lines."""

    def __init__(
        self,
        root: Path,
        netns: str | None = None,
        *,
        group: int = LOG_GROUP,
        binary: str = "ulogd",
        plugins: Path | None = None,
    ) -> None:
        self.root = root
        self.netns = netns
        self.group = group
        self.binary = binary
        self.plugins = plugins

    @property
    def output(self) -> Path:
        return self.root / "nflog.json"

    @property
    def pidfile(self) -> Path:
        return self.root / "ulogd.pid"

    @property
    def config(self) -> Path:
        return self.root / "ulogd.conf"

    def config_text(self, plugins: Path) -> str:
        loads = "".join(f'plugin="{plugins / _PLUGIN_FILES[p]}"\n' for p in _PLUGINS)
        return (
            "# Written by the cellwall agent: NFLOG drop logs as JSON lines.\n"
            f'[global]\nlogfile="{self.root / "ulogd.log"}"\nloglevel=3\n{loads}'
            "stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,json1:JSON\n\n"
            f"[log1]\ngroup={self.group}\n\n"
            f'[json1]\nsync=1\nfile="{self.output}"\n'
        )

    def pid(self) -> int | None:
        """The collector's pid when it runs (a live ulogd reading this config), else None."""
        try:
            pid = int(self.pidfile.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            return None
        return pid if str(self.config).encode() in cmdline else None

    def ensure(self, ready_timeout: float = 5.0) -> bool:
        """Start the collector unless it runs; True when this call started it."""
        if self.pid() is not None:
            return False
        plugins = self.plugins or plugin_dir()
        if plugins is None:
            raise DropLogError("no ulogd plugin directory with NFLOG and JSON (ulogd2-json)")
        self.root.mkdir(parents=True, exist_ok=True)
        self.config.write_text(self.config_text(plugins))
        (self.root / "ulogd.log").write_text("")
        argv = [self.binary, "-d", "-c", str(self.config), "-p", str(self.pidfile)]
        if self.netns is not None:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DropLogError(f"cannot start {self.binary}: {exc}") from None
        if done.returncode != 0:
            raise DropLogError(f"{self.binary} failed: {(done.stderr or done.stdout).strip()}")
        self._wait_ready(ready_timeout)
        return True

    def _wait_ready(self, timeout: float) -> None:
        """Wait until ulogd has bound its NFLOG group (its log says the main loop began)."""
        deadline = time.monotonic() + timeout
        log = self.root / "ulogd.log"
        while time.monotonic() < deadline:
            if self.pid() is not None and log.exists() and _READY in log.read_text():
                return
            time.sleep(0.02)
        raise DropLogError(f"{self.binary} did not come up within {timeout:g}s; see {log}")

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)

    def _read(self, path: Path, offset: int) -> tuple[list[bytes], int]:
        """Complete lines of ``path`` from ``offset``, and the offset after the last one."""
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        return [x for x in data[:end].splitlines() if x.strip()], offset + end

    def collect(self, cursor: Cursor) -> tuple[list[bytes], Cursor]:
        """The lines written since ``cursor``; rotates the file once it is large."""
        lines: list[bytes] = []
        old = self.output.with_suffix(".json.old")
        if old.exists():
            if old.stat().st_ino == cursor.inode:
                lines += self._read(old, cursor.offset)[0]
            old.unlink()
        if not self.output.exists():
            return lines, Cursor()
        st = self.output.stat()
        offset = cursor.offset if st.st_ino == cursor.inode and st.st_size >= cursor.offset else 0
        new, offset = self._read(self.output, offset)
        lines += new
        pid = self.pid()
        if offset >= _ROTATE_BYTES and pid is not None:
            os.replace(self.output, old)
            os.kill(pid, signal.SIGHUP)  # ulogd reopens its output file
        return lines, Cursor(st.st_ino, offset)
