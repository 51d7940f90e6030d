"""The decision for one query from one identity: allow, alert, or block, with the reasons.

| mode | unseen fingerprint | indicator hit |
|---|---|---|
| ``learn`` | learned, no alert | learned, alert (allowed) |
| ``alert`` | alert (allowed) | alert (allowed) |
| ``enforce`` | blocked, alert | blocked, alert |

Housekeeping statements (transaction control, SET, SHOW, DISCARD...) need no learning, so
that a session can always roll back. A fingerprint that a person rejected counts as unseen.
A fingerprint that a person approved accepts the structural indicators it trips; value and
lexical indicators (tautologies, comment truncation, libinjection) still fire.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from pglast import parser as pg

from cellwall.dbfw.alerts import Alert, AlertSink, new_alert_id
from cellwall.dbfw.classify import Analysis, Classifier
from cellwall.dbfw.identity import ClientIdentity
from cellwall.dbfw.indicators import STRUCTURAL, Hit
from cellwall.dbfw.store import Profiles

__all__ = ["Decision", "Firewall", "Mode"]


class Mode(StrEnum):
    LEARN = "learn"
    ALERT = "alert"
    ENFORCE = "enforce"


@dataclass(frozen=True, slots=True)
class Decision:
    block: bool
    analysis: Analysis
    alert: Alert | None = None

    @property
    def reasons(self) -> tuple[Hit, ...]:
        return self.alert.reasons if self.alert else ()


def _sample(text: str) -> Callable[[], str]:
    def make() -> str:
        try:
            return str(pg.normalize(text))[:2000]
        except pg.ParseError:
            return "<unparseable>"

    return make


class Firewall:
    def __init__(
        self,
        mode: Mode,
        classifier: Classifier,
        profiles: Profiles,
        alerts: AlertSink,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        alert_id: Callable[[], str] = new_alert_id,
    ) -> None:
        self.mode = mode
        self.classifier = classifier
        self.profiles = profiles
        self.alerts = alerts
        self.clock = clock
        self.alert_id = alert_id
        self.checked = 0
        self.blocked = 0

    def reasons(self, identity: ClientIdentity, analysis: Analysis) -> list[Hit]:
        """Why this query from this identity is suspicious (empty when it is not)."""
        status = self.profiles.status(identity, analysis.fingerprint)
        hits = list(analysis.hits)
        if status == "approved":
            hits = [h for h in hits if h.indicator not in STRUCTURAL]
        elif status == "rejected":
            hits.insert(0, Hit("rejected-fingerprint", analysis.fingerprint))
        elif status is None and not analysis.housekeeping:
            if self.mode is not Mode.LEARN:
                hits.insert(0, Hit("new-fingerprint", analysis.fingerprint))
            if analysis.statements > 1:
                hits.append(Hit("stacked-statements", f"{analysis.statements} statements"))
            if analysis.has_setop and (
                analysis.union_suspicious
                or self.profiles.knows(identity, analysis.prefix_fingerprint)
            ):
                hits.append(Hit("union-injection", "set operation added to a query"))
        return hits

    def check(self, identity: ClientIdentity, text: str, client: str = "") -> Decision:
        self.checked += 1
        analysis = self.classifier.analyse(text)
        hits = self.reasons(identity, analysis)
        if analysis.housekeeping and not hits:
            return Decision(False, analysis)
        now = self.clock()
        learn = self.mode is Mode.LEARN
        if not hits or learn:
            self.profiles.observe(
                identity,
                analysis.fingerprint,
                now,
                _sample(text),
                analysis.statements,
                tuple(h.indicator for h in analysis.hits),
                learn=learn,
            )
        if not hits:
            return Decision(False, analysis)
        block = self.mode is Mode.ENFORCE
        alert = Alert(
            self.alert_id(),
            now,
            identity,
            client,
            text,
            analysis.fingerprint,
            tuple(hits),
            self.mode.value,
            "blocked" if block else "allowed",
        )
        self.alerts.emit(alert)
        if block:
            self.blocked += 1
        return Decision(block, analysis, alert)
