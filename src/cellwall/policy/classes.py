"""Label classes: workloads that share one label combination, and selectors as class masks.

A workload that some ``workload:`` selector names gets a class of its own (it must be told
apart from its peers); every other workload is in the class of its exact label set. Label
values are coded per key as integers, so that a label term is one ``np.isin`` over the
classes and a selector is a few boolean operations, whatever the number of workloads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from cellwall.model.inventory import Workload
from cellwall.model.labels import Labels
from cellwall.model.policy import LabelTerm, Selector

__all__ = ["ClassTable", "pinned_names"]

Mask = npt.NDArray[np.bool_]


def pinned_names(selectors: Iterable[Selector]) -> set[str]:
    """The workload names that the selectors (and their ``not`` parts) name."""
    out: set[str] = set()
    stack = list(selectors)
    while stack:
        s = stack.pop()
        if s.workload is not None:
            out.add(s.workload)
        stack.extend(s.negations)
    return out


class ClassTable:
    """The classes of a set of workloads, with per-key label codes."""

    def __init__(self, workloads: Sequence[Workload], pinned: Iterable[str] = ()) -> None:
        pins = set(pinned)
        index: dict[tuple[Labels, str | None], int] = {}
        self.workload_class: dict[str, int] = {}
        for w in sorted(workloads, key=lambda w: w.name):
            key = (w.labels, w.name if w.name in pins else None)
            self.workload_class[w.name] = index.setdefault(key, len(index))
        self.keys: list[tuple[Labels, str | None]] = list(index)
        self.count = len(self.keys)
        self.values: dict[str, list[str]] = {}
        codes: dict[str, list[int]] = {}
        for c, (labels, _) in enumerate(self.keys):
            for k, v in labels.items():
                vals = self.values.setdefault(k, [])
                col = codes.setdefault(k, [-1] * self.count)
                if v not in vals:
                    vals.append(v)
                col[c] = vals.index(v)
        self.codes = {k: np.asarray(v, np.int32) for k, v in codes.items()}
        self._value_index = {k: {v: i for i, v in enumerate(vs)} for k, vs in self.values.items()}
        self.pinned = np.asarray([name or "" for _, name in self.keys], dtype=object)
        self._cache: dict[Selector, Mask] = {}

    def labels(self, c: int) -> Labels:
        return self.keys[c][0]

    def name(self, c: int) -> str:
        """A readable name: ``app=payments,role=db`` or ``workload:NAME``."""
        labels, pin = self.keys[c]
        if pin is not None:
            return f"workload:{pin}"
        return str(labels) or "(no labels)"

    def code(self, key: str, c: int) -> int:
        """The code of class ``c``'s value for ``key`` (-1 when it has none)."""
        col = self.codes.get(key)
        return int(col[c]) if col is not None else -1

    def term(self, term: LabelTerm) -> Mask:
        col = self.codes.get(term.key)
        if col is None:
            return np.zeros(self.count, bool)
        idx = self._value_index[term.key]
        wanted = [idx[v] for v in term.values if v in idx]
        return np.isin(col, np.asarray(wanted, np.int32))

    def selector(self, sel: Selector) -> Mask:
        """The classes that ``sel`` matches, without any scope."""
        found = self._cache.get(sel)
        if found is not None:
            return found
        if sel.any:
            out = np.ones(self.count, bool)
        elif not sel.workload_terms or sel.address_terms:
            out = np.zeros(self.count, bool)  # address terms never match a workload
        else:
            out = np.ones(self.count, bool)
            for t in sel.labels:
                out &= self.term(t)
            for inner in sel.negations:
                out &= ~self.selector(inner)
            if sel.workload is not None:
                out &= self.pinned == sel.workload
        out.flags.writeable = False
        self._cache[sel] = out
        return out
