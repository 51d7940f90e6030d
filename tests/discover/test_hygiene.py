"""Label hygiene against the demo's planted mislabels."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

from cellwall.discover.edges import Edge
from cellwall.discover.hygiene import label_hygiene
from cellwall.model.inventory import Workload
from cellwall.model.labels import Labels
from cellwall.services.map import MapQuery, label_findings
from cellwall.workspace import Workspace


def mislabels(out: Path) -> set[str]:
    with (out / "estate/truth/mislabels.csv").open() as f:
        return {r["workload"] for r in csv.DictReader(f)}


def test_precision_and_recall_on_the_demo(demo_vpc: Path, demo_zeek: Path) -> None:
    found: list[str] = []
    truth: set[str] = set()
    for out in (demo_vpc, demo_zeek):
        lists = (out / "estate/truth/policy-app.yaml",)
        findings = label_findings(Workspace.resolve(out / "home"), MapQuery(iplist_files=lists))
        assert all(f["evidence"] for f in findings)  # every finding shows its flows
        found += [f"{out.name}/{f['subject']}" for f in findings]
        truth |= {f"{out.name}/{w}" for w in mislabels(out)}
    hits = len(set(found) & truth)
    assert hits / len(found) >= 0.8, (found, truth)
    assert hits / len(truth) >= 0.8, (found, truth)


def _w(name: str, app: str, role: str) -> Workload:
    return Workload(name=name, labels=Labels.of(app=app, role=role, env="prod"))


def test_a_cache_labelled_db_is_found_with_its_flows() -> None:
    t = datetime(2026, 11, 2, tzinfo=UTC)
    wl = [_w(f"api-{i}", "shop", "api") for i in range(3)]
    wl += [_w("db-1", "shop", "db"), _w("db-2", "shop", "db"), _w("db-3", "shop", "db")]
    wl += [_w("cache-1", "shop", "cache"), _w("cache-2", "shop", "cache")]
    wl += [_w("cache-3", "shop", "db")]  # the mislabel
    edges = []
    for i in range(3):
        for n in ("db-1", "db-2", "db-3"):
            edges.append(Edge(f"api-{i}", n, "tcp/5432", 5, 10, 1, 1, t, t, 1))
        for n in ("cache-1", "cache-2", "cache-3"):
            edges.append(Edge(f"api-{i}", n, "tcp/6379", 5, 10, 1, 1, t, t, 1))
    edges.append(Edge("db-1", "db-2", "tcp/5432", 1, 2, 1, 1, t, t, 1))  # replication
    (f,) = label_hygiene(edges, wl, max_share=1.0)
    assert f.subject == "cache-3"
    assert f.to_dict()["changes"] == {"role": "cache"}
    assert f.evidence and all("tcp/6379" in line for line in f.evidence)
