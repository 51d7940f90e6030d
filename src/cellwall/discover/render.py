"""The map as JSON, GraphML, a CSV matrix, DOT, and SVG/PNG through Graphviz ``dot``.

Output is deterministic: nodes, edges and cells are sorted.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import math
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import defaultdict

from cellwall.discover.edges import MapResult, Node
from cellwall.errors import UsageError

__all__ = ["FORMATS", "render"]

FORMATS = ("json", "graphml", "csv", "dot", "svg", "png")
_ENV_COLOURS = {"prod": "#fde2e2", "staging": "#fff4cc", "dev": "#e3f1e3"}
SHARED_APPS = frozenset({"infra"})  # drawn faint: every host talks to them
_KIND_SHAPES = {"iplist": "cds", "dns": "cds", "cidr": "cds", "unmanaged": "octagon"}
UNMANAGED_V4_GROUP, UNMANAGED_V6_GROUP = 24, 64  # the picture draws one node per network


def to_json(m: MapResult) -> str:
    return json.dumps(m.to_dict(), indent=2, sort_keys=False) + "\n"


def to_graphml(m: MapResult) -> str:
    ns = "http://graphml.graphdrawing.org/xmlns"
    root = ET.Element("graphml", xmlns=ns)
    keys = [("kind", "node", "string"), ("labels", "node", "string")]
    keys += [("service", "edge", "string"), ("conversations", "edge", "long")]
    keys += [("records", "edge", "long"), ("bytes", "edge", "long"), ("packets", "edge", "long")]
    keys += [("first_seen", "edge", "string"), ("last_seen", "edge", "string")]
    keys += [("days", "edge", "int")]
    for name, where, kind in keys:
        ET.SubElement(
            root, "key", id=name, attrib={"for": where, "attr.name": name, "attr.type": kind}
        )
    g = ET.SubElement(root, "graph", id="cellwall-map", edgedefault="directed")
    for n in sorted(m.nodes.values(), key=lambda n: n.name):
        el = ET.SubElement(g, "node", id=n.name)
        ET.SubElement(el, "data", key="kind").text = n.kind
        ET.SubElement(el, "data", key="labels").text = ",".join(
            f"{k}={v}" for k, v in sorted(n.labels.items())
        )
    for i, e in enumerate(m.edges):
        el = ET.SubElement(g, "edge", id=f"e{i}", source=e.client, target=e.server)
        for k, v in e.to_dict().items():
            if k not in ("client", "server"):
                ET.SubElement(el, "data", key=k).text = str(v)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def to_csv(m: MapResult) -> str:
    """Sources as rows, destinations as columns; a cell holds the services, ``;``-joined."""
    cells: dict[tuple[str, str], list[str]] = defaultdict(list)
    for e in m.edges:
        cells[(e.client, e.server)].append(e.service)
    rows = sorted({c for c, _ in cells})
    cols = sorted({s for _, s in cells})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["client \\ server", *cols])
    for r in rows:
        w.writerow([r, *(";".join(sorted(cells.get((r, c), []))) for c in cols)])
    return buf.getvalue()


def _q(text: str) -> str:
    return '"' + text.replace('"', '\\"') + '"'  # a "\\n" in text is dot's line break


def _short(n: Node) -> str:
    if n.kind == "workload":
        return n.name
    if n.kind in ("class", "workload-class"):
        rest = [f"{k}={v}" for k, v in sorted(n.labels.items()) if k not in ("app", "env")]
        label = n.labels.get("role") or ",".join(rest) or n.labels.get("app") or n.name
        return f"{label}\\n({n.workloads})" if n.workloads > 1 else label
    return n.name


def _bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000:
            return f"{n:.0f}{unit}"
        n = n // 1000
    return f"{n}PB"


def _unmanaged_group(name: str) -> str:
    """``unmanaged:IP`` → ``unmanaged:NET/24`` (IPv6: /64), the picture's node for it."""
    ip = ipaddress.ip_address(name.split(":", 1)[1])
    prefix = UNMANAGED_V4_GROUP if ip.version == 4 else UNMANAGED_V6_GROUP
    return f"unmanaged:{ipaddress.ip_network(f'{ip}/{prefix}', strict=False)}"


def _grouped(m: MapResult) -> tuple[dict[str, Node], dict[str, str]]:
    """The picture's nodes, with unmanaged addresses grouped by network, and where each map
    node went. A group of one keeps its address."""
    members: dict[str, list[str]] = defaultdict(list)
    for name, n in m.nodes.items():
        if n.kind == "unmanaged":
            members[_unmanaged_group(name)].append(name)
    where = {name: name for name in m.nodes}
    nodes = {name: n for name, n in m.nodes.items() if n.kind != "unmanaged"}
    for group, names in members.items():
        if len(names) == 1:
            nodes[names[0]] = m.nodes[names[0]]
            continue
        nodes[group] = Node(group, "unmanaged", {}, len(names))
        where.update(dict.fromkeys(names, group))
    return nodes, where


def to_dot(m: MapResult) -> str:
    """Clusters: env, then app inside it; external ends outside, unmanaged addresses grouped
    by network (/24, IPv6 /64). Edge width grows with the log of the conversation count;
    each edge is labelled with its services and count."""
    nodes, where = _grouped(m)
    clusters: dict[str, dict[str, list[Node]]] = defaultdict(lambda: defaultdict(list))
    outside: list[Node] = []
    for n in sorted(nodes.values(), key=lambda n: n.name):
        if n.kind in ("workload", "class") and ("env" in n.labels or "app" in n.labels):
            clusters[n.labels.get("env", "-")][n.labels.get("app", "-")].append(n)
        else:
            outside.append(n)
    ids = {name: f"n{i}" for i, name in enumerate(sorted(nodes))}
    out = [
        "digraph cellwall {",
        '  graph [rankdir=LR, newrank=true, fontname="Helvetica",',
        "         nodesep=0.15, ranksep=1.2, splines=true, overlap=false];",
        '  node [shape=box, style="rounded,filled", fillcolor=white,',
        '        fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=8, color="#55555599", arrowsize=0.6];',
    ]
    for env in sorted(clusters):
        colour = _ENV_COLOURS.get(env, "#eeeeee")
        out.append(f"  subgraph {_q('cluster_env_' + env)} {{")
        out.append(
            f'    label={_q("env=" + env)}; style=filled; fillcolor="{colour}"; fontsize=14;'
        )
        for app in sorted(clusters[env]):
            out.append(f"    subgraph {_q(f'cluster_{env}_{app}')} {{")
            out.append(f'      label={_q("app=" + app)}; style="rounded,filled"; fillcolor=white;')
            for n in clusters[env][app]:
                out.append(f"      {ids[n.name]} [label={_q(_short(n))}, tooltip={_q(n.name)}];")
            out.append("    }")
        out.append("  }")
    for n in outside:
        shape = _KIND_SHAPES.get(n.kind, "box")
        label = f"{n.name}\\n({n.workloads} addresses)" if n.workloads > 1 else n.name
        out.append(f'  {ids[n.name]} [label={_q(label)}, shape={shape}, fillcolor="#dde8f7"];')
    merged: dict[tuple[str, str], list[tuple[str, int, int]]] = defaultdict(list)
    for e in m.edges:
        merged[(where[e.client], where[e.server])].append((e.service, e.conversations, e.bytes))
    shared = {n.name for n in nodes.values() if n.labels.get("app") in SHARED_APPS}
    for (c, s), items in sorted(merged.items()):
        conv = sum(i[1] for i in items)
        services = sorted({i[0] for i in items})
        shown = ", ".join(services[:3]) + (f" +{len(services) - 3}" if len(services) > 3 else "")
        width = 0.5 + math.log10(1 + conv)
        label = f"{shown}\\n{conv} conv, {_bytes(sum(i[2] for i in items))}"
        if c in shared or s in shared:  # shared infrastructure: drawn faint, unlabelled
            style = f'color="#99999944", penwidth={width / 2:.2f}, tooltip={_q(label)}'
        else:
            style = f"penwidth={width:.2f}, label={_q(label)}, weight={conv}"
        out.append(f"  {ids[c]} -> {ids[s]} [{style}];")
    out.append("}")
    return "\n".join(out) + "\n"


def render(m: MapResult, fmt: str) -> bytes:
    """The map in one of :data:`FORMATS`, as bytes."""
    if fmt == "json":
        return to_json(m).encode()
    if fmt == "graphml":
        return to_graphml(m).encode()
    if fmt == "csv":
        return to_csv(m).encode()
    if fmt == "dot":
        return to_dot(m).encode()
    if fmt in ("svg", "png"):
        dot = shutil.which("dot")
        if dot is None:
            raise UsageError("Graphviz `dot` is not installed", hint="apt-get install graphviz")
        args = [dot, f"-T{fmt}"] + (["-Gdpi=110"] if fmt == "png" else [])
        done = subprocess.run(args, input=to_dot(m).encode(), capture_output=True, check=False)
        if done.returncode != 0:
            raise UsageError("dot failed: " + done.stderr.decode(errors="replace").strip()[:300])
        return done.stdout
    raise UsageError(f"unknown map format {fmt!r}", hint="use " + ", ".join(FORMATS))
