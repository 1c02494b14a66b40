"""`tagrec train`: fit the two towers on the ingest pairs.

The loop reads top to bottom: `setup` (model, token tables, pairs, side features),
`encode_frozen` (with the encoder frozen, every document an epoch needs is encoded once),
`optimise` (optimizer, batches of every epoch, the popularity correction, the Planner that
prepares each epoch's steps ahead: plan.py), then per epoch `train_epoch` (the plan on the
device, step after step, the loss read only every log_every steps) and `validate`, and
`save` whenever validation ROC-AUC improves.

The default keeps the pretrained encoder frozen: only the two linear heads (pooled document +
side features -> 512), the collaborative part (a learned vector per movie, pooled into the
user tower: towers/collab.py) and the logistic loss's bias train, on shuffled batches of
1024 pairs with the hybrid loss (in-batch softmax over the pairs rated >= 4 + a like/dislike
logistic loss; see TrainConfig and benchmarks/QUALITY.md for why). With
--no-freeze-encoder BERT is fine-tuned too: per batch each distinct user and movie document
is encoded once, padded only to the longest document of its length group, and
--group-by-user keeps a user's pairs together so a long user document is encoded once for
several pairs. The best epoch by AUC is saved to a
staging folder beside out_dir and moved in when the run ends (finish): Ctrl-C keeps the best
model so far, unless out_dir holds a finished model of this ingest, which a cut-short run
never replaces.

Under torchrun (`torchrun --nproc-per-node N -m tagrec_cli train ...`) each process trains on
its own share of every epoch's batches and DistributedDataParallel averages the gradients, so
one step sees N x batch_size pairs; validation is shared out the same way and every process
ends up with the same metrics. Only rank 0 writes files. See train/distributed.py.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tagrec_cli import artifacts, features
from tagrec_cli.config import IngestConfig, ModelConfig, TrainConfig
from tagrec_cli.errors import TagrecError
from tagrec_cli.store import ingested
from tagrec_cli.towers import collab
from tagrec_cli.towers import pooled as pooled_cache
from tagrec_cli.towers.encode import encode_rows, uses_bf16
from tagrec_cli.towers.model import TwoTower, build_model, resolve_device, save_model
from tagrec_cli.towers.tokens import TokenTable, token_tables
from tagrec_cli.train import distributed, prefix
from tagrec_cli.train.batches import (
    Pairs,
    Schedule,
    epoch_batches,
    load_pairs,
    lr_factor,
    softmax_positives,
)
from tagrec_cli.train.distributed import Dist
from tagrec_cli.train.plan import EpochPlan, plan_epoch
from tagrec_cli.train.step import (
    BatchTowers,
    DeviceTokens,
    Feed,
    evaluate_pairs,
    side_features,
    train_step,
)

OnStep = Callable[[int, int, int, float, float], None]  # epoch, step, steps, loss, seqs/s


@dataclass
class TrainResult:
    model_dir: Path | None  # None when interrupted before the first epoch finished
    epochs: list[dict[str, Any]] = field(default_factory=list)  # epoch 0 = untrained heads
    best_epoch: int | None = None
    interrupted: bool = False  # stopped early: Ctrl-C, or diverged
    seconds: float = 0.0
    # Stopped early while model_dir held a finished model from before: that one is kept,
    # and this run's best epoch (best_epoch, epochs) was not saved; a finished run always
    # replaces it.
    kept_previous: bool = False


@dataclass
class Run:
    """Everything one training run holds, built by setup() and optimise()."""

    workdir: Path
    out_dir: Path
    cfg: TrainConfig
    dist: Dist
    model: TwoTower
    tokenizer: Any
    tables: dict[str, TokenTable]
    pairs: dict[str, Pairs]  # "train", "valid"
    side: dict[str, torch.Tensor] | None  # per tower (N, F) side features, or None
    unrated: torch.Tensor | None  # movies' features as if never rated (N, F)
    unknown: torch.Tensor | None  # users' features as if without history (U, F)
    settings: dict[str, Any]  # saved in the model's config.json
    result: TrainResult
    pooled: dict[str, torch.Tensor] | None = None  # frozen encoder: (N, H) per tower
    towers: nn.Module | None = None  # BatchTowers, DDP-wrapped under torchrun
    bce_bias: torch.Tensor | None = None
    optimizer: torch.optim.Optimizer | None = None
    schedule: Schedule | None = None  # per epoch, its batches (drawn when planned)
    planner: Planner | None = None  # the epochs' plans, made one epoch ahead
    tokens: dict[str, DeviceTokens] | None = None  # fine-tuning: the token tables on the device
    log_q: np.ndarray | None = None  # (n_movies,) softmax popularity correction
    like_share: float = 0.5
    unrated_rng: np.random.Generator | None = None
    base_lrs: list[float] = field(default_factory=list)
    liked: Any = None  # collaborative model: (users, movies) CSR, towers/collab.py
    device_liked: Any = None  # the same for the step (collab.DeviceLiked)
    real_users: int = 0  # the user table's rows before the short-history users (prefix.py)
    # The best epoch so far is saved here, beside out_dir, and moves into out_dir when the
    # run ends (finish); a run killed outright leaves out_dir as it was.
    staging: Path | None = None
    previous: bool = False  # out_dir held a finished model when the run began

    @property
    def device(self) -> torch.device:
        return self.dist.device  # cuda:LOCAL_RANK under torchrun


class Planner:
    """Each epoch's plan (plan.py), made in a background thread while the epoch before it
    trains (and the first while the untrained heads are evaluated). One worker makes the
    plans in epoch order, so the cold-dropout stream is drawn as a plain loop would."""

    def __init__(self, make: Callable[[int], EpochPlan], epochs: int):
        self.make, self.epochs = make, epochs
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="tagrec-plan")
        self.epoch, self.next = 1, self.pool.submit(make, 1)

    def take(self, epoch: int) -> EpochPlan:
        """Epoch `epoch`'s plan (epochs are taken in order 1, 2, ...); starts the next one."""
        if epoch != self.epoch:
            raise ValueError(f"plans are taken in order: epoch {self.epoch}, not {epoch}")
        plan = self.next.result()
        self.epoch += 1
        if self.epoch <= self.epochs:
            self.next = self.pool.submit(self.make, self.epoch)
        return plan

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


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


def setup(workdir: Path, out_dir: Path, manifest: dict[str, Any], model_cfg: ModelConfig,
          cfg: TrainConfig, dist: Dist, say: Callable[[str], None]) -> Run:
    """The model with fresh heads, the token tables, the pairs and the side features."""
    ingest_cfg = IngestConfig.from_settings(manifest.get("settings", {}))  # checked once
    if ingest_cfg.side_features and manifest.get("feature_stats"):
        model_cfg = replace(model_cfg, features=dict(manifest["feature_stats"]))
    if model_cfg.collaborative:  # one learned vector per movie of the ingest
        model_cfg = replace(model_cfg, id_rows=ingested.documents(workdir, "movie").height)
    say(f"loading {model_cfg.base_model}")
    model, tokenizer = build_model(model_cfg, seed=cfg.seed)  # same seed: same heads on all ranks
    model.to(dist.device)
    if cfg.compile:
        # In place (nn.Module.compile), so the state dict keeps its names. dynamic: a step's
        # batch and length groups change shape from step to step.
        model.encoder.compile(dynamic=True)
        for head in model.heads.values():
            head.compile(dynamic=True)
    if dist.rank > 0:
        # Rank 0 keeps a plain run's random stream; the others draw their own dropout masks.
        torch.manual_seed(cfg.seed + dist.rank)
    say("tokenizing documents")
    with distributed.main_first(dist):  # rank 0 writes the token cache, the others read it
        tables = token_tables(workdir, tokenizer, model_cfg.max_length)
    like_threshold = ingest_cfg.like_threshold
    # Read once, and only when needed: the likes the pool is made of, and the first ratings
    # the short-history users are made of.
    history = (ingested.history_ratings(workdir)
               if model_cfg.collaborative or cfg.short_history else None)
    liked = None
    if model_cfg.collaborative:
        model.id_movies.copy_(torch.from_numpy(tables["movie"].ids.astype(np.int64)))
        liked = collab.liked_matrix(tables["user"].ids, tables["movie"].ids, history,
                                    like_threshold)
    pairs = load_pairs(workdir, tables)
    train = pairs["train"]
    if len(train.labels) == 0:
        raise TagrecError("no training pairs in the workspace — re-run `tagrec ingest` with "
                          "more data or a larger --pairs-per-class")
    side = side_features(workdir, model_cfg, tables)  # (N, F) per tower, or None
    real_users = len(tables["user"])
    real_pairs = len(train.labels)
    short = None
    if cfg.short_history:
        trained = pl.DataFrame({"userId": tables["user"].ids[train.user_rows],
                                "movieId": tables["movie"].ids[train.movie_rows]})
        short = prefix.short_history_users(workdir, history, trained, cfg.short_history,
                                           cfg.short_history_next, like_threshold,
                                           model_cfg.features, cfg.seed)
    if short is not None:  # appended user rows, for training only
        tables, pairs, side, liked = prefix.add_short_history(
            short, tables, pairs, side, liked, tokenizer, model_cfg.max_length, like_threshold)
        train = pairs["train"]
    unrated = unknown = None  # movies as never rated, users as without history
    if side is not None:
        unrated = torch.from_numpy(features.as_unrated(side["movie"].numpy(),
                                                       model_cfg.features))
        unknown = torch.from_numpy(features.as_unknown_user(side["user"].numpy(),
                                                            model_cfg.features))
    settings = {"training": asdict(cfg),
                "data": {"ingest_manifest_hash": artifacts.file_digest(
                    workdir / artifacts.INGEST_DIR / artifacts.MANIFEST),
                    "data_hash": manifest.get("data_hash"),
                    "ingest_key": manifest.get("ingest_key"),
                    "train_pairs": real_pairs, "valid_pairs": len(pairs["valid"].labels),
                    "short_history_users": len(tables["user"]) - real_users,
                    "short_history_pairs": len(train.labels) - real_pairs}}
    if dist.enabled:
        # Per epoch: which pairs each rank trained on, counted from the indices it fed to
        # train_step (see distributed.coverage).
        settings["distributed"] = {"world_size": dist.world, "backend": dist.backend,
                                   "global_batch_size": dist.world * cfg.batch_size,
                                   "epochs": []}
    return Run(workdir, out_dir, cfg, dist, model, tokenizer, tables, pairs, side, unrated,
               unknown, settings, TrainResult(model_dir=None), liked=liked,
               real_users=real_users)


def encode_frozen(run: Run) -> dict[str, torch.Tensor]:
    """(N, H) pooled encoder output per tower, for the documents some pair refers to.

    Rows the workspace cache already holds for this encoder and these documents (an earlier
    frozen-encoder train) are read, not encoded: at MovieLens-25M size encoding is
    an hour or more on a CPU, and a second `train` with other settings needs the same rows.
    Rank 0 writes what it encoded back to the cache, for `embed` and the next `train`.
    """
    model, dist = run.model, run.dist
    model.encoder.requires_grad_(False)
    # The cache holds the ingest's rows, not the short-history pseudo-users appended after.
    real = {**run.tables, "user": run.tables["user"].head(run.real_users)}
    key = pooled_cache.cache_key(model, real, run.device, uses_bf16(run.device))
    hidden = model.encoder.config.hidden_size
    cached = pooled_cache.load(run.workdir, key, real, hidden)  # {} without a usable cache
    distributed.barrier(dist)  # every rank has read it before rank 0 may rewrite it
    pooled, done, encoded = {}, {}, 0
    for side, table in run.tables.items():
        needed = np.unique(np.concatenate([getattr(p, f"{side}_rows")
                                           for p in run.pairs.values()]))
        feats = torch.zeros((len(table), hidden))  # (N, H)
        have = np.zeros(len(table), dtype=bool)
        if side in cached:
            rows, cached_done = cached[side]
            n = len(cached_done)
            have[:n] = cached_done
            feats[:n][torch.from_numpy(cached_done)] = rows[torch.from_numpy(cached_done)]
        todo = needed[~have[needed]]
        if len(todo):
            encode = functools.partial(encode_rows, model, table, device=run.device,
                                       batch_size=run.cfg.eval_batch_size, side=None)
            feats[torch.from_numpy(todo)] = distributed.map_rows(dist, encode, todo)
            have[todo] = True
            encoded += int((todo < len(real[side])).sum())
        pooled[side], done[side] = feats, have
    if dist.main and encoded:  # what embed will look up: the ingest's rows
        pooled_cache.save(run.workdir, key, {**pooled, "user": pooled["user"][:run.real_users]},
                          {**done, "user": done["user"][:run.real_users]})
    return pooled


def optimise(run: Run) -> None:
    """The step's forward, the optimizer, every epoch's batches and the softmax's log-q."""
    cfg, dist, model, train = run.cfg, run.dist, run.model, run.pairs["train"]
    if run.liked is not None:
        run.device_liked = collab.DeviceLiked(run.liked, run.device)
    batch_towers = BatchTowers(model, run.device, run.pooled, run.side, run.unrated,
                               run.unknown, run.device_liked)
    run.bce_bias = batch_towers.bce_bias
    run.towers = batch_towers
    if dist.enabled:
        # find_unused_parameters: a trained BERT has weights the pooled output never reaches
        # (its pooler), and DDP would wait for their gradients forever; with the encoder
        # frozen only the two heads train, and every step uses both. device_ids stays unset:
        # the module already sits on this rank's device, and the numpy row arrays that
        # forward() takes are passed through untouched.
        run.towers = DistributedDataParallel(batch_towers,
                                             find_unused_parameters=not cfg.freeze_encoder)
    heads = list(model.heads.parameters())
    if model.cfg.collaborative:
        heads.append(model.id_vectors.weight)
    params = [{"params": heads, "lr": cfg.head_lr},
              {"params": [batch_towers.bce_bias], "lr": cfg.head_lr, "weight_decay": 0.0}]
    if not cfg.freeze_encoder:
        params.append({"params": list(model.encoder.parameters()), "lr": cfg.lr})
    # fused: one kernel for all parameters; on a CPU 5x faster than the per-tensor loop,
    # which the 5M-entry movie vectors of the collaborative part made a third of a step.
    run.optimizer = torch.optim.AdamW(params, weight_decay=cfg.weight_decay,
                                      fused=run.device.type in ("cpu", "cuda"))
    # The same seed on every rank: all cut the same batches, then each keeps its own share.
    rng = np.random.default_rng(cfg.seed)
    # The budget counts the batches before they are shared out: N processes run max_steps / N.
    run.schedule = Schedule(
        cfg.epochs, cfg.max_steps, rng,
        lambda gen: epoch_batches(train.user_rows, cfg.batch_size, gen, cfg.group_by_user),
        lambda batches: distributed.shard(dist, batches))
    if cfg.loss in ("softmax", "hybrid") and cfg.log_q:
        # q: how often a movie is a candidate, i.e. its share of the pairs the candidates
        # come from (every pair for "softmax", the positives for "hybrid").
        drawn = (np.ones(len(train.labels), bool) if cfg.loss == "softmax" else
                 softmax_positives(cfg, train.labels, train.ratings))
        counts = np.bincount(train.movie_rows[drawn], minlength=len(run.tables["movie"])) + 1.0
        run.log_q = np.log(counts / counts.sum()).astype(np.float32)  # (n_movies,)
    run.like_share = float(np.clip((train.labels > 0).mean(), 0.01, 0.99))
    # Which movies a step shows as never rated (side features only); its own stream, so
    # that turning it off leaves the batches as they were.
    run.unrated_rng = (np.random.default_rng([cfg.seed, dist.rank]) if run.side is not None
                       else None)
    run.base_lrs = [g["lr"] for g in run.optimizer.param_groups]
    lengths = None
    if not cfg.freeze_encoder:  # a step pads its documents on the device
        run.tokens = {side: DeviceTokens.of(table, run.device)
                      for side, table in run.tables.items()}
        lengths = {side: table.lengths for side, table in run.tables.items()}
    run.planner = Planner(lambda epoch: plan_epoch(cfg, train, run.schedule.epoch(epoch - 1),
                                                   lengths, run.log_q, run.unrated_rng),
                          len(run.schedule))


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


def finished_model(folder: Path, ingest_key: str | None) -> bool:
    """Whether `folder` holds a model whose training ran to its end on this very ingest
    (one trained on an older ingest cannot be embedded, so a cut-short run may replace it)."""
    try:
        config = artifacts.read_model_config(folder)
    except TagrecError:
        return False
    return (not config.get("interrupted", False)
            and config.get("data", {}).get("ingest_key") == ingest_key)


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
