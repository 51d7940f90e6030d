"""Run every benchmark in bench/ and print each figure as a ratio to its same-run baseline.

Each ``bench_*.py`` module has ``run(**kwargs) -> dict`` returning at least ``name`` and
``ratio``. Sizes scale with ``BENCH_SCALE`` (default 1.0). Results also go to
bench/out/results.json.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

from cellwall.allocator import tune_allocator

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    # As the CLI does at start: the figures are what a user of ``cellwall`` gets.
    tune_allocator()
    only = set(argv[1:])
    results = []
    failed = []
    for path in sorted(HERE.glob("bench_*.py")):
        if only and path.stem not in only and path.stem.removeprefix("bench_") not in only:
            continue
        started = time.perf_counter()
        try:
            spec = importlib.util.spec_from_file_location(path.stem, path)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            result = module.run()
        except Exception as exc:  # one broken benchmark must not hide the others
            failed.append(path.stem)
            print(f"{path.stem}: FAILED: {type(exc).__name__}: {exc}", flush=True)
            continue
        result["wall_s"] = round(time.perf_counter() - started, 1)
        results.append(result)
        figures = ", ".join(f"{k}={v}" for k, v in result.items() if k not in ("name",))
        print(f"{result['name']}: {figures}", flush=True)
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"results: {out / 'results.json'} (BENCH_SCALE={os.environ.get('BENCH_SCALE', '1')})")
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
