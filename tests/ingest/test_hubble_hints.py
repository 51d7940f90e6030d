"""Inventory hints from Hubble: pods seen become Workload YAML that inventory load takes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from cellwall.ingest.hubble_hints import hints_yaml, pod_sightings
from cellwall.inventory import load_inventory_text
from cellwall.model.inventory import AddressLease
from tests.ingest.test_hubble import endpoint, flow, jsonpb


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pods_become_loadable_workloads_limited_to_when_they_were_seen(tmp_path: Path) -> None:
    web = endpoint(
        "shop",
        "web-1",
        "k8s:app=web",
        "k8s:tier=front",
        "k8s:io.kubernetes.pod.namespace=shop",
        "k8s:io.cilium.k8s.policy.serviceaccount=default",
        "k8s:bad key=x",
        "container:ignored=1",
    )
    world = endpoint(None, None, "reserved:world")
    lines = [
        jsonpb(flow(time="2024-05-01T10:00:00Z", source=web)),
        jsonpb(flow(time="2024-05-01T10:05:00.5Z", source=web)),
        jsonpb(flow(time="2024-05-01T10:07:00Z", src="10.0.0.9", dst="203.0.113.7",
                    source=endpoint("shop", "web-2", "k8s:app=web"), destination=world)),
        "garbage",
    ]  # fmt: skip
    a = write(tmp_path / "a.json", lines[:2])
    b = write(tmp_path / "b.json", lines[2:])
    text = hints_yaml([a, b])
    result = load_inventory_text(text, "hints.yaml")
    assert result.diagnostics == []
    by_name = {w.name: w for w in result.workloads}
    assert sorted(by_name) == ["shop/api-1", "shop/web-1", "shop/web-2"]
    web1 = by_name["shop/web-1"]
    assert dict(web1.labels) == {"app": "web", "namespace": "shop", "tier": "front"}
    assert web1.addresses == (
        AddressLease(
            "10.0.0.1",
            datetime(2024, 5, 1, 10, 0, tzinfo=UTC),
            datetime(2024, 5, 1, 10, 5, 0, 500001, tzinfo=UTC),
        ),
    )
    assert [a.ip for a in by_name["shop/web-2"].addresses] == ["10.0.0.9"]
    assert text == hints_yaml([a, b])  # deterministic


def test_an_address_that_moves_between_pods_gives_each_its_own_time(tmp_path: Path) -> None:
    old = endpoint("shop", "db-0", "k8s:app=db")
    new = endpoint("shop", "db-1", "k8s:app=db")
    path = write(
        tmp_path / "h.json",
        [
            json.dumps(flow(time="2024-05-01T10:00:00Z", src="10.0.0.7", source=old)),
            json.dumps(flow(time="2024-05-01T11:00:00Z", src="10.0.0.7", source=new)),
        ],
    )
    seen = pod_sightings([path]).to_pylist()
    pods = [
        (s["pod"], s["ip"], s["first"].hour, s["last"].hour) for s in seen if s["ip"] == "10.0.0.7"
    ]
    assert pods == [("db-0", "10.0.0.7", 10, 10), ("db-1", "10.0.0.7", 11, 11)]  # fmt: skip
    result = load_inventory_text(hints_yaml([path]), "hints.yaml")
    assert not result.errors and len(result.workloads) == 3


def test_no_pods_no_documents(tmp_path: Path) -> None:
    path = write(tmp_path / "h.json", ["junk"])
    assert hints_yaml([path]) == ""
    assert pod_sightings([path]).num_rows == 0


def test_hints_command_output_loads_into_the_inventory(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cellwall.cli import app

    runner = CliRunner()
    src = write(tmp_path / "h.json", [jsonpb(flow(time="2024-05-01T10:00:00Z"))])
    hints = tmp_path / "hints.yaml"
    res = runner.invoke(app, ["inventory", "hints", str(src), "--out", str(hints)])
    assert res.exit_code == 0, res.output
    home = ["--home", str(tmp_path / "home")]
    res = runner.invoke(app, ["inventory", "load", str(hints), *home, "--json"])
    assert res.exit_code == 0, res.output
    names = {w.name for w in load_inventory_text(hints.read_text(), "h").workloads}
    assert names and res.stdout and json.loads(res.stdout)["workloads_total"] == len(names)
