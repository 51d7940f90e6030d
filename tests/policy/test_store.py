"""The policy store: versions, exact texts, de-duplication, activation and the audit log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from cellwall.errors import UsageError
from cellwall.policy.loader import load_policy_texts
from cellwall.policy.store import PolicyStore, content_hash
from cellwall.state.audit import AuditLog
from cellwall.workspace import Workspace

POLICY = (
    "apiVersion: cellwall/v1\nkind: Policy\nmetadata: {name: shop, owner: o}\n"
    "spec:\n  rules:\n    - {id: r1, from: {role: web}, to: {role: api}, services: [tcp/8443]}\n"
)
LISTS = (
    "apiVersion: cellwall/v1\nkind: IPList\nmetadata: {name: internet}\n"
    "spec: {cidrs: [0.0.0.0/0]}   # a comment that is kept\n"
)
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@pytest.fixture
def engine(ws: Workspace) -> sa.Engine:
    return ws.engine


def store_of(engine: sa.Engine) -> PolicyStore:
    return PolicyStore(engine, clock=Clock())


def texts(policy: str = POLICY) -> dict[str, str]:
    return {"apps/shop.yaml": policy, "lists.yaml": LISTS}


def test_a_load_keeps_a_version_with_its_exact_texts(engine: sa.Engine) -> None:
    store = store_of(engine)
    ps = load_policy_texts(texts()).policy_set
    info, created = store.load(ps, "policies", texts(), actor="alice")
    assert created
    assert (info.version, info.actor, info.source, info.active) == (1, "alice", "policies", False)
    assert (info.policies, info.rules, info.iplists, info.invariants) == (1, 1, 1, 0)
    assert info.loaded_at == T0 + timedelta(minutes=1)
    assert info.content_hash == content_hash(texts())
    stored = store.get(1)
    assert dict(stored.texts) == texts()
    assert stored.policy_set() == ps
    assert store.versions() == [info]
    assert store.newest() == info and store.active() is None


def test_a_version_reads_again_with_its_name_in_diagnostics(engine: sa.Engine) -> None:
    store = store_of(engine)
    broken = texts(POLICY.replace("tcp/8443", "tcp/99999"))
    store.load(load_policy_texts(broken).policy_set, "x", broken, actor="a")
    diags = store.get(1).read().diagnostics
    assert [(d.location(), d.code) for d in diags] == [("v1:apps/shop.yaml:6:63", "bad-port")]


def test_loading_what_the_newest_version_holds_adds_nothing(engine: sa.Engine) -> None:
    store = store_of(engine)
    ps = load_policy_texts(texts()).policy_set
    first, _ = store.load(ps, "policies", texts(), actor="alice")
    again, created = store.load(ps, "./policies", dict(reversed(texts().items())), actor="bob")
    assert not created and again == first
    changed = texts(POLICY.replace("8443", "8444"))
    second, created = store.load(load_policy_texts(changed).policy_set, "p", changed, actor="c")
    assert created and second.version == 2
    # Going back to the content of version 1 is a change from the newest: a new version.
    third, created = store.load(ps, "policies", texts(), actor="alice")
    assert created and third.version == 3 and third.content_hash == first.content_hash
    assert [v.version for v in store.versions()] == [1, 2, 3]


def test_the_content_hash_follows_names_and_texts() -> None:
    base = content_hash({"a.yaml": "x", "b.yaml": "y"})
    assert base == content_hash({"b.yaml": "y", "a.yaml": "x"})
    assert base != content_hash({"a.yaml": "y", "b.yaml": "x"})
    assert base != content_hash({"a.yamlx": "", "b.yaml": "y"})
    assert content_hash({"ab": "c"}) != content_hash({"a": "bc"})


def test_activation(engine: sa.Engine) -> None:
    store = store_of(engine)
    ps = load_policy_texts(texts()).policy_set
    store.load(ps, "p", texts(), actor="a")
    changed = texts(POLICY.replace("8443", "8444"))
    store.load(load_policy_texts(changed).policy_set, "p", changed, actor="a")
    assert store.activate(1, actor="sam").active
    assert store.active() is not None and store.active().version == 1  # type: ignore[union-attr]
    store.activate(2, actor="sam")
    assert [(v.version, v.active) for v in store.versions()] == [(1, False), (2, True)]
    store.activate(2, actor="sam")
    with pytest.raises(UsageError) as exc:
        store.activate(7, actor="sam")
    assert "does not exist" in exc.value.message and "1 to 2" in exc.value.hint
    with pytest.raises(UsageError):
        store.get(0)


def test_every_change_is_audited(engine: sa.Engine) -> None:
    store = store_of(engine)
    ps = load_policy_texts(texts()).policy_set
    store.load(ps, "p", texts(), actor="alice")
    store.load(ps, "p", texts(), actor="bob")
    store.activate(1, actor="sam")
    store.activate(1, actor="sam")
    entries = AuditLog(engine).entries()
    assert [(e.actor, e.action, e.target, e.outcome) for e in reversed(entries)] == [
        ("alice", "policy.load", "v1", "ok"),
        ("bob", "policy.load", "v1", "unchanged"),
        ("sam", "policy.activate", "v1", "ok"),
        ("sam", "policy.activate", "v1", "unchanged"),
    ]
    assert entries[-1].details["rules"] == 1
    assert entries[-1].details["content_hash"] == content_hash(texts())


def test_the_actor_defaults_to_cellwall_user(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CELLWALL_USER", "carol")
    store = store_of(engine)
    info, _ = store.load(load_policy_texts(texts()).policy_set, "p", texts())
    assert info.actor == "carol"
    assert AuditLog(engine).entries()[0].actor == "carol"


def test_versions_survive_a_new_store(ws: Workspace) -> None:
    store_of(ws.engine).load(load_policy_texts(texts()).policy_set, "p", texts(), actor="a")
    ws.close()
    again = Workspace.resolve(ws.home)
    assert [v.version for v in PolicyStore(again.engine).versions()] == [1]
    assert dict(PolicyStore(again.engine).get(1).texts) == texts()
    again.close()
