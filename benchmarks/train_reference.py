"""The training step as it was before issue 13 (commit 511ecb0), kept for benchmarks/train.py.

A copy of the old per-step path: `train_step` prepared each batch while it ran it (np.unique,
the softmax's candidates and its (P, P) / (P, C) masks, the cold-dropout draws, the
length-group DP, padding the token ids, torch.from_numpy(...).to(device)) and read the loss
back with .item() at every step. The arithmetic is unchanged; the only additions are the
`HOST` marks around the host-side work, so the benchmark can report host time per step beside
the rest (forward, backward, optimizer step). Not used by the package.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from tagrec_cli.config import TrainConfig
from tagrec_cli.towers.encode import autocast
from tagrec_cli.towers.losses import (
    balanced_logistic_loss,
    cosine_embedding_loss,
    in_batch_softmax_loss,
)
from tagrec_cli.towers.model import TwoTower
from tagrec_cli.towers.tokens import TokenTable
from tagrec_cli.train.batches import Pairs, length_groups, softmax_positives


class Clock:
    """Seconds spent inside `host()` blocks since the last reset()."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def reset(self) -> None:
        self.seconds = 0.0

    @contextlib.contextmanager
    def host(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start


HOST = Clock()


def encode_grouped(model: TwoTower, table: TokenTable, rows: np.ndarray, device: torch.device,
                   max_groups: int) -> torch.Tensor:
    with HOST.host():
        groups = length_groups(table.lengths[rows], max_groups)
    parts = []
    for group in groups:
        with HOST.host():
            ids, mask = table.batch(rows[group])
            ids, mask = ids.to(device), mask.to(device)
        parts.append(model.encode(ids, mask))
    with HOST.host():
        inverse = torch.from_numpy(np.argsort(np.concatenate(groups))).to(device)
    return torch.cat(parts)[inverse]


class BatchTowers(nn.Module):
    def __init__(self, model: TwoTower, tables: dict[str, TokenTable], device: torch.device,
                 max_groups: int, pooled: dict[str, torch.Tensor] | None = None,
                 side: dict[str, torch.Tensor] | None = None,
                 unrated: torch.Tensor | None = None, unknown: torch.Tensor | None = None):
        super().__init__()
        self.model = model
        self.tables, self.device, self.max_groups = tables, device, max_groups
        self.pooled, self.side = pooled, side
        self.hidden = {"movie": unrated, "user": unknown}
        self.bce_bias = nn.Parameter(torch.zeros((), device=device))

    def forward(self, user_rows, movie_rows, unrated_movies=None, unknown_users=None):
        vecs = []
        hide = {"user": unknown_users, "movie": unrated_movies}
        for side, rows in (("user", user_rows), ("movie", movie_rows)):
            with autocast(self.device):
                if self.pooled is not None:
                    with HOST.host():  # a CPU gather and a host -> device copy
                        pooled = self.pooled[side][torch.from_numpy(rows)].to(self.device)
                else:
                    pooled = encode_grouped(self.model, self.tables[side], rows, self.device,
                                            self.max_groups)
                extra = None
                if self.side is not None:
                    with HOST.host():
                        extra = self.side[side][torch.from_numpy(rows)]
                        mask = hide[side]
                        if mask is not None and mask.any() and self.hidden[side] is not None:
                            swap = torch.from_numpy(mask)
                            extra = torch.where(swap[:, None],
                                                self.hidden[side][torch.from_numpy(rows)],
                                                extra)
                vecs.append(self.model.project(side, pooled, extra).float())
        return vecs[0], vecs[1], self.bce_bias * 1.0


def train_step(model: TwoTower, optimizer: torch.optim.Optimizer,
               tables: dict[str, TokenTable], pairs: Pairs, batch: np.ndarray,
               device: torch.device, cfg: TrainConfig, towers: nn.Module,
               log_q: np.ndarray | None = None, like_share: float = 0.5,
               rng: np.random.Generator | None = None) -> tuple[float, int]:
    with HOST.host():
        user_unique, user_inverse = np.unique(pairs.user_rows[batch], return_inverse=True)
        movie_unique, movie_inverse = np.unique(pairs.movie_rows[batch], return_inverse=True)
        labels = pairs.labels[batch]
        positive = np.flatnonzero(softmax_positives(cfg, labels, pairs.ratings[batch]))
        skip = cfg.loss == "softmax" and not len(positive) > 0
        unrated = unknown = None
        if rng is not None and cfg.cold_dropout > 0:
            unrated = rng.random(len(movie_unique)) < cfg.cold_dropout
            unknown = rng.random(len(user_unique)) < cfg.cold_dropout
    with torch.no_grad() if skip else contextlib.nullcontext():
        user_vecs, movie_vecs, bias = towers(user_unique, movie_unique, unrated, unknown)
    encoded = len(user_unique) + len(movie_unique)
    if skip:
        return 0.0, encoded
    with HOST.host():
        u_all = torch.from_numpy(user_inverse).to(device)
        m_all = torch.from_numpy(movie_inverse).to(device)
    loss = 0.0 * (user_vecs.sum() + movie_vecs.sum() + bias)
    if cfg.loss in ("softmax", "hybrid") and len(positive):
        with HOST.host():
            u, m = user_inverse[positive], movie_inverse[positive]
            cand = np.arange(len(movie_unique)) if cfg.loss == "softmax" else np.unique(m)
            col = np.full(len(movie_unique), -1)
            col[cand] = np.arange(len(cand))
            m = col[m]
            same_user = u[:, None] == u[None, :]
            other = np.zeros((len(positive), len(cand)), dtype=bool)
            rows_, cols_ = np.nonzero(same_user)
            other[rows_, m[cols_]] = True
            other[np.arange(len(positive)), m] = False
            u_t, cand_t = torch.from_numpy(u).to(device), torch.from_numpy(cand).to(device)
            m_t, other_t = torch.from_numpy(m).to(device), torch.from_numpy(other).to(device)
            log_q_t = None if log_q is None else torch.from_numpy(
                log_q[movie_unique[cand]]).to(device)
        loss = loss + in_batch_softmax_loss(user_vecs[u_t], movie_vecs[cand_t], m_t, other_t,
                                            cfg.temperature, log_q_t)
    if cfg.loss == "hybrid":
        with HOST.host():
            labels_t = torch.from_numpy(labels).to(device)
        loss = loss + cfg.bce_weight * balanced_logistic_loss(
            user_vecs[u_all], movie_vecs[m_all], labels_t, bias, cfg.bce_temperature,
            like_share)
    elif cfg.loss == "cosine":
        loss = cosine_embedding_loss(user_vecs[u_all], movie_vecs[m_all],
                                     torch.from_numpy(labels).to(device), cfg.margin)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item(), encoded
