"""Exact top-k tags over the movies each user liked, as a chunked sparse product.

For every user u and tag t we need count[u, t] = number of movies liked by u that carry t,
then the k best tags per user. As a join this is billions of (user, tag) increments at
MovieLens-25M scale; as a sparse product it is

    counts = liked (users x movies, 0/1) @ carries (movies x tags, 0/1)

computed for a bounded chunk of users at a time, keeping only the top k per row of each chunk
before moving on, so memory stays bounded by the chunk and never by users x tags.

Ties: tags are numbered beforehand in the global tie-break order (most applications first,
then alphabetical), so "best" is (count desc, tag index asc) and the result is exact.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp


def top_k_per_row(counts: sp.csr_matrix, k: int, unique_entries: bool = False,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top k columns per row of a CSR matrix of positive counts, ties to the lower column.

    Returns (row, col, position) arrays, position 0 = best within the row.
    unique_entries: the caller guarantees no duplicate (row, col) entries, as a sparse
    product's output has; this skips a full sort of the indices.

    Example: [[0, 2, 2, 1]] with k=2 -> rows [0, 0], cols [1, 2], positions [0, 1]
    """
    if not unique_entries:
        counts.sum_duplicates()
    n_rows, n_cols = counts.shape
    row_len = np.diff(counts.indptr)
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), row_len)
    data = counts.data.astype(np.int64)
    cols = counts.indices.astype(np.int64)

    # Per-row threshold: the largest c such that at least k entries of the row have count >= c.
    # Entries below it can never make the top k, so the sort below sees few of them.
    if data.size and row_len.max() > k:
        max_count = int(data.max())
        hist = np.bincount(rows * (max_count + 1) + data, minlength=n_rows * (max_count + 1))
        at_least = np.cumsum(hist.reshape(n_rows, max_count + 1)[:, ::-1], axis=1)[:, ::-1]
        # at_least[r, c] = entries of row r with count >= c (non-increasing in c).
        threshold = np.maximum((at_least >= k).sum(axis=1) - 1, 1)  # (n_rows,)
        keep = data >= threshold[rows]
        rows, cols, data = rows[keep], cols[keep], data[keep]

    # Sort by row, then count desc, then column asc, in one int64 key.
    max_count = int(data.max()) if data.size else 0
    key = (rows * (max_count + 1) + (max_count - data)) * n_cols + cols
    order = np.argsort(key, kind="stable")
    rows, cols = rows[order], cols[order]
    starts = np.searchsorted(rows, np.arange(n_rows))
    position = np.arange(rows.size) - starts[rows]
    top = position < k
    return rows[top], cols[top], position[top]


def top_tags_for_users(liked: sp.csr_matrix, carries: sp.csr_matrix, k: int,
                       chunk_rows: int = 4096, workers: int | None = None,
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top k tags per user of (liked @ carries), exact, in chunks of users.

    liked: (n_users, n_movies) 0/1 CSR; carries: (n_movies, n_tags) 0/1 CSR with tags numbered
    in tie-break order. Returns (user_row, tag_col, position) sorted by user then position.
    scipy releases the GIL inside the sparse product, so chunks run on a few threads.
    """
    liked = sp.csr_matrix(liked, dtype=np.int32)
    carries = sp.csr_matrix(carries, dtype=np.int32)
    n_users = liked.shape[0]
    bounds = [(lo, min(lo + chunk_rows, n_users)) for lo in range(0, n_users, chunk_rows)]
    workers = workers or min(4, os.cpu_count() or 1)

    def one_chunk(bound: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lo, hi = bound
        # A sparse product has no duplicate entries (only unsorted column indices).
        rows, cols, pos = top_k_per_row(liked[lo:hi] @ carries, k, unique_entries=True)
        return rows + lo, cols, pos

    empty = np.zeros(0, dtype=np.int64)
    if not bounds:
        return empty, empty, empty
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(one_chunk, bounds))
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]
