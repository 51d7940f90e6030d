"""Endpoint groups and decision profiles: the caches that make judging a few array lookups.

Endpoints are numbered: label classes first (``0 .. C-1``), then address signatures as they
are first seen. On each side, endpoints that match exactly the same rules (and carry the
same values for the keys that ``same`` rules compare) form one group. For a (client group,
server group) pair, the *profile* holds, per service atom, the deciding rule when narrowed
services are left out (``plain``) and whether some narrowed rule could change it (``need``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from cellwall.policy.ir import PolicyIR

__all__ = ["Groups"]

Mask = npt.NDArray[np.bool_]
I32 = npt.NDArray[np.int32]
_MAX_DENSE = 1 << 26


class _Side:
    """The groups of one side (client or server)."""

    def __init__(self, n_rules: int) -> None:
        self.n_rules = n_rules
        self.index: dict[bytes, int] = {}
        self.match: list[Mask] = []
        self.same: list[npt.NDArray[np.int32]] = []

    def add(self, match: Mask, same: npt.NDArray[np.int32]) -> int:
        key = np.packbits(match).tobytes() + same.tobytes()
        g = self.index.get(key)
        if g is None:
            g = self.index[key] = len(self.match)
            self.match.append(match)
            self.same.append(same)
        return g


class Groups:
    """Endpoint → group on each side, and (group, group) → profile."""

    def __init__(self, ir: PolicyIR) -> None:
        self.ir = ir
        rules = ir.rules
        n = len(rules)
        self.same_keys = sorted({k for r in rules for k in r.same})
        self.same_rules = [r.index for r in rules if r.same]
        self._key_pos = {k: i for i, k in enumerate(self.same_keys)}
        self.src, self.dst = _Side(n), _Side(n)
        c = ir.classes
        codes = np.asarray(
            [[c.code(k, i) for k in self.same_keys] for i in range(c.count)], np.int32
        ).reshape(c.count, len(self.same_keys))
        src_m = np.asarray([r.src.classes for r in rules], bool).reshape(n, c.count).T
        dst_m = np.asarray([r.dst.classes for r in rules], bool).reshape(n, c.count).T
        self.ep_src = np.asarray([self.src.add(src_m[i], codes[i]) for i in range(c.count)], np.int32)
        self.ep_dst = np.asarray([self.dst.add(dst_m[i], codes[i]) for i in range(c.count)], np.int32)
        # unmanaged sides: rules that never match an unmanaged end, and the terms they need
        t = ir.terms.count
        self._src_never = np.asarray([r.src.unmanaged is None for r in rules], bool)
        self._dst_never = np.asarray([r.dst.unmanaged is None for r in rules], bool)
        self._src_need = self._need([r.src.unmanaged for r in rules], t)
        self._dst_need = self._need([r.dst.unmanaged for r in rules], t)
        self.signatures: dict[bytes, int] = {}
        self._none = np.full(len(self.same_keys), -1, np.int32)
        self._pairs = np.full(0, -1, np.int32)
        self._cap = (0, 0)
        self._profile_index: dict[bytes, int] = {}
        s = ir.atoms.count
        self._plain = np.empty((16, s), np.int32)
        self._need = np.empty((16, s), bool)
        self._sparse_cache: dict[int, int] = {}
        self.narrowed: list[I32] = []  # per profile: matched narrowed rules, best first

    @staticmethod
    def _need(reqs: list[tuple[int, ...] | None], terms: int) -> Mask:
        out = np.zeros((len(reqs), terms), bool)
        for i, req in enumerate(reqs):
            for t in req or ():
                out[i, t] = True
        return out

    # -- endpoints ----------------------------------------------------------------------

    def signature_endpoint(self, sig: Mask) -> int:
        """The endpoint id of an unmanaged address with this signature (terms satisfied)."""
        key = np.packbits(sig).tobytes()
        ep = self.signatures.get(key)
        if ep is not None:
            return ep
        ep = self.ir.classes.count + len(self.signatures)
        self.signatures[key] = ep
        missing_src = (self._src_need & ~sig).any(axis=1) if sig.size else np.zeros(len(self._src_never), bool)
        missing_dst = (self._dst_need & ~sig).any(axis=1) if sig.size else np.zeros(len(self._dst_never), bool)
        gs = self.src.add(~self._src_never & ~missing_src, self._none)
        gd = self.dst.add(~self._dst_never & ~missing_dst, self._none)
        self.ep_src = np.append(self.ep_src, np.int32(gs))
        self.ep_dst = np.append(self.ep_dst, np.int32(gd))
        return ep

    # -- profiles -----------------------------------------------------------------------

    def _matched(self, gs: int, gd: int) -> Mask:
        m = self.src.match[gs] & self.dst.match[gd]
        a, b = self.src.same[gs], self.dst.same[gd]
        for r in self.same_rules:
            if m[r]:
                pos = [self._key_pos[k] for k in self.ir.rules[r].same]
                if not all(a[p] >= 0 and a[p] == b[p] for p in pos):
                    m[r] = False
        return m

    def _first(self, cand: I32, masks: Mask) -> I32:
        if len(cand) == 0:
            return np.full(self.ir.atoms.count, -1, np.int32)
        sub = masks[cand]
        has = sub.any(axis=0)
        return np.where(has, cand[sub.argmax(axis=0)], -1).astype(np.int32)

    def profile(self, gs: int, gd: int) -> int:
        """The profile id of a (client group, server group) pair, computed on first use."""
        m = self._matched(gs, gd)
        cand = self.ir.order[m[self.ir.order]]
        plain = self._first(cand, self.ir.plain)
        allm = self._first(cand, self.ir.all_atoms) if self.ir.any_narrowed else plain
        narrow = cand[self.ir.is_narrowed[cand]] if self.ir.any_narrowed else cand[:0]
        key = plain.tobytes() + allm.tobytes() + narrow.tobytes()
        p = self._profile_index.get(key)
        if p is None:
            p = self._profile_index[key] = len(self._profile_index)
            self.narrowed.append(narrow)
            if p == len(self._plain):
                self._plain = np.concatenate([self._plain, np.empty_like(self._plain)])
                self._need = np.concatenate([self._need, np.empty_like(self._need)])
            self._plain[p] = plain
            self._need[p] = plain != allm
        return p

    @property
    def plain(self) -> npt.NDArray[np.int32]:
        """Per profile and atom, the deciding rule without narrowed services (-1: none)."""
        return self._plain[: len(self._profile_index)]

    @property
    def need(self) -> Mask:
        """Per profile and atom, whether a narrowed rule could change the decision."""
        return self._need[: len(self._profile_index)]

    def pair_profiles(self, gs: I32, gd: I32) -> I32:
        """Profiles for arrays of group pairs (computing the ones not seen before)."""
        ns, nd = len(self.src.match), len(self.dst.match)
        if ns * nd > _MAX_DENSE:
            return self._sparse(gs, gd)
        if self._cap != (ns, nd):
            self._grow(ns, nd)
        code = gs.astype(np.int64) * nd + gd
        prof = self._pairs[code]
        missing = prof < 0
        if missing.any():
            for c in np.unique(code[missing]):
                self._pairs[c] = self.profile(int(c // nd), int(c % nd))
            prof = self._pairs[code]
        return prof

    def _grow(self, ns: int, nd: int) -> None:
        old_s, old_d = self._cap
        new = np.full(ns * nd, -1, np.int32)
        if old_s and old_d:
            new.reshape(ns, nd)[:old_s, :old_d] = self._pairs.reshape(old_s, old_d)
        self._pairs, self._cap = new, (ns, nd)

    def _sparse(self, gs: I32, gd: I32) -> I32:
        code = gs.astype(np.int64) << 32 | gd.astype(np.int64)
        uniq, inv = np.unique(code, return_inverse=True)
        out = np.empty(len(uniq), np.int32)
        for i, c in enumerate(uniq.tolist()):
            p = self._sparse_cache.get(c)
            if p is None:
                p = self._sparse_cache[c] = self.profile(c >> 32, c & 0xFFFFFFFF)
            out[i] = p
        return out[inv]
