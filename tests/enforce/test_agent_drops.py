"""Drop logs as per-connection flow records: the compiled ruleset logs through NFLOG, the
agent's collector (ulogd in the host's namespace) hands the lines back, and the rows ingest
as ``agent-drops`` and query back from a workspace."""

from __future__ import annotations

import io
import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cellwall.cli import app
from cellwall.enforce.agent import Agent, AgentConfig
from cellwall.enforce.droplog import Cursor, DropCollector, drop_rows, parse_prefix, plugin_dir
from cellwall.enforce.lab import compile_hosts
from cellwall.enforce.probe import Probe, probe_all
from cellwall.enforce.state import StateDir
from cellwall.ingest.base import detect, get_source
from cellwall.policy.loader import load_policy_texts
from cellwall.targets.nftables import LOG_GROUP, log_prefix
from tests.enforce.conftest import HOST_IP, Net, make_bundle
from tests.enforce.estate import POLICY, WORKLOADS, policy

HOST, DB_IP = "web-1", "10.20.2.11"

needs_ulogd = pytest.mark.skipif(
    shutil.which("ulogd") is None or plugin_dir() is None,
    reason="ulogd2 and ulogd2-json are not installed (make deps)",
)

#: A line as ulogd's JSON plugin writes it for a SYN that the output hook dropped.
ULOGD_LINE = {
    "timestamp": "2026-11-24T01:18:16.831385",
    "raw.pktlen": 60,
    "oob.prefix": "cw:drop:no-web-to-db ",
    "oob.time.sec": 1795483096,
    "oob.time.usec": 831385,
    "oob.hook": 3,
    "oob.family": 2,
    "ip.protocol": 6,
    "ip.totlen": 60,
    "src_port": 47092,
    "dest_port": 5432,
    "tcp.syn": 1,
    "tcp.ack": 0,
    "src_ip": "10.20.0.11",
    "dest_ip": "10.20.2.11",
}


def test_log_prefixes_carry_the_verdict_and_the_rule_id() -> None:
    assert parse_prefix(log_prefix("drop", "no-web-to-db")) == ("drop", "no-web-to-db")
    assert parse_prefix(log_prefix("would", "not-allowed")) == ("would", "not-allowed")
    assert parse_prefix("cw:drop:a:b ") == ("drop", "a:b")
    assert parse_prefix("IN=eth0 ") is None and parse_prefix("cw:kept:x") is None


def test_ulogd_lines_become_drop_rows() -> None:
    would = ULOGD_LINE | {"oob.prefix": "cw:would:not-allowed ", "oob.hook": 1}
    lines = [json.dumps(d).encode() for d in (ULOGD_LINE, would, {"oob.prefix": "x"})]
    rows, foreign = drop_rows([*lines, b"not json"], host=HOST, serial=4)
    assert foreign == 2
    drop, seen = rows
    assert drop["time"] == "2026-11-24T01:18:16.831385+00:00"
    assert (drop["rule_id"], drop["action"], drop["direction"]) == (
        "no-web-to-db",
        "REJECT",
        "egress",
    )
    assert (drop["src_ip"], drop["src_port"], drop["dst_ip"], drop["dst_port"]) == (
        "10.20.0.11",
        47092,
        "10.20.2.11",
        5432,
    )
    assert (drop["proto"], drop["tcp_flags"], drop["host"], drop["serial"]) == (6, 2, HOST, 4)
    assert (seen["rule_id"], seen["action"], seen["direction"]) == (
        "not-allowed",
        "ACCEPT",
        "ingress",
    )


def test_agent_drops_ingest_into_the_canonical_schema() -> None:
    rows, _ = drop_rows([json.dumps(ULOGD_LINE).encode()], host=HOST, serial=1)
    text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows)
    bad = '{"format":"cellwall-agent-drops/1","time":"2026-11-24T00:00:00Z","rule_id":"x"}\n'
    kept = json.dumps(rows[0] | {"verdict": "kept"}, separators=(",", ":")) + "\n"
    data = (text + bad + kept).encode()
    source = detect(data[:256], "drops.jsonl")
    assert source is get_source("agent-drops")
    (chunk,) = source().read(io.BytesIO(data), "drops.jsonl")
    flow = chunk.flows.to_pylist()[0]
    assert chunk.flows.num_rows == 1 and len(chunk.rejects) == 2
    assert flow["start"] == datetime(2026, 11, 24, 1, 18, 16, 831385, tzinfo=UTC)
    assert (flow["src_port"], flow["dst_port"], flow["packets"], flow["bytes"]) == (
        47092,
        5432,
        1,
        60,
    )
    assert (flow["action"], flow["drop_reason"], flow["source_id"]) == ("REJECT",) + (
        "no-web-to-db",
    ) * 2
    assert (flow["exporter"], flow["lineage_format"]) == (HOST, "agent-drops")


def test_the_collector_resumes_where_it_stopped_and_survives_rotation(tmp_path: Path) -> None:
    c = DropCollector(tmp_path)
    c.root.mkdir(exist_ok=True)
    c.output.write_bytes(b'{"a":1}\n{"a":2}\n{"a":')
    lines, cur = c.collect(Cursor())
    assert lines == [b'{"a":1}', b'{"a":2}'] and cur.offset == 16
    with c.output.open("ab") as f:
        f.write(b"3}\n")
    lines, cur = c.collect(cur)
    assert lines == [b'{"a":3}']
    c.output.rename(c.output.with_suffix(".json.old"))  # what a rotation leaves behind
    with c.output.with_suffix(".json.old").open("ab") as f:
        f.write(b'{"a":4}\n')
    c.output.write_bytes(b'{"a":5}\n')
    lines, cur = c.collect(cur)
    assert lines == [b'{"a":4}', b'{"a":5}'] and not c.output.with_suffix(".json.old").exists()
    assert c.collect(cur)[0] == []
    assert f"group={LOG_GROUP}" in c.config_text(Path("/p"))


def _collect(
    tmp_path: Path, keys: tuple[Path, Path], net: Net, ruleset: str, probe: Probe
) -> list[dict[str, Any]]:
    """Run an agent with drop logging on ``ruleset``, probe once, then cycle until the agent
    has logged the drop (5 s at most): the drop records."""
    make_bundle(tmp_path / "bundle", keys[0], 1, {HOST: ruleset})
    config = AgentConfig(
        f"file://{tmp_path / 'bundle'}", HOST, tmp_path / "state", keys[1], net.host, drop_log=True
    )
    agent = Agent(config)
    try:
        first = agent.cycle()
        assert first.outcome == "applied"
        assert "drop-log-started" in [e["event"] for e in first.events], first.events
        probe_all([probe], timeout=0.5)
        deadline, drops = time.monotonic() + 5, 0
        while not drops and time.monotonic() < deadline:
            time.sleep(0.1)
            drops = agent.cycle().drops
        rows = [json.loads(x) for x in agent.store.drops_path.read_text().splitlines()]
    finally:
        agent.close()
    assert len(rows) == drops >= 1
    return rows


@needs_ulogd
def test_visibility_mode_logs_would_be_drops_and_lets_them_through(
    tmp_path: Path, net: Net, keys: tuple[Path, Path]
) -> None:
    text = POLICY.replace(
        "scope: {app: shop}\n  mode: full", "scope: {app: shop}\n  mode: visibility"
    )
    result = load_policy_texts({"estate.yaml": text}, workloads=WORKLOADS)
    assert result.ok, result.errors
    compiled = compile_hosts(result.policy_set, WORKLOADS, [HOST], datetime.now(UTC))
    assert 'log prefix "cw:would:no-web-to-db "' in compiled.rulesets[HOST]
    rows = _collect(
        tmp_path, keys, net, compiled.rulesets[HOST], Probe(net.host, DB_IP, 4, 6, 5432)
    )
    row = rows[0]
    assert (row["rule_id"], row["verdict"], row["action"]) == ("no-web-to-db", "would", "ACCEPT")
    assert (row["dst_ip"], row["dst_port"], row["direction"]) == (DB_IP, 5432, "egress")


@needs_ulogd
def test_a_blocked_connection_comes_out_as_a_drop_record_and_queries_back(
    tmp_path: Path, net: Net, keys: tuple[Path, Path]
) -> None:
    compiled = compile_hosts(policy(), WORKLOADS, [HOST], datetime.now(UTC))
    text = compiled.rulesets[HOST]
    assert f'log prefix "cw:drop:no-web-to-db " group {LOG_GROUP}' in text
    # web -> db on tcp/5432 is override-denied: the output hook drops the SYN
    rows = _collect(tmp_path, keys, net, text, Probe(net.host, DB_IP, 4, 6, 5432))
    row = rows[0]
    assert (row["rule_id"], row["verdict"], row["action"]) == ("no-web-to-db", "drop", "REJECT")
    assert (row["src_ip"], row["dst_ip"], row["dst_port"], row["proto"]) == (
        HOST_IP,
        DB_IP,
        5432,
        6,
    )
    assert isinstance(row["src_port"], int) and row["direction"] == "egress"
    assert row["host"] == HOST and row["serial"] == 1

    home = tmp_path / "home"
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "ingest",
            str(StateDir(tmp_path / "state").drops_path),
            "--format",
            "agent-drops",
            "--home",
            str(home),
        ],
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        [
            *("flows", "query", "--home", str(home), "--json"),
            *("--source-format", "agent-drops", "--action", "REJECT", "--port", "5432"),
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["count"] == len(rows) >= 1
    flow = doc["rows"][0]
    assert (flow["src_ip"], flow["src_port"], flow["dst_ip"], flow["dst_port"]) == (
        HOST_IP,
        row["src_port"],
        DB_IP,
        5432,
    )
    assert (flow["drop_reason"], flow["direction"], flow["exporter"]) == (
        "no-web-to-db",
        "egress",
        HOST,
    )
