"""The main job's wall times: ingest, train, embed and recommend in a fresh workspace.

Each command runs as a user runs it (`python -m tagrec_cli ...`, a process of its own) with
the default settings, one after the other; the table gives each one's wall time and peak
memory (that process's maximum resident set size), and the machine's load average before
each, since on a shared machine a time means little without it.

    python benchmarks/pipeline.py --data sample_data --json benchmarks/pipeline-sample.json
    python benchmarks/pipeline.py --data ../shared/datasets/ml-latest-small \
        --json benchmarks/pipeline-ml-small.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = (("ingest", ["ingest", "--data", "{data}"]),
         ("train", ["train"]),
         ("embed", ["embed"]),
         ("recommend --user 42", ["recommend", "--user", "42", "--json"]))


def run_step(args: list[str], workdir: Path) -> dict:
    """One command in a child process: wall seconds, peak RSS (MiB), load before."""
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: progress bars fill one
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "tagrec_cli", *args, "--workdir",
                                  str(workdir)], stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            sys.exit(f"tagrec {' '.join(args)} failed: {err.read().strip()[-500:]}")
    return {"seconds": round(seconds, 2), "peak_mib": round(usage.ru_maxrss / 1024),
            "load_before": round(load, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a MovieLens folder")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp) / "ws"
        for name, step in STEPS:
            rows[name] = run_step([a.format(data=args.data) for a in step], workdir)
            print(f"{name:22s} {rows[name]['seconds']:8.1f} s  {rows[name]['peak_mib']:6d} MiB"
                  f"  (load before {rows[name]['load_before']:.1f})", flush=True)
    total = sum(r["seconds"] for r in rows.values())
    print(f"{'total':22s} {total:8.1f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"data": str(args.data), "cpus": os.cpu_count(),
                                         "date": time.strftime("%Y-%m-%d"), "steps": rows,
                                         "total_seconds": round(total, 2)}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
