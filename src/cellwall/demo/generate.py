"""``generate``: the entry point that builds the estate and streams its flows to disk.

Memory stays bounded by ``config.chunk``: each hour is cut into slices of at most about that
many conversations, each slice is generated, written and dropped before the next.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cellwall.demo.attacks import AttackSet, build_attacks
from cellwall.demo.config import DemoConfig, DemoResult
from cellwall.demo.estate import build_estate
from cellwall.demo.outputs import write_documents
from cellwall.demo.traffic import HOUR, US, Conversations, IpText, Plan
from cellwall.demo.truth import Tally
from cellwall.demo.writers import writer_for
from cellwall.errors import UsageError

__all__ = ["generate"]

Progress = Callable[[int, int], None]


def _calibrate(plan: Plan, config: DemoConfig, attacks: AttackSet | None) -> None:
    """Set the rate scale so that the records written come near ``config.flows``."""
    per_conv = 2.0 if config.fmt == "vpc" else 1.0
    fixed = plan.scheduled_total() * per_conv + len(plan.floor_edges) * per_conv
    if attacks is not None:
        c = attacks.conv
        fixed += len(c) + (float((~c.reject & (c.rp > 0)).sum()) if config.fmt == "vpc" else 0.0)
    if config.fmt == "vpc":
        fixed *= 1.0002  # NODATA and SKIPDATA lines are not flow records, but are few
    steady = plan.expected_steady() * per_conv
    plan.scale = max(0.0, (config.flows - fixed) / steady) if steady > 0 else 0.0


def _attack_slice(attacks: AttackSet | None, t0: int, t1: int) -> Conversations | None:
    if attacks is None:
        return None
    lo, hi = np.searchsorted(attacks.conv.start_us, [t0 * US, t1 * US])
    return attacks.conv.take(np.arange(lo, hi)) if hi > lo else None


def generate(out_dir: Path, config: DemoConfig, progress: Progress | None = None) -> DemoResult:
    """Write the demo estate's flows, inventory and ground truth into ``out_dir``.

    ``out_dir/flows`` must be absent or empty. ``progress(done, total)`` is called after
    each hour of flows.
    """
    config.validate()
    began = time.perf_counter()
    flows_dir = out_dir / "flows"
    if flows_dir.exists() and any(flows_dir.iterdir()):
        raise UsageError(f"{flows_dir} already holds files", hint="choose an empty directory")
    estate = build_estate(config)
    plan = Plan(estate, config.seed)
    attacks = build_attacks(estate, plan, config.seed, config.attack_at) if config.attacks else None
    _calibrate(plan, config, attacks)
    writer = writer_for(config.fmt)(
        flows_dir, estate, IpText(plan.resolver.all_ips()), gzip=config.gzip, per=config.file_per
    )
    tally = Tally(len(estate.edges))
    conversations = 0
    try:
        for done, hour in enumerate(range(plan.h0, plan.h0 + plan.hours), start=1):
            parts = plan.parts(hour, config.chunk)
            for part in range(parts):
                t0 = hour * HOUR + part * HOUR // parts
                t1 = hour * HOUR + (part + 1) * HOUR // parts
                conv = plan.slice(hour, part, parts)
                tally.add(conv)
                extra = _attack_slice(attacks, t0, t1)
                if extra is not None:
                    conv = Conversations.concat([conv, extra]).sorted()
                conversations += len(conv)
                writer.write(conv, t0, t1, np.random.default_rng([config.seed, 4, hour, part]))
            if progress is not None:
                progress(done, plan.hours)
    finally:
        writer.close()
    counts = {
        "records": writer.records,
        "other_lines": writer.other,
        "conversations": conversations,
        "attack_conversations": len(attacks.conv) if attacks else 0,
    }
    documents = write_documents(out_dir, config, estate, tally, attacks, counts)
    return DemoResult(
        out_dir=out_dir,
        flow_files=tuple(writer.files),
        documents=documents,
        records=writer.records,
        conversations=conversations,
        attack_conversations=counts["attack_conversations"],
        other_lines=writer.other,
        workloads=len(estate.workloads),
        edges=len(estate.edges),
        seconds=time.perf_counter() - began,
    )
