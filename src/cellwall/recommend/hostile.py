"""Never learn the attack: the workload-level edges that look hostile, each with its reason.

The passes run on the map's edges at workload granularity (one row per client, server and
service), vectorised. An edge is *weak* when it was seen on one day only, in at most
``weak`` conversations. Then:

- ``flagged``: a detection flagged the edge (``RecommendConfig.flagged``);
- ``fan-out-scan``: its client opened at least ``fanout`` weak edges within one hour (on
  two hour grids, offset by 30 minutes, so that a scan across an hour's boundary is seen);
- ``multi-port-probe``: its client tried at least ``probe_ports`` ports of its server on
  one day, each weakly.

Minimum evidence is judged later, on the candidate rules (:mod:`.propose`), because the
edges of one rule pool their evidence.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cellwall.recommend.model import Exclusion, RecommendConfig

__all__ = ["hostile_edges"]

_HOUR_US = 3_600_000_000
_DAY_US = 24 * _HOUR_US


def _us(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    ts = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return np.asarray(ts.to_numpy(zero_copy_only=False), dtype=np.int64)


def _codes(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Dense integer codes of a string column."""
    encoded = pc.dictionary_encode(column)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    return np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)


def _count_by(keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each row of ``rows`` (indices), how many rows share its key."""
    if not len(rows):
        return np.zeros(0, np.int64)
    _, inverse, counts = np.unique(keys[rows], return_inverse=True, return_counts=True)
    return np.asarray(counts[inverse], dtype=np.int64)


def _fanout(client: np.ndarray, first: np.ndarray, weak: np.ndarray, n: int) -> np.ndarray:
    rows = np.flatnonzero(weak)
    hit = np.zeros(len(client), bool)
    for offset in (0, _HOUR_US // 2):
        bucket = (first[rows] + offset) // _HOUR_US
        key = client[rows] * (1 << 32) + (bucket - bucket.min() if len(bucket) else bucket)
        hit[rows[_count_by(key, np.arange(len(rows))) >= n]] = True
    return hit


def _probe(
    client: np.ndarray, server: np.ndarray, first: np.ndarray, weak: np.ndarray, n: int
) -> np.ndarray:
    rows = np.flatnonzero(weak)
    hit = np.zeros(len(client), bool)
    if not len(rows):
        return hit
    day = first[rows] // _DAY_US
    _, pair = np.unique(np.stack([client[rows], server[rows], day]), axis=1, return_inverse=True)
    hit[rows[_count_by(pair.ravel(), np.arange(len(rows))) >= n]] = True
    return hit


def hostile_edges(edges: pa.Table, config: RecommendConfig) -> tuple[np.ndarray, list[Exclusion]]:
    """(a mask of the edges to keep, the exclusions of the others with their reasons)."""
    n = edges.num_rows
    if n == 0:
        return np.ones(0, bool), []
    conv = np.asarray(edges["conversations"].to_numpy(), dtype=np.int64)
    days = np.asarray(edges["days"].to_numpy(), dtype=np.int64)
    first = _us(edges["first_seen"])
    client, server = _codes(edges["client"]), _codes(edges["server"])
    weak = (days <= 1) & (conv <= config.weak)
    reason = np.full(n, "", dtype=object)
    if config.flagged:
        names = zip(
            edges["client"].to_pylist(),
            edges["server"].to_pylist(),
            edges["service"].to_pylist(),
            strict=True,
        )
        flagged = np.fromiter((t in config.flagged for t in names), bool, n)
        reason[flagged] = "flagged"
    fan = _fanout(client, first, weak, config.fanout) & (reason == "")
    reason[fan] = "fan-out-scan"
    probe = _probe(client, server, first, weak, config.probe_ports) & (reason == "")
    reason[probe] = "multi-port-probe"
    out = np.flatnonzero(reason != "")
    details = {
        "flagged": "a detection flagged this edge",
        "fan-out-scan": f"its client opened {config.fanout}+ one-off edges within an hour",
        "multi-port-probe": f"its client tried {config.probe_ports}+ ports of this server once",
    }
    cols = {c: edges[c].take(pa.array(out)).to_pylist() for c in ("client", "server", "service")}
    exclusions = [
        Exclusion(
            str(reason[i]),
            cols["client"][k],
            cols["server"][k],
            cols["service"][k],
            int(conv[i]),
            details[str(reason[i])],
        )
        for k, i in enumerate(out.tolist())
    ]
    return reason == "", exclusions
