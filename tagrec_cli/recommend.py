"""`tagrec recommend`: top-k movies per user from the embedding tables (numpy only, no torch).

Rows of both tables are L2-normalised, so cosine similarity is a dot product. Filtering
happens inside top-k: excluded movies get -inf before selection, and k is capped at what is
left, so a user always gets the best k movies that remain.

It reads only files that `tagrec embed` wrote beside the tables (the movies' titles and every
user's rated movies), so it imports neither torch nor polars and answers in a blink.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

from tagrec_cli import artifacts
from tagrec_cli.errors import ArtifactError, TagrecError

TABLE_FILE = {"user": "users.safetensors", "movie": "movies.safetensors"}
SEEN_FILE = "seen.safetensors"  # every user's rated movies (history and held out), as CSR
MOVIE_INFO_FILE = "movie_info.json"  # columns movieId, title, year, genres


def rows_of(table_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Positions of `ids` in the (unsorted) id array `table_ids`; -1 where an id is absent.

    Example: table_ids [5, 1, 9], ids [9, 4] -> [2, -1]
    """
    ids = np.asarray(ids)
    if len(table_ids) == 0:
        return np.full(ids.shape, -1, dtype=np.int64)
    order = np.argsort(table_ids, kind="stable")
    pos = np.minimum(np.searchsorted(table_ids, ids, sorter=order), len(order) - 1)
    rows = order[pos]
    return np.where(table_ids[rows] == ids, rows, -1)


@dataclass
class EmbeddingTable:
    ids: np.ndarray  # (N,) int64 MovieLens ids
    vectors: np.ndarray  # (N, dim) float32, unit rows

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """ids -> row numbers; -1 where an id is not in the table."""
        return rows_of(self.ids, ids)


def load_table(workdir: Path, side: str) -> EmbeddingTable:
    """Read embeddings/{users,movies}.safetensors, checked against the manifest."""
    artifacts.read_manifest(workdir, artifacts.EMBEDDINGS_DIR, artifacts.EMBEDDINGS_FORMAT)
    path = Path(workdir) / artifacts.EMBEDDINGS_DIR / TABLE_FILE[side]
    try:
        arrays = load_file(str(path))
        ids, vectors = arrays["ids"], arrays["embeddings"]
    except (OSError, KeyError, ValueError, SafetensorError) as exc:
        raise ArtifactError(f"{path} is missing or damaged ({exc.__class__.__name__}) — "
                            "re-run `tagrec embed`") from None
    return EmbeddingTable(ids.astype(np.int64), vectors.astype(np.float32, copy=False))


def top_k(queries: np.ndarray, items: np.ndarray, k: int,
          exclude: list[np.ndarray] | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Best k item rows per query by dot product, excluded rows left out.

    queries (Q, d), items (N, d); exclude[q] = item rows never returned for query q.
    Returns (rows, scores): Q arrays each of length min(k, N - len(excluded)), best first.
    Ties go to the lower row, so results are deterministic.

    Example: queries [[1, 0]], items [[0, 1], [1, 0], [0.6, 0.8]], k 2 -> rows [[1, 2]]
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    queries = np.asarray(queries, dtype=np.float32)
    items = np.ascontiguousarray(items, dtype=np.float32)
    rows_out, scores_out = [], []
    for q in range(len(queries)):
        # One matrix-vector product per query: a batched matrix product may round the last
        # bit differently from a single query's, which could reorder near-ties.
        s = items @ queries[q]  # (N,)
        if exclude is not None and len(exclude[q]):
            s[exclude[q]] = -np.inf
        available = int(np.isfinite(s).sum())
        n = min(k, available)
        if n == 0:
            rows_out.append(np.zeros(0, dtype=np.int64))
            scores_out.append(np.zeros(0, dtype=np.float32))
            continue
        part = np.argpartition(-s, n - 1)[:n] if n < len(s) else np.arange(len(s))
        # Sort the candidates by score desc, then row asc. Candidates tied with the k-th
        # best outside `part` would be arbitrary, so widen to all rows with that score.
        kth = s[part].min()
        cand = np.flatnonzero(s >= kth)
        order = np.lexsort((cand, -s[cand]))[:n]
        rows_out.append(cand[order].astype(np.int64))
        scores_out.append(s[cand[order]])
    return rows_out, scores_out


@dataclass
class Recommendation:
    user: int
    movie_ids: np.ndarray  # (n,) best first
    scores: np.ndarray  # (n,) cosine similarity


def load_seen(workdir: Path) -> dict[str, np.ndarray]:
    """users (U,) sorted ids, indptr (U+1,), movies: movies[indptr[i]:indptr[i+1]] of users[i]."""
    path = Path(workdir) / artifacts.EMBEDDINGS_DIR / SEEN_FILE
    try:
        return load_file(str(path))
    except (OSError, ValueError, SafetensorError) as exc:
        raise ArtifactError(f"{path} is missing or damaged ({exc.__class__.__name__}) — "
                            "re-run `tagrec embed`") from None


def recommend_for_users(workdir: Path, users: list[int], k: int = 10,
                        include_seen: bool = False) -> list[Recommendation]:
    """Top-k movies for each user; a batch gives the same lists as one user at a time."""
    if k < 1:
        raise TagrecError(f"-k must be at least 1 (got {k})")
    user_table = load_table(workdir, "user")
    movie_table = load_table(workdir, "movie")
    ids = np.asarray(users, dtype=np.int64)
    rows = user_table.rows_of(ids)
    if (rows < 0).any():
        unknown = int(ids[rows < 0][0])
        raise TagrecError(f"unknown user {unknown}: no user document in the workspace "
                          f"(users {int(user_table.ids.min())}–{int(user_table.ids.max())})")
    exclude = None
    if not include_seen:
        seen = load_seen(workdir)
        exclude = []
        for u in ids:
            i = np.searchsorted(seen["users"], u)
            found = i < len(seen["users"]) and seen["users"][i] == u
            movies = seen["movies"][seen["indptr"][i]:seen["indptr"][i + 1]] if found else []
            seen_rows = movie_table.rows_of(np.asarray(movies, dtype=np.int64))
            exclude.append(seen_rows[seen_rows >= 0])
    top_rows, top_scores = top_k(user_table.vectors[rows], movie_table.vectors, k, exclude)
    return [Recommendation(int(u), movie_table.ids[r], s)
            for u, r, s in zip(ids, top_rows, top_scores, strict=True)]


def movie_info(workdir: Path, movie_ids: np.ndarray) -> list[dict]:
    """{movieId, title, year, genres} for the given ids, in the given order."""
    path = Path(workdir) / artifacts.EMBEDDINGS_DIR / MOVIE_INFO_FILE
    try:
        columns = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path} is missing or damaged ({exc.__class__.__name__}) — "
                            "re-run `tagrec embed`") from None
    index = {m: i for i, m in enumerate(columns["movieId"])}
    return [{name: columns[name][index[int(m)]] if int(m) in index else None
             for name in ("title", "year", "genres")} | {"movieId": int(m)}
            for m in movie_ids]
