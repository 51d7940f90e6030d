"""The shared SQL test corpora, read in place: attack payloads by family, benign statements."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote_plus

from tests.flowfiles import TESTDATA

SQL = TESTDATA / "sql"

_FAMILIES = (
    (
        "out-of-band",
        re.compile(
            r"load_file|outfile|dumpfile|dblink|program|nslookup|xp_dirtree|"
            r"utl_http|utl_inaddr|lo_import|pg_read_file|\\\\\\\\",
            re.I,
        ),
    ),
    ("time", re.compile(r"sleep|benchmark\(|waitfor|delay", re.I)),
    (
        "stacked",
        re.compile(
            r";\s*(select|insert|update|delete|drop|create|exec|declare|copy|"
            r"alter|grant|shutdown|truncate)",
            re.I,
        ),
    ),
    ("union", re.compile(r"union", re.I)),
    ("error", re.compile(r"cast\(|convert\(|extractvalue|updatexml|::int|exp\(|floor\(rand", re.I)),
    ("boolean", re.compile(r"\b(or|and|having|xor)\b|\|\||&&|=", re.I)),
)

_FILES = (
    "payloadbox/Intruder/detect/Generic_SQLI.txt",
    "payloadbox/Intruder/detect/Generic_UnionSelect.txt",
    "payloadbox/Intruder/detect/Generic_TimeBased.txt",
    "payloadbox/Intruder/detect/Generic_ErrorBased.txt",
    "payloadbox/Intruder/detect/GenericBlind.txt",
    "payloadbox/Intruder/detect/xPlatform/xplatform.txt",
    "payloadbox/Intruder/exploit/Auth_Bypass.txt",
    "payloadbox/Intruder/exploit/PostgresSQL/postgres-enumeration.txt",
    "seclists/quick-SQLi.txt",
    "seclists/sqli.auth.bypass.txt",
    "libinjection/data/sqli-arneswinnen.net-boolean.txt",
    "libinjection/data/sqli-arneswinnen.net-time.txt",
    "libinjection/data/sqli-misc.txt",
    "libinjection/data/sqli-sqlmap-20160724.txt",
    "libinjection/data/sqli-sqlmap_examples.txt",
)


def family(payload: str) -> str:
    for name, rx in _FAMILIES:
        if rx.search(payload):
            return name
    return ""


def attack_payloads(per_family: int = 80) -> list[tuple[str, str]]:
    """Distinct ``(family, payload)`` pairs, at most ``per_family`` each, in a stable order.

    libinjection's files are URL-encoded user input; they are decoded. Payloads that fall
    in none of the classic families (lone quotes, fuzz strings) are left out.
    """
    seen: set[str] = set()
    out: dict[str, list[str]] = {}
    for rel in _FILES:
        path = SQL / rel
        encoded = rel.startswith("libinjection/")
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            payload = unquote_plus(line) if encoded else line
            payload = payload.replace("\0", "").strip("\r\n")
            fam = family(payload)
            if not fam or payload in seen or len(payload) > 400:
                continue
            seen.add(payload)
            bucket = out.setdefault(fam, [])
            if len(bucket) < per_family:
                bucket.append(payload)
    return [(f, p) for f in sorted(out) for p in out[f]]


def benign_statements() -> dict[str, list[str]]:
    """Whole benign statements by source: TPC-H, TPC-DS, pgbench/OLTP, Zeek-captured."""

    def jsonl(rel: str, key: str = "query") -> list[str]:
        lines = (SQL / rel).read_text().splitlines()
        docs = [json.loads(x)[key] for x in lines if x.strip()]
        # sqlglot's fixtures open with "# execute: true" annotations; they are not SQL.
        return ["\n".join(ln for ln in d.splitlines() if not ln.startswith("#")) for d in docs]

    oltp = jsonl("benign/oltp/oltp_instantiated.jsonl")
    zeek = jsonl("benign/zeek_captured_queries.jsonl")
    return {
        "tpch": jsonl("benign/tpch_queries.jsonl"),
        "tpcds": jsonl("benign/tpcds_queries.jsonl"),
        "oltp": oltp,
        "zeek": zeek,
    }


def libinjection_false_positives() -> list[str]:
    path = SQL / "libinjection/data/false_positives.txt"
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [unquote_plus(x) for x in lines if x.strip() and not x.startswith("#")]


def pgbench_scripts() -> list[Path]:
    return sorted((SQL / "benign/oltp").glob("pgbench_*.sql"))


__all__ = [
    "attack_payloads",
    "benign_statements",
    "family",
    "libinjection_false_positives",
    "pgbench_scripts",
]
