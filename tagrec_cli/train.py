"""`tagrec train`: fit the two towers on the ingest pairs.

One flat loop. The default keeps the pretrained encoder frozen: every document is encoded
once, and only the two linear heads (pooled document + side features -> 512) train, on
shuffled batches of 1024 pairs with the hybrid loss (in-batch softmax over the pairs rated
>= 4 + a like/dislike logistic loss; see TrainConfig and benchmarks/QUALITY.md for why).
With --no-freeze-encoder BERT is fine-tuned too: per batch each distinct user and movie
document is encoded once, padded only to the longest document of its length group, and
--group-by-user keeps a user's pairs together so a long user document is encoded once for
several pairs. After every epoch the validation pairs give loss, ROC-AUC and sign accuracy;
the best epoch by AUC is saved (atomically, so Ctrl-C leaves the best model so far intact).

Under torchrun (`torchrun --nproc-per-node N -m tagrec_cli train ...`) each process trains on
its own share of every epoch's batches and DistributedDataParallel averages the gradients, so
one step sees N x batch_size pairs; validation is shared out the same way and every process
ends up with the same metrics. Only rank 0 writes files. See tagrec_cli/distributed.py.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tagrec_cli import artifacts, distributed, features
from tagrec_cli import pooled as pooled_cache
from tagrec_cli.distributed import Dist
from tagrec_cli.embed import autocast, encode_rows, uses_bf16
from tagrec_cli.errors import TagrecError
from tagrec_cli.losses import balanced_logistic_loss, cosine_embedding_loss, in_batch_softmax_loss
from tagrec_cli.metrics import roc_auc, sign_accuracy
from tagrec_cli.model import ModelConfig, TwoTower, build_model, resolve_device, save_model
from tagrec_cli.tokens import TokenTable, token_tables

LOSSES = ("hybrid", "cosine", "softmax")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10  # frozen encoder: an epoch is seconds of head training (QUALITY.md)
    batch_size: int = 1024  # pairs per step (per process under torchrun: N processes, N x this)
    lr: float = 5e-5  # encoder learning rate (AdamW)
    head_lr: float = 1e-3  # projection heads start from random, so they learn faster
    weight_decay: float = 0.01
    warmup: float = 0.1  # share of steps with linear warm-up, then linear decay to 0
    margin: float = 0.0  # CosineEmbeddingLoss margin for dislikes
    # "hybrid": for the pairs rated >= positive_rating, a softmax against the batch's other
    # positive movies (ranks what a user will like) + bce_weight x a logistic loss on every
    # pair's like/dislike label (keeps a dislike below a like on the cosine scale).
    # "cosine": the seed's CosineEmbeddingLoss. "softmax": a softmax over every liked pair
    # against every movie of the batch, dislikes included.
    loss: str = "hybrid"
    temperature: float = 0.05  # softmax: cosine / temperature
    log_q: bool = True  # softmax: subtract log(how often a movie is a candidate)
    positive_rating: float = 4.0  # hybrid: the softmax's positives (evaluate's "relevant")
    bce_weight: float = 4.0  # hybrid: weight of the like/dislike logistic loss (QUALITY.md)
    bce_temperature: float = 0.2  # hybrid: logistic loss on cosine / this + a learned bias
    # Side features: share of batch movies shown as never rated and of users shown without
    # history, so that new movies and tags queries are placed by their documents.
    cold_dropout: float = 0.2
    seed: int = 42
    freeze_encoder: bool = True  # train only the heads on cached encoder outputs
    group_by_user: bool = False  # batch a user's pairs together (fewer long documents to encode)
    length_groups: int = 4  # per tower and step, encode documents in <= this many length groups
    device: str = "auto"
    eval_batch_size: int = 256

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if not 0 <= self.warmup < 1:
            raise ValueError("warmup must be in [0, 1)")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {self.loss!r}")
        if not 0 <= self.cold_dropout < 1:
            raise ValueError("cold_dropout must be in [0, 1)")


@dataclass
class TrainResult:
    model_dir: Path | None  # None when interrupted before the first epoch finished
    epochs: list[dict[str, Any]] = field(default_factory=list)  # epoch 0 = untrained heads
    best_epoch: int | None = None
    interrupted: bool = False
    seconds: float = 0.0


@dataclass
class Pairs:
    user_rows: np.ndarray  # (P,) rows into the user TokenTable
    movie_rows: np.ndarray  # (P,) rows into the movie TokenTable
    labels: np.ndarray  # (P,) +1 / -1
    ratings: np.ndarray  # (P,) the rating behind the label


def load_pairs(workdir: Path, tables: dict[str, TokenTable]) -> dict[str, Pairs]:
    path = Path(workdir) / artifacts.INGEST_DIR / "pairs.parquet"
    df = pl.read_parquet(path)
    out = {}
    for split in ("train", "valid"):
        part = df.filter(pl.col("split") == split)
        out[split] = Pairs(tables["user"].row_of(part["userId"].to_numpy()),
                           tables["movie"].row_of(part["movieId"].to_numpy()),
                           part["label"].to_numpy().astype(np.float32),
                           part["rating"].to_numpy().astype(np.float32))
    return out


def softmax_positives(cfg: TrainConfig, labels: np.ndarray, ratings: np.ndarray) -> np.ndarray:
    """(P,) bool: the pairs the softmax pulls together: likes, rated >= positive_rating for
    the hybrid loss."""
    threshold = cfg.positive_rating if cfg.loss == "hybrid" else 0.0
    return (labels > 0) & (ratings >= threshold)


def epoch_batches(user_rows: np.ndarray, batch_size: int, rng: np.random.Generator,
                  group_by_user: bool) -> list[np.ndarray]:
    """Pair indices for one epoch, cut into batches of at most batch_size pairs.

    group_by_user: users in random order, each user's pairs kept together and whole users
    packed into a batch, so each user document is encoded once per epoch (a user with more
    than batch_size pairs is split). Otherwise a plain shuffle.
    Example: users [7, 7, 9], batch 2, grouped -> [[0, 1], [2]] or [[2], [0, 1]]
    """
    perm = rng.permutation(len(user_rows))
    if not group_by_user:
        return [perm[lo:lo + batch_size] for lo in range(0, len(perm), batch_size)]
    user_rank = rng.permutation(int(user_rows.max()) + 1 if len(user_rows) else 0)
    perm = perm[np.argsort(user_rank[user_rows[perm]], kind="stable")]
    # Runs of one user in perm order: starts[i]..starts[i + 1]
    users = user_rows[perm]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]).tolist() + [len(perm)]
    batches, lo = [], 0
    for start, end in zip(starts[:-1], starts[1:], strict=True):
        if end - lo > batch_size and start > lo:  # this user would overflow: cut before it
            batches.append(perm[lo:start])
            lo = start
        while end - lo > batch_size:  # a user with more pairs than a batch
            batches.append(perm[lo:lo + batch_size])
            lo += batch_size
    if lo < len(perm):
        batches.append(perm[lo:])
    return batches


def length_groups(lengths: np.ndarray, max_groups: int = 4) -> list[np.ndarray]:
    """Split items into at most max_groups groups of similar length, minimising padding.

    Cost of a group = its size x its longest length (what padding makes us encode); the
    optimal split of the length-sorted items into contiguous groups is a small DP.
    Example: lengths [6, 40, 6, 7], 2 groups -> [[0, 2, 3], [1]] (cost 3*7 + 40 = 61, not 160)
    """
    order = np.argsort(lengths, kind="stable")
    sorted_len = lengths[order].astype(np.int64)
    n = len(order)
    if n <= 1 or max_groups <= 1:
        return [order] if n else []
    idx = np.arange(n)
    # cost[i, j] = (j - i + 1) * sorted_len[j] for a group i..j (inf when i > j)
    never = np.iinfo(np.int64).max // 4
    cost = np.where(idx[:, None] <= idx[None, :],
                    (idx[None, :] - idx[:, None] + 1) * sorted_len[None, :], never)
    best = cost[0].copy()  # best[j]: cheapest split of 0..j into g groups
    cuts = [np.zeros(n, dtype=np.int64)]
    for _ in range(1, max_groups):
        # new[j] = min(best[j], min over i >= 1 of best[i - 1] + cost[i, j])
        candidate = best[:-1, None] + cost[1:, :]  # (n - 1, n): rows i = 1..n-1
        i_best = candidate.argmin(axis=0)
        new = np.minimum(best, candidate[i_best, idx])
        cuts.append(np.where(candidate[i_best, idx] < best, i_best + 1, -1))
        best = new
    # Walk back the cuts from the end.
    groups, j, g = [], n - 1, max_groups - 1
    while j >= 0:
        while g > 0 and cuts[g][j] == -1:
            g -= 1
        i = int(cuts[g][j]) if g > 0 else 0
        groups.append(order[i:j + 1])
        j, g = i - 1, g - 1
    return groups[::-1]


def encode_grouped(model: TwoTower, table: TokenTable, rows: np.ndarray, device: torch.device,
                   max_groups: int) -> torch.Tensor:
    """(len(rows), H) pooled encodings with gradients, in length groups to cut padding."""
    groups = length_groups(table.lengths[rows], max_groups)
    parts = []
    for group in groups:
        ids, mask = table.batch(rows[group])
        parts.append(model.encode(ids.to(device), mask.to(device)))
    inverse = np.argsort(np.concatenate(groups))  # back to the order of rows
    return torch.cat(parts)[torch.from_numpy(inverse).to(device)]


class BatchTowers(nn.Module):
    """One step's forward: a batch's distinct users and movies -> their tower vectors.

    Under torchrun this module is what DistributedDataParallel wraps. DDP all-reduces the
    gradients of the work done inside its forward() and expects one forward per backward, so
    the whole step's encoding (several length groups, both heads) is this one call; calling
    model.encode / model.project directly would bypass DDP and leave each rank's gradients
    unsynchronised. With `pooled` (frozen encoder) pooled outputs are looked up instead.
    side: per tower, the (N, F) side features of every table row (model with features);
    `unrated` the movies' features as if nobody had rated them (features.as_unrated), and
    `unknown` the users' as if they had no history (features.as_unknown_user).
    bce_bias: the hybrid loss's logistic bias, a parameter here so that DDP averages it too.
    """

    def __init__(self, model: TwoTower, tables: dict[str, TokenTable], device: torch.device,
                 max_groups: int, pooled: dict[str, torch.Tensor] | None = None,
                 side: dict[str, torch.Tensor] | None = None,
                 unrated: torch.Tensor | None = None, unknown: torch.Tensor | None = None):
        super().__init__()
        self.model = model
        self.tables, self.device, self.max_groups = tables, device, max_groups
        # Plain dicts: not parameters, never broadcast by DDP.
        self.pooled, self.side = pooled, side
        self.hidden = {"movie": unrated, "user": unknown}  # (N, F) each, or None
        self.bce_bias = nn.Parameter(torch.zeros((), device=device))

    def forward(self, user_rows: np.ndarray, movie_rows: np.ndarray,
                unrated_movies: np.ndarray | None = None,
                unknown_users: np.ndarray | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Distinct user rows, distinct movie rows -> (U, dim), (M, dim) float32, bias.

        unrated_movies: (M,) bool, movies to show with their never-rated side features;
        unknown_users: (U,) bool, users to show with a no-history user's side features.
        """
        vecs = []
        hide = {"user": unknown_users, "movie": unrated_movies}
        for side, rows in (("user", user_rows), ("movie", movie_rows)):
            with autocast(self.device):
                if self.pooled is not None:
                    pooled = self.pooled[side][torch.from_numpy(rows)].to(self.device)
                else:
                    pooled = encode_grouped(self.model, self.tables[side], rows, self.device,
                                            self.max_groups)
                extra = None
                if self.side is not None:
                    extra = self.side[side][torch.from_numpy(rows)]
                    mask = hide[side]
                    if mask is not None and mask.any() and self.hidden[side] is not None:
                        swap = torch.from_numpy(mask)
                        extra = torch.where(swap[:, None],
                                            self.hidden[side][torch.from_numpy(rows)], extra)
                vecs.append(self.model.project(side, pooled, extra).float())
        return vecs[0], vecs[1], self.bce_bias * 1.0


def train_step(model: TwoTower, optimizer: torch.optim.Optimizer,
               tables: dict[str, TokenTable], pairs: Pairs, batch: np.ndarray,
               device: torch.device, cfg: TrainConfig, towers: nn.Module,
               log_q: np.ndarray | None = None, dist: Dist | None = None,
               like_share: float = 0.5, rng: np.random.Generator | None = None,
               ) -> tuple[float, int]:
    """One optimisation step on pairs[batch]; returns (loss, documents encoded).

    Each distinct user and movie of the batch is encoded once, then gathered back per pair.
    log_q: (n_movies,) log frequency of each movie among the pairs the softmax's candidates
    come from, for the popularity correction (frequent movies are frequent negatives).
    towers: the step's forward, BatchTowers over `model` (DDP-wrapped under torchrun, `dist`
    then says which process this is). like_share: share of likes among the training pairs
    (the logistic loss weighs both classes equally). rng: draws the movies shown as unrated
    and the users shown without history.
    """
    dist = dist or Dist(device)
    user_unique, user_inverse = np.unique(pairs.user_rows[batch], return_inverse=True)
    movie_unique, movie_inverse = np.unique(pairs.movie_rows[batch], return_inverse=True)
    labels = pairs.labels[batch]
    positive = np.flatnonzero(softmax_positives(cfg, labels, pairs.ratings[batch]))
    # A softmax batch without positives has no target, so the step is skipped. Under torchrun
    # the ranks decide together: all skip, or all step (a rank without a target then adds a
    # zero gradient to the average) - a rank that left out its backward would hang the rest.
    skip = cfg.loss == "softmax" and not distributed.any_rank(dist, len(positive) > 0)
    unrated = unknown = None
    if rng is not None and cfg.cold_dropout > 0:
        unrated = rng.random(len(movie_unique)) < cfg.cold_dropout
        unknown = rng.random(len(user_unique)) < cfg.cold_dropout
    # A skipped batch is still encoded (without gradients), as it always was, so the dropout
    # random stream and so every later step stay what they were.
    with torch.no_grad() if skip else contextlib.nullcontext():
        user_vecs, movie_vecs, bias = towers(user_unique, movie_unique, unrated, unknown)
    encoded = len(user_unique) + len(movie_unique)
    if skip:
        return 0.0, encoded
    u_all = torch.from_numpy(user_inverse).to(device)
    m_all = torch.from_numpy(movie_inverse).to(device)
    loss = 0.0 * (user_vecs.sum() + movie_vecs.sum() + bias)  # joins the all-reduce if empty
    if cfg.loss in ("softmax", "hybrid") and len(positive):
        u, m = user_inverse[positive], movie_inverse[positive]
        # Candidates: "softmax" ranks against every movie of the batch (dislikes are hard
        # negatives); "hybrid" against the movies of the batch's positives only, the
        # standard in-batch softmax (the logistic part already pushes dislikes down).
        cand = np.arange(len(movie_unique)) if cfg.loss == "softmax" else np.unique(m)
        col = np.full(len(movie_unique), -1)
        col[cand] = np.arange(len(cand))
        m = col[m]  # (P,) target column among the candidates
        # other_positives[p, j]: candidate j is a positive of pair p's user in another pair
        same_user = u[:, None] == u[None, :]  # (P, P)
        other = np.zeros((len(positive), len(cand)), dtype=bool)
        rows_, cols_ = np.nonzero(same_user)
        other[rows_, m[cols_]] = True
        other[np.arange(len(positive)), m] = False
        loss = loss + in_batch_softmax_loss(
            user_vecs[torch.from_numpy(u).to(device)],
            movie_vecs[torch.from_numpy(cand).to(device)],
            torch.from_numpy(m).to(device), torch.from_numpy(other).to(device),
            cfg.temperature,
            None if log_q is None else torch.from_numpy(log_q[movie_unique[cand]]).to(device))
    if cfg.loss == "hybrid":
        loss = loss + cfg.bce_weight * balanced_logistic_loss(
            user_vecs[u_all], movie_vecs[m_all], torch.from_numpy(labels).to(device),
            bias, cfg.bce_temperature, like_share)
    elif cfg.loss == "cosine":
        loss = cosine_embedding_loss(user_vecs[u_all], movie_vecs[m_all],
                                     torch.from_numpy(labels).to(device), cfg.margin)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # under DDP: gradients averaged over the ranks here
    optimizer.step()
    return loss.item(), encoded


def lr_factor(step: int, total: int, warmup: float) -> float:
    """Linear warm-up over the first `warmup` share of steps, then linear decay to 0."""
    warm = max(1, int(total * warmup))
    if step < warm:
        return (step + 1) / warm
    return max(0.0, (total - step) / max(1, total - warm))


def evaluate_pairs(model: TwoTower, tables: dict[str, TokenTable], pairs: Pairs,
                   device: torch.device, margin: float, batch_size: int,
                   pooled: dict[str, torch.Tensor] | None = None,
                   dist: Dist | None = None,
                   side: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
    """Validation loss, ROC-AUC and sign accuracy of cosine(user, movie) over the pairs.

    Under torchrun (`dist`) each rank encodes a share of the distinct documents and the
    vectors are gathered, so every rank scores all the pairs and gets the same numbers.
    """
    dist = dist or Dist(device)
    model.eval()
    if len(pairs.labels) == 0:
        return {"loss": float("nan"), "auc": float("nan"), "accuracy": float("nan")}
    vecs = {}
    for name, rows in (("user", pairs.user_rows), ("movie", pairs.movie_rows)):
        unique, inverse = np.unique(rows, return_inverse=True)

        def vectors(some: np.ndarray, name: str = name) -> torch.Tensor:
            extra = None if side is None else side[name][torch.from_numpy(some)]
            if pooled is None:
                return encode_rows(model, tables[name], some, device, batch_size, name,
                                   features=extra)
            with torch.inference_mode():
                emb = model.project(name, pooled[name][torch.from_numpy(some)].to(device),
                                    extra)
            return emb.float().cpu()

        vecs[name] = distributed.map_rows(dist, vectors, unique)[torch.from_numpy(inverse)]
    labels = torch.from_numpy(pairs.labels)
    loss = cosine_embedding_loss(vecs["user"], vecs["movie"], labels, margin).item()
    cos = nn.functional.cosine_similarity(vecs["user"], vecs["movie"], dim=1).numpy()
    return {"loss": loss, "auc": roc_auc(cos, pairs.labels),
            "accuracy": sign_accuracy(cos, pairs.labels)}


def side_features(workdir: Path, model_cfg: ModelConfig, tables: dict[str, TokenTable],
                  ) -> dict[str, torch.Tensor] | None:
    """Per tower, (N, F) side features of the table rows; None for a model without them."""
    if model_cfg.features is None:
        return None
    return {side: torch.from_numpy(features.load_features(workdir, side, table.ids,
                                                          model_cfg.features))
            for side, table in tables.items()}


def run_train(workdir: Path, model_cfg: ModelConfig | None = None,
              cfg: TrainConfig | None = None, out_dir: Path | None = None,
              on_step: Callable[[int, int, int, float, float], None] | None = None,
              on_epoch: Callable[[dict[str, Any]], None] | None = None,
              on_status: Callable[[str], None] | None = None) -> TrainResult:
    """Train on workdir/ingest pairs; keep the best epoch (by validation AUC) in out_dir.

    on_step(epoch, step, steps, loss, seqs_per_s) is called after every step, on_epoch(metrics)
    after every evaluation (epoch 0 = heads untrained), on_status(msg) between phases.
    Under torchrun every process runs this and gets the same epoch metrics back; on_step
    reports the process's own steps. Only rank 0 writes out_dir.
    """
    model_cfg, cfg = model_cfg or ModelConfig(), cfg or TrainConfig()
    start = time.perf_counter()
    workdir = Path(workdir)
    out_dir = Path(out_dir) if out_dir else workdir / artifacts.MODEL_DIR
    manifest = artifacts.read_manifest(workdir, artifacts.INGEST_DIR, artifacts.INGEST_FORMAT)
    with distributed.process_group(resolve_device(cfg.device)) as dist:
        result = _train(workdir, manifest, model_cfg, cfg, out_dir, dist,
                        on_step, on_epoch, on_status or (lambda _m: None))
    result.seconds = time.perf_counter() - start
    return result


def _train(workdir: Path, manifest: dict[str, Any], model_cfg: ModelConfig, cfg: TrainConfig,
           out_dir: Path, dist: Dist,
           on_step: Callable[[int, int, int, float, float], None] | None,
           on_epoch: Callable[[dict[str, Any]], None] | None,
           say: Callable[[str], None]) -> TrainResult:
    device = dist.device  # cuda:LOCAL_RANK under torchrun
    if manifest.get("settings", {}).get("side_features") and manifest.get("feature_stats"):
        model_cfg = replace(model_cfg, features=dict(manifest["feature_stats"]))
    say(f"loading {model_cfg.base_model}")
    model, tokenizer = build_model(model_cfg, seed=cfg.seed)  # same seed: same heads on all ranks
    model.to(device)
    if dist.rank > 0:
        # Rank 0 keeps a plain run's random stream; the others draw their own dropout masks.
        torch.manual_seed(cfg.seed + dist.rank)
    say("tokenizing documents")
    with distributed.main_first(dist):  # rank 0 writes the token cache, the others read it
        tables = token_tables(workdir, tokenizer, model_cfg.max_length)
    pairs = load_pairs(workdir, tables)
    train = pairs["train"]
    if len(train.labels) == 0:
        raise TagrecError("no training pairs in the workspace — re-run `tagrec ingest` with "
                          "more data or a larger --pairs-per-class")

    side_feats = side_features(workdir, model_cfg, tables)  # (N, F) per tower, or None
    unrated = unknown = None  # movies as never rated, users as without history
    if side_feats is not None:
        unrated = torch.from_numpy(features.as_unrated(side_feats["movie"].numpy(),
                                                       model_cfg.features))
        unknown = torch.from_numpy(features.as_unknown_user(side_feats["user"].numpy(),
                                                            model_cfg.features))
    pooled = None
    if cfg.freeze_encoder:
        model.encoder.requires_grad_(False)
        say("encoding documents once (frozen encoder)")
        pooled, done = {}, {}
        for side, table in tables.items():
            # Only the documents some pair refers to: at MovieLens-25M scale a sample of
            # 12,000 pairs touches ~20k of the 224k documents, and each costs an encoder pass.
            needed = np.unique(np.concatenate([getattr(p, f"{side}_rows") for p in
                                               pairs.values()]))
            encode = functools.partial(encode_rows, model, table, device=device,
                                       batch_size=cfg.eval_batch_size, side=None)
            feats = torch.zeros((len(table), model.encoder.config.hidden_size))  # (N, H)
            feats[torch.from_numpy(needed)] = distributed.map_rows(dist, encode, needed)
            pooled[side] = feats
            done[side] = np.zeros(len(table), dtype=bool)
            done[side][needed] = True
        if dist.main:  # `embed` reuses these instead of encoding the documents again
            pooled_cache.save(workdir, pooled_cache.cache_key(
                model, tables, device, uses_bf16(device)), pooled, done)
    batch_towers = BatchTowers(model, tables, device, cfg.length_groups, pooled, side_feats,
                               unrated, unknown)
    towers: nn.Module = batch_towers
    if dist.enabled:
        # find_unused_parameters: a trained BERT has weights the pooled output never reaches
        # (its pooler), and DDP would wait for their gradients forever; with the encoder
        # frozen only the two heads train, and every step uses both. device_ids stays unset:
        # the module already sits on this rank's device, and the numpy row arrays that
        # forward() takes are passed through untouched.
        towers = DistributedDataParallel(towers, find_unused_parameters=not cfg.freeze_encoder)
    params = [{"params": list(model.heads.parameters()), "lr": cfg.head_lr},
              {"params": [batch_towers.bce_bias], "lr": cfg.head_lr, "weight_decay": 0.0}]
    if not cfg.freeze_encoder:
        params.append({"params": list(model.encoder.parameters()), "lr": cfg.lr})
    optimizer = torch.optim.AdamW(params, weight_decay=cfg.weight_decay)
    # The same seed on every rank: all cut the same batches, then each keeps its own share.
    rng = np.random.default_rng(cfg.seed)
    schedule = [distributed.shard(dist, epoch_batches(train.user_rows, cfg.batch_size, rng,
                                                      cfg.group_by_user))
                for _ in range(cfg.epochs)]
    total_steps = sum(len(batches) for batches in schedule)
    log_q = None
    if cfg.loss in ("softmax", "hybrid") and cfg.log_q:
        # q: how often a movie is a candidate, i.e. its share of the pairs the candidates
        # come from (every pair for "softmax", the positives for "hybrid").
        drawn = (np.ones(len(train.labels), bool) if cfg.loss == "softmax" else
                 softmax_positives(cfg, train.labels, train.ratings))
        counts = np.bincount(train.movie_rows[drawn], minlength=len(tables["movie"])) + 1.0
        log_q = np.log(counts / counts.sum()).astype(np.float32)  # (n_movies,)
    like_share = float(np.clip((train.labels > 0).mean(), 0.01, 0.99))
    # Which movies a step shows as never rated (side features only); its own stream, so
    # that turning it off leaves the batches as they were.
    unrated_rng = np.random.default_rng([cfg.seed, dist.rank]) if side_feats is not None else None
    base_lrs = [g["lr"] for g in optimizer.param_groups]

    settings = {"training": asdict(cfg),
                "data": {"ingest_manifest_hash": artifacts.file_digest(
                    workdir / artifacts.INGEST_DIR / artifacts.MANIFEST),
                    "data_hash": manifest.get("data_hash"),
                    "train_pairs": len(train.labels), "valid_pairs": len(pairs["valid"].labels)}}
    if dist.enabled:
        # Per epoch: which pairs each rank trained on, counted from the indices it fed to
        # train_step (see distributed.coverage).
        settings["distributed"] = {"world_size": dist.world, "backend": dist.backend,
                                   "global_batch_size": dist.world * cfg.batch_size,
                                   "epochs": []}
    result = TrainResult(model_dir=None)

    def evaluate(epoch: int, extra: dict[str, float]) -> dict[str, Any]:
        metrics = {"epoch": epoch, **evaluate_pairs(model, tables, pairs["valid"], device,
                                                    cfg.margin, cfg.eval_batch_size, pooled,
                                                    dist, side_feats),
                   **extra}
        result.epochs.append(metrics)
        if on_epoch:
            on_epoch(metrics)
        return metrics

    def save(epoch: int) -> None:
        if dist.main:
            with artifacts.atomic_dir(out_dir) as tmp:
                save_model(model, tokenizer, tmp, {**settings, "best_epoch": epoch,
                                                   "metrics": result.epochs[-1],
                                                   "history": result.epochs})
                write_metrics(tmp / "metrics.jsonl", result.epochs)
        result.model_dir, result.best_epoch = out_dir, epoch

    say("evaluating the untrained heads")
    evaluate(0, {"train_loss": float("nan"), "seqs_per_s": float("nan")})
    best_auc = -math.inf
    step = 0
    try:
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            if cfg.freeze_encoder:
                model.encoder.eval()
            batches = schedule[epoch - 1]
            losses, seqs, fed, t0 = [], 0, [], time.perf_counter()
            for i, batch in enumerate(batches):
                for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
                    group["lr"] = base * lr_factor(step, total_steps, cfg.warmup)
                loss, encoded = train_step(model, optimizer, tables, train, batch, device, cfg,
                                           towers, log_q, dist, like_share, unrated_rng)
                fed.append(batch)
                seqs += encoded
                step += 1
                losses.append(loss)
                if on_step:
                    rate = seqs / max(time.perf_counter() - t0, 1e-9)
                    on_step(epoch, i + 1, len(batches), loss, rate)
            seconds = time.perf_counter() - t0
            # Every rank ran as many steps, so the mean of the ranks' mean losses is the mean
            # over all steps; throughputs add up.
            loss_sum, rate_sum = distributed.all_reduce_sum(
                dist, [float(np.mean(losses)), seqs / max(seconds, 1e-9)])
            if dist.enabled:
                settings["distributed"]["epochs"].append(
                    {"epoch": epoch, **distributed.coverage(dist, fed, len(train.labels))})
            metrics = evaluate(epoch, {"train_loss": loss_sum / dist.world,
                                       "seqs_per_s": rate_sum, "epoch_seconds": seconds})
            # Without validation pairs (refit with --holdout-fraction 0) the last epoch is kept.
            auc = metrics["auc"]
            if math.isnan(auc) or auc > best_auc:
                best_auc = best_auc if math.isnan(auc) else auc
                say(f"saving epoch {epoch}")
                save(epoch)
    except KeyboardInterrupt:
        result.interrupted = True
    if result.model_dir is not None and dist.main:
        # The saved folder holds the best epoch; bring its history up to date.
        write_metrics(out_dir / "metrics.jsonl", result.epochs)
        config = json.loads((out_dir / "config.json").read_text(encoding="utf-8"))
        config["history"] = result.epochs
        config["interrupted"] = result.interrupted
        if dist.enabled:
            config["distributed"] = settings["distributed"]
        artifacts.write_json(out_dir / "config.json", config)
    if not result.interrupted:
        # No rank leaves (tearing down the group) before rank 0 has written everything. After
        # Ctrl-C the ranks may be at different steps, so none waits for the others.
        distributed.barrier(dist)
    return result


def write_metrics(path: Path, epochs: list[dict[str, Any]]) -> None:
    with artifacts.atomic_file(path) as tmp:
        tmp.write_text("".join(json.dumps(artifacts.json_safe(m), allow_nan=False) + "\n"
                               for m in epochs), encoding="utf-8")
