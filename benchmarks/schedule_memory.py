"""What a run holds of its epochs' batches: every epoch drawn up front, as train did until
2026-12-07, against train.batches.Schedule (each epoch drawn again when it is planned).

The pairs are MovieLens-25M's refit by default (25.1M + 3.2M short-history pairs), batches
of 1,024, 10 epochs, no step budget (`--max-steps 0`). Memory is numpy's allocations as
tracemalloc sees them: what the schedule holds once made (the first epoch's batches drawn),
and the peak while making it. Medians of --repeats runs, the two ways side by side.

    python benchmarks/schedule_memory.py --json benchmarks/schedule-memory.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import tracemalloc
from pathlib import Path

import numpy as np

from tagrec_cli.train.batches import Schedule, epoch_batches


def measure(way: str, users: np.ndarray, epochs: int, batch: int, grouped: bool) -> dict:
    tracemalloc.start()
    start = time.perf_counter()
    rng = np.random.default_rng(42)
    if way == "every epoch up front":
        held = [epoch_batches(users, batch, rng, grouped) for _ in range(epochs)]
        first = held[0]
    else:
        held = Schedule(epochs, 0, rng, lambda gen: epoch_batches(users, batch, gen, grouped))
        first = held.epoch(0)
    seconds = time.perf_counter() - start
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del held, first
    return {"held_mib": current / 2**20, "peak_mib": peak / 2**20, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=28_300_000)
    ap.add_argument("--users", type=int, default=162_000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--group-by-user", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    users = np.sort(np.random.default_rng(0).integers(0, args.users, args.pairs))
    rows = {}
    for way in ("every epoch up front", "Schedule"):
        runs = [measure(way, users, args.epochs, args.batch_size, args.group_by_user)
                for _ in range(args.repeats)]
        rows[way] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    print(f"{args.pairs:,} pairs, {args.epochs} epochs of batches of {args.batch_size}"
          f"{', grouped by user' if args.group_by_user else ''}; medians of {args.repeats}")
    print(f"{'way':<22} {'held MiB':>9} {'peak MiB':>9} {'seconds':>8}")
    for way, row in rows.items():
        print(f"{way:<22} {row['held_mib']:>9.0f} {row['peak_mib']:>9.0f} {row['seconds']:>8.1f}")
    if args.json:
        args.json.write_text(json.dumps({"command": "python benchmarks/schedule_memory.py",
                                         "settings": vars(args) | {"json": str(args.json)},
                                         "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
