"""Test mode over history: judge every conversation of a window and report what would happen.

:func:`conversation_facts` turns lake records into one row per conversation (the orientation
pass, then the facts that narrowed services need and the exporter's own action), as an Ibis
expression. :func:`replay` judges those rows in batches with the same
:func:`~cellwall.policy.evaluate.evaluate` as every other caller and gathers, in the same
pass, the counts per verdict, the exporter's action beside ours (*escaped*: the exporter
accepted what the policy would not allow), the top would-be-blocked edges at workload and
label level, what the modes would block per workload, and rule hit counts per day with the
last hit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cellwall.discover.orient import DEFAULT_GAP_SECONDS, orient
from cellwall.model.inventory import Workload
from cellwall.model.policy import PolicySet
from cellwall.policy.ir import VERDICTS
from cellwall.policy.judge import Judge

__all__ = ["ReplayResult", "conversation_facts", "replay", "replay_batches"]

BATCH = 1 << 20


def conversation_facts(t: Any, *, gap_seconds: int = DEFAULT_GAP_SECONDS) -> Any:
    """One row per conversation of the lake table ``t``, with what judging needs."""
    o = orient(t, gap_seconds=gap_seconds)
    reply = o.is_reply.fill_null(False)
    server_process = ibis.ifelse(reply, o.src_process, o.dst_process)
    action = o.action.upper()
    zero = ibis.literal(0, "int64")
    return o.group_by("conversation_id").aggregate(
        client_ip=o.client_ip.arbitrary(),
        server_ip=o.server_ip.arbitrary(),
        proto=o.proto.arbitrary(),
        server_port=o.server_port.arbitrary(),
        client_port=o.client_port.arbitrary(),
        service=o.service.arbitrary(),
        start=o.start.min(),
        end=o.end.max(),
        records=o.count(),
        bytes=o.bytes.cast("int64").fill_null(zero).sum(),
        server_process=server_process.max(),
        http_method=o.http_method.max(),
        http_path=o.http_path.max(),
        exporter_rejects=(action == "REJECT").cast("int64").fill_null(zero).sum(),
        exporter_accepts=(action == "ACCEPT").cast("int64").fill_null(zero).sum(),
    )


@dataclass
class ReplayResult:
    """What a replay found; :meth:`to_dict` is the ``--json`` document."""

    verdicts: Counter[str] = field(default_factory=Counter)
    unverified: int = 0
    blocked: int = 0
    exporter: Counter[tuple[str, str]] = field(default_factory=Counter)
    blocked_edges: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    blocked_classes: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    blocked_by_workload: Counter[str] = field(default_factory=Counter)
    hits: Counter[tuple[str, str]] = field(default_factory=Counter)
    last_hit: dict[str, datetime] = field(default_factory=dict)
    top: int = 20

    @property
    def escaped(self) -> int:
        return sum(n for (ex, v), n in self.exporter.items() if ex == "ACCEPT" and v != "allowed")

    def to_dict(self) -> dict[str, Any]:
        def edges(c: Counter[tuple[str, str, str]]) -> list[dict[str, Any]]:
            return [
                {"client": a, "server": b, "service": s, "conversations": n}
                for (a, b, s), n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[: self.top]
            ]

        by_rule: dict[str, dict[str, Any]] = {}
        for (rule, day), n in sorted(self.hits.items()):
            entry = by_rule.setdefault(rule, {"conversations": 0, "days": {}})
            entry["conversations"] += n
            entry["days"][day] = n
            entry["last_hit"] = self.last_hit[rule].isoformat().replace("+00:00", "Z")
        return {
            "verdicts": {v: self.verdicts.get(v, 0) for v in VERDICTS},
            "unverified": self.unverified,
            "would_block": self.blocked,
            "escaped": self.escaped,
            "exporter_vs_policy": [
                {"exporter": ex, "verdict": v, "conversations": n}
                for (ex, v), n in sorted(self.exporter.items())
            ],
            "top_would_be_blocked": {
                "workload": edges(self.blocked_edges),
                "label": edges(self.blocked_classes),
            },
            "would_block_by_workload": dict(
                sorted(self.blocked_by_workload.items(), key=lambda kv: (-kv[1], kv[0]))
            ),
            "rule_hits": by_rule,
        }


def replay_batches(conv: Any, batch_rows: int = BATCH) -> Iterator[pa.Table]:
    """The conversations of an Ibis expression as Arrow tables of at most ``batch_rows``.

    The orientation pass needs every record of the window at once (its window functions
    see the whole window), so its result is materialised and then cut into batches.
    """
    table = conv.to_pyarrow()
    for lo in range(0, table.num_rows, batch_rows):
        yield table.slice(lo, batch_rows)


def _end_names(j: Judge, t: pa.Table, side: str) -> pa.Array:
    wl = t[f"{side}_workload"].combine_chunks().cast(pa.string())
    return pc.if_else(pc.is_valid(wl), wl, pc.binary_join_element_wise("ip:", t[f"{side}_ip"], ""))


def _class_names(j: Judge, t: pa.Table, side: str) -> pa.Array:
    names = pa.array([j.ir.classes.name(c) for c in range(j.ir.classes.count)] + ["unmanaged"])
    cls = np.asarray(t[f"{side}_class"].to_numpy(), np.int64)
    return names.take(pa.array(np.where(cls < 0, len(names) - 1, cls)))


def _count(counter: Counter[Any], cols: Sequence[pa.Array]) -> None:
    if not len(cols[0]):
        return
    g = (
        pa.table({f"c{i}": c for i, c in enumerate(cols)})
        .group_by([f"c{i}" for i in range(len(cols))])
        .aggregate([([], "count_all")])
    )
    keys = [g[f"c{i}"].to_pylist() for i in range(len(cols))]
    for *k, n in zip(*keys, g["count_all"].to_pylist(), strict=True):
        counter[tuple(k) if len(k) > 1 else k[0]] += n


def _gather(j: Judge, t: pa.Table, v: pa.Table, r: ReplayResult) -> None:
    verdict = v["verdict"].cast(pa.string())
    _count(r.verdicts, [verdict])
    r.unverified += int(pc.sum(v["unverified"]).as_py() or 0)
    r.blocked += int(pc.sum(v["blocked"]).as_py() or 0)
    rejects = pc.fill_null(t["exporter_rejects"], 0)
    accepts = pc.fill_null(t["exporter_accepts"], 0)
    ex = pc.if_else(
        pc.greater(rejects, 0),
        "REJECT",
        pc.if_else(pc.greater(accepts, 0), "ACCEPT", "unknown"),
    )
    _count(r.exporter, [ex, verdict])
    blocked = v["blocked"]
    if pc.any(blocked).as_py():
        bt, svc = t.filter(blocked), t["service"].filter(blocked)
        _count(r.blocked_edges, [_end_names(j, bt, "client"), _end_names(j, bt, "server"), svc])
        _count(
            r.blocked_classes, [_class_names(j, bt, "client"), _class_names(j, bt, "server"), svc]
        )
        for side in ("client", "server"):
            wl = bt[f"{side}_workload"].cast(pa.string()).drop_null()
            _count(r.blocked_by_workload, [wl])
    ruled = pc.is_valid(v["rule_id"])
    if pc.any(ruled).as_py():
        rid = v["rule_id"].cast(pa.string()).filter(ruled)
        start = t["start"].filter(ruled)
        _count(r.hits, [rid, pc.strftime(start, "%Y-%m-%d")])
        g = pa.table({"r": rid, "s": start}).group_by("r").aggregate([("s", "max")])
        for rule, last in zip(g["r"].to_pylist(), g["s_max"].to_pylist(), strict=True):
            if rule not in r.last_hit or last > r.last_hit[rule]:
                r.last_hit[rule] = last


def replay(
    conversations: Any,
    policy: PolicySet,
    workloads: Sequence[Workload],
    *,
    dns: pa.Table | None = None,
    parquet_out: Path | None = None,
    top: int = 20,
) -> ReplayResult:
    """Judge every conversation of the Ibis expression ``conversations``
    (:func:`conversation_facts`); optionally write them, with their verdicts, as Parquet."""
    result = ReplayResult(top=top)
    writer: pq.ParquetWriter | None = None
    try:
        with Judge(policy, workloads, dns) as j:
            for ident, v in j.judge_many(replay_batches(conversations)):
                _gather(j, ident, v, result)
                if parquet_out is not None:
                    out = ident.drop_columns(["client_class", "server_class"])
                    for name in ("verdict", "rule_id", "unverified", "blocked"):
                        col = v[name]
                        out = out.append_column(
                            name, col.cast(pa.string()) if name in ("verdict", "rule_id") else col
                        )
                    if writer is None:
                        writer = pq.ParquetWriter(parquet_out, out.schema)
                    writer.write_table(out)
    finally:
        if writer is not None:
            writer.close()
    return result
