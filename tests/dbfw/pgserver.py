"""A real PostgreSQL for the tests: the Debian package's binaries, a fresh cluster in a
temporary directory, on a free port, with one role per authentication method and TLS on.

Runs as the ``postgres`` user when the tests run as root (``initdb`` refuses root).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg

PASSWORDS = {"scram": "scram-secret", "md5user": "md5-secret", "shop": "shop-secret"}


def pg_bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parts[-3])
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run `make system-deps` (postgresql)")
    return found[-1].parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_cert(directory: Path, name: str = "server") -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    key.chmod(0o600)
    return cert, key


@dataclass
class PgServer:
    bindir: Path
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    def dsn(
        self, port: int | None = None, user: str = "postgres", dbname: str = "shop", **extra: str
    ) -> str:
        parts = {
            "host": "127.0.0.1",
            "port": str(port or self.port),
            "user": user,
            "dbname": dbname,
            "sslmode": "disable",
            "connect_timeout": "10",
        }
        if user in PASSWORDS:
            parts["password"] = PASSWORDS[user]
        parts.update(extra)
        return " ".join(f"{k}='{v}'" if " " in v else f"{k}={v}" for k, v in parts.items())

    def env(self) -> dict[str, str]:
        return {**os.environ, "PGPASSWORD": PASSWORDS["shop"]}

    def _as_owner(self, args: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args

    def start(self) -> None:
        b = self.bindir
        subprocess.run(
            self._as_owner(
                [
                    str(b / "initdb"),
                    "-D",
                    str(self.data),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "--locale=C",
                ]
            ),
            check=True,
            capture_output=True,
        )
        cert, key = make_cert(self.data)
        conf = f"""
port = {self.port}
listen_addresses = '127.0.0.1'
unix_socket_directories = '{self.data}'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 60
ssl = on
ssl_cert_file = '{cert}'
ssl_key_file = '{key}'
"""
        with (self.data / "postgresql.conf").open("a") as f:
            f.write(conf)
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all scram 127.0.0.1/32 scram-sha-256\n"
            "host all md5user 127.0.0.1/32 md5\n"
            "host all shop 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n"
        )
        if os.geteuid() == 0:
            shutil.chown(cert, "postgres")
            shutil.chown(key, "postgres")
        subprocess.run(
            self._as_owner(
                [
                    str(b / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.data / "log"),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        self._provision()

    def _provision(self) -> None:
        from cellwall.dbfw.demoapp import SCHEMA

        with psycopg.connect(self.dsn(dbname="postgres"), autocommit=True) as c:
            c.execute("CREATE DATABASE shop")
            c.execute(f"CREATE ROLE scram LOGIN PASSWORD '{PASSWORDS['scram']}'")
            c.execute(f"CREATE ROLE shop LOGIN PASSWORD '{PASSWORDS['shop']}'")
            c.execute("SET password_encryption = 'md5'")
            c.execute(f"CREATE ROLE md5user LOGIN PASSWORD '{PASSWORDS['md5user']}'")
        with psycopg.connect(self.dsn(), autocommit=True) as c:
            c.execute(SCHEMA)
            c.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO shop, scram, md5user")
            c.execute("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO shop, scram, md5user")
            c.execute("GRANT CREATE ON SCHEMA public TO shop")

    def stop(self) -> None:
        subprocess.run(
            self._as_owner(
                [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]
            ),
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> PgServer:
    root = Path(tempfile.mkdtemp(prefix="cellwall-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    server = PgServer(pg_bindir(), root, free_port())
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server
