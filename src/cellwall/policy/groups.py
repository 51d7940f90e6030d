"""Endpoint groups and decision profiles: the caches that make judging a few array lookups.

Endpoints are numbered: label classes first (``0 .. C-1``), then address signatures as they
are first seen. On each side, endpoints that match exactly the same rules (and carry the
same values for the keys that ``same`` rules compare) form one group. For a (client group,
server group) pair, the *profile* holds, per service atom, the deciding rule when narrowed
services are left out (``plain``) and whether some narrowed rule could change it (``need``).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from cellwall.policy.ir import PolicyIR

__all__ = ["Groups"]

Mask = npt.NDArray[np.bool_]
I32 = npt.NDArray[np.int32]
_MAX_DENSE = 1 << 26
_CHUNK = 2048


class _Side:
    """The groups of one side (client or server)."""

    def __init__(self, n_rules: int) -> None:
        self.n_rules = n_rules
        self.index: dict[bytes, int] = {}
        self.match: list[Mask] = []
        self.same: list[npt.NDArray[np.int32]] = []
        self._mat: Mask | None = None
        self._same_mat: npt.NDArray[np.int32] | None = None

    def add(self, match: Mask, same: npt.NDArray[np.int32]) -> int:
        key = np.packbits(match).tobytes() + same.tobytes()
        g = self.index.get(key)
        if g is None:
            g = self.index[key] = len(self.match)
            self.match.append(match)
            self.same.append(same)
            self._mat = self._same_mat = None
        return g

    def matrix(self) -> Mask:
        """The groups' rule matches as one (groups × rules) matrix."""
        if self._mat is None:
            self._mat = np.asarray(self.match, bool).reshape(len(self.match), self.n_rules)
        return self._mat

    def same_matrix(self) -> npt.NDArray[np.int32]:
        if self._same_mat is None:
            width = len(self.same[0]) if self.same else 0
            self._same_mat = np.asarray(self.same, np.int32).reshape(len(self.same), width)
        return self._same_mat


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
        self.ep_src = np.asarray(
            [self.src.add(src_m[i], codes[i]) for i in range(c.count)], np.int32
        )
        self.ep_dst = np.asarray(
            [self.dst.add(dst_m[i], codes[i]) for i in range(c.count)], np.int32
        )
        # unmanaged sides: rules that never match an unmanaged end, and the terms they need
        t = ir.terms.count
        self._src_never = np.asarray([r.src.unmanaged is None for r in rules], bool)
        self._dst_never = np.asarray([r.dst.unmanaged is None for r in rules], bool)
        self._src_need = self._requirements([r.src.unmanaged for r in rules], t)
        self._dst_need = self._requirements([r.dst.unmanaged for r in rules], t)
        self.signatures: dict[bytes, int] = {}
        self._none = np.full(len(self.same_keys), -1, np.int32)
        self._table: tuple[I32, int, int] = (np.full(0, -1, np.int32), 0, 0)
        self._profile_index: dict[bytes, int] = {}
        s = ir.atoms.count
        self._plain = np.empty((16, s), np.int32)
        self._need = np.empty((16, s), bool)
        self._allm = np.empty((16, s), np.int32)
        self._sparse_cache: dict[int, int] = {}
        self.lock = threading.RLock()  # guards every cache that grows; lookups need none
        self.narrowed: list[I32] = []  # per profile: matched narrowed rules, best first
        self._cover_plain: list[tuple[I32, I32]] | None = None
        self._cover_all: list[tuple[I32, I32]] | None = None
        self._narrow_pos = np.zeros(0, np.int32)

    @staticmethod
    def _requirements(reqs: list[tuple[int, ...] | None], terms: int) -> Mask:
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
        missing_src = (
            (self._src_need & ~sig).any(axis=1)
            if sig.size
            else np.zeros(len(self._src_never), bool)
        )
        missing_dst = (
            (self._dst_need & ~sig).any(axis=1)
            if sig.size
            else np.zeros(len(self._dst_never), bool)
        )
        gs = self.src.add(~self._src_never & ~missing_src, self._none)
        gd = self.dst.add(~self._dst_never & ~missing_dst, self._none)
        self.ep_src = np.append(self.ep_src, np.int32(gs))
        self.ep_dst = np.append(self.ep_dst, np.int32(gd))
        return ep

    # -- profiles -----------------------------------------------------------------------

    def _cover(self, masks: Mask) -> list[tuple[I32, I32]]:
        """(rule positions in precedence order, atoms) for each distinct covering rule list."""
        by_rules: dict[bytes, list[int]] = {}
        ordered = masks[self.ir.order]  # R × S, precedence order
        for s in range(masks.shape[1]):
            by_rules.setdefault(
                np.flatnonzero(ordered[:, s]).astype(np.int32).tobytes(), []
            ).append(s)
        return [(np.frombuffer(k, np.int32), np.asarray(v, np.int32)) for k, v in by_rules.items()]

    def _matched_many(self, gs: I32, gd: I32) -> Mask:
        """A (pairs × rules) matrix: which rules match each (client group, server group)."""
        m = self.src.matrix()[gs] & self.dst.matrix()[gd]
        if self.same_rules:
            a, b = self.src.same_matrix()[gs], self.dst.same_matrix()[gd]
            for r in self.same_rules:
                pos = [self._key_pos[k] for k in self.ir.rules[r].same]
                m[:, r] &= ((a[:, pos] >= 0) & (a[:, pos] == b[:, pos])).all(axis=1)
        return m

    def _matched(self, gs: int, gd: int) -> Mask:
        one = self._matched_many(np.asarray([gs], np.int32), np.asarray([gd], np.int32))
        return np.asarray(one[0], bool)

    def _decide(self, m_ord: Mask, cover: list[tuple[I32, I32]]) -> npt.NDArray[np.int32]:
        out = np.full((len(m_ord), self.ir.atoms.count), -1, np.int32)
        for cols, atoms in cover:
            if not len(cols):
                continue
            sub = m_ord[:, cols]
            first = self.ir.order[cols[sub.argmax(axis=1)]]
            out[:, atoms] = np.where(sub.any(axis=1), first, -1)[:, None]
        return out

    def _profiles(self, gs: I32, gd: I32) -> I32:
        """Profile ids for group pairs, computed together (new profiles are added)."""
        if self._cover_plain is None:
            self._cover_plain = self._cover(self.ir.plain)
            self._cover_all = self._cover(self.ir.all_atoms)
            self._narrow_pos = np.flatnonzero(self.ir.is_narrowed[self.ir.order]).astype(np.int32)
        m_ord = self._matched_many(gs, gd)[:, self.ir.order]
        plain = self._decide(m_ord, self._cover_plain)
        allm = self._decide(m_ord, self._cover_all or []) if self.ir.any_narrowed else plain
        narrow = m_ord[:, self._narrow_pos]
        rows = np.concatenate(
            [plain.view(np.uint8), allm.view(np.uint8), np.packbits(narrow, axis=1)], axis=1
        )
        ids = np.empty(len(rows), np.int32)
        index = self._profile_index
        for i in range(len(rows)):
            key = rows[i].tobytes()
            p = index.get(key)
            if p is None:
                p = self._add_profile(
                    key, plain[i], allm[i], self.ir.order[self._narrow_pos[narrow[i]]]
                )
            ids[i] = p
        return ids

    def _add_profile(self, key: bytes, plain: I32, allm: I32, narrow: I32) -> int:
        p = self._profile_index.get(key)
        if p is None:
            p = self._profile_index[key] = len(self._profile_index)
            self.narrowed.append(narrow.astype(np.int32))
            if p == len(self._plain):
                self._plain = np.concatenate([self._plain, np.empty_like(self._plain)])
                self._need = np.concatenate([self._need, np.empty_like(self._need)])
                self._allm = np.concatenate([self._allm, np.empty_like(self._allm)])
            self._plain[p] = plain
            self._allm[p] = allm
            self._need[p] = plain != allm
        return p

    def profile(self, gs: int, gd: int) -> int:
        """The profile id of one (client group, server group) pair."""
        return int(self._profiles(np.asarray([gs], np.int32), np.asarray([gd], np.int32))[0])

    @property
    def plain(self) -> npt.NDArray[np.int32]:
        """Per profile and atom, the deciding rule without narrowed services (-1: none)."""
        return self._plain[: len(self._profile_index)]

    @property
    def with_narrowed(self) -> npt.NDArray[np.int32]:
        """Per profile and atom, the deciding rule when narrowed services count as matching."""
        return self._allm[: len(self._profile_index)]

    @property
    def need(self) -> Mask:
        """Per profile and atom, whether a narrowed rule could change the decision."""
        return self._need[: len(self._profile_index)]

    def pair_profiles(self, gs: I32, gd: I32) -> I32:
        """Profiles for arrays of group pairs (computing the ones not seen before).

        Safe to call from several threads: lookups read one consistent (table, shape) pair;
        growing the table and computing profiles happen under :attr:`lock`.
        """
        table, ns, nd = self._table
        if len(gs) and (int(gs.max()) >= ns or int(gd.max()) >= nd):
            with self.lock:
                self._ensure()
                table, ns, nd = self._table
        if ns * nd > _MAX_DENSE:
            with self.lock:
                return self._sparse(gs, gd)
        code = gs.astype(np.int64) * nd + gd
        prof = table[code]
        missing = prof < 0
        if missing.any():
            with self.lock:
                table, ns, nd = self._table
                code = gs.astype(np.int64) * nd + gd
                todo = np.unique(code[missing])
                todo = todo[table[todo] < 0]
                for lo in range(0, len(todo), _CHUNK):
                    part = todo[lo : lo + _CHUNK]
                    table[part] = self._profiles(
                        (part // nd).astype(np.int32), (part % nd).astype(np.int32)
                    )
                prof = table[code]
        return np.asarray(prof, np.int32)

    def _ensure(self) -> None:
        """Grow the dense pair table to the current number of groups (under the lock)."""
        old, os_, od = self._table
        ns, nd = len(self.src.match), len(self.dst.match)
        if ns * nd > _MAX_DENSE:  # too many pairs for a table: the sparse cache serves
            self._table = (np.full(0, -1, np.int32), ns, nd)
            return
        if (ns, nd) == (os_, od):
            return
        new = np.full(ns * nd, -1, np.int32)
        if os_ and od:
            new.reshape(ns, nd)[:os_, :od] = old.reshape(os_, od)
        self._table = (new, ns, nd)

    def _sparse(self, gs: I32, gd: I32) -> I32:
        code = gs.astype(np.int64) << 32 | gd.astype(np.int64)
        uniq, inv = np.unique(code, return_inverse=True)
        out = np.asarray([self._sparse_cache.get(c, -1) for c in uniq.tolist()], np.int32)
        todo = np.flatnonzero(out < 0)
        for lo in range(0, len(todo), _CHUNK):
            part = uniq[todo[lo : lo + _CHUNK]]
            found = self._profiles(
                (part >> 32).astype(np.int32), (part & 0xFFFFFFFF).astype(np.int32)
            )
            out[todo[lo : lo + _CHUNK]] = found
            self._sparse_cache.update(zip(part.tolist(), found.tolist(), strict=True))
        return np.asarray(out[inv.reshape(-1)], np.int32)
