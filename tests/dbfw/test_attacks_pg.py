"""The vulnerable shop application behind the proxy: learn, then attacks and fresh traffic.

Attack payloads come from the shared corpora (payloadbox, SecLists, libinjection), at least
200 distinct ones over the six classic families, each pasted into one of the application's
templates. Benign traffic uses values never seen while learning. Required: at least 99% of
attacks blocked in enforce mode, at most 0.1% of benign requests blocked.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import psycopg
import pytest

from cellwall.dbfw import Mode
from cellwall.dbfw.demoapp import Request, attack_requests, benign_requests
from cellwall.workspace import Workspace
from tests.dbfw.corpus import attack_payloads
from tests.dbfw.pgserver import PgServer
from tests.dbfw.proxyrun import running_proxy

pytestmark = pytest.mark.real


def _send(conn: psycopg.Connection, r: Request, i: int) -> str:
    """``blocked``, ``ok`` or ``error``; half the requests use the simple protocol."""
    cur = psycopg.ClientCursor(conn) if i % 2 else conn.cursor()
    try:
        cur.execute(r.sql.encode(), prepare=False) if not i % 2 else cur.execute(r.sql.encode())
    except psycopg.errors.InsufficientPrivilege as exc:
        return "blocked" if "cellwall blocked" in str(exc) else "error"
    except psycopg.Error:
        return "error"
    return "ok"


def test_attacks_blocked_and_benign_allowed(pg: PgServer, ws: Workspace, tmp_path: Path) -> None:
    payloads = attack_payloads(per_family=60)
    families = collections.Counter(f for f, _ in payloads)
    assert len({p for _, p in payloads}) >= 200
    assert set(families) == {"boolean", "union", "stacked", "time", "error", "out-of-band"}
    learn = list(benign_requests(600, seed=1))
    fresh = list(benign_requests(1000, seed=2))
    assert not {r.sql for r in learn} & {r.sql for r in fresh}
    attacks = list(attack_requests(payloads))
    alerts = tmp_path / "alerts.jsonl"
    dsn = pg.dsn(user="shop", application_name="shop-web", options="-c statement_timeout=2000")
    with running_proxy(pg.port, ws=ws, alerts=alerts) as rp:
        proxied = dsn.replace(f"port={pg.port}", f"port={rp.port}")
        with psycopg.connect(proxied, autocommit=True) as conn:
            learned = collections.Counter(_send(conn, r, i) for i, r in enumerate(learn))
            assert learned == {"ok": 600}
            assert rp.flush() == 6
            rp.set_mode(Mode.ENFORCE)
            benign = [(r, _send(conn, r, i)) for i, r in enumerate(fresh)]
            verdicts = [(r, _send(conn, r, i)) for i, r in enumerate(attacks)]
    blocked_benign = [r.sql for r, v in benign if v == "blocked"]
    assert len(blocked_benign) <= len(fresh) * 0.001, blocked_benign
    assert all(v == "ok" for _, v in benign)
    missed = [(r.family, r.sql) for r, v in verdicts if v != "blocked"]
    assert len(missed) <= len(attacks) * 0.01, missed
    by_family = collections.Counter(r.family for r, v in verdicts if v == "blocked")
    assert all(by_family[f] >= 0.99 * n for f, n in families.items())
    lines = [json.loads(x) for x in alerts.read_text().splitlines()]
    assert len(lines) == len(attacks) - len(missed)
    assert {x["cellwall"]["identity"]["application"] for x in lines} == {"shop-web"}
    reasons = collections.Counter(h["id"] for x in lines for h in x["cellwall"]["reasons"])
    assert reasons["new-fingerprint"] >= len(lines) * 0.9 and reasons["tautology"] > 0
