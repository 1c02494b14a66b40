"""Whole-process wall time of `tagrec recommend --user ID`, as a person at a shell sees it.

Each run is a fresh `python -m tagrec_cli recommend ...` process (interpreter start, imports,
reading the tables, ranking, printing), repeated; the median is reported. It also checks
that the answer has k movies and that none of them is one the user already rated.

    python benchmarks/recommend.py --workdir WS --user 42 --runs 15
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import polars as pl


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, required=True, help="workspace after `tagrec embed`")
    ap.add_argument("--user", type=int, default=42)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/recommend.json"))
    args = ap.parse_args(argv)

    cmd = [sys.executable, "-m", "tagrec_cli", "recommend", "--user", str(args.user),
           "-k", str(args.k), "--workdir", str(args.workdir)]
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd + ["--json"], capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - start)
    recs = json.loads(proc.stdout)["recommendations"]
    seen = set(pl.read_parquet(args.workdir / "ingest" / "ratings.parquet")
               .filter(pl.col("userId") == args.user)["movieId"].to_list())
    overlap = seen & {r["movieId"] for r in recs}
    baseline = []
    for _ in range(args.runs):  # the interpreter alone, for scale
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        baseline.append(time.perf_counter() - start)
    table = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    print(table)
    result = {"command": " ".join(cmd[2:]), "runs": args.runs,
              "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
              "python_startup_median_s": statistics.median(baseline),
              "movies_returned": len(recs), "seen_movies_returned": len(overlap)}
    print(f"{'what':<34} {'median s':>9} {'min s':>7} {'max s':>7}")
    print(f"{'tagrec recommend (whole process)':<34} {result['median_s']:>9.3f} "
          f"{result['min_s']:>7.3f} {result['max_s']:>7.3f}")
    print(f"{'python -c pass':<34} {result['python_startup_median_s']:>9.3f}")
    print(f"returned {len(recs)} movies, {len(overlap)} of them already rated by the user")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    return 0 if len(recs) == args.k and not overlap else 1


if __name__ == "__main__":
    sys.exit(main())
