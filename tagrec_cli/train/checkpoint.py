"""Where a training run's models go: the best epoch so far is saved to a staging folder
beside out_dir (`save`), and moved in when the run ends (`finish`), unless the run was cut
short and out_dir holds a finished model of this ingest (`finished_model`), which a
cut-short run never replaces."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tagrec_cli import artifacts
from tagrec_cli.errors import TagrecError
from tagrec_cli.towers.model import save_model
from tagrec_cli.train import distributed
from tagrec_cli.train.run import Run


def finished_model(folder: Path, ingest_key: str | None) -> bool:
    """Whether `folder` holds a model whose training ran to its end on this very ingest
    (one trained on an older ingest cannot be embedded, so a cut-short run may replace it)."""
    try:
        config = artifacts.read_model_config(folder)
    except TagrecError:
        return False
    return (not config.get("interrupted", False)
            and config.get("data", {}).get("ingest_key") == ingest_key)


def save(run: Run, epoch: int) -> None:
    """This epoch's model replaces the run's staging folder (rank 0 writes; every rank
    records it); finish moves it into out_dir."""
    result = run.result
    if run.dist.main:
        with artifacts.atomic_dir(run.staging) as tmp:
            save_model(run.model, run.tokenizer, tmp, {**run.settings, "best_epoch": epoch,
                                                       "metrics": result.epochs[-1],
                                                       "history": result.epochs})
            write_metrics(tmp / artifacts.METRICS_FILE, result.epochs)
    result.model_dir, result.best_epoch = run.out_dir, epoch


def finish(run: Run) -> None:
    """Bring the saved model's history up to date (it holds the best epoch, not the last)
    and move it into out_dir; but a run that stopped early (Ctrl-C, divergence) leaves a
    finished model from before where it is, and drops its own."""
    result, dist, staged = run.result, run.dist, run.staging
    result.kept_previous = result.model_dir is not None and result.interrupted and run.previous
    if result.model_dir is not None and dist.main:
        if result.kept_previous:
            shutil.rmtree(staged, ignore_errors=True)
        else:
            write_metrics(staged / artifacts.METRICS_FILE, result.epochs)
            config = artifacts.read_model_config(staged)
            config["history"] = result.epochs
            config["interrupted"] = result.interrupted
            if dist.enabled:
                config["distributed"] = run.settings["distributed"]
            artifacts.write_json(staged / artifacts.MODEL_CONFIG, config)
            artifacts.replace_dir(staged, run.out_dir)
    if not result.interrupted:
        # No rank leaves (tearing down the group) before rank 0 has written everything. After
        # Ctrl-C the ranks may be at different steps, so none waits for the others.
        distributed.barrier(dist)


def write_metrics(path: Path, epochs: list[dict[str, Any]]) -> None:
    with artifacts.atomic_file(path) as tmp:
        tmp.write_text("".join(json.dumps(artifacts.json_safe(m), allow_nan=False) + "\n"
                               for m in epochs), encoding="utf-8")
