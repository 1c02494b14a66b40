"""Top-k with exclusions, and id -> row lookups: the one ranking rule of recommend, similar
and evaluate. Pure numpy.

Filtering happens inside top-k (as implicit and TensorFlow Recommenders do it): excluded
columns get -inf before selection and are never returned, so a query always gets the best k
that remain. Ties go to the lower column, also at the k-th place, so every ranking is
deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from tagrec_cli.errors import QueryError

if TYPE_CHECKING:  # scipy is not imported at run time: a query needs none of it
    import scipy.sparse as sp


def check_k(k: int, most: int | None = None, cap: str | None = None) -> None:
    """A list's length k (recommend, similar, evaluate, serve): at least 1, and at most
    `most` where there is a cap; cap: what `most` is, for the message (default: the number).

    Example: check_k(0) -> QueryError("k must be at least 1 (got 0)")
    """
    if k < 1:
        raise QueryError(f"k must be at least 1 (got {k})", "k", names=("k",))
    if most is not None and k > most:
        raise QueryError(f"k must be at most {cap or f'{most:,}'} (got {k:,})", "k",
                         names=("k",))


# Rows this wide rank in two stages (best_chunks_select): the best chunks of CHUNK columns
# by their maximum, then the best columns within those; padding columns are -inf.
CHUNK = 64
TWO_STAGE_MIN = 4096


def rows_of(table_ids: np.ndarray, ids: np.ndarray,
            order: np.ndarray | None = None) -> np.ndarray:
    """Positions of `ids` in the (unsorted) id array `table_ids`; -1 where an id is absent.
    order: np.argsort(table_ids, kind="stable"), when the caller keeps it.

    Example: table_ids [5, 1, 9], ids [9, 4] -> [2, -1]
    """
    ids = np.asarray(ids)
    if len(table_ids) == 0:
        return np.full(ids.shape, -1, dtype=np.int64)
    if order is None:
        order = np.argsort(table_ids, kind="stable")
    pos = np.minimum(np.searchsorted(table_ids, ids, sorter=order), len(order) - 1)
    rows = order[pos]
    return np.where(table_ids[rows] == ids, rows, -1)


def top_k(scores: np.ndarray, k: int,
          exclude: sp.spmatrix | Sequence[np.ndarray] | None = None,
          ) -> tuple[np.ndarray, np.ndarray]:
    """Best k columns per row of ``scores`` (B, N), best first.

    exclude: columns never returned, per row: a (B, N) sparse matrix whose stored entries are
    excluded (history movies), or a sequence of B column arrays. NaN is never returned either.
    Returns (cols, values), both (B, k): where fewer than k columns remain, the row is padded
    with -1 and -inf.

    Example: scores [[0.2, 0.9, 0.2, 0.5]], k 3, exclude column 3 -> cols [[1, 0, 2]]
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    scores = np.asarray(scores)
    b, n = scores.shape
    # float32 scores stay float32: widening is exact and keeps the order, so the ranking is
    # the same, and a (256, 62,000) block is half the bytes to copy and select in.
    dtype = np.result_type(scores.dtype, np.float32)
    kk = min(k, n)
    two_stage = n >= TWO_STAGE_MIN and kk * CHUNK * 4 <= n
    width = -(-n // CHUNK) * CHUNK if two_stage else n
    s = np.full((b, width), -np.inf, dtype=dtype)  # a copy (padded to whole chunks)
    s[:, :n] = scores
    s[np.isnan(s)] = -np.inf
    if hasattr(exclude, "tocoo"):  # a scipy sparse matrix
        if exclude.nnz:
            rows, cols = exclude.tocoo().nonzero()
            s[rows, cols] = -np.inf
    elif exclude is not None:
        for row, cols in enumerate(exclude):
            s[row, np.asarray(cols, dtype=np.int64)] = -np.inf
    out = np.full((b, k), -1, dtype=np.int64)
    out_vals = np.full((b, k), -np.inf)
    if b == 0 or kk == 0:
        return out, out_vals
    if two_stage:
        part = best_chunks_select(s, kk)
    elif kk < n:
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
    else:
        part = np.broadcast_to(np.arange(n), (b, n)).copy()
    vals = np.take_along_axis(s, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    top = np.take_along_axis(part, order, axis=1)
    top_vals = np.take_along_axis(vals, order, axis=1)
    # argpartition picks arbitrarily among columns tied with the k-th score; redo those rows.
    kth = top_vals[:, -1]
    tied = np.flatnonzero(np.isfinite(kth) & ((s >= kth[:, None]).sum(axis=1) > kk))
    for r in tied:
        cand = np.flatnonzero(s[r] >= kth[r])
        best = cand[np.lexsort((cand, -s[r, cand]))[:kk]]
        top[r], top_vals[r] = best, s[r, best]
    top[~np.isfinite(top_vals)] = -1
    out[:, :kk] = top
    out_vals[:, :kk] = np.where(top >= 0, top_vals, -np.inf)
    return out, out_vals


def best_chunks_select(s: np.ndarray, kk: int) -> np.ndarray:
    """(B, kk) columns of `s` (B, W), W a multiple of CHUNK, holding each row's kk largest
    values, in no order; ties at the kk-th value are settled by top_k's check afterwards.

    Two stages, so that the selection runs over kk * CHUNK values, not W: a column among
    the kk best has a value >= the kk-th best v, so its chunk's maximum does too; fewer than
    kk chunks have a maximum above v, so the kk chunks with the highest maxima hold every
    value above v and at least kk values >= v, and their kk-th best is v.
    """
    b, w = s.shape
    maxima = s.reshape(b, w // CHUNK, CHUNK).max(axis=2)  # (B, W / CHUNK)
    chunks = np.argpartition(-maxima, kk - 1, axis=1)[:, :kk]  # (B, kk)
    cols = (chunks[:, :, None] * CHUNK + np.arange(CHUNK)).reshape(b, kk * CHUNK)
    vals = np.take_along_axis(s, cols, axis=1)
    pick = np.argpartition(-vals, kk - 1, axis=1)[:, :kk]
    return np.take_along_axis(cols, pick, axis=1)
