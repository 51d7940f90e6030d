"""Address leases and workloads: canonical values, half-open intervals, equality."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from cellwall.model.inventory import AddressLease, Origin, Workload
from cellwall.model.labels import Labels

T = datetime(2026, 11, 1, tzinfo=UTC)


def test_lease_canonicalises_the_address_and_the_zone() -> None:
    plus2 = timezone(timedelta(hours=2))
    a = AddressLease("2001:DB8:0::1", datetime(2026, 11, 1, 2, tzinfo=plus2))
    assert a.ip == "2001:db8::1"
    assert a.start == T
    assert a.start is not None and a.start.tzinfo is UTC
    assert a == AddressLease("2001:db8::1", T)


def test_lease_interval_is_half_open() -> None:
    a = AddressLease("10.0.0.1", T, T + timedelta(hours=1))
    assert a.covers(T)
    assert a.covers(T + timedelta(hours=1) - timedelta(microseconds=1))
    assert not a.covers(T + timedelta(hours=1))
    assert not a.covers(T - timedelta(microseconds=1))
    assert AddressLease("10.0.0.1").covers(datetime(1900, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("ip", "start", "until", "match"),
    [
        ("10.0.0.256", None, None, "not an IP address"),
        ("010.0.0.1", None, None, "not an IP address"),
        ("10.0.0.1", T, T, "empty"),
        ("10.0.0.1", T + timedelta(1), T, "empty"),
        ("10.0.0.1", datetime(2026, 1, 1), None, "no UTC offset"),
    ],
)
def test_bad_leases_are_refused(
    ip: str, start: datetime | None, until: datetime | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        AddressLease(ip, start, until)


def test_lease_text_form() -> None:
    assert str(AddressLease("10.0.0.1")) == "10.0.0.1"
    assert str(AddressLease("10.0.0.1", T)) == "10.0.0.1@2026-11-01T00:00:00Z.."
    assert str(AddressLease("10.0.0.1", None, T)) == "10.0.0.1@..2026-11-01T00:00:00Z"


def test_workload_equality_ignores_origin_and_address_order() -> None:
    a = Workload.of(
        "db",
        owner="team",
        labels={"app": "x"},
        addresses=["10.0.0.2", "10.0.0.1"],
        source=Origin("a.yaml", 3, 1),
    )
    b = Workload.of(
        "db",
        owner="team",
        labels=Labels.of(app="x"),
        addresses=["10.0.0.1", "10.0.0.2", "10.0.0.1"],
        source=Origin("a.csv", 2, 1),
    )
    assert a == b
    assert hash(a) == hash(b)
    assert a.ips() == ("10.0.0.1", "10.0.0.2")
    assert len(b.addresses) == 2
    assert a != Workload.of(
        "db", owner="other", labels={"app": "x"}, addresses=["10.0.0.1", "10.0.0.2"]
    )


def test_workload_owns_over_its_lease() -> None:
    w = Workload.of("w", addresses=[AddressLease("10.0.0.1", T, T + timedelta(1))])
    assert w.owns("10.0.0.1", T)
    assert not w.owns("10.0.0.1", T + timedelta(1))
    assert not w.owns("10.0.0.2", T)


@pytest.mark.parametrize("name", ["", " x", "x\n", "a" * 300])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="workload name"):
        Workload.of(name)


def test_kind_must_be_a_word() -> None:
    with pytest.raises(ValueError, match="kind"):
        Workload.of("x", kind="not a kind")


def test_origin_text() -> None:
    assert str(Origin("a.yaml", 3, 7)) == "a.yaml:3:7"
    assert str(Origin("a.yaml", 3)) == "a.yaml:3"
    assert str(Origin("src")) == "src"
