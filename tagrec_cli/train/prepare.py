"""Everything `tagrec train` does before its first step: the model with fresh heads, the
token tables, pairs and side features (`setup`); with the encoder frozen, every document an
epoch needs encoded once (`encode_frozen`, through the workspace's pooled cache); and the
optimizer, every epoch's batches, the popularity correction and the Planner (`optimise`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch.nn.parallel import DistributedDataParallel

from tagrec_cli import artifacts, features
from tagrec_cli.config import IngestConfig, ModelConfig, TrainConfig
from tagrec_cli.errors import TagrecError
from tagrec_cli.store import ingested
from tagrec_cli.towers import collab
from tagrec_cli.towers import pooled as pooled_cache
from tagrec_cli.towers.encode import encode_rows, uses_bf16
from tagrec_cli.towers.model import build_model
from tagrec_cli.towers.tokens import token_tables
from tagrec_cli.train import distributed, prefix
from tagrec_cli.train.batches import Schedule, epoch_batches, load_pairs, softmax_positives
from tagrec_cli.train.distributed import Dist
from tagrec_cli.train.plan import Planner, plan_epoch
from tagrec_cli.train.run import Run, TrainResult
from tagrec_cli.train.step import BatchTowers, DeviceTokens, side_features


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
