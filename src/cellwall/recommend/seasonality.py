"""Seasonality: edges that recur on a schedule longer than the learning window can show.

An edge seen on ``d >= 3`` days whose first and last conversations lie ``P × (d - 1)`` days
apart, to within an hour, for a whole ``P >= 2``, recurs every ``P`` days (a weekly job is
``P = 7``). A window shorter than two such periods may miss the edge altogether, so
:func:`seasonality_warnings` warns, naming a few of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

__all__ = ["Periodic", "periodic_edges", "seasonality_warnings"]

_DAY_US = 86_400_000_000
_TOLERANCE_US = 3_600_000_000


@dataclass(frozen=True, slots=True)
class Periodic:
    client: str
    server: str
    service: str
    period_days: int
    days: int


def _us(edges: pa.Table, name: str) -> np.ndarray:
    ts = edges[name].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return np.asarray(ts.to_numpy(), dtype=np.int64)


def periodic_edges(edges: pa.Table) -> list[Periodic]:
    """The edges that recur every ``P >= 2`` days (see the module docstring)."""
    if edges.num_rows == 0:
        return []
    days = np.asarray(edges["days"].to_numpy(), dtype=np.int64)
    span = _us(edges, "last_seen") - _us(edges, "first_seen")
    gaps = np.maximum(days - 1, 1)
    period = np.rint(span / gaps / _DAY_US).astype(np.int64)
    regular = np.abs(span - period * gaps * _DAY_US) <= _TOLERANCE_US * gaps
    hit = np.flatnonzero((days >= 3) & (period >= 2) & regular)
    picked = edges.take(pa.array(hit))
    return [
        Periodic(c, s, svc, int(period[i]), int(days[i]))
        for i, c, s, svc in zip(
            hit.tolist(),
            picked["client"].to_pylist(),
            picked["server"].to_pylist(),
            picked["service"].to_pylist(),
            strict=True,
        )
    ]


def seasonality_warnings(periodic: Sequence[Periodic], window_days: float) -> list[str]:
    """One warning per period longer than half the window, with up to three examples."""
    by_period: dict[int, list[Periodic]] = {}
    for p in periodic:
        by_period.setdefault(p.period_days, []).append(p)
    out = []
    for period in sorted(by_period):
        if window_days >= 2 * period:
            continue
        found = sorted(by_period[period], key=lambda p: (p.client, p.server, p.service))
        examples = "; ".join(f"{p.client} -> {p.server} {p.service}" for p in found[:3])
        out.append(
            f"{len(found)} edge(s) recur every {period} days (e.g. {examples}); a window of "
            f"{window_days:g} days holds fewer than two such periods: learn on at least "
            f"{2 * period} days, or review these rules by hand"
        )
    return out
