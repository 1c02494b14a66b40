"""`tagrec train`: fit the two towers on the ingest pairs.

`run_train` reads top to bottom: `setup` (prepare.py: model, token tables, pairs, side
features), `encode_frozen` (with the encoder frozen, every document an epoch needs is
encoded once), `optimise` (optimizer, batches of every epoch, the popularity correction, the
Planner that prepares each epoch's steps ahead: plan.py), then per epoch `train_epoch` (the
plan on the device, step after step, the loss read only every log_every steps) and
`validate`, and `save` (checkpoint.py) whenever validation ROC-AUC improves.

The default keeps the pretrained encoder frozen: only the two linear heads (pooled document +
side features -> 512), the collaborative part (a learned vector per movie, pooled into the
user tower: towers/collab.py) and the logistic loss's bias train, on shuffled batches of
1024 pairs with the hybrid loss (in-batch softmax over the pairs rated >= 4 + a like/dislike
logistic loss; see TrainConfig and benchmarks/QUALITY.md for why). With
--no-freeze-encoder BERT is fine-tuned too: per batch each distinct user and movie document
is encoded once, padded only to the longest document of its length group, and
--group-by-user keeps a user's pairs together so a long user document is encoded once for
several pairs. The best epoch by AUC is saved to a staging folder beside out_dir and moved
in when the run ends (checkpoint.finish): Ctrl-C keeps the best model so far, unless out_dir
holds a finished model of this ingest, which a cut-short run never replaces.

Under torchrun (`torchrun --nproc-per-node N -m tagrec_cli train ...`) each process trains on
its own share of every epoch's batches and DistributedDataParallel averages the gradients, so
one step sees N x batch_size pairs; validation is shared out the same way and every process
ends up with the same metrics. Only rank 0 writes files. See train/distributed.py.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tagrec_cli import artifacts
from tagrec_cli.config import ModelConfig, TrainConfig
from tagrec_cli.errors import TagrecError
from tagrec_cli.store import ingested
from tagrec_cli.towers.model import resolve_device
from tagrec_cli.train import distributed
from tagrec_cli.train.batches import lr_factor
from tagrec_cli.train.checkpoint import finish, finished_model, save
from tagrec_cli.train.prepare import encode_frozen, optimise, setup
from tagrec_cli.train.run import OnStep, Run, TrainResult
from tagrec_cli.train.step import Feed, evaluate_pairs, train_step


def run_train(workdir: Path, model_cfg: ModelConfig | None = None,
              cfg: TrainConfig | None = None, out_dir: Path | None = None,
              on_step: OnStep | None = None,
              on_epoch: Callable[[dict[str, Any]], None] | None = None,
              on_status: Callable[[str], None] | None = None) -> TrainResult:
    """Train on workdir/ingest pairs; keep the best epoch (by validation AUC) in out_dir.

    on_step(epoch, step, steps, loss, seqs_per_s) is called after every step, on_epoch(metrics)
    after every evaluation (epoch 0 = heads untrained), on_status(msg) between phases.
    Under torchrun every process runs this and gets the same epoch metrics back; on_step
    reports the process's own steps. Only rank 0 writes out_dir.
    """
    model_cfg, cfg = model_cfg or ModelConfig(), cfg or TrainConfig()
    say = on_status or (lambda _m: None)
    start = time.perf_counter()
    workdir = Path(workdir)
    out_dir = Path(out_dir) if out_dir else workdir / artifacts.MODEL_DIR
    manifest = ingested.ingest_manifest(workdir)
    # Under torchrun rank 0 holds the workspace's write lock for every process.
    lock = (artifacts.workspace_lock(workdir) if distributed.launch_rank() == 0
            else contextlib.nullcontext())
    with lock, distributed.process_group(resolve_device(cfg.device)) as dist:
        run = setup(workdir, out_dir, manifest, model_cfg, cfg, dist, say)
        if dist.main:  # what dead runs left: a model moved aside is put back first
            artifacts.recover(out_dir.parent, out_dir.name)
            artifacts.recover(out_dir.parent, f"{out_dir.name}.best")
        run.previous = finished_model(out_dir, manifest.get("ingest_key"))
        run.staging = artifacts.temp_name(out_dir.parent / f"{out_dir.name}.best")
        if cfg.freeze_encoder:
            say("encoding documents once (frozen encoder)")
            run.pooled = encode_frozen(run)
        try:
            optimise(run)  # (starts the planner's thread: inside, so that it is closed)
            say("evaluating the untrained heads")
            validate(run, 0, {"train_loss": float("nan"), "seqs_per_s": float("nan")},
                     on_epoch)
            train_epochs(run, on_step, on_epoch, say)
        except BaseException:
            # Diverged (TagrecError), or a crash after a save (CUDA out of memory, a full
            # disk): the best epoch saved goes where finish puts it, as after Ctrl-C, so the
            # error does not throw hours of training away; and no staged copy is left behind.
            run.result.interrupted = True
            try:
                finish(run)
            finally:
                if dist.main and run.staging is not None:
                    shutil.rmtree(run.staging, ignore_errors=True)
            raise
        finally:
            if run.planner is not None:
                run.planner.close()
        finish(run)
    run.result.seconds = time.perf_counter() - start
    return run.result


def train_epochs(run: Run, on_step: OnStep | None,
                 on_epoch: Callable[[dict[str, Any]], None] | None,
                 say: Callable[[str], None]) -> None:
    """Every epoch: train, validate, save when validation AUC improves (Ctrl-C: stop)."""
    best_auc, step = -math.inf, 0
    try:
        for epoch in range(1, len(run.schedule) + 1):  # fewer than cfg.epochs: max_steps
            extra, step = train_epoch(run, epoch, step, on_step)
            stop_if_diverged(run, epoch, extra["train_loss"])
            auc = validate(run, epoch, extra, on_epoch)["auc"]
            # Without validation pairs (refit with --holdout-fraction 0) the last epoch is
            # kept.
            if math.isnan(auc) or auc > best_auc:
                best_auc = best_auc if math.isnan(auc) else auc
                say(f"saving epoch {epoch}")
                save(run, epoch)
    except KeyboardInterrupt:
        run.result.interrupted = True


def train_epoch(run: Run, epoch: int, step: int, on_step: OnStep | None,
                ) -> tuple[dict[str, float], int]:
    """One pass over this rank's batches; returns (the epoch's figures, the global step)."""
    cfg, model, dist = run.cfg, run.model, run.dist
    model.train()
    if cfg.freeze_encoder:
        model.encoder.eval()
    plan = run.planner.take(epoch)
    skip = np.zeros(plan.steps, dtype=bool)
    if cfg.loss == "softmax":  # without a positive on any rank, a step has no target
        skip = ~distributed.any_rank(dist, plan.has_target)
    feed = Feed(plan, run.device, skip, run.tokens, run.device_liked)
    total_steps = sum(run.schedule.steps)
    # The losses add up on the device; they are read (a sync) only every log_every steps
    # and at the epoch's end. `shown` is the mean loss since the previous read.
    loss_sum = torch.zeros((), dtype=torch.float64, device=run.device)
    shown, read_sum, read_at = float("nan"), 0.0, 0
    seqs, t0 = 0, time.perf_counter()
    for i in range(plan.steps):
        for group, base in zip(run.optimizer.param_groups, run.base_lrs, strict=True):
            group["lr"] = base * lr_factor(step, total_steps, cfg.warmup)
        loss, encoded = train_step(run.towers, run.optimizer, feed.inputs(i), cfg,
                                   run.like_share)
        loss_sum += loss
        seqs += encoded
        step += 1
        if i % cfg.log_every == 0 or i == plan.steps - 1:
            total = float(loss_sum)
            shown, read_sum, read_at = (total - read_sum) / (i + 1 - read_at), total, i + 1
        if on_step:
            on_step(epoch, i + 1, plan.steps, shown, seqs / max(time.perf_counter() - t0, 1e-9))
    seconds = time.perf_counter() - t0
    # Every rank ran as many steps, so the mean of the ranks' mean losses is the mean over
    # all steps; throughputs add up.
    loss_sum, rate_sum = distributed.all_reduce_sum(
        dist, [read_sum / plan.steps if plan.steps else math.nan, seqs / max(seconds, 1e-9)])
    if dist.enabled:
        run.settings["distributed"]["epochs"].append(
            {"epoch": epoch, **distributed.coverage(dist, plan.batches,
                                                     len(run.pairs["train"].labels))})
    return ({"train_loss": loss_sum / dist.world, "seqs_per_s": rate_sum,
             "epoch_seconds": seconds, "steps": plan.steps}, step)


def validate(run: Run, epoch: int, extra: dict[str, float],
             on_epoch: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    """Loss, ROC-AUC and sign accuracy on the validation pairs, recorded in the result."""
    metrics = {"epoch": epoch, **evaluate_pairs(run.model, run.tables, run.pairs["valid"],
                                                run.device, run.cfg.margin,
                                                run.cfg.eval_batch_size, run.pooled, run.dist,
                                                run.side, run.liked),
               **extra}
    run.result.epochs.append(metrics)
    if on_epoch:
        on_epoch(metrics)
    return metrics


def stop_if_diverged(run: Run, epoch: int, loss: float) -> None:
    """A diverged run (a NaN or infinite loss, e.g. from too high a learning rate) stops
    before it is validated or saved: NaN weights would rank nothing, and the AUC of NaN
    scores is NaN, which `train_epochs` reads as "no validation pairs" and would save."""
    if math.isfinite(loss) and all(bool(torch.isfinite(p).all())
                                   for p in run.model.parameters() if p.requires_grad):
        return
    kept = (f"{run.out_dir} keeps its model from before" if run.previous
            else f"epoch {run.result.best_epoch}'s model is saved" if run.result.model_dir
            else f"{run.out_dir} is unchanged")
    raise TagrecError(f"training diverged in epoch {epoch}: the loss or the weights are not "
                      f"finite numbers, so nothing of this epoch was saved ({kept}); "
                      "lower --lr or --head-lr")
