"""The host agent, every behaviour in fresh network namespaces (see conftest.py)."""

from __future__ import annotations

import contextlib
import io
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from cellwall.enforce.agent import Agent, AgentConfig
from cellwall.enforce.guard import checked_listing
from cellwall.enforce.lab import compile_hosts
from cellwall.enforce.netns import run
from cellwall.enforce.nft import Nft, NftError, table_digest
from cellwall.enforce.probe import Listeners, Probe, probe_all
from cellwall.ingest.base import detect, get_source
from cellwall.services.enforce import management_doc
from tests.enforce.conftest import (
    CONTROLLER_IP,
    DROP_EVERYTHING,
    MANAGEMENT,
    Net,
    make_bundle,
    ruleset,
)
from tests.enforce.estate import WORKLOADS, policy

HOST = "web-1"


def _agent(tmp_path: Path, net: Net, keys: tuple[Path, Path], nft: Nft | None = None) -> Agent:
    config = AgentConfig(
        f"file://{tmp_path / 'bundle'}", HOST, tmp_path / "state", keys[1], net.host
    )
    return Agent(config, nft=nft)


def _digest(net: Net) -> str | None:
    return table_digest(Nft(net.host).table_json())


def _reaches(net: Net, *ports: int) -> list[bool]:
    with Listeners() as ls:
        ls.listen(net.controller, 6, ports)
        return probe_all([Probe(net.host, CONTROLLER_IP, 4, 6, p) for p in ports], timeout=1.0)


class CountingNft(Nft):
    def __init__(self, netns: str) -> None:
        super().__init__(netns)
        self.files: list[str] = []

    def apply_file(self, text: str, *, check_only: bool = False) -> None:
        self.files.append(text)
        super().apply_file(text, check_only=check_only)


def test_applies_the_host_ruleset_as_one_transaction(
    tmp_path: Path, net: Net, keys: tuple[Path, Path]
) -> None:
    make_bundle(tmp_path / "bundle", keys[0], 1, {HOST: ruleset(), "db-1": ruleset(5432)})
    nft = CountingNft(net.host)
    result = _agent(tmp_path, net, keys, nft).cycle()
    assert (result.outcome, result.serial) == ("applied", 1)
    assert len(nft.files) == 1  # one nft -f: flush (delete) and add of the table together
    assert nft.files[0].startswith("add table inet cellwall\ndelete table inet cellwall\n")
    assert "tcp dport 8080" in (Nft(net.host).table_text() or "")
    assert (tmp_path / "state" / "last-good.nft").read_text() == ruleset()
    # the kernel takes all of a file or none of it: a broken second half changes nothing
    before = _digest(net)
    broken = ruleset(9090).replace("counter drop comment", "counter dorp comment")
    with contextlib.suppress(NftError):
        Nft(net.host).replace_table(broken)
    assert _digest(net) == before


class FailingOnceNft(Nft):
    """Applies the new ruleset, then reports a failure (a commit that went wrong)."""

    def __init__(self, netns: str, marker: str) -> None:
        super().__init__(netns)
        self.marker = marker

    def replace_table(self, ruleset: str, *args: Any, **kw: Any) -> None:
        super().replace_table(ruleset, *args, **kw)
        if self.marker in ruleset:
            self.marker = "\0never"
            raise NftError("netlink: error: the commit failed half-way")


def test_rolls_back_to_the_previous_ruleset_when_the_apply_fails(
    tmp_path: Path, net: Net, keys: tuple[Path, Path]
) -> None:
    make_bundle(tmp_path / "bundle", keys[0], 1, {HOST: ruleset()})
    agent = _agent(tmp_path, net, keys, FailingOnceNft(net.host, "dport 8081"))
    assert agent.cycle().outcome == "applied"
    good = _digest(net)
    make_bundle(tmp_path / "bundle", keys[0], 2, {HOST: ruleset(8081)})
    result = agent.cycle()
    assert result.outcome == "refused" and result.serial == 1
    assert _digest(net) == good
    assert "dport 8081" not in (Nft(net.host).table_text() or "")
    assert [e["event"] for e in result.events] == ["rolled-back", "refused"]
    assert agent.cycle().outcome == "applied"  # the same bundle applies once nft works


def test_keeps_the_last_known_good_while_the_bundle_is_unreachable(
    tmp_path: Path, net: Net, keys: tuple[Path, Path]
) -> None:
    make_bundle(tmp_path / "bundle", keys[0], 1, {HOST: ruleset()})
    agent = _agent(tmp_path, net, keys)
    agent.cycle()
    good = _digest(net)
    shutil.rmtree(tmp_path / "bundle")
    result = agent.cycle()
    assert (result.outcome, result.serial, result.repaired) == ("unreachable", 1, False)
    assert _digest(net) == good
    Nft(net.host).delete_table()  # lost while the controller is away: restored from state
    result = agent.cycle()
    assert (result.outcome, result.repaired) == ("unreachable", True)
    assert _digest(net) == good


def test_detects_tampering_with_its_table_and_reapplies(
    tmp_path: Path, net: Net, keys: tuple[Path, Path]
) -> None:
    make_bundle(tmp_path / "bundle", keys[0], 1, {HOST: ruleset()})
    agent = _agent(tmp_path, net, keys)
    agent.cycle()
    good = _digest(net)
    run(["nft", "insert rule inet cellwall input tcp dport 31337 accept"], net.host)
    assert _digest(net) != good
    result = agent.cycle()
    assert (result.outcome, result.repaired) == ("unchanged", True)
    assert _digest(net) == good
    assert "31337" not in (Nft(net.host).table_text() or "")
    assert agent.cycle().repaired is False  # counters moving is not tampering


def test_rejected_bundles_leave_the_running_ruleset(
    tmp_path: Path, net: Net, keys: tuple[Path, Path]
) -> None:
    bundle = make_bundle(tmp_path / "bundle", keys[0], 2, {HOST: ruleset()})
    agent = _agent(tmp_path, net, keys)
    agent.cycle()
    good = _digest(net)
    make_bundle(bundle, keys[0], 1, {HOST: ruleset(8081)})  # validly signed, older serial
    assert (agent.cycle().outcome, agent.cycle().reason) == ("rejected", "rollback")
    make_bundle(bundle, keys[0], 3, {HOST: ruleset(8081)})
    (bundle / f"{HOST}.nft").write_text(DROP_EVERYTHING)
    assert agent.cycle().reason == "tampered"
    make_bundle(
        bundle,
        keys[0],
        3,
        {HOST: ruleset(8081)},
        valid=-timedelta(seconds=1),
    )
    assert agent.cycle().reason == "expired"
    (bundle / "manifest.sig").unlink()
    assert agent.cycle().reason == "unsigned"
    assert _digest(net) == good and agent.store.load().serial == 2


def test_never_locks_out_the_management_channel(
    tmp_path: Path, net: Net, keys: tuple[Path, Path]
) -> None:
    make_bundle(tmp_path / "bundle", keys[0], 1, {HOST: ruleset()})
    agent = _agent(tmp_path, net, keys)
    agent.cycle()
    assert _reaches(net, 7443, 7444) == [True, False]  # control port open, the rest dropped
    make_bundle(tmp_path / "bundle", keys[0], 2, {HOST: DROP_EVERYTHING})
    result = agent.cycle()
    assert result.outcome == "refused" and "management" in (result.reason or "")
    assert _reaches(net, 7443) == [True]
    no_control = ruleset().replace("tcp dport 7443", "tcp dport 7444")
    make_bundle(tmp_path / "bundle", keys[0], 3, {HOST: no_control})
    assert agent.cycle().outcome == "refused"
    assert _reaches(net, 7443) == [True] and agent.store.load().serial == 1


def test_the_compiled_ruleset_passes_the_management_guard() -> None:
    ps = policy()
    compiled = compile_hosts(ps, WORKLOADS, ["web-1"], datetime.now(UTC))
    mgmt = management_doc(ps.settings.management)
    assert mgmt == MANAGEMENT | {"controllers": [f"{CONTROLLER_IP}/32"]}
    assert checked_listing(compiled.rulesets["web-1"], mgmt)["nftables"]
    without = compiled.rulesets["web-1"].replace("counter name mgmt_control accept", "drop")
    try:
        checked_listing(without, mgmt)
    except NftError as exc:
        assert "management:control" in str(exc)
    else:
        raise AssertionError("a ruleset without its control rule passed the guard")


def test_reports_rule_counters_and_drops_as_flows(
    tmp_path: Path, net: Net, keys: tuple[Path, Path]
) -> None:
    make_bundle(tmp_path / "bundle", keys[0], 1, {HOST: ruleset()})
    agent = _agent(tmp_path, net, keys)
    agent.cycle()
    _reaches(net, 7443, 7444)
    assert agent.cycle().reported >= 2
    report = (tmp_path / "state" / "report.jsonl").read_bytes()
    source = detect(report[:256], "report.jsonl")
    assert source is get_source("agent-counters")
    chunks = list(source().read(io.BytesIO(report), "report.jsonl"))
    flows = chunks[0].flows
    assert len(chunks[0].rejects) == 0
    rows = {(r["source_id"], r["action"]): r for r in flows.to_pylist()}
    control = rows[("management:control", "ACCEPT")]
    assert control["dst_ip"] == CONTROLLER_IP and control["dst_port"] == 7443
    assert control["proto"] == 6 and control["exporter"] == HOST and control["packets"] >= 1
    drop = rows[("default-out", "REJECT")]
    assert drop["drop_reason"] == "default-out" and drop["direction"] == "egress"
    assert pc.sum(flows["packets"]).as_py() >= 2
    assert agent.cycle().reported == 0  # nothing moved since the last report
