"""Evidence aggregation: workload-level edges → class edges with :class:`Evidence`.

Vectorised over the edges (a million rows is the benchmark): node names are coded once,
each distinct node is classified once, and sums, extremes and the distinct-day lower bound
are NumPy reductions over group codes. Only the class edges (far fewer) become Python
values.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cellwall.recommend.classes import Classifier, ClassKey, generalise, is_external
from cellwall.recommend.model import Evidence, RecommendConfig

__all__ = [
    "ClassEdge",
    "CodedEdges",
    "class_edges",
    "edge_columns",
    "generalise_ids",
    "group_codes",
    "key_id",
    "key_ids",
    "node_codes",
    "reduce_groups",
]

_DAY_US = 86_400_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ClassEdge:
    src: ClassKey
    dst: ClassKey
    service: str
    evidence: Evidence


def _time(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(us))


def node_codes(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, list[str]]:
    encoded = pc.dictionary_encode(column)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    return codes, [str(x) for x in encoded.dictionary.to_pylist()]


def key_ids(
    names: list[str], classifier: Classifier, ids: dict[ClassKey, int], keys: list[ClassKey]
) -> np.ndarray:
    return np.fromiter((key_id(classifier.of(n), ids, keys) for n in names), np.int64, len(names))


def group_codes(src: np.ndarray, dst: np.ndarray, svc: np.ndarray) -> tuple[np.ndarray, int]:
    n_dst, n_svc = int(dst.max()) + 1, int(svc.max()) + 1
    if (int(src.max()) + 1) * n_dst * n_svc < (1 << 62):
        combined = (src * n_dst + dst) * n_svc + svc
        _, inverse = np.unique(combined, return_inverse=True)
    else:
        _, inverse = np.unique(np.stack([src, dst, svc]), axis=1, return_inverse=True)
    inverse = inverse.ravel()
    return inverse, int(inverse.max()) + 1


def edge_columns(edges: pa.Table) -> dict[str, np.ndarray]:
    def us(name: str) -> np.ndarray:
        ts = edges[name].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        return np.asarray(ts.to_numpy(), dtype=np.int64)

    return {
        "conv": np.asarray(edges["conversations"].to_numpy(), dtype=np.int64),
        "bytes": np.asarray(edges["bytes"].to_numpy(), dtype=np.int64),
        "days": np.asarray(edges["days"].to_numpy(), dtype=np.int64),
        "first": us("first_seen"),
        "last": us("last_seen"),
    }


def reduce_groups(inv: np.ndarray, g: int, c: dict[str, np.ndarray]) -> dict[str, Any]:
    conv = np.zeros(g, np.int64)
    np.add.at(conv, inv, c["conv"])
    size = np.zeros(g, np.int64)
    np.add.at(size, inv, c["bytes"])
    days = np.zeros(g, np.int64)
    np.maximum.at(days, inv, c["days"])
    first = np.full(g, np.iinfo(np.int64).max)
    np.minimum.at(first, inv, c["first"])
    last = np.full(g, np.iinfo(np.int64).min)
    np.maximum.at(last, inv, c["last"])
    stamps = np.concatenate([c["first"], c["last"]]) // _DAY_US
    low = int(stamps.min())
    span = int(stamps.max()) - low + 1
    pairs = np.unique(np.concatenate([inv, inv]) * span + (stamps - low))
    group = pairs // span
    distinct = np.bincount(group, minlength=g)
    cuts = np.searchsorted(group, np.arange(1, g))
    return {
        "dates": [frozenset(d.tolist()) for d in np.split(pairs % span + low, cuts)],
        "conv": conv,
        "bytes": size,
        "days": np.maximum(days, distinct),
        "first": first,
        "last": last,
        "edges": np.bincount(inv, minlength=g),
    }


def _rank(codes: np.ndarray, names: list[str]) -> np.ndarray:
    """Each row's name's place in name order (a tie-break that ignores row order)."""
    place = np.empty(len(names), np.int64)
    place[np.argsort(np.array(names, dtype=object))] = np.arange(len(names))
    ranked: np.ndarray = place[codes]
    return ranked


def _samples(
    inv: np.ndarray, conv: np.ndarray, edges: pa.Table, n: int, ties: Sequence[np.ndarray]
) -> dict[int, list[tuple[int, str]]]:
    order = np.lexsort((*reversed(ties), -conv, inv))
    grouped = inv[order]
    starts = np.searchsorted(grouped, grouped, side="left")
    rank = np.arange(len(order)) - starts
    pick = order[rank < n]
    taken = edges.take(pa.array(pick))
    out: dict[int, list[tuple[int, str]]] = defaultdict(list)
    names = zip(
        taken["client"].to_pylist(),
        taken["server"].to_pylist(),
        taken["service"].to_pylist(),
        strict=True,
    )
    for row, (c, s, svc) in zip(pick.tolist(), names, strict=True):
        out[int(inv[row])].append((int(conv[row]), f"{c} -> {s} {svc}"))
    return out


def key_id(key: ClassKey, ids: dict[ClassKey, int], keys: list[ClassKey]) -> int:
    if key not in ids:
        ids[key] = len(keys)
        keys.append(key)
    return ids[key]


def _targets(
    groups: np.ndarray,
    members: np.ndarray,
    keys: list[ClassKey],
    ids: dict[ClassKey, int],
    config: RecommendConfig,
) -> np.ndarray:
    """The rule end of each (group, external key) pair; pairs sorted by group."""
    is_net = np.array([k[0] == "net" for k in keys], bool)[members]
    nets = np.bincount(groups, weights=is_net, minlength=int(groups.max()) + 1)
    out = members.copy()
    internet = (nets[groups] >= config.internet_networks) & is_net
    if internet.any():
        out[internet] = key_id(("iplist", "internet"), ids, keys)
    rest = np.flatnonzero(~internet)
    if len(rest):
        cuts = np.flatnonzero(np.diff(groups[rest])) + 1
        for part in np.split(rest, cuts):
            found = generalise([keys[int(m)] for m in members[part]], config)
            out[part] = [key_id(found[keys[int(m)]], ids, keys) for m in members[part]]
    return out


def generalise_ids(
    src: np.ndarray,
    dst: np.ndarray,
    svc: np.ndarray,
    keys: list[ClassKey],
    ids: dict[ClassKey, int],
    config: RecommendConfig,
) -> None:
    """Replace unmanaged and public ends by their rule ends, per (class, service, way)."""
    n_svc = int(svc.max()) + 1
    for outbound in (True, False):
        n_keys = len(keys)
        ext = np.array([is_external(k) for k in keys], bool)
        loose = np.array([k[0] in ("net", "addr") for k in keys], bool)
        mine, other = (src, dst) if outbound else (dst, src)
        rows = np.flatnonzero(~ext[mine] & loose[other])
        if not len(rows):
            continue
        group_of = mine[rows] * n_svc + svc[rows]
        combo, inverse = np.unique(group_of * n_keys + other[rows], return_inverse=True)
        _, groups = np.unique(combo // n_keys, return_inverse=True)
        target = _targets(groups.ravel(), combo % n_keys, keys, ids, config)
        other[rows] = target[inverse.ravel()]


@dataclass
class CodedEdges:
    """Workload-level edges with their names coded once and their ends classified: ``src``
    and ``dst`` index ``keys`` (class keys, before external ends are generalised)."""

    c_codes: np.ndarray
    c_names: list[str]
    s_codes: np.ndarray
    s_names: list[str]
    svc_codes: np.ndarray
    svc_names: list[str]
    ids: dict[ClassKey, int]
    keys: list[ClassKey]
    src: np.ndarray
    dst: np.ndarray

    @classmethod
    def of(cls, edges: pa.Table, classifier: Classifier) -> CodedEdges:
        ids: dict[ClassKey, int] = {}
        keys: list[ClassKey] = []
        c_codes, c_names = node_codes(edges["client"])
        s_codes, s_names = node_codes(edges["server"])
        svc_codes, svc_names = node_codes(edges["service"])
        src = key_ids(c_names, classifier, ids, keys)[c_codes]
        dst = key_ids(s_names, classifier, ids, keys)[s_codes]
        return cls(c_codes, c_names, s_codes, s_names, svc_codes, svc_names, ids, keys, src, dst)


def class_edges(
    edges: pa.Table, classifier: Classifier, config: RecommendConfig
) -> list[ClassEdge]:
    """The class edges of workload-level ``edges``: ends classified, external ends
    generalised per (class, service, direction) (:func:`~.classes.generalise`), evidence
    pooled."""
    if edges.num_rows == 0:
        return []
    coded = CodedEdges.of(edges, classifier)
    ids, keys, src, dst = coded.ids, coded.keys, coded.src, coded.dst  # generalised in place
    c_codes, c_names, s_codes, s_names = coded.c_codes, coded.c_names, coded.s_codes, coded.s_names
    svc_codes, svc_names = coded.svc_codes, coded.svc_names
    generalise_ids(src, dst, svc_codes, keys, ids, config)
    inv, g = group_codes(src, dst, svc_codes)
    cols = edge_columns(edges)
    red = reduce_groups(inv, g, cols)
    first_row = np.full(g, -1, np.int64)
    first_row[inv[::-1]] = np.arange(len(inv))[::-1]
    ties = [_rank(c_codes, c_names), _rank(s_codes, s_names), _rank(svc_codes, svc_names)]
    samples = _samples(inv, cols["conv"], edges, config.samples, ties)
    return [
        ClassEdge(
            keys[int(src[r])],
            keys[int(dst[r])],
            svc_names[int(svc_codes[r])],
            Evidence(
                int(red["conv"][i]),
                int(red["bytes"][i]),
                int(red["days"][i]),
                _time(red["first"][i]),
                _time(red["last"][i]),
                int(red["edges"][i]),
                tuple(samples[i]),
                red["dates"][i],
            ),
        )
        for i, r in enumerate(first_row.tolist())
    ]


def total_conversations(edges: pa.Table) -> int:
    return int(pc.sum(edges["conversations"]).as_py() or 0) if edges.num_rows else 0


def sort_edges(edges: Sequence[ClassEdge]) -> list[ClassEdge]:
    return sorted(edges, key=lambda e: (repr(e.src), repr(e.dst), e.service))
