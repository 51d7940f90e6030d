"""One conformance suite over every registered target.

For every target: output is deterministic, and every unsupported entry names a rule of the
policy. Per target, a checker holds the artefacts to the judge: nftables rulesets are
checked and loaded by the kernel (``nft -c -f``, ``nft -f``) in a fresh network namespace;
the per-host plan that nftables and iptables render is replayed against the judge (with
the modes) on probe conversations; the label-based targets are held to the judge by the
Kubernetes cross-check (``test_k8s_nca.py``) and their golden files.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cellwall.model.policy import ICMP_PROTOS
from cellwall.policy.ir import MANAGEMENT_IDS
from cellwall.services.compile import compile_policy, make_estate, write_artefacts
from cellwall.targets.base import Artefacts, target_names
from cellwall.targets.plan import Estate, action_for
from tests.targets.common import AT, fixture_estate, judged_blocked


@pytest.fixture(scope="module")
def estate() -> Estate:
    ps, workloads = fixture_estate()
    return make_estate(ps, workloads, AT)


def _compile(estate: Estate, target: str) -> Artefacts:
    ps = estate.ir.policy_set
    return compile_policy(ps, [], target, at=AT, today=AT.date(), estate=estate)


@pytest.mark.parametrize("target", target_names())
def test_deterministic_and_names_rules(estate: Estate, target: str) -> None:
    ps, workloads = fixture_estate()
    other = make_estate(ps, workloads, AT)
    a, b = _compile(estate, target), _compile(other, target)
    assert [(f.path, f.text) for f in a.files] == [(f.path, f.text) for f in b.files]
    ids = {r.id for _, r in ps.rules()} | set(MANAGEMENT_IDS) | {"(not-allowed)"}
    assert all(u.rule_id in ids for u in a.unsupported)
    assert a.report_json() == b.report_json()
    assert a.files


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"cwc-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def _nft(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, "nft", *args], capture_output=True, text=True)


def check_nftables(estate: Estate, arts: Artefacts, tmp: Path, ns: str) -> None:
    write_artefacts(arts, tmp)
    for f in arts.files:
        path = str(tmp / f.path)
        r = _nft(ns, "-c", "-f", path)
        assert r.returncode == 0, f"{f.path}: {r.stderr}"
        r = _nft(ns, "-f", path)  # load it (twice: the file replaces its own table)
        assert r.returncode == 0, f"{f.path}: {r.stderr}"
    r = _nft(ns, "-j", "list", "counters", "table", "inet", "cellwall")
    names = {x["counter"]["name"] for x in json.loads(r.stdout)["nftables"] if "counter" in x}
    assert "na_in" in names and "mgmt_admin" in names


def check_structured(estate: Estate, arts: Artefacts, tmp: Path, ns: str) -> None:
    import yaml

    for f in arts.files:
        doc = json.loads(f.text) if f.path.endswith(".json") else yaml.safe_load(f.text)
        assert isinstance(doc, dict)


def check_iptables(estate: Estate, arts: Artefacts, tmp: Path, ns: str) -> None:
    for f in arts.files:
        if f.path.endswith("tables"):
            assert f.text.startswith("*filter") and f.text.rstrip().endswith("COMMIT")
            assert "CW-NA-IN" in f.text


CHECKERS: dict[str, Callable[[Estate, Artefacts, Path, str], None]] = {
    "nftables": check_nftables,
    "iptables": check_iptables,
    "k8s": check_structured,
    "cilium": check_structured,
    "calico": check_structured,
    "aws-sg": check_structured,
}


@pytest.mark.parametrize("target", target_names())
def test_target_checker(estate: Estate, target: str, tmp_path: Path, netns: str) -> None:
    assert target in CHECKERS, f"register a conformance checker for {target}"
    CHECKERS[target](estate, _compile(estate, target), tmp_path, netns)


# -- the plan against the judge -----------------------------------------------------------


def _in(e_first: str, e_last: str, ip: str) -> bool:
    a, b, x = (ipaddress.ip_address(v) for v in (e_first, e_last, ip))
    return a.version == x.version and a <= x <= b  # type: ignore[operator]


def _host_blocks(est: Estate, host: str, direction: str, peer: str, proto: int, port: int) -> bool:
    plan = est.plan(host)
    for m in plan.management:
        if m.direction != direction:
            continue
        peers = m.peers or tuple(a for v in est.workload_addresses.values() for a in v)
        nets = [ipaddress.ip_network(p) for p in peers]
        addr = ipaddress.ip_address(peer)
        if any(addr.version == n.version and addr in n for n in nets) and any(
            s.proto in (None, proto) and (s.lo is None or (s.lo <= port <= (s.hi or 0)))
            for s in m.services
        ):
            return False
    entries = plan.inbound if direction == "in" else plan.outbound
    for e in entries:
        if not (e.proto_lo <= proto <= e.proto_hi and _in(e.first, e.last, peer)):
            continue
        if e.lo is not None and not (e.lo <= port <= (e.hi or 0)):
            continue
        return action_for(plan.mode, est.ir.rules[e.code].verdict).kind == "drop"
    return action_for(plan.mode, 2).kind == "drop"


def _owner(est: Estate, ip: str) -> str | None:
    return next((h.name for h in est.hosts.values() if ip in h.addresses), None)


def test_plan_agrees_with_judge(estate: Estate) -> None:
    ps, workloads = fixture_estate()
    ips = [a for h in estate.hosts.values() for a in h.addresses]
    ips += ["203.0.113.7", "10.255.0.9", "10.255.1.10", "192.0.2.1", "2001:db8::1", "fd00:255::1"]
    services = [(6, 443), (6, 8443), (6, 8080), (6, 22), (6, 445), (6, 5432), (6, 7443),
                (17, 53), (17, 138), (1, 8), (1, 0), (58, 128), (47, 0)]  # fmt: skip
    probes = [
        (c, s, p, port)
        for c, s in itertools.permutations(ips, 2)
        if (":" in c) == (":" in s)
        for p, port in services
    ]
    expected = judged_blocked(ps, workloads, probes)
    wrong = []
    for probe, want in zip(probes, expected, strict=True):
        c, s, proto, port = probe
        got = False
        if (h := _owner(estate, c)) is not None:
            got |= _host_blocks(estate, h, "out", s, proto, port)
        if (h := _owner(estate, s)) is not None:
            got |= _host_blocks(estate, h, "in", c, proto, port)
        if got != want:
            wrong.append((probe, want, got))
    assert not wrong, wrong[:10]
    assert len(probes) > 1000 and any(expected) and not all(expected)
    assert all(proto not in ICMP_PROTOS or port < 256 for _, _, proto, port in probes)
