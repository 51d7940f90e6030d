"""The flow files are in the real formats, field by field."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

from cellwall.demo import DemoResult, generate

from .conftest import VPC
from .flowread import flow_files, read_text, vpc_lines, zeek_rows

VPC_HEADER = (
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes "
    "start end action log-status"
)
ZEEK_FIELDS = (
    "ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto service duration orig_bytes "
    "resp_bytes conn_state local_orig local_resp missed_bytes history orig_pkts orig_ip_bytes "
    "resp_pkts resp_ip_bytes tunnel_parents"
)
ZEEK_TYPES = (
    "time string addr port addr port enum string interval count count string bool bool count "
    "string count count count count set[string]"
)


def _ip(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def test_vpc_lines_have_fourteen_valid_fields(vpc_run: tuple[Path, DemoResult]) -> None:
    out, result = vpc_run
    status: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    records = 0
    files = vpc_lines(out)
    assert len(files) == 48  # one file an hour
    for path, lines in files:
        assert re.fullmatch(r"cellwall-demo_vpcflowlogs_\d{8}T\d{4}Z\.log", path.name)
        assert lines[0] == VPC_HEADER
        for line in lines[1:]:
            f = line.split(" ")
            assert len(f) == 14, line
            assert f[0] == "2" and re.fullmatch(r"\d{12}", f[1])
            assert re.fullmatch(r"eni-[0-9a-f]{17}", f[2])
            start, end = int(f[10]), int(f[11])
            assert 1_790_000_000 < start <= end <= start + 600
            status[f[13]] += 1
            if f[13] != "OK":
                assert f[3:10] == ["-"] * 7 and f[12] == "-", line
                continue
            records += 1
            assert _ip(f[3]) and _ip(f[4])
            assert 0 <= int(f[5]) <= 65535 and 0 <= int(f[6]) <= 65535
            assert f[7] in ("6", "17")
            packets, size = int(f[8]), int(f[9])
            assert packets >= 1 and size >= packets * 28
            actions[f[12]] += 1
    assert records == result.records
    assert abs(records - VPC.flows) < 0.1 * VPC.flows
    assert status["NODATA"] > 0 and status["SKIPDATA"] >= 0
    assert status["NODATA"] + status["SKIPDATA"] == result.other_lines
    assert set(actions) == {"ACCEPT", "REJECT"}


def test_vpc_each_direction_is_its_own_record(vpc_run: tuple[Path, DemoResult]) -> None:
    out, _ = vpc_run
    accepted, replies, rejected = set(), set(), 0
    for _, lines in vpc_lines(out):
        for line in lines[1:]:
            f = line.split(" ")
            if f[13] != "OK":
                continue
            if int(f[5]) >= 32768 > int(f[6]):  # from a client's ephemeral port
                if f[12] == "REJECT":
                    rejected += 1
                else:
                    accepted.add((f[2], f[3], f[5], f[4], f[6], f[7]))
            else:
                replies.add((f[2], f[4], f[6], f[3], f[5], f[7]))
    assert rejected > 0
    assert accepted == replies  # every accepted request has its reply, on the same interface


def test_client_ports_are_ephemeral(vpc_run: tuple[Path, DemoResult]) -> None:
    out, _ = vpc_run
    ports = [
        int(line.split(" ")[5])
        for _, lines in vpc_lines(out)
        for line in lines[1:]
        if line.endswith(" OK") and int(line.split(" ")[6]) < 32768
    ]
    assert ports and min(ports) >= 32768 and max(ports) <= 60999


def test_zeek_files_have_the_standard_header(zeek_run: tuple[Path, DemoResult]) -> None:
    out, result = zeek_run
    files = flow_files(out)
    assert len(files) == 9 * 24
    assert all(p.name.endswith(".log.gz") for p in files)
    first = files[0]
    assert first.parent.name == "2026-11-02" and first.name == "conn.00:00:00-01:00:00.log.gz"
    for path in files:
        lines = read_text(path).splitlines()
        assert lines[0] == "#separator \\x09"
        assert lines[1:5] == [
            "#set_separator\t,",
            "#empty_field\t(empty)",
            "#unset_field\t-",
            "#path\tconn",
        ]
        assert re.fullmatch(r"#open\t\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d", lines[5])
        assert lines[6] == "#fields\t" + ZEEK_FIELDS.replace(" ", "\t")
        assert lines[7] == "#types\t" + ZEEK_TYPES.replace(" ", "\t")
        assert re.fullmatch(r"#close\t\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d", lines[-1])
        assert not any(line.startswith("#") for line in lines[8:-1])
    rows = zeek_rows(out)
    assert len(rows) == result.records
    assert abs(len(rows) - 25_000) < 2_500


def test_zeek_rows_are_valid_biflows(zeek_run: tuple[Path, DemoResult]) -> None:
    out, _ = zeek_run
    rows = zeek_rows(out)
    uids = set()
    states: Counter[str] = Counter()
    for r in rows:
        assert len(r) == 21
        assert re.fullmatch(r"\d{10}\.\d{6}", r[0])
        assert re.fullmatch(r"C[0-9A-Za-z]{17}", r[1])
        uids.add(r[1])
        assert _ip(r[2]) and _ip(r[4]) and r[6] in ("tcp", "udp")
        states[r[11]] += 1
        assert r[12] in "TF" and r[13] in "TF" and r[14] == "0" and r[20] == "(empty)"
        orig_pkts, orig_ip = int(r[16]), int(r[17])
        assert orig_pkts >= 1 and orig_ip >= 28 * orig_pkts
        if r[8] == "-":  # Zeek leaves these unset when the duration is zero
            assert r[9] == r[10] == "-" and r[11] == "S0"
        else:
            assert re.fullmatch(r"\d+\.\d{6}", r[8]) and int(r[9]) >= 0 and int(r[10]) >= 0
        if r[6] == "udp":
            assert r[15] in ("Dd", "D")
        else:
            assert r[15].startswith("S")
    assert len(uids) == len(rows)
    assert {"SF", "S0", "REJ", "RSTO"} <= set(states)


def test_daily_files_and_plain_output(tmp_path: Path) -> None:
    config = replace(VPC, days=2, flows=3000, file_per="day", fmt="zeek", attacks=False)
    result = generate(tmp_path, config)
    names = [p.relative_to(tmp_path / "flows").as_posix() for p in flow_files(tmp_path)]
    assert names == ["2026-11-02/conn.log", "2026-11-03/conn.log"]
    assert result.attack_conversations == 0
    assert not (tmp_path / "truth" / "attacks.csv").exists()
