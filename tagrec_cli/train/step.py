"""One optimisation step and the validation pass: a batch's distinct documents through the
towers, the loss on their vectors, and the pairs' ROC-AUC after every epoch.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tagrec_cli.config import ModelConfig, TrainConfig
from tagrec_cli.metrics import roc_auc, sign_accuracy
from tagrec_cli.store import ingested
from tagrec_cli.towers.encode import autocast, encode_rows
from tagrec_cli.towers.losses import (
    balanced_logistic_loss,
    cosine_embedding_loss,
    in_batch_softmax_loss,
)
from tagrec_cli.towers.model import TwoTower
from tagrec_cli.towers.tokens import TokenTable
from tagrec_cli.train import distributed
from tagrec_cli.train.batches import Pairs, length_groups, softmax_positives
from tagrec_cli.train.distributed import Dist


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
    return {side: torch.from_numpy(ingested.side_features(workdir, side, table.ids,
                                                            model_cfg.features))
            for side, table in tables.items()}
