"""The truth documents, checked from the files with a small evaluator of our own."""

from __future__ import annotations

import csv
import io
import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml

from cellwall.demo import DemoResult

from .flowread import truth

KEYS = {"workload": None, "role": ("app", "role", "env"), "app": ("app", "env")}
Cls = tuple[tuple[str, str], ...]


def _class(end: dict[str, Any], granularity: str) -> Cls:
    if "iplist" in end:
        return (("iplist", end["iplist"]),)
    keys = KEYS[granularity]
    if keys is None:
        return (("workload", end["workload"]),)
    return tuple((k, end["labels"][k]) for k in keys)


def _matches(sel: dict[str, Any], cls: Cls) -> bool:
    facts = dict(cls)
    return all(facts.get(k) in (v if isinstance(v, list) else [v]) for k, v in sel.items())


def _allowed(rules: list[dict[str, Any]], universe: set[Cls]) -> set[tuple[Cls, Cls, str]]:
    out = set()
    for r in rules:
        sources = [c for c in universe if _matches(r["from"], c)]
        targets = [c for c in universe if _matches(r["to"], c)]
        assert sources and targets, r["id"]
        out |= {(s, d, svc) for s in sources for d in targets for svc in r["services"]}
    return out


@pytest.mark.parametrize("granularity", ["workload", "role", "app"])
def test_minimal_rules_allow_every_edge_and_nothing_else(
    vpc_run: tuple[Path, DemoResult], granularity: str
) -> None:
    out, _ = vpc_run
    t = truth(out)
    expected = {
        (_class(e["client"], granularity), _class(e["server"], granularity), e["service"])
        for e in t["edges"]
    }
    universe = {
        _class({"workload": w["name"], "labels": w["labels"]}, granularity) for w in t["workloads"]
    }
    universe |= {(("iplist", x["name"]),) for x in t["external"]}
    docs = list(yaml.safe_load_all((out / "truth" / f"policy-{granularity}.yaml").read_text()))
    policies = [d for d in docs if d["kind"] == "Policy"]
    assert len(policies) == 1 and "scope" not in policies[0]["spec"]
    rules = policies[0]["spec"]["rules"]
    assert len({r["id"] for r in rules}) == len(rules)
    assert _allowed(rules, universe) == expected
    # Every IP list a rule names is defined in the file.
    lists = {d["metadata"]["name"] for d in docs if d["kind"] == "IPList"}
    named = {s["iplist"] for r in rules for s in (r["from"], r["to"]) if "iplist" in s}
    assert named == lists
    # The allow set in truth.json is the same set.
    listed = {
        (_sel_class(x["from"]), _sel_class(x["to"]), x["service"])
        for x in t["granularities"][granularity]["edges"]
    }
    assert listed == {(tuple(sorted(s)), tuple(sorted(d)), v) for s, d, v in expected}
    pairs = {(s, d) for s, d, _ in expected}
    assert len(rules) <= len(pairs)
    if granularity != "workload":
        assert len(rules) < len(pairs)  # classes were merged into value lists


def _sel_class(sel: dict[str, str]) -> Cls:
    return tuple(sorted(sel.items()))


def test_edges_carry_the_labels_of_both_ends(vpc_run: tuple[Path, DemoResult]) -> None:
    out, result = vpc_run
    t = truth(out)
    assert len(t["edges"]) == result.edges
    labels = {w["name"]: w["labels"] for w in t["workloads"]}
    for e in t["edges"]:
        for end in (e["client"], e["server"]):
            if "workload" in end:
                assert end["labels"] == labels[end["workload"]]
    rows = list(csv.DictReader(io.StringIO((out / "truth" / "edges.csv").read_text())))
    assert len(rows) == len(t["edges"])


def _yaml_inventory(path: Path) -> dict[str, tuple[list[str], str, dict[str, str]]]:
    out = {}
    for doc in yaml.safe_load_all(path.read_text()):
        assert (doc["apiVersion"], doc["kind"]) == ("cellwall/v1", "Workload")
        addresses = []
        for a in doc["spec"]["addresses"]:
            if isinstance(a, str):
                addresses.append(a)
            else:  # YAML reads the unquoted times as datetimes
                addresses.append(
                    f"{a['ip']}@{a['from']:%Y-%m-%dT%H:%M:%SZ}..{a['until']:%Y-%m-%dT%H:%M:%SZ}"
                )
        meta = doc["metadata"]
        out[meta["name"]] = (addresses, meta["owner"], doc["spec"]["labels"])
    return out


def _csv_inventory(path: Path) -> dict[str, tuple[list[str], str, dict[str, str]]]:
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    out = {}
    for r in rows:
        labels = {k: v for k, v in r.items() if k not in ("name", "addresses", "owner") and v}
        out[r["name"]] = (r["addresses"].split(" "), r["owner"], labels)
    return out


def test_yaml_and_csv_inventories_agree(vpc_run: tuple[Path, DemoResult]) -> None:
    out, _ = vpc_run
    t = truth(out)
    claimed = _yaml_inventory(out / "inventory.yaml")
    assert claimed == _csv_inventory(out / "inventory.csv")
    true = _yaml_inventory(out / "truth" / "inventory-true.yaml")
    assert true == _csv_inventory(out / "truth" / "inventory-true.csv")
    assert len(claimed) == len(t["workloads"])
    for w in t["workloads"]:
        assert claimed[w["name"]][2] == w["claimed"]
        assert true[w["name"]][2] == w["labels"]
    # The two inventories differ exactly by the recorded mislabels.
    diff = {
        (n, k, claimed[n][2][k], true[n][2][k])
        for n in claimed
        for k in true[n][2]
        if claimed[n][2][k] != true[n][2][k]
    }
    recorded = {(m["workload"], m["key"], m["claimed"], m["true"]) for m in t["mislabels"]}
    assert diff == recorded and len(recorded) == 3


def test_label_convention_document(vpc_run: tuple[Path, DemoResult]) -> None:
    out, _ = vpc_run
    doc = yaml.safe_load((out / "conventions.yaml").read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("cellwall/v1", "LabelConvention")
    assert doc["spec"]["required"][:3] == ["app", "role", "env"]
    assert doc["spec"]["values"]["env"] == ["prod", "staging", "dev"]
    claimed = _yaml_inventory(out / "inventory.yaml")
    for _, _, labels in claimed.values():
        for key, allowed in doc["spec"]["values"].items():
            assert key not in labels or labels[key] in allowed


def test_ip_reuse_is_listed(vpc_run: tuple[Path, DemoResult]) -> None:
    out, _ = vpc_run
    reuse = truth(out)["ip_reuse"]
    assert reuse
    for item in reuse:
        holders = item["holders"]
        assert len({h["workload"] for h in holders}) > 1
        for a, b in itertools.pairwise(holders):
            assert a["until"] <= b["from"]
