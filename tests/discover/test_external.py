"""External ends: IP lists first, then DNS names, then unmanaged or CIDR aggregates."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellwall.discover.external import classify_external, load_iplists
from cellwall.errors import UsageError


def test_order_of_names(tmp_path: Path) -> None:
    f = tmp_path / "lists.yaml"
    f.write_text(
        "apiVersion: cellwall/v1\nkind: IPList\nmetadata: {name: saas}\n"
        "spec: {cidrs: [203.0.113.0/28]}\n---\nkind: Policy\nmetadata: {name: x}\n"
    )
    lists = load_iplists([f])
    assert lists == {"saas": (["203.0.113.0/28"], [])}
    ips = ["203.0.113.5", "198.51.100.7", "198.51.100.9", "10.9.9.9", "2001:db8:1:2::1"]
    got = classify_external(ips, lists, {"198.51.100.7": "api.example.com", "203.0.113.5": "x"})
    assert got["node"].to_pylist() == [
        "iplist:saas",
        "dns:api.example.com",
        "cidr:198.51.100.0/24",
        "unmanaged:10.9.9.9",
        "cidr:2001:db8:1::/48",
    ]


def test_bad_iplist_file(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("kind: IPList\nspec: {cidrs: [1.2.3.0/24]}\n")
    with pytest.raises(UsageError):
        load_iplists([f])
    with pytest.raises(UsageError):
        load_iplists([tmp_path / "missing.yaml"])
