"""The inventory store: snapshots per source, the merged view, history, conventions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from cellwall.errors import InventoryError
from cellwall.inventory.store import InventoryStore
from cellwall.model.inventory import AddressLease, Origin, Workload
from cellwall.model.labels import LabelConvention

T = datetime(2026, 11, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[InventoryStore]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'cw.db'}")
    yield InventoryStore(engine, clock=Clock())
    engine.dispose()


def w(name: str, *ips: str | AddressLease, **labels: str) -> Workload:
    return Workload.of(
        name, owner="team", labels=labels, addresses=ips, source=Origin("f.yaml", 3, 1)
    )


def test_reloading_one_source_leaves_the_other_untouched(store: InventoryStore) -> None:
    store.load("vms.csv", [w("vm-1", "10.0.0.1", app="a"), w("vm-2", "10.0.0.2", app="b")])
    store.load("k8s", [w("pod-1", AddressLease("10.244.0.5", T, T + timedelta(hours=1)), app="c")])
    store.load("vms.csv", [w("vm-3", "10.0.0.3", app="z")])
    assert [x.name for x in store.current()] == ["pod-1", "vm-3"]
    pod = next(x for x in store.current() if x.name == "pod-1")
    assert pod == w("pod-1", AddressLease("10.244.0.5", T, T + timedelta(hours=1)), app="c")
    assert pod.source == Origin("f.yaml", 3, 1)
    assert store.sources() == ["k8s", "vms.csv"]


def test_history_is_kept(store: InventoryStore) -> None:
    store.load("a", [w("x", "10.0.0.1")])
    store.load("a", [w("y", "10.0.0.2")])
    history = store.snapshots("a")
    assert [(s.source, s.workloads) for s in history] == [("a", 1), ("a", 1)]
    assert history[0].loaded_at < history[1].loaded_at
    assert history[0].loaded_at.tzinfo is not None
    assert [x.name for x in store.snapshot(history[0].id)] == ["x"]
    assert [x.name for x in store.current(at=history[0].loaded_at)] == ["x"]
    assert store.current(at=T) == []


def test_an_empty_snapshot_clears_a_source(store: InventoryStore) -> None:
    store.load("a", [w("x")])
    store.load("b", [w("y")])
    store.load("a", [])
    assert [x.name for x in store.current()] == ["y"]


def test_name_collision_is_reported_and_the_newest_wins(store: InventoryStore) -> None:
    assert store.load("a", [w("db", "10.0.0.1", env="prod")]) == []
    (d,) = store.load("b", [w("db", "10.0.0.9", env="dev"), w("other")])
    assert d.code == "name-collision" and d.severity == "warning"
    assert "`db`" in d.message and "`a`" in d.message and "`b`" in d.message
    assert (d.file, d.line) == ("f.yaml", 3)
    (db,) = [x for x in store.current() if x.name == "db"]
    assert db.labels["env"] == "dev"
    store.load("a", [w("db", "10.0.0.1", env="prod")])
    (db,) = [x for x in store.current() if x.name == "db"]
    assert db.labels["env"] == "prod"


def test_duplicate_names_in_one_load_are_refused(store: InventoryStore) -> None:
    with pytest.raises(InventoryError, match="twice: db"):
        store.load("a", [w("db"), w("db")])
    assert store.snapshots() == []


def test_store_persists_across_instances(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    e1 = sa.create_engine(url)
    InventoryStore(e1).load("a", [w("x", "2001:db8::1", app="web")])
    e1.dispose()
    e2 = sa.create_engine(url)
    assert InventoryStore(e2).current() == [w("x", "2001:db8::1", app="web")]
    e2.dispose()


def test_conventions_are_stored_and_merged(store: InventoryStore) -> None:
    assert store.convention() is None
    store.save_convention(
        "base", LabelConvention.of(["app"], {"env": ["prod"]}, {"Environment": "env"})
    )
    store.save_convention("team", LabelConvention.of(["role"], {"env": ["dev", "prod"]}))
    store.save_convention("base", LabelConvention.of(["app", "env"], {}, {"Environment": "env"}))
    merged = store.convention()
    assert merged == LabelConvention.of(
        ["app", "env", "role"], {"env": ["dev", "prod"]}, {"Environment": "env"}
    )
