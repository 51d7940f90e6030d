"""Address terms: what ``iplist``, ``cidrs`` and ``fqdn`` selectors ask of an unmanaged address.

Every distinct address term of a policy gets an index. An unmanaged address has a
*signature*: the set of terms it satisfies. CIDR membership is computed once per distinct
address with NumPy masks; DNS names come from the DNS evidence with one DuckDB range join per
batch (the names valid at each conversation's start).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from cellwall.inventory.classify import Net, to_numbers
from cellwall.model.policy import IPList, Selector

__all__ = ["WIDTH", "AddressTerms", "fqdn_matches", "net_span"]

Mask = npt.NDArray[np.bool_]
_WORD = 62
WIDTH = {4: 32, 6: 128}  # address bits per family


def net_span(n: Net) -> tuple[int, int]:
    """(first, last) address of a parsed CIDR, numbered in its own family's width."""
    value = (n.hi << 64) | n.lo
    if n.family == 4:
        value >>= 96
    return value, value + (1 << (WIDTH[n.family] - n.prefix)) - 1


def fqdn_matches(pattern: str, name: str) -> bool:
    """``*.example.com`` matches every name below example.com; other patterns match exactly."""
    if pattern.startswith("*."):
        return name.endswith(pattern[1:])
    return name == pattern


@dataclass(frozen=True)
class _Term:
    include: tuple[Net, ...]
    exclude: tuple[Net, ...]
    patterns: tuple[int, ...]  # indexes into AddressTerms.patterns


def _nets(cidrs: Iterable[str]) -> tuple[Net, ...]:
    return tuple(Net.parse(c) for c in cidrs)


class AddressTerms:
    """The address terms of a set of selectors, and the signatures of unmanaged addresses."""

    def __init__(self, iplists: Sequence[IPList]) -> None:
        self._iplists = {i.name: i for i in iplists}
        self._index: dict[tuple[str, object], int] = {}
        self._terms: list[_Term] = []
        self.patterns: list[str] = []

    @property
    def count(self) -> int:
        return len(self._terms)

    def _pattern(self, name: str) -> int:
        if name not in self.patterns:
            self.patterns.append(name)
        return self.patterns.index(name)

    def _add(self, key: tuple[str, object], term: _Term) -> int:
        if key not in self._index:
            self._index[key] = len(self._terms)
            self._terms.append(term)
        return self._index[key]

    def require(self, sel: Selector) -> tuple[int, ...]:
        """The term indexes that an unmanaged address must satisfy to match ``sel``."""
        need: list[int] = []
        if sel.iplist is not None:
            il = self._iplists.get(sel.iplist)
            if il is None:  # the loader reports it; an unknown list matches nothing
                term = _Term((), (), ())
            else:
                pats = tuple(self._pattern(f) for f in il.fqdns)
                term = _Term(_nets(il.cidrs), _nets(il.except_), pats)
            need.append(self._add(("iplist", sel.iplist), term))
        if sel.cidrs:
            term = _Term(_nets(sel.cidrs), _nets(sel.except_), ())
            need.append(self._add(("cidrs", (sel.cidrs, sel.except_)), term))
        if sel.fqdn is not None:
            need.append(self._add(("fqdn", sel.fqdn), _Term((), (), (self._pattern(sel.fqdn),))))
        return tuple(sorted(need))

    def cidr_members(self, ips: pa.Array) -> npt.NDArray[np.bool_]:
        """A (len(ips), count) matrix: does each distinct address satisfy each term's CIDRs?"""
        fam, hi, lo = to_numbers(ips, mapped_as_ipv4=False)  # ::ffff:a.b.c.d is IPv6 here
        out = np.zeros((len(ips), self.count), bool)
        for t, term in enumerate(self._terms):
            inside = np.zeros(len(ips), bool)
            for net in term.include:
                inside |= net.contains(fam, hi, lo)
            for net in term.exclude:
                inside &= ~net.contains(fam, hi, lo)
            out[:, t] = inside
        return out

    def cidr_ranges(self) -> list[tuple[tuple[Net, ...], tuple[Net, ...]]]:
        """Per term, in index order: the CIDRs that hold its addresses and those cut out
        (a term of DNS names alone has neither)."""
        return [(t.include, t.exclude) for t in self._terms]

    def regions(self, family: int, extra_cuts: Iterable[int] = ()) -> list[tuple[int, int, Mask]]:
        """The address space of ``family`` cut at every CIDR boundary of every term (and at
        ``extra_cuts``): (first, last, signature) per piece, where the signature is the
        terms whose CIDRs hold the whole piece (DNS names left out)."""
        spans = [
            (
                [net_span(n) for n in include if n.family == family],
                [net_span(n) for n in exclude if n.family == family],
            )
            for include, exclude in self.cidr_ranges()
        ]
        cuts = {0, 1 << WIDTH[family], *extra_cuts}
        for inc, exc in spans:
            for first, last in (*inc, *exc):
                cuts.update((first, last + 1))
        out = []
        for a, nxt in itertools.pairwise(sorted(cuts)):
            sig = np.asarray(
                [
                    any(lo <= a <= hi for lo, hi in inc)
                    and not any(lo <= a <= hi for lo, hi in exc)
                    for inc, exc in spans
                ],
                bool,
            ).reshape(len(spans))
            out.append((a, nxt - 1, sig))
        return out

    def pattern_terms(self) -> list[tuple[int, int]]:
        """(pattern, term) pairs: a name matching the pattern satisfies the term."""
        return [(p, t) for t, term in enumerate(self._terms) for p in term.patterns]

    def dns_words(
        self, ips: pa.Array, ts_us: pa.Array, dns: pa.Table | None
    ) -> npt.NDArray[np.int64]:
        """Per row, the patterns whose names the address had at that time, as bit words
        (a (len(ips), words) int64 matrix; 62 patterns per word)."""
        words = max(1, -(-len(self.patterns) // _WORD))
        out = np.zeros((len(ips), words), np.int64)
        if not self.patterns or dns is None or dns.num_rows == 0 or len(ips) == 0:
            return out
        names = dns["name"].unique().to_pylist()
        pairs = [
            (n, p) for n in names for p, pat in enumerate(self.patterns) if fqdn_matches(pat, n)
        ]
        if not pairs:
            return out
        con = duckdb.connect()
        try:
            con.register(
                "pn", pa.table({"name": [n for n, _ in pairs], "p": [p for _, p in pairs]})
            )
            con.register("ev", dns.select(["ip", "name", "ts", "valid_until"]))
            con.register("q", pa.table({"i": np.arange(len(ips)), "ip": ips, "ts": ts_us}))
            sel = ", ".join(
                f"bit_or(case when pn.p // {_WORD} = {w} then (1::bigint << (pn.p % {_WORD})) "
                f"else 0::bigint end) as w{w}"
                for w in range(words)
            )
            found = con.sql(
                f"select q.i, {sel} from q join ev on q.ip = ev.ip "
                "and epoch_us(ev.ts) <= q.ts and q.ts < epoch_us(ev.valid_until) "
                "join pn on pn.name = ev.name group by q.i"
            ).to_arrow_table()
        finally:
            con.close()
        rows = found["i"].to_numpy()
        for w in range(words):
            out[rows, w] = found[f"w{w}"].to_numpy()
        return out

    def signature(self, cidr_row: Mask, words: npt.NDArray[np.int64]) -> Mask:
        """The terms satisfied by an address with these CIDR memberships and DNS pattern bits."""
        out = cidr_row.copy()
        for p, t in self.pattern_terms():
            if (int(words[p // _WORD]) >> (p % _WORD)) & 1:
                out[t] = True
        return out
