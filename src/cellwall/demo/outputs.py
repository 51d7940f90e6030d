"""Writing the inventory, the label convention and the ground truth of a generation.

``truth.json`` is the machine-readable whole; ``truth/`` holds the parts a person reads
(edges, attack flows and mislabels as CSV, the corrected inventory, one policy file per
granularity and a short summary).
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from cellwall.demo.attacks import AttackSet
from cellwall.demo.config import DemoConfig
from cellwall.demo.documents import (
    conventions_yaml,
    inventory_csv,
    inventory_yaml,
    iplist_doc,
    join_docs,
    ordered,
    policy_doc,
    when,
)
from cellwall.demo.model import Estate, ip_text
from cellwall.demo.traffic import HISTORIES, STATES, US
from cellwall.demo.truth import (
    GRANULARITIES,
    Tally,
    edge_documents,
    iplists_used,
    minimal_rules,
)

__all__ = ["write_documents"]

TRUTH_FORMAT = "cellwall-demo-truth/1"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")
    return path


def _iso_us(us: int) -> str:
    seconds, micro = divmod(int(us), US)
    return when(seconds).replace("Z", f".{micro:06d}Z")


def _end(estate: Estate, endpoint: int) -> dict[str, Any]:
    nw = len(estate.workloads)
    if endpoint >= nw:
        return {"iplist": estate.externals[endpoint - nw].name}
    w = estate.workloads[endpoint]
    return {"workload": w.name, "labels": ordered(w.labels)}


def _edges(estate: Estate, tally: Tally) -> list[dict[str, Any]]:
    out = []
    for e in estate.edges:
        seen = tally.count[e.index] > 0
        out.append(
            {
                "id": e.index,
                "client": _end(estate, e.client),
                "server": _end(estate, e.server),
                "service": e.service.text,
                "purpose": e.purpose,
                "schedule": e.schedule.describe(),
                "conversations": int(tally.count[e.index]),
                "first_seen": _iso_us(tally.first[e.index]) if seen else None,
                "last_seen": _iso_us(tally.last[e.index]) if seen else None,
            }
        )
    return out


def _ip_reuse(estate: Estate) -> list[dict[str, Any]]:
    holders: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for w in estate.workloads:
        for lease in w.leases:
            if lease.since is not None:
                holders[lease.ip].append(
                    {
                        "workload": w.name,
                        "from": when(lease.since),
                        "until": when(lease.until or estate.end),
                    }
                )
    out: list[dict[str, Any]] = []
    for ip, held in sorted(holders.items()):
        if len({h["workload"] for h in held}) > 1:
            out.append({"ip": ip_text(ip), "holders": sorted(held, key=lambda h: h["from"])})
    return out


def _attacks_csv(estate: Estate, attacks: AttackSet) -> str:
    c = attacks.conv
    names = [a.id for a in attacks.info]
    techniques = {a.id: a.technique for a in attacks.info}
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(
        [
            "attack_id",
            "technique",
            "start",
            "start_us",
            "end_us",
            "proto",
            "src_ip",
            "src_port",
            "dst_ip",
            "dst_port",
            "orig_bytes",
            "resp_bytes",
            "conn_state",
            "history",
            "vpc_action",
            "rides_edge",
        ]
    )
    for i in range(len(c)):
        name = names[int(c.attack[i]) - 1]
        hist, state = HISTORIES[int(c.hist[i])]
        out.writerow(
            [
                name,
                techniques[name],
                _iso_us(c.start_us[i]),
                int(c.start_us[i]),
                int(c.start_us[i] + c.dur_us[i]),
                "tcp" if c.proto[i] == 6 else "udp",
                ip_text(int(c.src[i])),
                int(c.sport[i]),
                ip_text(int(c.dst[i])),
                int(c.dport[i]),
                int(c.ob[i]),
                int(c.rb[i]),
                STATES[state],
                hist,
                "REJECT" if c.reject[i] else "ACCEPT",
                int(attacks.rides[i]) if attacks.rides[i] >= 0 else "",
            ]
        )
    return buf.getvalue()


def _edges_csv(edges: list[dict[str, Any]]) -> str:
    def end(x: dict[str, Any]) -> tuple[str, str]:
        if "iplist" in x:
            return "iplist:" + x["iplist"], ""
        return x["workload"], ";".join(f"{k}={v}" for k, v in x["labels"].items())

    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(
        [
            "edge",
            "client",
            "client_labels",
            "server",
            "server_labels",
            "service",
            "purpose",
            "schedule",
            "conversations",
            "first_seen",
            "last_seen",
        ]
    )
    for e in edges:
        out.writerow(
            [
                e["id"],
                *end(e["client"]),
                *end(e["server"]),
                e["service"],
                e["purpose"],
                e["schedule"],
                e["conversations"],
                e["first_seen"] or "",
                e["last_seen"] or "",
            ]
        )
    return buf.getvalue()


def _mislabels_csv(estate: Estate) -> str:
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(["workload", "key", "claimed", "true"])
    for m in estate.mislabels:
        out.writerow([m.workload, m.key, m.claimed, m.true])
    return buf.getvalue()


def _summary(
    estate: Estate, counts: dict[str, Any], rules: dict[str, int], attacks: AttackSet | None
) -> str:
    lines = [
        "cellwall demo estate: ground truth summary",
        f"span: {when(estate.start)} .. {when(estate.end)}",
        *(f"{k}: {v}" for k, v in counts.items()),
        *(f"minimal rules at {g} granularity: {n}" for g, n in rules.items()),
        "mislabelled workloads:",
        *(
            f"  {m.workload}: {m.key}={m.claimed} in the inventory, truly {m.true}"
            for m in estate.mislabels
        ),
        "attacks:",
    ]
    for a in attacks.info if attacks else []:
        lines.append(
            f"  {a.id} ({a.technique}) {_iso_us(a.start_us)} .. {_iso_us(a.end_us)}: "
            f"{a.conversations} conversations; {a.description}"
        )
    return "\n".join(lines) + "\n"


def write_documents(
    out_dir: Path,
    config: DemoConfig,
    estate: Estate,
    tally: Tally,
    attacks: AttackSet | None,
    counts: dict[str, int],
) -> dict[str, Path]:
    """Write every document but the flows; return their paths by name."""
    truth = out_dir / "truth"
    paths = {
        "inventory": _write(out_dir / "inventory.yaml", inventory_yaml(estate)),
        "inventory_csv": _write(out_dir / "inventory.csv", inventory_csv(estate)),
        "conventions": _write(out_dir / "conventions.yaml", conventions_yaml(estate)),
        "inventory_true": _write(
            truth / "inventory-true.yaml", inventory_yaml(estate, true_labels=True)
        ),
        "inventory_true_csv": _write(
            truth / "inventory-true.csv", inventory_csv(estate, true_labels=True)
        ),
        "mislabels": _write(truth / "mislabels.csv", _mislabels_csv(estate)),
    }
    edges = _edges(estate, tally)
    paths["edges"] = _write(truth / "edges.csv", _edges_csv(edges))
    granularities: dict[str, Any] = {}
    for g in GRANULARITIES:
        rules = minimal_rules(estate, g)
        docs = [iplist_doc(estate.external(n)) for n in iplists_used(rules)]
        docs.append(policy_doc(f"truth-{g}", "security", (r.document(g) for r in rules)))
        paths[f"policy_{g}"] = _write(truth / f"policy-{g}.yaml", join_docs(docs))
        granularities[g] = {
            "policy": f"truth/policy-{g}.yaml",
            "rules": len(rules),
            "edges": edge_documents(estate, g),
        }
    if attacks is not None:
        paths["attacks"] = _write(truth / "attacks.csv", _attacks_csv(estate, attacks))
    summary = {
        "workloads": len(estate.workloads),
        "edges": len(estate.edges),
        "apps": len({w.app for w in estate.workloads}) - 1,
        **counts,
    }
    rule_counts = {g: int(v["rules"]) for g, v in granularities.items()}
    paths["summary"] = _write(
        truth / "summary.txt", _summary(estate, summary, rule_counts, attacks)
    )
    doc = _truth_doc(config, estate, summary, edges, granularities, attacks)
    paths["truth"] = _write(out_dir / "truth.json", json.dumps(doc, indent=1) + "\n")
    return paths


def _truth_doc(
    config: DemoConfig,
    estate: Estate,
    summary: dict[str, int],
    edges: list[dict[str, Any]],
    granularities: dict[str, Any],
    attacks: AttackSet | None,
) -> dict[str, Any]:
    return {
        "format": TRUTH_FORMAT,
        "config": config.to_dict(),
        "counts": summary,
        "workloads": [
            {
                "name": w.name,
                "owner": w.owner,
                "kind": w.kind,
                "labels": ordered(w.labels),
                "claimed": ordered(w.claimed),
                "addresses": [
                    {
                        "ip": ip_text(x.ip),
                        "from": when(x.since) if x.since is not None else None,
                        "until": when(x.until) if x.until is not None else None,
                    }
                    for x in w.leases
                ],
            }
            for w in estate.workloads
        ],
        "external": [
            {
                "name": x.name,
                "cidrs": list(x.cidrs),
                "except": list(x.except_),
                "internal": x.internal,
                "purpose": x.purpose,
                "in_policy": x.in_policy,
                "ips": [ip_text(i) for i in x.ips],
            }
            for x in estate.externals
        ],
        "edges": edges,
        "granularities": granularities,
        "attacks": {
            "flows": "truth/attacks.csv",
            "foothold": "ord-web-1",
            "stages": [a.to_dict() for a in attacks.info] if attacks else [],
        },
        "mislabels": [
            {"workload": m.workload, "key": m.key, "claimed": m.claimed, "true": m.true}
            for m in estate.mislabels
        ],
        "ip_reuse": _ip_reuse(estate),
    }
