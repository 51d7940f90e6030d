"""Alerts: one JSON line per finding, in the shape of an OCSF 1.1 *Detection Finding*.

The OCSF fields (class, severity, action, endpoints, actor, database) come first; the
``cellwall`` object carries the identity, the query, its fingerprint and the reasons.
"""

from __future__ import annotations

import json
import secrets
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from cellwall.dbfw.identity import ClientIdentity
from cellwall.dbfw.indicators import INDICATORS, Hit
from cellwall.errors import WorkspaceError

__all__ = ["Alert", "AlertSink", "new_alert_id"]

_SEVERITY = {"informational": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}


def new_alert_id() -> str:
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class Alert:
    """A finding about one query."""

    id: str
    at: datetime
    identity: ClientIdentity
    client: str
    query: str
    fingerprint: str
    reasons: tuple[Hit, ...]
    mode: str
    action: str  # "blocked" or "allowed"

    @property
    def severity(self) -> str:
        levels = [INDICATORS[h.indicator].severity for h in self.reasons] or ["informational"]
        return max(levels, key=lambda s: _SEVERITY[s])

    def summary(self) -> str:
        return ", ".join(dict.fromkeys(h.indicator for h in self.reasons))

    def to_ocsf(self, max_query: int = 4096) -> dict[str, Any]:
        blocked = self.action == "blocked"
        ip, _, port = self.client.rpartition(":")
        return {
            "class_uid": 2004,
            "class_name": "Detection Finding",
            "category_uid": 2,
            "category_name": "Findings",
            "activity_id": 1,
            "activity_name": "Create",
            "type_uid": 200401,
            "time": int(self.at.timestamp() * 1000),
            "time_dt": self.at.isoformat(),
            "severity_id": _SEVERITY[self.severity],
            "severity": self.severity.capitalize(),
            "status": "New",
            "action_id": 2 if blocked else 1,
            "action": "Denied" if blocked else "Allowed",
            "disposition": "Blocked" if blocked else "Allowed",
            "message": f"{self.summary()} from {self.identity}",
            "metadata": {
                "version": "1.1.0",
                "uid": self.id,
                "product": {
                    "name": "cellwall",
                    "vendor_name": "cellwall",
                    "feature": {"name": "dbproxy"},
                },
            },
            "finding_info": {
                "uid": self.id,
                "title": INDICATORS[self.reasons[0].indicator].title if self.reasons else "",
                "types": [h.indicator for h in self.reasons],
            },
            "src_endpoint": {
                "ip": ip.strip("[]"),
                "port": int(port) if port.isdigit() else None,
                "name": self.identity.source,
            },
            "actor": {
                "user": {"name": self.identity.user},
                "app_name": self.identity.application,
            },
            "database": {"name": self.identity.database, "type": "PostgreSQL"},
            "cellwall": {
                "alert_id": self.id,
                "mode": self.mode,
                "identity": self.identity.to_dict(),
                "query": self.query[:max_query],
                "query_truncated": len(self.query) > max_query,
                "fingerprint": self.fingerprint,
                "reasons": [h.to_dict() for h in self.reasons],
            },
        }


class AlertSink:
    """Appends alerts as JSON lines to a file (or a stream), and keeps the last few."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        stream: IO[str] | None = None,
        keep: int = 1000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.path = path
        self._stream = stream
        self._file: IO[str] | None = None
        self._lock = threading.Lock()
        self.recent: list[Alert] = []
        self._keep = keep
        self.count = 0
        self.clock = clock

    def emit(self, alert: Alert) -> None:
        line = json.dumps(alert.to_ocsf(), sort_keys=False, default=str) + "\n"
        with self._lock:
            self.count += 1
            self.recent.append(alert)
            if len(self.recent) > self._keep:
                del self.recent[: len(self.recent) - self._keep]
            out = self._open()
            if out is not None:
                out.write(line)
                out.flush()

    def _open(self) -> IO[str] | None:
        if self._stream is not None:
            return self._stream
        if self.path is None:
            return None
        if self._file is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
            except OSError as exc:
                raise WorkspaceError(f"cannot write alerts to {self.path}: {exc.strerror}") from exc
        return self._file

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def stderr_sink() -> AlertSink:
    return AlertSink(stream=sys.stderr)
