"""One-off external ends: an address outside the estate needs evidence of its own.

Label classes pool their evidence (a new pod of a role shares its role's history), but
external ends do not: when a class talks to several unmanaged or public addresses on one
service, the rule lists each of them, and an address seen on one afternoon would ride into
the rule on the others' evidence. That is how an exfiltration to a fresh address would be
learned. So, per (class end, external end, service) before generalisation, the minimum
evidence of :func:`~.propose` applies on its own; ends that become the ``internet`` IP list
(many public networks) are exempt, since that list is by design the sum of one-off peers.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict

import numpy as np
import pyarrow as pa

from cellwall.recommend.aggregate import (
    CodedEdges,
    edge_columns,
    generalise_ids,
    group_codes,
    key_id,
    reduce_groups,
)
from cellwall.recommend.classes import Classifier, ClassKey
from cellwall.recommend.model import Exclusion, RecommendConfig
from cellwall.recommend.rules import key_text

__all__ = ["one_off_externals"]

_HOUR_US = 3_600_000_000


def one_off_externals(
    edges: pa.Table, classifier: Classifier, config: RecommendConfig
) -> tuple[np.ndarray, list[Exclusion]]:
    """(a mask of the edges to keep, one exclusion per one-off (class, external end,
    service) with its evidence)."""
    n = edges.num_rows
    if n == 0:
        return np.ones(0, bool), []
    coded = CodedEdges.of(edges, classifier)
    ids, keys, svc_codes, svc_names = coded.ids, coded.keys, coded.svc_codes, coded.svc_names
    raw_src, raw_dst = coded.src, coded.dst
    src, dst = raw_src.copy(), raw_dst.copy()
    generalise_ids(src, dst, svc_codes, keys, ids, config)
    loose = np.array([k[0] in ("net", "addr") for k in keys], bool)
    internet = ids.get(("iplist", "internet"), -1)
    outward = loose[raw_dst] & ~loose[raw_src] & (dst != internet)
    inward = loose[raw_src] & ~loose[raw_dst] & (src != internet)
    candidate = outward | inward
    if not candidate.any():
        return np.ones(n, bool), []
    mine = np.where(outward, raw_src, raw_dst)
    end = _components(np.where(outward, raw_dst, raw_src), mine, svc_codes, outward, candidate,
                      keys, ids, config)  # fmt: skip
    inv, g = group_codes(mine * 2 + outward, end, svc_codes)
    red = reduce_groups(inv, g, edge_columns(edges))
    span_h = (red["last"] - red["first"]) / _HOUR_US
    weak = (
        (red["conv"] < config.min_conversations)
        | (red["days"] < config.min_days)
        | (span_h < config.min_span_hours)
    )
    drop = candidate & weak[inv]
    exclusions = []
    first_row = np.full(g, -1, np.int64)
    rows = np.flatnonzero(drop)
    first_row[inv[rows[::-1]]] = rows[::-1]
    for i in np.flatnonzero(first_row >= 0).tolist():
        r = int(first_row[i])
        detail = (
            f"the external end {key_text(keys[int(end[r])])} has too little evidence of its "
            f"own: {int(red['conv'][i])} conversation(s) on {int(red['days'][i])} day(s) over "
            f"{float(span_h[i]):.1f} h (needs {config.min_conversations}, {config.min_days}, "
            f"{config.min_span_hours:g} h)"
        )
        exclusions.append(
            Exclusion(
                "one-off-external",
                key_text(keys[int(raw_src[r])]),
                key_text(keys[int(raw_dst[r])]),
                svc_names[int(svc_codes[r])],
                int(red["conv"][i]),
                detail,
            )
        )
    return ~drop, exclusions


def _components(
    end: np.ndarray,
    mine: np.ndarray,
    svc: np.ndarray,
    outward: np.ndarray,
    candidate: np.ndarray,
    keys: list[ClassKey],
    ids: dict[ClassKey, int],
    config: RecommendConfig,
) -> np.ndarray:
    """Each row's external end as the rule will hold it: a private address whose /24 (/64)
    aggregates (:func:`~.classes.generalise`) counts as that network; others as themselves."""
    is_addr = np.array([k[0] == "addr" for k in keys], bool)
    rows = np.flatnonzero(candidate & is_addr[end])
    out = end.copy()
    if not len(rows):
        return out
    combos = np.unique(np.stack([mine[rows], svc[rows], outward[rows], end[rows]]), axis=1)
    members: dict[tuple[int, int, int], list[int]] = defaultdict(list)
    for m, v, o, e in combos.T.tolist():
        members[m, v, o].append(e)
    mapped: dict[tuple[int, int, int, int], int] = {}
    for (m, v, o), ends in members.items():
        nets: dict[str, list[int]] = defaultdict(list)
        for e in ends:
            ip = ipaddress.ip_address(str(keys[e][1]))
            nets[str(ipaddress.ip_network(f"{ip}/{24 if ip.version == 4 else 64}", False))].append(
                e
            )
        for net, held in nets.items():
            if len(held) >= config.private_aggregate:
                net_id = key_id(("net", net), ids, keys)
                mapped.update({(m, v, o, e): net_id for e in held})
    for r in rows.tolist():
        out[r] = mapped.get((int(mine[r]), int(svc[r]), int(outward[r]), int(end[r])), end[r])
    return out
