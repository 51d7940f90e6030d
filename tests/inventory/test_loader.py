"""Loading files: format detection, routing of documents, file-level problems."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellwall.errors import InventoryError
from cellwall.inventory.loader import (
    detect_format,
    load_inventory_file,
    load_inventory_files,
    load_inventory_text,
)

WORKLOAD = (
    "apiVersion: cellwall/v1\nkind: Workload\nmetadata: {name: %s}\nspec: {addresses: [%s]}\n"
)


@pytest.mark.parametrize(
    ("path", "text", "fmt"),
    [
        ("a.csv", "anything", "csv"),
        ("a.yml", "{}", "yaml"),
        ("a.JSON", "x", "json"),
        ("stdin", '  {"Reservations": []}', "json"),
        ("stdin", "name, addresses ,owner,app\n", "csv"),
        ("stdin", "\ufeffname,addresses,owner\n", "csv"),
        ("stdin", "apiVersion: v1\n", "yaml"),
    ],
)
def test_detect_format(path: str, text: str, fmt: str) -> None:
    assert detect_format(path, text) == fmt


def test_content_decides_the_kind_of_each_document(tmp_path: Path) -> None:
    p = tmp_path / "mixed.txt"
    p.write_text(
        WORKLOAD % ("vm-1", "10.0.0.1")
        + "---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus: {podIP: 10.0.0.2}\n"
        + "---\napiVersion: cellwall/v1\nkind: Policy\nmetadata: {name: x}\n"
        + "---\nfoo: bar\n"
        + "---\napiVersion: cellwall/v2\nkind: Workload\n"
        + "---\napiVersion: cellwall/v1\nkind: Workloads\n"
        + "---\n- a list\n"
        + "---\nkind: Workload\nmetadata: {name: no-api}\n"
    )
    r = load_inventory_file(p)
    assert [x.name for x in r.workloads] == ["vm-1", "no-api", "default/p"]
    assert [(d.code, d.line, d.severity) for d in r.diagnostics] == [
        ("not-inventory", 11, "warning"),
        ("unknown-document", 15, "error"),
        ("bad-api-version", 17, "error"),
        ("unknown-kind", 21, "error"),
        ("unknown-document", 23, "error"),
        ("bad-api-version", 25, "warning"),
    ]
    with pytest.raises(InventoryError) as err:
        r.raise_for_errors()
    assert len(err.value.diagnostics) == 4
    assert "4 errors" in str(err.value)
    assert f"{p}:15:1: error unknown-document" in str(err.value)
    assert r.errors[2].col == 7  # the kind's value


def test_duplicates_across_files_keep_the_first(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(WORKLOAD % ("x", "10.0.0.1"))
    (tmp_path / "b.csv").write_text("name,addresses,owner\nx,10.0.0.2,\ny,10.0.0.1,\n")
    r = load_inventory_files([tmp_path / "a.yaml", tmp_path / "b.csv"])
    assert [x.name for x in r.workloads] == ["x", "y"]
    assert r.workloads[0].ips() == ("10.0.0.1",)
    dup = [d for d in r.diagnostics if d.code == "duplicate-workload"]
    assert len(dup) == 1 and dup[0].file == str(tmp_path / "b.csv") and dup[0].line == 2
    assert "a.yaml:1:1" in dup[0].message
    overlap = [d for d in r.diagnostics if d.code == "overlapping-lease"]
    assert len(overlap) == 1 and "10.0.0.1" in overlap[0].message


def test_unreadable_and_undecodable_files(tmp_path: Path) -> None:
    (tmp_path / "latin1.csv").write_bytes(b"name,addresses,owner\ncaf\xe9,10.0.0.1,\n")
    (tmp_path / "good.csv").write_text("name,addresses,owner\ng,10.0.0.9,\n")
    r = load_inventory_files(
        [tmp_path / "missing.yaml", tmp_path / "latin1.csv", tmp_path / "good.csv"]
    )
    assert [x.name for x in r.workloads] == ["g"]
    assert [(d.code, d.line, d.col) for d in r.errors] == [
        ("unreadable", None, None),
        ("encoding", 2, 4),
    ]


def test_empty_inputs_warn() -> None:
    r = load_inventory_text("# nothing here\n", "e.yaml")
    assert [(d.code, d.severity) for d in r.diagnostics] == [("empty", "warning")]
    r = load_inventory_text("", "e.csv")
    assert [(d.code, d.line) for d in r.diagnostics] == [("csv-header", 1)]


def test_unknown_format_is_a_usage_problem() -> None:
    with pytest.raises(InventoryError, match="unknown inventory format"):
        load_inventory_text("x", fmt="xml")


def test_yaml_aliases_and_cycles_do_not_crash() -> None:
    text = "apiVersion: cellwall/v1\nkind: Workload\nmetadata: &m {name: a, owner: &m2 [*m2]}\n"
    r = load_inventory_text(text, "c.yaml")
    assert r.workloads == [] and r.errors[0].code == "yaml-syntax" and r.errors[0].line == 3
    dup = "apiVersion: cellwall/v1\nkind: Workload\nmetadata: {name: a}\nmetadata: {name: b}\n"
    r = load_inventory_text(dup, "d.yaml")
    assert [(d.code, d.line) for d in r.errors] == [("duplicate-key", 4)]
