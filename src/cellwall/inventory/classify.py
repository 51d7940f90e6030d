"""Classify addresses that no workload owns: a named IP list, ``unmanaged-private`` or ``internet``.

The work is done once per *distinct* address, with NumPy: each address becomes a family and a
128-bit number (two ``uint64`` halves), and each CIDR is one masked comparison over all of
them. IPv4 text is converted column-wise; only IPv6 text goes through :mod:`ipaddress`.

Rules, in order:

1. The named IP lists (``{name: (cidrs, except)}``). An address is in a list when one of its
   CIDRs holds it and none of its ``except`` CIDRs does. When several lists hold it, the list
   whose matching CIDR is the most specific (longest prefix) wins; on a tie, the first list
   given wins.
2. ``unmanaged-private``: any address that is not routed on the internet (:data:`PRIVATE`):
   RFC 1918, shared (100.64/10), loopback, link-local, "this network", multicast, reserved,
   and IPv6 ULA, link-local, loopback, unspecified and multicast.
3. ``internet``: everything else (documentation ranges such as 203.0.113.0/24 included).

An IPv4-mapped IPv6 address (``::ffff:10.1.2.3``) is classified as its IPv4 address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from cellwall.model.net import IPV4_CANONICAL

__all__ = [
    "INTERNET",
    "PRIVATE",
    "UNMANAGED_PRIVATE",
    "IPClassifier",
    "IPListSpec",
    "Net",
    "to_numbers",
]

INTERNET = "internet"
UNMANAGED_PRIVATE = "unmanaged-private"
PRIVATE = (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8",
    "169.254.0.0/16", "0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4",
    "fc00::/7", "fe80::/10", "::1/128", "::/128", "ff00::/8",
)  # fmt: skip
IPListSpec = tuple[Sequence[str], Sequence[str]]
U64 = npt.NDArray[np.uint64]
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class _Net:
    family: int
    prefix: int
    hi: int
    lo: int
    hi_mask: int
    lo_mask: int

    @classmethod
    def parse(cls, text: str) -> _Net:
        net = ipaddress.ip_network(text.strip(), strict=False)
        shift = 96 if net.version == 4 else 0
        mask = int(net.netmask) << shift
        value = int(net.network_address) << shift
        return cls(
            net.version, net.prefixlen, value >> 64, value & _MASK64, mask >> 64, mask & _MASK64
        )

    def contains(self, fam: npt.NDArray[np.int8], hi: U64, lo: U64) -> npt.NDArray[np.bool_]:
        out: npt.NDArray[np.bool_] = fam == self.family
        if self.hi_mask:
            out &= (hi & np.uint64(self.hi_mask)) == np.uint64(self.hi)
        if self.lo_mask:
            out &= (lo & np.uint64(self.lo_mask)) == np.uint64(self.lo)
        return out


Net = _Net  # public name: one CIDR as masks over the numbers that :func:`to_numbers` gives


def _nets(cidrs: Iterable[str], what: str) -> list[_Net]:
    out = []
    for c in cidrs:
        try:
            out.append(_Net.parse(c))
        except ValueError:
            raise ValueError(f"{what}: {c!r} is not a CIDR") from None
    return out


def to_numbers(
    values: pa.Array, *, mapped_as_ipv4: bool = True
) -> tuple[npt.NDArray[np.int8], U64, U64]:
    """Family (4, 6, or 0 when not an address) and the 128-bit value of each string.

    IPv4 is kept in the top 32 bits of ``hi`` (as :class:`_Net` does), so one comparison
    works for both families.
    """
    n = len(values)
    fam = np.zeros(n, np.int8)
    hi = np.zeros(n, np.uint64)
    lo = np.zeros(n, np.uint64)
    v4 = np.asarray(pc.match_substring_regex(values, IPV4_CANONICAL).fill_null(False))
    if v4.any():
        parts = pc.list_flatten(pc.split_pattern(values.filter(pa.array(v4)), "."))
        octets = np.asarray(parts.cast(pa.uint64())).reshape(-1, 4)
        shifts = np.array([56, 48, 40, 32], np.uint64)
        hi[v4] = np.bitwise_or.reduce(octets << shifts, axis=1)
        fam[v4] = 4
    for i in np.flatnonzero(~v4):
        text = values[int(i)].as_py()
        try:
            addr = ipaddress.ip_address(text) if text is not None else None
        except ValueError:
            addr = None
        if (
            isinstance(addr, ipaddress.IPv6Address)
            and addr.ipv4_mapped is not None
            and mapped_as_ipv4
        ):
            addr = addr.ipv4_mapped
        if addr is not None:
            value = int(addr) << (96 if addr.version == 4 else 0)
            fam[i], hi[i], lo[i] = addr.version, value >> 64, value & _MASK64
    return fam, hi, lo


class IPClassifier:
    """Classifies addresses by named IP lists, then as private or internet."""

    def __init__(self, iplists: Mapping[str, IPListSpec] | None = None) -> None:
        self.names = list(iplists or {})
        self._lists = [
            (_nets(cidrs, name), _nets(excepts, f"{name} except"))
            for name, (cidrs, excepts) in (iplists or {}).items()
        ]
        self._private = _nets(PRIVATE, "private")

    def classify(self, ips: pa.Array | pa.ChunkedArray) -> pa.Array:
        """The class of each address; null where the value is null or not an address."""
        if isinstance(ips, pa.ChunkedArray):
            ips = ips.combine_chunks()
        enc = pc.dictionary_encode(ips.cast(pa.string()))
        labels = self._classify_distinct(enc.dictionary)
        return pc.take(labels, enc.indices)

    def _classify_distinct(self, values: pa.Array) -> pa.Array:
        fam, hi, lo = to_numbers(values)
        choices = [*self.names, UNMANAGED_PRIVATE, INTERNET]
        best = np.full(len(values), -1, np.int32)
        best_spec = np.full(len(values), -1, np.int16)
        for i, (nets, excepts) in enumerate(self._lists):
            spec = np.full(len(values), -1, np.int16)
            for net in nets:
                spec = np.where(net.contains(fam, hi, lo), np.maximum(spec, net.prefix), spec)
            for net in excepts:
                spec[net.contains(fam, hi, lo)] = -1
            better = spec > best_spec
            best[better], best_spec[better] = i, spec[better]
        private = np.zeros(len(values), bool)
        for net in self._private:
            private |= net.contains(fam, hi, lo)
        rest = best < 0
        best[rest & private] = len(self.names)
        best[rest & ~private] = len(self.names) + 1
        best[fam == 0] = -1
        idx = pa.array(best, mask=best < 0)
        return pc.take(pa.array(choices, pa.string()), idx)
