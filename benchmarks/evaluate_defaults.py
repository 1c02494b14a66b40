"""`tagrec evaluate`'s whole protocol with the default settings, without the served training.

evaluate reads only the settings the workspace's model was trained with (model/config.json)
and fits its own validation and test stages; the served model's weights play no part. The
served `tagrec train` would be one more fit that the report never reads (at QUALITY.md's
25M-sized sample, minutes), so this script writes the defaults' settings in its place, then runs
the protocol exactly as `tagrec ingest -w WS && tagrec train -w WS --seed S && tagrec
evaluate -w WS` would (the same `run_protocol`, the same report).

    python benchmarks/evaluate_defaults.py DATA WS --seed 42 --json eval.json

WS must not hold a trained model (it is not overwritten); its recommend cannot run after this.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from tagrec_cli import artifacts
from tagrec_cli.config import ModelConfig, TrainConfig
from tagrec_cli.protocol import run_protocol


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="a MovieLens folder (ratings, tags, movies .csv)")
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--seed", type=int, default=TrainConfig().seed)
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args(argv)
    model_dir = args.workdir / artifacts.MODEL_DIR
    if (model_dir / artifacts.MODEL_WEIGHTS).exists():
        sys.exit(f"{model_dir} holds a trained model: use `tagrec evaluate` there")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tagrec_cli", "ingest", "--data", str(args.data),
                    "--workdir", str(args.workdir)], check=True)
    model_dir.mkdir(parents=True, exist_ok=True)
    artifacts.write_json(model_dir / artifacts.MODEL_CONFIG, {
        "format": f"tagrec-{artifacts.MODEL_DIR}", "format_version": artifacts.MODEL_FORMAT,
        "model": asdict(ModelConfig()), "training": asdict(TrainConfig(seed=args.seed))})
    report = run_protocol(args.workdir, progress=lambda msg: print(
        f"[{time.perf_counter() - start:7.0f} s] {msg}", flush=True))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    artifacts.write_json(args.json, report.to_dict())  # as `tagrec evaluate --json`: NaN = null
    print(f"done in {time.perf_counter() - start:.0f} s; report: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
