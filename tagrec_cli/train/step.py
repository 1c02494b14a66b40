"""One optimisation step and the validation pass: an epoch's plan on the device (Feed), a
batch's distinct documents through the towers, the loss on their vectors, and the pairs'
ROC-AUC after every epoch.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from tagrec_cli.config import ModelConfig, TrainConfig
from tagrec_cli.metrics import roc_auc, sign_accuracy
from tagrec_cli.store import ingested
from tagrec_cli.towers import collab
from tagrec_cli.towers.encode import autocast, encode_rows
from tagrec_cli.towers.losses import (
    balanced_logistic_loss,
    cosine_embedding_loss,
    in_batch_softmax_loss,
)
from tagrec_cli.towers.model import TwoTower
from tagrec_cli.towers.tokens import TokenTable
from tagrec_cli.train import distributed
from tagrec_cli.train.batches import Pairs
from tagrec_cli.train.distributed import Dist
from tagrec_cli.train.plan import EpochPlan


@dataclass
class DeviceTokens:
    """One side's TokenTable on the device, for padding a step's documents there."""

    tokens: torch.Tensor  # (T,) int32
    offsets: torch.Tensor  # (N + 1,) int64
    lengths: torch.Tensor  # (N,) int64
    pad_id: int

    @classmethod
    def of(cls, table: TokenTable, device: torch.device) -> DeviceTokens:
        def put(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(device)

        return cls(put(table.tokens), put(table.offsets), put(table.lengths), table.pad_id)

    def batch(self, rows: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) rows -> (input_ids, attention_mask), both (B, width) int64: TokenTable.batch
        computed on the device (width: the longest of the rows, known from the plan)."""
        cols = torch.arange(width, device=rows.device)
        mask = cols[None, :] < self.lengths[rows][:, None]  # (B, width)
        # Padding positions read some in-range token and are then replaced by pad_id.
        pos = (self.offsets[rows][:, None] + cols[None, :]).clamp_max(
            max(len(self.tokens) - 1, 0))
        ids = torch.where(mask, self.tokens[pos].long(), self.pad_id)
        return ids, mask.long()


@dataclass
class StepInputs:
    """One step's inputs, already on the device (see plan.py for what each one is).

    users (U,), movies (M,): the step's distinct table rows; user_inverse, movie_inverse,
    labels (B,): per pair; pos_user, pos_pair, pos_col (P,), cand (C,), log_q (C,),
    other (P, C): the softmax's; unrated (M,), unknown (U,): the cold-dropout masks; docs: per
    side the padded length groups and the order back (fine-tuning only); pool_size: the
    users' liked entries (collaborative model), known on the host so the device never syncs.
    """

    users: torch.Tensor
    movies: torch.Tensor
    user_inverse: torch.Tensor
    movie_inverse: torch.Tensor
    labels: torch.Tensor
    pos_user: torch.Tensor
    pos_pair: torch.Tensor
    pos_col: torch.Tensor
    cand: torch.Tensor
    log_q: torch.Tensor | None
    other: torch.Tensor
    unrated: torch.Tensor | None
    unknown: torch.Tensor | None
    docs: dict[str, tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]] | None
    encoded: int  # documents the step encodes
    has_target: bool  # the step has a softmax positive
    skip: bool  # no rank has one (softmax loss): the step is run without gradients
    pool_size: int | None = None


class Feed:
    """An epoch's plan on the device: its flat arrays are copied once (pinned memory and
    non_blocking on CUDA), then each step's inputs are slices of them, with no host work
    and no device -> host read. skip: (steps,) bool, the steps run without gradients.
    tokens: per side the device token table, to pad the documents of a fine-tuning step.
    liked: the collaborative model's, for each step's pool size.
    """

    def __init__(self, plan: EpochPlan, device: torch.device, skip: np.ndarray,
                 tokens: dict[str, DeviceTokens] | None = None,
                 liked: collab.DeviceLiked | None = None):
        def put(a: np.ndarray) -> torch.Tensor:
            t = torch.from_numpy(np.ascontiguousarray(a))
            if device.type == "cuda":
                t = t.pin_memory()
            return t.to(device, non_blocking=True)

        self.plan, self.device, self.skip, self.tokens = plan, device, skip, tokens
        names = ["labels", "user_inverse", "movie_inverse", "users", "movies", "pos_user",
                 "pos_pair", "pos_col", "cand", "cand_log_q", "mask_pos", "mask_col", "unrated",
                 "unknown"]
        self.flat = {n: None if getattr(plan, n) is None else put(getattr(plan, n))
                     for n in names}
        self.groups = {side: (put(g.order), put(g.restore)) for side, g in plan.groups.items()}
        self.pool_sizes = None if liked is None else liked.pool_sizes(plan.users, plan.user_off)

    def inputs(self, step: int) -> StepInputs:
        plan, flat = self.plan, self.flat

        def cut(name: str, off: np.ndarray) -> torch.Tensor | None:
            t = flat[name]
            return None if t is None else t[int(off[step]):int(off[step + 1])]

        users, movies = cut("users", plan.user_off), cut("movies", plan.movie_off)
        pos_user = cut("pos_user", plan.pos_off)
        cand = cut("cand", plan.cand_off)
        other = torch.zeros((len(pos_user), len(cand)), dtype=torch.bool, device=self.device)
        other[cut("mask_pos", plan.mask_off), cut("mask_col", plan.mask_off)] = True
        docs = None
        if self.tokens is not None:
            docs = {}
            for side, rows, off in (("user", users, plan.user_off),
                                    ("movie", movies, plan.movie_off)):
                order, restore = (t[int(off[step]):int(off[step + 1])]
                                  for t in self.groups[side])
                g = plan.groups[side]
                parts, lo = [], 0
                for size, width in zip(g.sizes[step], g.widths[step], strict=True):
                    parts.append(self.tokens[side].batch(rows[order[lo:lo + size]], width))
                    lo += size
                docs[side] = (parts, restore)
        return StepInputs(users, movies, cut("user_inverse", plan.pair_off),
                          cut("movie_inverse", plan.pair_off), cut("labels", plan.pair_off),
                          pos_user, cut("pos_pair", plan.pos_off), cut("pos_col", plan.pos_off),
                          cand,
                          cut("cand_log_q", plan.cand_off), other,
                          cut("unrated", plan.movie_off), cut("unknown", plan.user_off), docs,
                          plan.encoded(step), bool(plan.has_target[step]),
                          bool(self.skip[step]),
                          None if self.pool_sizes is None else int(self.pool_sizes[step]))


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
    pooled, side, unrated and unknown are copied to the device once, here.
    bce_bias: the hybrid loss's logistic bias, a parameter here so that DDP averages it too.
    """

    def __init__(self, model: TwoTower, device: torch.device,
                 pooled: dict[str, torch.Tensor] | None = None,
                 side: dict[str, torch.Tensor] | None = None,
                 unrated: torch.Tensor | None = None, unknown: torch.Tensor | None = None,
                 liked: collab.DeviceLiked | None = None):
        super().__init__()

        def put(tensors: dict[str, torch.Tensor | None] | None):
            return None if tensors is None else {
                k: None if v is None else v.to(device) for k, v in tensors.items()}

        self.model, self.device = model, device
        self.liked = liked  # collaborative model: who liked what, towers/collab.py
        # Plain dicts: not parameters, never broadcast by DDP.
        self.pooled, self.side = put(pooled), put(side)
        self.hidden = put({"movie": unrated, "user": unknown})  # (N, F) each, or None
        self.bce_bias = nn.Parameter(torch.zeros((), device=device))

    def forward(self, users: torch.Tensor, movies: torch.Tensor,
                unrated: torch.Tensor | None = None, unknown: torch.Tensor | None = None,
                docs: dict | None = None, pool_size: int | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Distinct user rows, distinct movie rows -> (U, dim), (M, dim) float32, bias.

        unrated: (M,) bool, movies to show with their never-rated side features;
        unknown: (U,) bool, users to show with a no-history user's side features;
        docs: StepInputs.docs, the padded documents to encode (encoder not frozen);
        pool_size: the liked entries of these users (collaborative model; see DeviceLiked).
        """
        vecs = []
        hide = {"user": unknown, "movie": unrated}
        for side, rows in (("user", users), ("movie", movies)):
            with autocast(self.device):
                if self.pooled is not None:
                    pooled = self.pooled[side][rows]
                else:  # length groups, encoded in turn, then back in rows order
                    groups, restore = docs[side]
                    pooled = torch.cat([self.model.encode(ids, mask)
                                        for ids, mask in groups])[restore]
                extra = None
                if self.side is not None:
                    extra = self.side[side][rows]
                    if hide[side] is not None and self.hidden[side] is not None:
                        extra = torch.where(hide[side][:, None], self.hidden[side][rows],
                                            extra)
                vec = self.model.project(side, pooled, extra).float()
            if self.liked is not None:  # + the collaborative part, hidden like the features
                part = (self.liked.pool(self.model, rows, pool_size) if side == "user"
                        else self.model.id_vectors.weight[rows])
                if hide[side] is not None:
                    part = part * (~hide[side]).to(part.dtype)[:, None]
                vec = vec + part.float()
            vecs.append(vec)
        return vecs[0], vecs[1], self.bce_bias * 1.0


def train_step(towers: nn.Module, optimizer: torch.optim.Optimizer, batch: StepInputs,
               cfg: TrainConfig, like_share: float = 0.5) -> tuple[torch.Tensor, int]:
    """One optimisation step; returns (the loss, detached and left on the device, documents
    encoded). Nothing is read back from the device.

    Each distinct user and movie of the batch is encoded once, then gathered back per pair.
    towers: the step's forward, BatchTowers (DDP-wrapped under torchrun). like_share: share
    of likes among the training pairs (the logistic loss weighs both classes equally).
    """
    # A softmax batch without positives has no target, so the step is skipped. Under torchrun
    # the ranks decide together (Feed's skip): all skip, or all step (a rank without a target
    # then adds a zero gradient to the average) - a rank that left out its backward would
    # hang the rest. A skipped batch is still encoded (without gradients), as it always was,
    # so the dropout random stream and so every later step stay what they were.
    with torch.no_grad() if batch.skip else contextlib.nullcontext():
        user_vecs, movie_vecs, bias = towers(batch.users, batch.movies, batch.unrated,
                                             batch.unknown, batch.docs, batch.pool_size)
    if batch.skip:
        return torch.zeros((), device=user_vecs.device), batch.encoded
    u_all, m_all = batch.user_inverse, batch.movie_inverse
    loss = 0.0 * (user_vecs.sum() + movie_vecs.sum() + bias)  # joins the all-reduce if empty
    towers_module = getattr(towers, "module", towers)  # under DDP: the BatchTowers inside
    liked = towers_module.liked
    pair_users = user_vecs[u_all]  # (B, dim) each pair's user
    pos_users = user_vecs[batch.pos_user]  # (P, dim) each softmax positive's user
    other = batch.other
    if liked is not None:
        # Leave the pair's own movie out of its user's pool (else the model learns that a
        # movie is close to itself); a user shown without history has no pool.
        pair_movies = batch.movies[m_all]  # (B,) table rows
        own = liked.weight(batch.users[u_all], pair_movies)  # (B,)
        if batch.unknown is not None:
            own = own * (~batch.unknown[u_all]).to(own.dtype)
        pair_users = pair_users - own[:, None] * towers_module.model.id_vectors.weight[
            pair_movies].float()
        pos_users = pair_users[batch.pos_pair]
        if len(batch.pos_user):  # a movie the user liked is never their negative
            other = other | liked.contains(batch.users[batch.pos_user], batch.movies[batch.cand])
            other[torch.arange(len(batch.pos_col), device=other.device), batch.pos_col] = False
    if cfg.loss in ("softmax", "hybrid") and batch.has_target:
        # Candidates (plan.py): "softmax" ranks against every movie of the batch (dislikes
        # are hard negatives); "hybrid" against the movies of the batch's positives only,
        # the standard in-batch softmax (the logistic part already pushes dislikes down).
        loss = loss + in_batch_softmax_loss(pos_users, movie_vecs[batch.cand], batch.pos_col,
                                            other, cfg.temperature, batch.log_q)
    if cfg.loss == "hybrid":
        loss = loss + cfg.bce_weight * balanced_logistic_loss(
            pair_users, movie_vecs[m_all], batch.labels, bias, cfg.bce_temperature,
            like_share)
    elif cfg.loss == "cosine":
        loss = cosine_embedding_loss(pair_users, movie_vecs[m_all], batch.labels, cfg.margin)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # under DDP: gradients averaged over the ranks here
    optimizer.step()
    return loss.detach(), batch.encoded


def evaluate_pairs(model: TwoTower, tables: dict[str, TokenTable], pairs: Pairs,
                   device: torch.device, margin: float, batch_size: int,
                   pooled: dict[str, torch.Tensor] | None = None,
                   dist: Dist | None = None,
                   side: dict[str, torch.Tensor] | None = None,
                   liked: sp.csr_matrix | None = None) -> dict[str, float]:
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
                emb = encode_rows(model, tables[name], some, device, batch_size, name,
                                  features=extra)
                if liked is not None:
                    with torch.inference_mode():
                        emb = emb + (collab.pool(model, liked[some]) if name == "user" else
                                     model.id_vectors.weight[torch.from_numpy(some).to(
                                         device)]).float().cpu()
                return emb
            with torch.inference_mode():
                emb = model.project(name, pooled[name][torch.from_numpy(some)].to(device),
                                    extra).float()
                if liked is not None:
                    emb = emb + (collab.pool(model, liked[some]) if name == "user" else
                                 model.id_vectors.weight[torch.from_numpy(some).to(device)])
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
