"""Time arguments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cellwall.model.times import parse_instant, parse_span


def test_spans_and_instants() -> None:
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    assert parse_span("30d") == timedelta(days=30)
    assert parse_span("2w") == timedelta(weeks=2)
    assert parse_span("30") is None
    assert parse_instant("12h", now) == datetime(2026, 11, 23, 0, tzinfo=UTC)
    assert parse_instant("2026-11-01T00:00:00Z") == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_instant("2026-11-01T01:00:00+01:00") == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_instant("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_instant("last tuesday")
