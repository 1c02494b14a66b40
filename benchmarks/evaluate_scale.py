"""Scoring at MovieLens-25M size: `run_evaluate` per method, code before and after, in turns.

What `tagrec evaluate` does after fitting, on its test stage: rank the whole catalogue for
every evaluated user, history excluded, for tagrec and each baseline, then the metrics and
the new-users slice. Each (method, code) is its own process (`--code LABEL=DIR` puts checkout
DIR's tagrec_cli first on PYTHONPATH), and the codes take turns method by method, so that a
change in the machine's load touches both alike. It reports each run's wall time, CPU share
and peak memory, and checks that every code gives the same metrics, float for float. The
JSON is rewritten after every run, and --resume keeps the runs it holds.

The workspace: evaluate's test-stage split of the data (per user the latest 10% of ratings
held out as test, 10% of the users as new users), ingested once into WORKDIR, with random
unit vectors as tagrec's tables (benchmarks/random_tables.py; the ranking's work does not
depend on their values, only its metrics do, and those are compared between the codes).

    python benchmarks/evaluate_scale.py --data /tmp/d25 --workdir /tmp/ev25 \\
        --code before=/path/to/old/checkout --code after=. [--methods tagrec,random,...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RUN = r"""
import json, sys
from tagrec_cli import evaluate
from tagrec_cli.evaluate import run_evaluate
method, workdir, out, new_users = sys.argv[1:5]
if new_users == "0":  # the ranking of all users alone, as evaluate was before new users
    evaluate.new_users_slice = lambda *args, **kwargs: {}
tagrec = method == "tagrec"
report = run_evaluate(workdir, baselines=[] if tagrec else [method], include_tagrec=tagrec,
                      target="test")
json.dump(report.to_dict(), open(out, "w"))
"""


def prepare(data: Path, workdir: Path, model: Path | None) -> None:
    """evaluate's test-stage ingest of `data` into `workdir`, then random tables."""
    from tagrec_cli.config import NEW_USER_SHARE, TEST_FRACTION, IngestConfig
    from tagrec_cli.ingest import run_ingest

    if not (workdir / "ingest" / "manifest.json").exists():
        print(f"ingesting {data} into {workdir} (evaluate's test-stage split)", flush=True)
        run_ingest(data, workdir, replace(IngestConfig(), test_fraction=TEST_FRACTION,
                                          new_users=NEW_USER_SHARE))
    if not (workdir / "embeddings" / "manifest.json").exists():
        cmd = [sys.executable, str(ROOT / "benchmarks" / "random_tables.py"), str(workdir)]
        subprocess.run(cmd + (["--model", str(model)] if model else []), check=True)


def run_one(method: str, workdir: Path, checkout: Path, new_users: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        env = {**os.environ, "PYTHONPATH": str(checkout.resolve())}
        load, t0 = os.getloadavg()[0], time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", RUN, method, str(workdir), str(out),
                                 "1" if new_users else "0"], env=env, cwd=tmp)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        cpu = usage.ru_utime + usage.ru_stime
        if status != 0:  # e.g. killed for memory: reported, and the others still run
            return {"wall_s": round(wall, 1), "cpu_share": round(cpu / wall, 2),
                    "peak_gib": round(usage.ru_maxrss / 2**20, 2), "method_s": None,
                    "failed": f"wait status {status}", "metrics": None, "skipped": None,
                    "load_average_1min": [round(load, 1), round(os.getloadavg()[0], 1)]}
        report = json.loads(out.read_text())
    return {"wall_s": round(wall, 1), "cpu_share": round(cpu / wall, 2),
            "peak_gib": round(usage.ru_maxrss / 2**20, 2),
            "method_s": report["methods"].get(method, {}).get("seconds"),
            "load_average_1min": [round(load, 1), round(os.getloadavg()[0], 1)],
            "metrics": {"methods": report["methods"].get(method, {}).get("slices"),
                        "pairs": report["methods"].get(method, {}).get("pairs"),
                        "new_users": report["new_users"].get(method)},
            "skipped": report["skipped"].get(method)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="MovieLens-format data (for a new workspace)")
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--model", type=Path, help="a model folder to record with the tables")
    ap.add_argument("--code", action="append", default=[], metavar="LABEL=DIR")
    ap.add_argument("--methods", default="tagrec,random,popular,bias,tfidf,als")
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/evaluate_scale.json"))
    ap.add_argument("--skip-new-users", action="store_true",
                    help="rank all users only (the code before the new-users slice has one)")
    ap.add_argument("--resume", action="store_true", help="keep the runs --json already has")
    args = ap.parse_args(argv)
    if args.data is not None:
        prepare(args.data, args.workdir, args.model)
    codes = {k: Path(v) for k, v in (c.split("=", 1) for c in args.code)} or {"this": ROOT}
    rows = (json.loads(args.json.read_text())["rows"]
            if args.resume and args.json.is_file() else [])
    done = {(r["method"], r["code"]) for r in rows}
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        for label, checkout in codes.items():
            if (method, label) in done:
                continue
            print(f"{method}: {label}", flush=True)
            rows.append({"method": method, "code": label,
                         **run_one(method, args.workdir, checkout, not args.skip_new_users)})
            write(args, rows, codes)  # after every run: a long run that stops keeps the rest
    same = metrics_equal(rows)
    print(f"\n{'method':<8} {'code':<8} {'wall s':>8} {'method s':>9} {'CPU':>5} "
          f"{'peak GiB':>9} {'load avg':>10}  metrics equal")
    for r in rows:
        print(f"{r['method']:<8} {r['code']:<8} {r['wall_s']:>8.1f} "
              f"{(r['method_s'] or 0):>9.1f} {r['cpu_share']:>5.2f} {r['peak_gib']:>9.2f} "
              f"{'→'.join(map(str, r['load_average_1min'])):>10}  {same[r['method']]}")
    totals = {label: sum(r["wall_s"] for r in rows if r["code"] == label) for label in codes}
    print("total wall s: " + ", ".join(f"{k} {v:.0f}" for k, v in totals.items()))
    return 0 if all(same.values()) else 1


def metrics_equal(rows: list[dict]) -> dict[str, bool]:
    """Per method: every code that finished gave the same metrics (and none failed)."""
    same = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        runs = [r for r in rows if r["method"] == method]
        got = {json.dumps(r["metrics"], sort_keys=True) for r in runs}
        same[method] = len(got) == 1 and not any(r.get("failed") for r in runs)
    return same


def write(args: argparse.Namespace, rows: list[dict], codes: dict[str, Path]) -> None:
    totals = {label: sum(r["wall_s"] for r in rows if r["code"] == label) for label in codes}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"workdir": str(args.workdir), "rows": rows,
                                     "metrics_equal": metrics_equal(rows),
                                     "total_wall_s": totals,
                                     "new_users_slice": not args.skip_new_users,
                                     "codes": {k: str(v.resolve()) for k, v in codes.items()}},
                                    indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
