"""Every output format of the map, on a tiny hand-made map."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from cellwall.discover.edges import Edge, MapResult, Node
from cellwall.discover.render import render
from cellwall.errors import UsageError

T = datetime(2026, 11, 2, tzinfo=UTC)


def tiny() -> MapResult:
    web = Node("web", "workload", {"app": "shop", "env": "prod", "role": "web"}, 1)
    db = Node("db", "workload", {"app": "shop", "env": "prod", "role": "db"}, 1)
    net = Node("iplist:internet", "iplist")
    edges = [
        Edge("iplist:internet", "web", "tcp/443", 40, 80, 9000, 90, T, T, 1),
        Edge("web", "db", "tcp/5432", 12, 24, 5000, 50, T, T, 1),
        Edge("web", "db", "tcp/6379", 3, 6, 100, 9, T, T, 1),
    ]
    return MapResult("workload", {n.name: n for n in (web, db, net)}, edges, [])


def test_json() -> None:
    doc = json.loads(render(tiny(), "json"))
    assert doc["totals"] == {"nodes": 3, "edges": 3, "conversations": 55}
    assert doc["edges"][1]["first_seen"] == "2026-11-02T00:00:00+00:00"


def test_graphml() -> None:
    root = ET.fromstring(render(tiny(), "graphml"))
    ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
    assert len(root.findall(".//g:node", ns)) == 3
    assert len(root.findall(".//g:edge", ns)) == 3


def test_csv_matrix_cells_hold_the_services() -> None:
    rows = list(csv.reader(io.StringIO(render(tiny(), "csv").decode())))
    assert rows[0] == ["client \\ server", "db", "web"]
    assert ["web", "tcp/5432;tcp/6379", ""] in rows


def test_dot_clusters_by_env_and_app() -> None:
    dot = render(tiny(), "dot").decode()
    assert '"cluster_env_prod"' in dot and '"cluster_prod_shop"' in dot
    assert "tcp/5432, tcp/6379\\n15 conv" in dot


def test_svg_and_png() -> None:
    assert b"<svg" in render(tiny(), "svg")
    assert render(tiny(), "png").startswith(b"\x89PNG")


def test_unknown_format() -> None:
    with pytest.raises(UsageError):
        render(tiny(), "pdf")


def test_picture_groups_unmanaged_addresses_by_network() -> None:
    m = tiny()
    nodes = dict(m.nodes)
    edges = list(m.edges)
    for i in (5, 6, 7):
        name = f"unmanaged:10.250.0.{i}"
        nodes[name] = Node(name, "unmanaged")
        edges.append(Edge(name, "web", "tcp/443", i, i, 10, 1, T, T, 1))
    nodes["unmanaged:10.3.0.20"] = Node("unmanaged:10.3.0.20", "unmanaged")
    edges.append(Edge("web", "unmanaged:10.3.0.20", "tcp/2049", 1, 1, 1, 1, T, T, 1))
    dot = render(MapResult("workload", nodes, edges, []), "dot").decode()
    assert "unmanaged:10.250.0.0/24\\n(3 addresses)" in dot
    assert "10.250.0.5" not in dot and "unmanaged:10.3.0.20" in dot  # a group of one keeps it
    assert "tcp/443\\n18 conv" in dot  # the three addresses' edges to web, merged
    # the data formats keep every address
    assert (
        "unmanaged:10.250.0.5" in render(MapResult("workload", nodes, edges, []), "json").decode()
    )
