"""DNS evidence names external ends on the map, at the time of their flows.

The evidence is Zeek's own ``dns.log`` baseline (opt.basic) with a real time put in place
of its masked one: at 2011-03-18T19:06:08Z it answered ``upload.wikimedia.org`` with
208.80.152.3 (TTL 2156 s) and ``meta.wikimedia.org`` with 208.80.152.2 (TTL 2141 s).
"""

from __future__ import annotations

from pathlib import Path

from cellwall.services.ingest import ingest_paths
from cellwall.services.map import MapQuery, build_dependency_map
from cellwall.workspace import Workspace
from tests.flowfiles import TESTDATA, write_csv

DNS_LOG = TESTDATA / "flows/zeek/testing/btest/Baseline/opt.basic/dns.log"
TS = 1_300_475_168  # the time given to the baseline's masked timestamps
CLIENT = "141.142.220.118"


def _workspace(
    ws: Workspace, tmp_path: Path, mapping: Path, rows: list[tuple[object, ...]]
) -> None:
    log = tmp_path / "dns.log"
    log.write_text(DNS_LOG.read_text().replace("XXXXXXXXXX.XXXXXX", f"{TS}.652003"))
    assert ingest_paths(ws, [log], fmt="zeek-dns").to_dict()["dns"] == 5
    flows = write_csv(tmp_path / "flows.csv", rows)
    ingest_paths(ws, [flows], fmt="csv", options={"mapping": str(mapping)})


def _servers(ws: Workspace, **query: object) -> dict[str, str]:
    result = build_dependency_map(ws, MapQuery(group_by="workload", **query))  # type: ignore[arg-type]
    kinds = {n.name: n.kind for n in result.nodes.values()}
    return {e.server: kinds[e.server] for e in result.edges}


def test_an_address_named_at_its_flows_time_shows_under_its_name(
    ws: Workspace, tmp_path: Path, mapping: Path
) -> None:
    _workspace(
        ws,
        tmp_path,
        mapping,
        [
            (TS + 10, CLIENT, "208.80.152.3", 40000, 443, "tcp", 900),  # while the answer held
            (TS + 3 * 86_400, CLIENT, "208.80.152.2", 40001, 443, "tcp", 900),  # long after
        ],
    )
    assert _servers(ws) == {
        "dns:upload.wikimedia.org": "dns",
        "cidr:208.80.152.0/24": "cidr",  # meta.wikimedia.org's answer had expired
    }


def test_ip_lists_still_win_over_dns_names(ws: Workspace, tmp_path: Path, mapping: Path) -> None:
    _workspace(ws, tmp_path, mapping, [(TS + 10, CLIENT, "208.80.152.3", 40000, 443, "tcp", 9)])
    lists = tmp_path / "lists.yaml"
    lists.write_text(
        "apiVersion: cellwall/v1\nkind: IPList\nmetadata: {name: wikimedia}\n"
        "spec: {cidrs: [208.80.152.0/22]}\n"
    )
    assert _servers(ws, iplist_files=[lists]) == {"iplist:wikimedia": "iplist"}


def test_a_flow_before_the_answer_is_not_named(
    ws: Workspace, tmp_path: Path, mapping: Path
) -> None:
    _workspace(ws, tmp_path, mapping, [(TS - 60, CLIENT, "208.80.152.3", 40000, 443, "tcp", 9)])
    assert _servers(ws) == {"cidr:208.80.152.0/24": "cidr"}
