"""Canonical IP strings, column-wise."""

from __future__ import annotations

import ipaddress

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from cellwall.model.net import canonical_ip, canonical_ips


def test_canonical_forms() -> None:
    col = pa.array(
        [
            "10.0.0.1",
            "2001:DB8:0:0::1",
            "010.0.0.1",
            "10.0.0.256",
            None,
            "::ffff:1.2.3.4",
            " 10.0.0.2",
            "fe80::1%eth0",
        ]
    )
    got = canonical_ips(col).to_pylist()
    assert got == [
        "10.0.0.1",
        "2001:db8::1",
        None,
        None,
        None,
        "::ffff:102:304",
        "10.0.0.2",
        "fe80::1%eth0",
    ]


@given(st.lists(st.one_of(st.ip_addresses().map(str), st.text(max_size=12)), max_size=40))
def test_agrees_with_ipaddress(values: list[str]) -> None:
    got = canonical_ips(pa.array(values, pa.string())).to_pylist()
    assert got == [canonical_ip(v) for v in values]
    for v, g in zip(values, got, strict=True):
        if g is not None:
            assert ipaddress.ip_address(g) == ipaddress.ip_address(v.strip())
