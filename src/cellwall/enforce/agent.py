"""The host agent: fetch, verify, apply, guard and report, once per cycle.

One :meth:`Agent.cycle`:

1. **fetch** the bundle from its URL (``file://`` for now). An unreachable URL keeps the
   running ruleset, the last-known-good one.
2. **verify** it (:func:`cellwall.enforce.bundle.verify_bundle`) against the public key
   and the last serial that this agent accepted: an unsigned, tampered, expired or
   rolled-back bundle is rejected and the running ruleset stays.
3. **check** this host's ruleset in a throwaway namespace, and refuse it when it would lock
   out the management channel (:mod:`cellwall.enforce.guard`).
4. **apply** it as one ``nft -f`` transaction; when the apply or the check of the applied
   table fails, **roll back** to the last-known-good ruleset.
5. **guard** the table: when its listing no longer hashes to what the agent applied
   (someone added, removed or changed a rule), re-apply the last-known-good ruleset.
6. **report** the rule counters that moved as ``agent-counters`` rows;
7. with ``drop_log``, **collect** the drop logs since the last cycle as ``agent-drops`` rows,
   one per logged connection attempt (:mod:`cellwall.enforce.droplog`; the collector, ulogd
   in the host's namespace, is started when it does not run).

Each step writes an event to ``STATE/events.jsonl``. The agent owns table ``inet cellwall``
only; nothing else in the host's ruleset is read or changed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from cellwall.enforce.bundle import BundleError, Manifest, load_public_key, opened_bundle
from cellwall.enforce.bundle import verify_bundle as _verify
from cellwall.enforce.counters import counter_rows
from cellwall.enforce.droplog import Cursor, DropCollector, DropLogError, drop_rows
from cellwall.enforce.guard import checked_listing, management_problems
from cellwall.enforce.nft import Nft, NftError, table_digest
from cellwall.enforce.state import AgentState, StateDir
from cellwall.errors import UsageError

__all__ = ["Agent", "AgentConfig", "CycleResult", "bundle_path"]

Validator = Callable[[str, Mapping[str, Any]], object]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def bundle_path(url: str) -> Path:
    """The local path of a ``file://`` URL (or a plain path)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "":
        return Path(url)
    raise UsageError(f"bundle URL {url!r}: only file:// URLs are supported for now")


@dataclass(frozen=True, slots=True)
class AgentConfig:
    bundle_url: str
    host: str
    state_dir: Path
    public_key: Path
    #: Run ``nft`` in this network namespace (the lab and the tests); None: the agent's own.
    netns: str | None = None
    #: Collect drop logs (NFLOG, through ulogd) as ``agent-drops`` rows.
    drop_log: bool = False


@dataclass
class CycleResult:
    """What one cycle did. ``outcome``: applied, unchanged, rejected, refused, unreachable."""

    outcome: str
    serial: int | None
    reason: str | None = None
    repaired: bool = False
    reported: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    drops: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "serial": self.serial,
            "reason": self.reason,
            "repaired": self.repaired,
            "reported": self.reported,
            "drops": self.drops,
        }


class Agent:
    """The agent for one host. ``nft``, ``validate`` and ``clock`` are injectable."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        nft: Nft | None = None,
        validate: Validator = checked_listing,
        clock: Callable[[], datetime] = _utcnow,
        collector: DropCollector | None = None,
    ) -> None:
        self.config = config
        self.nft = nft or Nft(config.netns)
        self.validate = validate
        self.clock = clock
        self.store = StateDir(config.state_dir)
        self._key = load_public_key(config.public_key)
        if collector is None and config.drop_log:
            collector = DropCollector(self.store.droplog_dir, config.netns)
        self.collector = collector
        self._events: list[dict[str, Any]] = []

    def _event(self, kind: str, **details: Any) -> None:
        self._events.append(self.store.event(kind, host=self.config.host, **details))

    def cycle(self) -> CycleResult:
        """One fetch-verify-apply-guard-report round."""
        self._events = []
        state = self.store.load()
        started = self.clock()
        outcome, reason = self._update(state)
        repaired = outcome != "applied" and self._guard(state)
        reported = self._report(state, started)
        drops = self._collect_drops(state)
        self.store.save(state)
        result = CycleResult(outcome, state.serial, reason, repaired, reported, self._events)
        result.drops = drops
        return result

    def close(self) -> None:
        """Stop the drop collector (a running agent leaves it running between cycles)."""
        if self.collector is not None:
            self.collector.stop()

    def run(
        self,
        *,
        once: bool = False,
        interval: float = 30.0,
        cycles: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> list[CycleResult]:
        """Cycle every ``interval`` seconds (once, or ``cycles`` times, or for ever)."""
        results: list[CycleResult] = []
        while True:
            results.append(self.cycle())
            if once or (cycles is not None and len(results) >= cycles):
                return results
            sleep(interval)

    def _update(self, state: AgentState) -> tuple[str, str | None]:
        path = bundle_path(self.config.bundle_url)
        if not path.exists():
            self._event("unreachable", url=self.config.bundle_url, serial=state.serial)
            return "unreachable", f"{self.config.bundle_url} cannot be read"
        try:
            with opened_bundle(path) as root:
                m = _verify(root, self._key, now=self.clock(), last_serial=state.serial)
                digest = hashlib.sha256((root / "manifest.json").read_bytes()).hexdigest()
                if m.serial == state.serial:
                    if digest == state.manifest_sha256:
                        return "unchanged", None
                    raise BundleError("rollback", f"serial {m.serial} reused with other content")
                text = m.host_file(self.config.host).read_text()
                self._apply(state, text, m)
        except BundleError as exc:
            self._event("rejected", reason=exc.reason, message=exc.message)
            return "rejected", exc.reason
        except NftError as exc:
            self._event("refused", message=exc.message)
            return "refused", exc.message
        state.serial, state.version, state.manifest_sha256 = m.serial, m.version, digest
        self._event("applied", serial=m.serial, version=m.version)
        return "applied", None

    def _apply(self, state: AgentState, text: str, m: Manifest) -> None:
        """Check, apply as one transaction, check what the kernel holds; roll back on error."""
        self.validate(text, m.management)
        try:
            self.nft.replace_table(text)
            listing = self.nft.table_json()
            if listing is None:
                raise NftError("the table is missing after the apply")
            problems = management_problems(listing, m.management)
            if problems:
                raise NftError("the applied table fails its check: " + "; ".join(problems))
        except NftError as exc:
            self._rollback(state, exc)
            raise
        state.applied_digest = table_digest(listing)
        state.applied_at = self.clock().isoformat()
        state.counters = {}
        self.store.save_last_good(text)

    def _rollback(self, state: AgentState, cause: NftError) -> None:
        good = self.store.last_good()
        if good is None:
            self.nft.delete_table()
            state.applied_digest = None
        else:
            self.nft.replace_table(good)
            state.applied_digest = table_digest(self.nft.table_json())
        self._event("rolled-back", serial=state.serial, cause=cause.message)

    def _guard(self, state: AgentState) -> bool:
        """Re-apply the last-known-good ruleset when the table differs from what was applied."""
        good = self.store.last_good()
        if state.applied_digest is None or good is None:
            return False
        if table_digest(self.nft.table_json()) == state.applied_digest:
            return False
        self.nft.replace_table(good)
        state.applied_digest = table_digest(self.nft.table_json())
        self._event("tamper-repaired", serial=state.serial)
        return True

    def _report(self, state: AgentState, started: datetime) -> int:
        listing = self.nft.table_json()
        if listing is None:
            return 0
        hooks = {
            str(e["chain"]["name"]): str(e["chain"].get("hook", ""))
            for e in listing.get("nftables", [])
            if "chain" in e
        }
        start = datetime.fromisoformat(state.reported_at) if state.reported_at else started
        end = self.clock()
        rows, state.counters = counter_rows(
            listing,
            state.counters,
            host=self.config.host,
            serial=state.serial,
            start=start,
            end=end,
            hooks=hooks,
        )
        state.reported_at = end.isoformat()
        self.store.append_report(rows)
        return len(rows)

    def _collect_drops(self, state: AgentState) -> int:
        if self.collector is None:
            return 0
        try:
            if self.collector.ensure():
                self._event("drop-log-started", group=self.collector.group)
        except DropLogError as exc:
            self._event("drop-log-unavailable", message=str(exc))
            return 0
        lines, cursor = self.collector.collect(Cursor(**state.droplog))
        state.droplog = {"inode": cursor.inode, "offset": cursor.offset}
        rows, foreign = drop_rows(lines, host=self.config.host, serial=state.serial)
        if foreign:
            self._event("drop-log-foreign", lines=foreign)
        self.store.append_drops(rows)
        return len(rows)
