"""Time arguments: ISO 8601 instants or relative spans (``30d``) counted back from now."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["parse_instant", "parse_span"]

_SPAN = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_span(text: str) -> timedelta | None:
    """``30d`` → 30 days; None when the text is not a span."""
    m = _SPAN.match(text.strip())
    if not m:
        return None
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def parse_instant(text: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (naive means UTC), or a span counted back from ``now``.

    Raises ValueError with a sentence that says what is accepted.
    """
    span = parse_span(text)
    if span is not None:
        return (now or datetime.now(UTC)) - span
    raw = text.strip()
    if raw.endswith("Z"):
        raw = raw[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use ISO 8601 (2026-11-01T00:00:00Z) or a span such as 30d"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
