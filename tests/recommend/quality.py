"""Quality of a recommendation against the demo's ground truth.

Learn on days 1..LEARN of a generated estate, judge on the days after: the share of
legitimate conversations allowed, the attack conversations allowed (those that leave the
intended edges must all be refused; those that ride an intended edge cannot be told apart
at L4 and are counted apart), and the rule count against the truth's minimal rule set.

Run as a script for other seeds: ``python -m tests.recommend.quality SEED [SEED...]``.
"""

from __future__ import annotations

import csv
import json
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from cellwall.demo import DemoConfig, generate
from cellwall.inventory import InventoryStore
from cellwall.inventory.loader import load_inventory_files
from cellwall.policy.judge import judge
from cellwall.policy.loader import load_policy
from cellwall.services.ingest import ingest_paths
from cellwall.services.inventory import load_inventory
from cellwall.services.recommend import RecommendQuery, recommend
from cellwall.services.replay import window_conversations
from cellwall.workspace import Workspace

START = datetime(2026, 11, 2, tzinfo=UTC)
DAYS, LEARN = 37, 30


@dataclass
class Estate:
    root: Path
    ws: Workspace
    truth: dict[str, Any]


def build(root: Path, seed: int, flows: int = 150_000) -> Estate:
    config = DemoConfig(seed=seed, days=DAYS, flows=flows, start=START, file_per="day")
    result = generate(root / "estate", config)
    ws = Workspace.resolve(root / "home")
    ingest_paths(ws, result.flow_files, fmt="vpc")
    docs = result.documents
    load_inventory(ws, [docs["inventory"]], source="demo", conventions=docs["conventions"])
    load_inventory(ws, [docs["conventions"]], source="demo-conventions")
    return Estate(root, ws, json.loads(Path(docs["truth"]).read_text()))


def _attack_rows(root: Path) -> list[dict[str, str]]:
    with (root / "estate" / "truth" / "attacks.csv").open() as f:
        return list(csv.DictReader(f))


def measure(estate: Estate, granularity: str = "role") -> dict[str, Any]:
    ws = estate.ws
    out = estate.root / f"proposal-{granularity}"
    learn_end = START + timedelta(days=LEARN)
    began = time.perf_counter()
    doc = recommend(ws, RecommendQuery(START, learn_end, granularity, out))
    seconds = time.perf_counter() - began
    inventory = InventoryStore(ws.engine)
    workloads = inventory.current()
    loaded = load_policy([out], convention=inventory.convention(), workloads=workloads)
    policy = loaded.policy_set
    later = window_conversations(ws, learn_end, START + timedelta(days=DAYS)).to_pyarrow()
    verdicts = judge(later, policy, workloads)
    allowed = int(pc.sum(pc.equal(verdicts["verdict"], "allowed")).as_py() or 0)
    attacks = _attack_rows(estate.root)
    keys = {(r["src_ip"], int(r["src_port"]), r["dst_ip"], int(r["dst_port"])): r for r in attacks}
    lo = min(int(r["start_us"]) for r in attacks) // 1_000_000 - 300
    hi = max(int(r["end_us"]) for r in attacks) // 1_000_000 + 300
    during = window_conversations(
        ws, datetime.fromtimestamp(lo, UTC), datetime.fromtimestamp(hi, UTC)
    ).to_pyarrow()
    seen = judge(during, policy, workloads)["verdict"].to_pylist()
    # The truth's own minimal rule set, judged on the same conversations: an attack that it
    # allows rides the business's own paths and no L4 proposal can refuse it.
    # It is written on the true labels, so it is judged with the true inventory (the claimed
    # one has planted mislabels).
    truth_dir = estate.root / "estate" / "truth"
    true_inventory = load_inventory_files([truth_dir / "inventory-true.yaml"])
    true_workloads = list(true_inventory.workloads)
    minimal = load_policy(
        [truth_dir / f"policy-{granularity}.yaml"], workloads=true_workloads
    ).policy_set
    by_truth = judge(during, minimal, true_workloads)["verdict"].to_pylist()
    tally: Counter[tuple[bool, bool]] = Counter()
    truth_allows = beyond_truth = 0
    cols = ("client_ip", "client_port", "server_ip", "server_port")
    rows = during.select(list(cols)).to_pylist()
    for row, verdict, truth_verdict in zip(rows, seen, by_truth, strict=True):
        hit = keys.get(tuple(row[c] for c in cols))  # type: ignore[arg-type]
        if hit is not None:
            tally[bool(hit["rides_edge"]), verdict == "allowed"] += 1
            truth_allows += truth_verdict == "allowed"
            beyond_truth += verdict == "allowed" and truth_verdict != "allowed"
    truth_rules = int(estate.truth["granularities"][granularity]["rules"])
    return {
        "granularity": granularity,
        "load_errors": len(loaded.errors),
        "rules": doc["rules"],
        "truth_rules": truth_rules,
        "rule_ratio": round(doc["rules"] / truth_rules, 3),
        "legit_judged": later.num_rows,
        "legit_allowed_share": round(allowed / later.num_rows, 5) if later.num_rows else 1.0,
        "attacks": len(attacks),
        "attacks_matched": sum(tally.values()),
        "attacks_off_edge_allowed": tally[False, True],
        "attacks_off_edge_refused": tally[False, False],
        "attacks_on_edge_allowed": tally[True, True],
        "attacks_allowed_by_truth_minimal": truth_allows,
        "attacks_allowed_beyond_truth": beyond_truth,
        "recommend_seconds": round(seconds, 2),
        "excluded": doc["excluded"],
    }


def main(seeds: list[int]) -> None:
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            estate = build(Path(tmp), seed)
            for g in ("role", "workload", "app"):
                print(json.dumps({"seed": seed, **measure(estate, g)}), flush=True)


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1:]])
