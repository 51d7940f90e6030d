"""The demo's other telemetry: a slice of the lake sent again as NetFlow v9, IPFIX and Hubble.

The first flows of the estate (IPv4 TCP/UDP, in time order) are written as an exporter
would send them (:mod:`cellwall.demo.exports`): a v9 and an IPFIX capture, and Hubble
jsonpb lines with DNS responses that name the external addresses. They are ingested into a
workspace of their own (format detected per file), and what each file stored is compared
with the slice, flow by flow: the 5-tuple and start time (to the millisecond that NetFlow
carries), and for NetFlow the bytes and packets. DNS evidence then names the external ends.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from cellwall.demo.estate import EXTERNAL_ENDS
from cellwall.demo.exports import export_datagrams, hubble_lines, netflow_records, pcap
from cellwall.evidence.dns import names_for
from cellwall.lake.layout import LakeLayout
from cellwall.services.ingest import ingest_paths
from cellwall.workspace import Workspace

__all__ = ["SLICE", "demo_telemetry"]

SLICE = 20_000
#: the exporter's sysUpTime at export: 30 days, more than any slice spans
_UPTIME_MS = 30 * 86_400_000
_COLUMNS = (
    "src_ip, dst_ip, src_port, dst_port, proto, bytes, packets, start, "
    'coalesce("end", start) as "end", tcp_flags'
)


def _slice(lake: LakeLayout, limit: int) -> pa.Table:
    con = duckdb.connect()
    try:
        return con.sql(
            f"select {_COLUMNS} from read_parquet('{lake.flows_glob()}', hive_partitioning=true)"
            " where proto in (6, 17) and src_ip not like '%:%' and dst_ip not like '%:%'"
            " and bytes is not null and packets is not null"
            f" order by start, src_ip, dst_ip, src_port, dst_port limit {int(limit)}"
        ).to_arrow_table()
    finally:
        con.close()


def _external_names(addresses: list[str]) -> dict[str, str]:
    """The addresses among ``addresses`` that a named external end of the estate owns (a
    SaaS API, the package mirror, ...; not "internet"), each with a DNS name made from it."""
    nets = [
        (ipaddress.ip_network(cidr), name)
        for name, cidrs, _spec, internal, _policy, _purpose in EXTERNAL_ENDS
        if not internal and name != "internet"
        for cidr in cidrs
    ]
    out = {}
    for text in addresses:
        ip = ipaddress.ip_address(text)
        for net, name in nets:
            if ip in net:
                out[text] = f"{name}.demo.example"
                break
    return out


def _stored(lake: LakeLayout) -> pa.Table:
    """The workspace's flows, with the file each came from."""
    con = duckdb.connect()
    try:
        return con.sql(
            f"select {_COLUMNS}, lineage_file, source_id"
            f" from read_parquet('{lake.flows_glob()}', hive_partitioning=true)"
        ).to_arrow_table()
    finally:
        con.close()


def _keys(table: pa.Table, counters: bool) -> Counter[tuple[Any, ...]]:
    """Each flow as a comparable tuple: the 5-tuple, start in ms, and bytes and packets."""
    ms = pc.divide(pc.cast(pc.cast(table["start"], pa.timestamp("us", "UTC")), pa.int64()), 1000)
    cols = [table[c] for c in ("src_ip", "dst_ip", "src_port", "dst_port", "proto")] + [ms]
    if counters:
        cols += [table["bytes"], table["packets"]]
    return Counter(zip(*(c.to_pylist() for c in cols), strict=True))


def demo_telemetry(ws: Workspace, out: Path, *, limit: int = SLICE) -> dict[str, Any]:
    """Write the slice in the three forms, ingest them into ``out/home``, and compare."""
    out.mkdir(parents=True, exist_ok=True)
    flows = _slice(LakeLayout(ws.lake), limit)
    if flows.num_rows == 0:
        return {"flows": 0}
    ends_us = pc.cast(pc.cast(flows["end"], pa.timestamp("us", "UTC")), pa.int64())
    export_ms = int(pc.max(ends_us).as_py()) // 1000
    export_s = math.ceil(export_ms / 1000)
    files = {}
    for name, ipfix in (("exports-v9.pcap", False), ("exports-ipfix.pcap", True)):
        records = netflow_records(
            flows, ipfix=ipfix, uptime_ms=_UPTIME_MS, export_ms=export_s * 1000
        )
        datagrams = export_datagrams(records, ipfix=ipfix, export_s=export_s, uptime_ms=_UPTIME_MS)
        (out / name).write_bytes(pcap(datagrams))
        files[name] = out / name
    names = _external_names(pc.unique(flows["dst_ip"]).to_pylist())
    (out / "hubble.json").write_bytes(hubble_lines(flows, names))
    files["hubble.json"] = out / "hubble.json"
    home = Workspace.resolve(out / "home")
    summary = ingest_paths(home, list(files.values()))
    lake = LakeLayout(home.lake)
    everything = _stored(lake)
    want = {True: _keys(flows, True), False: _keys(flows, False)}
    per_file = {}
    for doc in summary.to_dict()["files"]:
        path = Path(doc["path"])
        counters = path.suffix == ".pcap"
        stored = everything.filter(pc.equal(everything["lineage_file"], str(path)))
        # Hubble's DNS responses are flows too (port 53 to the asker): not of the slice
        dns = pc.starts_with(stored["source_id"].fill_null(""), "demo-dns-")
        got = _keys(stored.filter(pc.invert(dns)), counters)
        per_file[path.name] = {
            "format": doc["format"],
            "read": doc["read"],
            "stored": doc["stored"],
            "quarantined": doc["quarantined"],
            "dns_evidence": doc["dns"],
            "same_as_the_slice": got == want[counters],
        }
    # each name is asked for when its first flow was seen: the DNS answer came with it
    named = list(names)
    first_seen: dict[str, Any] = {}
    for ip, when in zip(flows["dst_ip"].to_pylist(), flows["start"].to_pylist(), strict=True):
        if ip in names:
            first_seen.setdefault(ip, when)
    at = pa.array([first_seen[ip] for ip in named], pa.timestamp("us", "UTC"))
    resolved = names_for(lake.root, pa.array(named, pa.string()), at).to_pylist()
    result = {
        "flows": flows.num_rows,
        "files": per_file,
        "external_addresses_named": sum(n is not None for n in resolved),
        "external_addresses": len(named),
        "names": dict(sorted(zip(named, resolved, strict=True))[:10]),
        "workspace": str(home.home),
    }
    (out / "telemetry.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
