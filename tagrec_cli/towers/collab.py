"""The collaborative part of the towers: who liked what, kept inductive.

    movie vector = head(document, features) + V[movie]                 (V: learned, per movie)
    user vector  = head(document, features) + sum_{i liked} V[i] / sqrt(n_liked)

Both are still computable for a movie or user the model never saw: a movie without a row of
V (added later, or never rated in training) is its text alone, and a new user is pooled
from the movies they rated (`liked` built from any ratings). Training shows a share of the
batch's movies without V and of its users without the pool (cold dropout), leaves each
pair's own movie out of its user's pool (else the model learns that a movie is similar to
itself), and never uses one of the movies the user liked as their negative.

`liked` is a (users, id rows) CSR matrix holding 1 / sqrt(n_liked) at each liked movie.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch
from torch import nn

from tagrec_cli.store import ingested
from tagrec_cli.topk import rows_of
from tagrec_cli.towers.model import TwoTower


def liked_matrix(user_ids: np.ndarray, id_movies: np.ndarray, ratings: pl.DataFrame,
                 like_threshold: float) -> sp.csr_matrix:
    """(len(user_ids), len(id_movies)) CSR: 1 / sqrt(n) at each movie the user rated >=
    like_threshold among `ratings` (userId, movieId, rating); movies without a row skipped.

    Example: a user who liked 4 movies -> four entries of 0.5.
    """
    liked = ratings.filter(pl.col("rating") >= like_threshold)
    u = rows_of(np.asarray(user_ids, np.int64), liked["userId"].to_numpy().astype(np.int64))
    m = rows_of(np.asarray(id_movies, np.int64), liked["movieId"].to_numpy().astype(np.int64))
    return _pool_weights(u, m, (len(user_ids), len(id_movies)))


def lists_matrix(liked: list[np.ndarray], id_movies: np.ndarray) -> sp.csr_matrix:
    """liked_matrix from each user's liked movieIds: (len(liked), len(id_movies))."""
    u = np.repeat(np.arange(len(liked)), [len(x) for x in liked])
    ids = np.concatenate(liked) if liked else np.zeros(0, np.int64)
    m = rows_of(np.asarray(id_movies, np.int64), ids.astype(np.int64))
    return _pool_weights(u, m, (len(liked), len(id_movies)))


def _pool_weights(u: np.ndarray, m: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """Entries (u, m), those with u, m >= 0, once each, weighted 1 / sqrt(row's count)."""
    ok = (u >= 0) & (m >= 0)
    x = sp.csr_matrix((np.ones(int(ok.sum())), (u[ok], m[ok])), shape=shape)
    x.sum_duplicates()
    n = np.diff(x.indptr)
    x.data = np.repeat(1.0 / np.sqrt(np.maximum(n, 1)), n).astype(np.float64)
    return x


def workspace_liked(workdir: Path, user_ids: np.ndarray, id_movies: np.ndarray,
                    like_threshold: float) -> sp.csr_matrix:
    """liked_matrix over the history ratings of the workspace's ingest."""
    return liked_matrix(user_ids, id_movies, ingested.history_ratings(workdir), like_threshold)


def movie_part(model: TwoTower, movie_ids: np.ndarray) -> torch.Tensor:
    """(M, dim) V rows of these movieIds (zero for a movie without one)."""
    weight = model.id_vectors.weight
    rows = rows_of(model.id_movies.cpu().numpy(), np.asarray(movie_ids, np.int64))
    out = weight[torch.from_numpy(np.maximum(rows, 0)).to(weight.device)]
    return out * torch.from_numpy(rows >= 0).to(weight.device, weight.dtype)[:, None]


class _SparseTimesDense(torch.autograd.Function):
    """S @ W with S a scipy CSR matrix (constant) and W a CPU tensor; the backward is
    S^T @ grad. scipy's CSR product is ~30x faster here than torch's sparse or gather ops
    on a CPU."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, matrix: sp.csr_matrix) -> torch.Tensor:
        ctx.matrix = matrix
        return torch.from_numpy(np.asarray(matrix @ weight.detach().numpy(), np.float32))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        g = ctx.matrix.T.tocsr() @ grad.detach().contiguous().numpy()
        return torch.from_numpy(np.asarray(g, np.float32)), None


def pool(model: TwoTower, liked: sp.csr_matrix) -> torch.Tensor:
    """(B, dim) sum over each row's liked movies of weight x V[movie] (rows of `liked` are
    id rows of the model's table), as one sparse x dense product."""
    weight = model.id_vectors.weight
    liked = sp.csr_matrix(liked, dtype=np.float32)
    if weight.device.type == "cpu" and weight.dtype == torch.float32:
        return _SparseTimesDense.apply(weight, liked)
    coo = liked.tocoo()
    index = torch.from_numpy(np.stack([coo.row, coo.col]).astype(np.int64))
    matrix = torch.sparse_coo_tensor(index, torch.from_numpy(coo.data), size=liked.shape,
                                     check_invariants=False).to(weight.device, weight.dtype)
    return torch.sparse.mm(matrix, weight)


def gather_pool(weight: torch.Tensor, indptr: torch.Tensor, indices: torch.Tensor,
                data: torch.Tensor, rows: torch.Tensor, total: int) -> torch.Tensor:
    """pool() done with device ops: (R,) CSR rows -> (R, dim) sum of data x weight[indices]
    over each row's entries. total: the rows' entry count, known beforehand so nothing is
    read back from the device. Example: a row with entries (col 3, 0.5), (col 7, 0.5) ->
    0.5 weight[3] + 0.5 weight[7]."""
    start = indptr[rows]
    count = indptr[rows + 1] - start  # (R,)
    bag_start = torch.cumsum(count, 0) - count  # (R,) where each row's bag begins
    bag = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), count,
                                  output_size=total)  # (E,) each entry's row
    entry = start[bag] + torch.arange(total, device=rows.device) - bag_start[bag]
    return nn.functional.embedding_bag(indices[entry], weight, bag_start, mode="sum",
                                       per_sample_weights=data[entry].to(weight.dtype))


class DeviceLiked:
    """`liked` (users, movies) for the training step: its pool, one weight per pair and the
    softmax's mask, computed on the device from table rows already there.

    On a CPU the pool is scipy's CSR product (the embedding bag's backward is ~6x slower
    there); elsewhere gather_pool, whose size comes from the epoch's plan (pool_sizes).
    keys (nnz,): row * n_movies + col of every entry, ascending (CSR order), for lookups.
    """

    def __init__(self, liked: sp.csr_matrix, device: torch.device):
        liked = sp.csr_matrix(liked, dtype=np.float32)
        liked.sort_indices()
        self.matrix, self.device, self.n_movies = liked, device, liked.shape[1]
        row = np.repeat(np.arange(liked.shape[0], dtype=np.int64), np.diff(liked.indptr))
        to = functools.partial(torch.as_tensor, device=device)
        self.indptr = to(liked.indptr.astype(np.int64))
        self.indices = to(liked.indices.astype(np.int64))
        self.data = to(liked.data)
        self.keys = to(row * self.n_movies + liked.indices)

    def pool_sizes(self, users: np.ndarray, user_off: np.ndarray) -> np.ndarray:
        """(S,) entries of each step's users (EpochPlan.users cut by user_off)."""
        per_user = np.diff(self.matrix.indptr)[users]
        return np.diff(np.r_[0, np.cumsum(per_user)][user_off])

    def pool(self, model: TwoTower, rows: torch.Tensor, total: int | None) -> torch.Tensor:
        """(R,) user rows -> (R, dim) pool of their liked movies' vectors."""
        if self.device.type == "cpu" or total is None:
            return pool(model, self.matrix[rows.cpu().numpy()])
        return gather_pool(model.id_vectors.weight, self.indptr, self.indices, self.data,
                           rows, total)

    def lookup(self, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Entry keys (any shape) -> (found, where): found[i] the key is an entry."""
        if not len(self.keys):
            return torch.zeros_like(key, dtype=torch.bool), torch.zeros_like(key)
        where = torch.searchsorted(self.keys, key).clamp_max(len(self.keys) - 1)
        return self.keys[where] == key, where

    def weight(self, users: torch.Tensor, movies: torch.Tensor) -> torch.Tensor:
        """(B,) user rows, (B,) movie rows -> (B,) float32: liked[user, movie] (0 if none)."""
        if not len(self.keys):
            return torch.zeros(len(users), device=self.device)
        found, where = self.lookup(users * self.n_movies + movies)
        return torch.where(found, self.data[where], 0.0)

    def contains(self, users: torch.Tensor, movies: torch.Tensor) -> torch.Tensor:
        """(P,) user rows, (C,) movie rows -> (P, C) bool: the user liked the movie."""
        return self.lookup(users[:, None] * self.n_movies + movies[None, :])[0]


def with_collab(model: TwoTower, side: str, ids: np.ndarray, vectors: torch.Tensor,
                liked: sp.csr_matrix | None = None) -> torch.Tensor:
    """Tower outputs (N, dim) of these ids (before normalising) + their collaborative part:
    V[movie] for movies, the pool of `liked` (rows = these users) for users. A model
    without the collaborative part returns `vectors` unchanged."""
    if not model.cfg.collaborative:
        return vectors
    with torch.inference_mode():
        part = movie_part(model, ids) if side == "movie" else pool(model, liked)
    return vectors + part.float().to(vectors.device)


def encode_rated_users(model: TwoTower, tokenizer: Any, documents: list[str],
                       features: np.ndarray | None, ratings: pl.DataFrame,
                       user_ids: np.ndarray, like_threshold: float, device: torch.device,
                       ) -> np.ndarray:
    """(n, dim) unit vectors of users known only by documents, features and `ratings`
    (userId, movieId, rating): the user tower plus the pool of the movies they liked."""
    liked = None
    if model.cfg.collaborative:
        liked = liked_matrix(user_ids, model.id_movies.cpu().numpy(), ratings, like_threshold)
    return _encode_users(model, tokenizer, documents, features, liked, device)


def encode_liked_users(model: TwoTower, tokenizer: Any, documents: list[str],
                       features: np.ndarray | None, liked: list[np.ndarray],
                       device: torch.device | None = None) -> np.ndarray:
    """encode_rated_users with, per document, the movieIds the user liked."""
    matrix = lists_matrix(liked, model.id_movies.cpu().numpy())
    return _encode_users(model, tokenizer, documents, features, matrix,
                         device or torch.device("cpu"))


def _encode_users(model: TwoTower, tokenizer: Any, documents: list[str],
                  features: np.ndarray | None, liked: sp.csr_matrix | None,
                  device: torch.device) -> np.ndarray:
    from tagrec_cli.towers.encode import encode_rows
    from tagrec_cli.towers.tokens import TokenTable, tokenize

    offsets, tokens = tokenize(tokenizer, documents, model.cfg.max_length)
    table = TokenTable(np.arange(len(documents)), offsets, tokens, tokenizer.pad_token_id or 0)
    extra = None if features is None else torch.from_numpy(np.asarray(features, np.float32))
    vecs = encode_rows(model, table, np.arange(len(documents)), device, 256, "user",
                       features=extra)
    vecs = with_collab(model, "user", np.arange(len(documents)), vecs, liked)
    return torch.nn.functional.normalize(vecs, dim=1).numpy()
