"""The database-firewall use cases: run the proxy, review what it learned, and a demonstration.

The CLI calls these; each takes a :class:`~cellwall.workspace.Workspace`. The learned
allow-list lives in the workspace's state database, alerts in ``HOME/dbproxy/alerts.jsonl``
unless another file is named.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cellwall.dbfw.alerts import AlertSink
from cellwall.dbfw.classify import Classifier, libinjection_detector
from cellwall.dbfw.demoapp import SAMPLE_ATTACKS, attack_requests, benign_requests
from cellwall.dbfw.firewall import Firewall, Mode
from cellwall.dbfw.identity import ClientIdentity, SourceResolver
from cellwall.dbfw.proxy import DbProxy, ProxyConfig
from cellwall.dbfw.store import FingerprintStore, Profiles
from cellwall.errors import UsageError
from cellwall.inventory import InventoryStore
from cellwall.services.authz import authorize
from cellwall.state.audit import AuditLog, current_actor
from cellwall.workspace import Workspace

__all__ = [
    "alerts_path",
    "build_proxy",
    "demo_dbfw",
    "list_fingerprints",
    "review_fingerprints",
    "run_proxy",
    "serve_one",
]


def alerts_path(ws: Workspace) -> Path:
    return ws.home / "dbproxy" / "alerts.jsonl"


def parse_mode(value: str) -> Mode:
    try:
        return Mode(value)
    except ValueError:
        raise UsageError(f"--mode {value!r}: use learn, alert or enforce") from None


def build_proxy(
    ws: Workspace,
    config: ProxyConfig,
    mode: Mode,
    *,
    alerts: Path | None = None,
    use_inventory: bool = True,
) -> DbProxy:
    """A proxy whose allow-list, alerts and client identities come from the workspace."""
    store = FingerprintStore(ws.engine)
    workloads = InventoryStore(ws.engine).current() if use_inventory else []
    firewall = Firewall(
        mode,
        Classifier(libinjection_detector()),
        Profiles(store.statuses()),
        AlertSink(alerts or alerts_path(ws)),
    )
    return DbProxy(config, firewall, store=store, sources=SourceResolver(workloads))


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run the proxy's event loop: uvloop's (libuv) where it is installed, which roughly
    halves the per-message cost of the protocol callbacks; asyncio's own otherwise."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def run_proxy(
    ws: Workspace,
    config: ProxyConfig,
    mode: Mode,
    *,
    alerts: Path | None = None,
    use_inventory: bool = True,
    actor: str | None = None,
    on_ready: Callable[[int], None] = lambda _: None,
    workers: int = 1,
) -> dict[str, Any]:
    """Serve until SIGINT or SIGTERM; returns the session counters. ``on_ready`` gets the
    port once it listens. With ``workers`` above 1, that many processes share the port
    (:mod:`cellwall.dbfw.workers`)."""
    if workers < 1:
        raise UsageError("--workers must be at least 1")
    if workers > 1 and config.listen[1] == 0:
        raise UsageError("--workers above 1 needs a fixed --listen port, not 0")
    AuditLog(ws.engine).record(
        current_actor(actor),
        "dbproxy.start",
        f"{config.listen[0]}:{config.listen[1]}",
        details={
            "upstream": f"{config.upstream[0]}:{config.upstream[1]}",
            "mode": mode.value,
            "workers": workers,
        },
    )
    if workers > 1:
        from cellwall.dbfw.workers import run_workers

        job = WorkerJob(ws.home, replace(config, reuse_port=True), mode, alerts, use_inventory)
        return run_workers(job, workers, on_ready)
    return serve_one(ws, config, mode, alerts=alerts, use_inventory=use_inventory,
                     on_ready=lambda proxy: on_ready(proxy.port))  # fmt: skip


@dataclass(frozen=True, slots=True)
class WorkerJob:
    """What one proxy process needs, picklable for a worker process."""

    home: Path
    config: ProxyConfig
    mode: Mode
    alerts: Path | None
    use_inventory: bool

    def serve(self, on_ready: Callable[[DbProxy], None]) -> dict[str, Any]:
        ws = Workspace.resolve(self.home)
        return serve_one(
            ws,
            self.config,
            self.mode,
            alerts=self.alerts,
            use_inventory=self.use_inventory,
            on_ready=on_ready,
        )


def serve_one(
    ws: Workspace,
    config: ProxyConfig,
    mode: Mode,
    *,
    alerts: Path | None = None,
    use_inventory: bool = True,
    on_ready: Callable[[DbProxy], None] = lambda _: None,
) -> dict[str, Any]:
    """One proxy process: serve until SIGINT or SIGTERM; its counters."""
    proxy = build_proxy(ws, config, mode, alerts=alerts, use_inventory=use_inventory)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await proxy.serve(stop, on_ready)

    try:
        _run_loop(main())
    except OSError as exc:
        raise UsageError(f"cannot listen on {config.listen[0]}:{config.listen[1]}: {exc}") from exc
    finally:
        proxy.firewall.alerts.close()
    return {**proxy.stats.to_dict(), "alerts": proxy.firewall.alerts.count}


def list_fingerprints(
    ws: Workspace, *, status: str | None = None, source: str | None = None, user: str | None = None
) -> list[dict[str, Any]]:
    store = FingerprintStore(ws.engine)
    return [f.to_dict() for f in store.find(status=status, source=source, user=user)]


def review_fingerprints(
    ws: Workspace, ids: Sequence[int], decision: str, *, actor: str | None = None, note: str = ""
) -> list[dict[str, Any]]:
    """Approve or reject learned fingerprints by id; each change goes to the audit log."""
    if not ids:
        raise UsageError("name at least one fingerprint id")
    who = authorize(ws, actor, "dbfw.review", ", ".join(map(str, ids))).name
    with ws.writer_lock(timeout=30):
        store = FingerprintStore(ws.engine)
        return [f.to_dict() for f in store.review(ids, decision, who, note)]


def demo_dbfw(out_dir: Path) -> dict[str, Any]:
    """An offline demonstration of the firewall, without PostgreSQL.

    Learns the vulnerable shop application's ordinary traffic (2,000 requests), then judges
    1,000 new ordinary requests (fresh values) and the built-in attacks in enforce mode.
    Writes ``alerts.jsonl``, ``learned.json`` and ``summary.json`` under ``out_dir`` and
    returns the summary.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    start = datetime(2026, 6, 1, tzinfo=UTC)
    tick = iter(range(10**9))
    ids = iter(range(1, 10**9))

    def clock() -> datetime:
        return start + timedelta(milliseconds=next(tick))

    alerts_file = out_dir / "alerts.jsonl"
    alerts_file.unlink(missing_ok=True)
    sink = AlertSink(alerts_file, clock=clock)
    profiles = Profiles()
    fw = Firewall(
        Mode.LEARN,
        Classifier(libinjection_detector()),
        profiles,
        sink,
        clock=clock,
        alert_id=lambda: f"demo-{next(ids):06d}",
    )
    who = ClientIdentity("shop-web", "shop", "shop", "shop-app")
    for r in benign_requests(2000, seed=1):
        fw.check(who, r.sql, "10.1.2.3:40000")
    learned = [
        {"fingerprint": fp, "count": o.count, "sample": o.sample}
        for (_, fp), o in sorted(profiles.pending.items(), key=lambda kv: kv[0][1])
    ]
    fw.mode = Mode.ENFORCE
    started = time.perf_counter()
    benign = [fw.check(who, r.sql, "10.1.2.3:40001").block for r in benign_requests(1000, 2)]
    attacks = list(attack_requests(list(SAMPLE_ATTACKS)))
    verdicts = [fw.check(who, r.sql, "10.1.2.3:40002") for r in attacks]
    seconds = time.perf_counter() - started
    sink.close()
    families: dict[str, Counter[str]] = {}
    reasons: Counter[str] = Counter()
    for r, d in zip(attacks, verdicts, strict=True):
        families.setdefault(r.family, Counter())["blocked" if d.block else "missed"] += 1
        reasons.update(h.indicator for h in d.reasons)
    summary = {
        "learned_fingerprints": len(learned),
        "benign_requests": len(benign),
        "benign_blocked": sum(benign),
        "attack_requests": len(attacks),
        "attacks_blocked": sum(d.block for d in verdicts),
        "by_family": {k: dict(v) for k, v in sorted(families.items())},
        "reasons": dict(reasons.most_common()),
        "alerts": sink.count,
        "queries_per_second": round((len(benign) + len(attacks)) / seconds),
        "alerts_file": str(alerts_file),
    }
    (out_dir / "learned.json").write_text(json.dumps(learned, indent=2) + "\n")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
