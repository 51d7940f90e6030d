"""The lab over iptables + ipset, and probes the kernel cannot make (SCTP without its
module) listed apart as *not probed*, never as agreement."""

from __future__ import annotations

import shutil

import pytest

from cellwall.enforce import netns
from cellwall.enforce.lab import PREFIX, run_lab
from cellwall.enforce.probe import sctp_supported
from cellwall.model.inventory import Workload
from cellwall.policy.loader import load_policy_texts
from tests.enforce.estate import WORKLOADS, policy
from tests.targets.common import AT, fixture_estate

pytestmark = [
    pytest.mark.usefixtures("lab_lock"),
    pytest.mark.skipif(shutil.which("ipset") is None, reason="ipset is not installed"),
]


def _leftovers() -> list[str]:
    return [n for n in netns.names() if n.startswith(PREFIX)]


def test_iptables_and_ipset_agree_everywhere_in_a_real_kernel() -> None:
    result = run_lab(policy(), WORKLOADS, target="iptables")
    assert result.target == "iptables"
    assert result.disagreements == [], str(result)
    assert result.probes > 1000 and result.agreed == result.probes and result.through > 20
    assert _leftovers() == []


def test_iptables_agree_on_the_target_fixture_with_iplists_and_the_internet() -> None:
    ps, workloads = fixture_estate()
    result = run_lab(ps, workloads, target="iptables", at=AT)
    assert result.disagreements == [], str(result)
    assert {"iplist:internet", "admin:fd00:255::/64", "unmanaged-private"} <= set(result.ends)
    # the http-narrowed rule is reported unsupported: its probes are apart, not agreed
    assert result.unsupported and {o.rule_id for o in result.unsupported} == {"web-to-api"}
    assert result.agreed + len(result.unsupported) == result.probes


def test_a_planted_wrong_iptables_rule_is_caught() -> None:
    def plant(files: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for kind in ("iptables", "ip6tables"):
            files["db-1"][kind] = files["db-1"][kind].replace(
                '--comment "api-to-db" -j ACCEPT', '--comment "api-to-db" -j DROP'
            )
        return files

    result = run_lab(policy(), WORKLOADS, target="iptables", plant=plant)
    wrong = {(o.client, o.server, o.service, o.family) for o in result.disagreements}
    assert wrong == {
        ("api-1", "db-1", svc, fam) for svc in ("tcp/5432", "udp/5353") for fam in (4, 6)
    }, str(result)


SCTP_POLICY = """
apiVersion: cellwall/v1
kind: Policy
metadata: {name: sig}
spec:
  scope: {app: sig}
  mode: full
  rules:
    - id: diameter
      from: {role: client}
      to: {role: server}
      services: [sctp/3868, tcp/3868]
"""
SCTP_WORKLOADS = [
    Workload.of("c-1", labels={"app": "sig", "role": "client"}, addresses=["10.40.0.1"]),
    Workload.of("s-1", labels={"app": "sig", "role": "server"}, addresses=["10.40.0.2"]),
]


def test_sctp_probes_are_made_or_listed_apart_as_not_probed() -> None:
    loaded = load_policy_texts({"sig.yaml": SCTP_POLICY}, workloads=SCTP_WORKLOADS)
    assert loaded.ok, loaded.errors
    result = run_lab(loaded.policy_set, SCTP_WORKLOADS, ends=False)
    assert result.disagreements == [], str(result)
    if sctp_supported():
        assert result.not_probed == []
        assert result.probes > 40  # SCTP points are among them
        return
    assert result.not_probed and all(o.service.startswith("sctp/") for o in result.not_probed)
    assert {o.service for o in result.not_probed} >= {"sctp/3868", "sctp/3869"}
    assert result.agreed == result.probes  # only what was probed counts as agreement
    assert any("SCTP" in n for n in result.notes)
    assert "not probed" in str(result)
    doc = result.to_dict()
    assert {o["observed"] for o in doc["not_probed"]} == {"not probed"}
