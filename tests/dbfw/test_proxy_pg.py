"""The proxy between real clients (psycopg 3, psql, pgbench) and a real PostgreSQL."""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import psycopg
import pytest

from cellwall.dbfw import Mode, SourceResolver, TLSConfig, UpstreamTLS
from cellwall.dbfw.proxy import parse_hostport
from cellwall.model.inventory import Workload
from tests.dbfw.pgserver import PgServer, make_cert
from tests.dbfw.proxyrun import running_proxy

pytestmark = pytest.mark.real


@pytest.mark.parametrize("user", ["scram", "md5user", "postgres"])
def test_authentication_passes_through(pg: PgServer, user: str) -> None:
    with running_proxy(pg.port) as rp, psycopg.connect(pg.dsn(rp.port, user=user)) as c:
        assert c.execute("SELECT current_user").fetchone() == (user,)
    with running_proxy(pg.port) as rp, pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(pg.dsn(rp.port, user="scram", password="wrong"))


def test_simple_extended_pipeline_copy_and_notifications(pg: PgServer) -> None:
    with running_proxy(pg.port) as rp, psycopg.connect(pg.dsn(rp.port), autocommit=True) as c:
        cur = psycopg.ClientCursor(c)
        assert cur.execute("SELECT 1; SELECT 2").fetchall() == [(1,)]
        assert cur.nextset() and cur.fetchall() == [(2,)]
        assert c.execute("SELECT %s::int + 1", (41,), prepare=True).fetchone() == (42,)
        with c.pipeline():
            curs = [c.execute("SELECT %s::int * 2", (i,)) for i in range(50)]
        assert [x.fetchone() for x in curs][-1] == (98,)
        c.execute("CREATE TEMP TABLE t (a int, b text)")
        with c.cursor().copy("COPY t FROM STDIN") as cp:
            for i in range(20_000):
                cp.write_row((i, "x" * 50))
        rows = []
        with c.cursor().copy("COPY (SELECT a FROM t WHERE a < 5) TO STDOUT") as cp:
            rows = [r for r in cp.rows()]
        assert len(rows) == 5
        c.execute("LISTEN cw_channel")
        with psycopg.connect(pg.dsn(rp.port), autocommit=True) as other:
            other.execute("NOTIFY cw_channel, 'hello'")
        got = next(c.notifies(timeout=5))
        assert (got.channel, got.payload) == ("cw_channel", "hello")
        assert rp.proxy.stats.protocol_errors == 0


def test_cancel_request_reaches_the_server(pg: PgServer) -> None:
    with running_proxy(pg.port) as rp, psycopg.connect(pg.dsn(rp.port)) as c:
        # cancel_safe waits without holding the GIL; the proxy runs in this process
        threading.Timer(0.5, c.cancel_safe).start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute("SELECT pg_sleep(20)")
        assert time.monotonic() - started < 10 and rp.proxy.stats.cancels == 1


def test_enforce_blocks_with_42501_and_keeps_the_session_and_transaction_state(
    pg: PgServer,
) -> None:
    with running_proxy(pg.port) as rp:
        with psycopg.connect(pg.dsn(rp.port, user="shop")) as c:
            c.execute("SELECT name FROM users WHERE id = %s", (1,))
            c.execute("SELECT name FROM users WHERE id = 1")
            c.commit()
        rp.set_mode(Mode.ENFORCE)
        with psycopg.connect(pg.dsn(rp.port, user="shop"), autocommit=True) as c:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="cellwall") as e:
                c.execute("SELECT name FROM users WHERE id = 1 OR 1=1")
            assert e.value.sqlstate == "42501" and "alert" in str(e.value)
            assert c.execute("SELECT name FROM users WHERE id = %s", (2,)).fetchone() == ("user2",)
            c.execute("BEGIN")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                psycopg.ClientCursor(c).execute("SELECT name FROM users WHERE id = 1 OR 2=2")
            assert c.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
            with pytest.raises(psycopg.errors.InFailedSqlTransaction):
                c.execute("SELECT name FROM users WHERE id = 3")
            c.execute("ROLLBACK")
            assert c.info.transaction_status.name == "IDLE"
            with pytest.raises(psycopg.errors.InsufficientPrivilege), c.pipeline():
                c.execute("SELECT name FROM users WHERE id = %s", (4,))
                c.execute(
                    "SELECT name FROM users WHERE id = %s UNION SELECT usename FROM pg_user", (5,)
                )
            assert c.execute("SELECT name FROM users WHERE id = 6").fetchone() == ("user6",)
        assert rp.proxy.stats.blocked == 3


def test_tls_termination_with_scram_and_no_channel_binding_offered(
    pg: PgServer, tmp_path: Path
) -> None:
    cert, key = make_cert(tmp_path, "proxy")
    tls = TLSConfig(cert, key, require_client_tls=True)
    with running_proxy(pg.port, tls=tls) as rp:
        dsn = pg.dsn(rp.port, user="scram", sslmode="require")
        with psycopg.connect(dsn) as c:
            assert c.pgconn.ssl_in_use and c.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError, match="channel binding"):
            psycopg.connect(dsn + " channel_binding=require")
        with pytest.raises(psycopg.OperationalError, match="TLS"):
            psycopg.connect(pg.dsn(rp.port, user="scram"))
    both = TLSConfig(cert, key, upstream=UpstreamTLS.REQUIRE)
    with running_proxy(pg.port, tls=both) as rp:
        with psycopg.connect(pg.dsn(rp.port, user="md5user", sslmode="require")) as c:
            assert c.execute(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            ).fetchone() == (True,)
        dsn = pg.dsn(rp.port, user="scram", sslmode="require", channel_binding="disable")
        with psycopg.connect(dsn) as c:
            assert c.execute("SELECT 1").fetchone() == (1,)


def _raw_startup(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    body = struct.pack("!I", 3 << 16) + b"user\0postgres\0database\0shop\0\0"
    s.sendall(struct.pack("!I", len(body) + 4) + body)
    data = b""
    while b"Z\0\0\0\x05I" not in data:
        chunk = s.recv(65536)
        assert chunk, data
        data += chunk
    return s


def _read_all(s: socket.socket) -> bytes:
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def test_malformed_messages_close_only_that_connection(pg: PgServer) -> None:
    with running_proxy(pg.port, max_message=4096) as rp, psycopg.connect(pg.dsn(rp.port)) as ok:
        with socket.create_connection(("127.0.0.1", rp.port), timeout=10) as bad_startup:
            bad_startup.sendall(b"\0\0\0\x09\0\x09\0\0x")
            assert b"08P01" in _read_all(bad_startup)
        for junk in (
            b"Q\0\0\0\x02",
            b"\x07\0\0\0\x08abcd",
            b"Q\0\0\0\x09abcde",
            b"Q" + struct.pack("!I", 10_000) + b"x" * 9996,
        ):
            s = _raw_startup(rp.port)
            s.sendall(junk)
            reply = _read_all(s)
            assert b"08P01" in reply and b"cellwall" in reply
            s.close()
        assert ok.execute("SELECT count(*) FROM users").fetchone() == (200,)
        assert rp.proxy.stats.protocol_errors == 5


def test_large_results_and_copy_stream_through_a_small_message_limit(pg: PgServer) -> None:
    with running_proxy(pg.port, max_message=4096) as rp, psycopg.connect(pg.dsn(rp.port)) as c:
        big = c.execute("SELECT repeat('x', 3000000)").fetchone()
        assert big is not None and len(big[0]) == 3_000_000
        c.execute("CREATE TEMP TABLE blob (b text)")
        with c.cursor().copy("COPY blob FROM STDIN") as cp:
            cp.write_row(("y" * 2_000_000,))
        assert c.execute("SELECT length(b) FROM blob").fetchone() == (2_000_000,)


def test_psql_and_pgbench_through_the_proxy(pg: PgServer, tmp_path: Path) -> None:
    b = pg.bindir
    subprocess.run(
        [
            str(b / "pgbench"),
            "-i",
            "-s",
            "1",
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            str(pg.port),
            "-U",
            "postgres",
            "shop",
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    with running_proxy(pg.port) as rp:
        base = ["-h", "127.0.0.1", "-p", str(rp.port), "-U", "postgres"]
        psql = [str(b / "psql"), *base, "-X", "-At", "shop", "-c"]
        got = subprocess.run([*psql, "SELECT count(*) FROM users"], capture_output=True, text=True)
        assert got.returncode == 0 and got.stdout.strip() == "200"
        for mode in ("simple", "extended", "prepared"):
            run = subprocess.run(
                [str(b / "pgbench"), *base, "-n", "-S", "-M", mode, "-c", "2", "-t", "300", "shop"],
                capture_output=True,
                text=True,
                cwd=tmp_path,
            )
            assert run.returncode == 0, run.stderr
            assert "number of transactions actually processed: 600/600" in run.stdout
        rp.set_mode(Mode.ENFORCE)
        run = subprocess.run(
            [
                str(b / "pgbench"),
                *base,
                "-n",
                "-S",
                "-M",
                "prepared",
                "-c",
                "2",
                "-t",
                "300",
                "shop",
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert run.returncode == 0 and "600/600" in run.stdout
        blocked = subprocess.run(
            [*psql, "SELECT usename FROM pg_user"], capture_output=True, text=True
        )
        assert blocked.returncode == 1 and "cellwall blocked this query" in blocked.stderr
        assert rp.proxy.stats.blocked >= 1


def test_identity_comes_from_the_inventory(pg: PgServer) -> None:
    web = Workload.of("shop-web-1", addresses=["127.0.0.1"], labels={"app": "shop", "role": "web"})
    with running_proxy(pg.port, sources=SourceResolver([web])) as rp:
        dsn = pg.dsn(rp.port, user="shop", application_name="checkout")
        with psycopg.connect(dsn) as c:
            c.execute("SELECT 1")
        idents = set(rp.firewall.profiles.statuses)
    assert any(
        i.source == "shop-web-1" and i.application == "checkout" and i.user == "shop"
        for i in idents
    )


def test_upstream_over_the_unix_socket(pg: PgServer) -> None:
    host, port = parse_hostport(f"{pg.data}:{pg.port}", "--upstream")
    assert parse_hostport(str(pg.data), "--upstream") == (str(pg.data), 5432)
    with running_proxy(port, upstream_host=host) as rp:
        with psycopg.connect(pg.dsn(rp.port, user="shop")) as c:
            assert c.execute("SELECT name FROM users WHERE id = %s", (1,)).fetchone() == ("user1",)
            c.commit()
        rp.set_mode(Mode.ENFORCE)
        with psycopg.connect(pg.dsn(rp.port, user="shop"), autocommit=True) as c:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="cellwall"):
                c.execute("SELECT name FROM users WHERE id = 1 OR 1=1")
            assert c.execute("SELECT name FROM users WHERE id = %s", (2,)).fetchone() == ("user2",)
