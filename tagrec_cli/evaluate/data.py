"""The workspace's split as evaluate reads it: ratings and relevance as matrices indexed by
catalogue rows (EvalData), and which users and movies make each slice."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from tagrec_cli import artifacts
from tagrec_cli.config import RELEVANT_RATING, IngestConfig
from tagrec_cli.documents import frames
from tagrec_cli.errors import TagrecError, quoted
from tagrec_cli.store import ingested
from tagrec_cli.topk import rows_of


@dataclass
class EvalData:
    movie_ids: np.ndarray  # (N,) catalogue, movies.parquet order
    user_ids: np.ndarray  # (U,) every user with a history rating, sorted
    history: sp.csr_matrix  # (U, N) history ratings (values = rating)
    relevant: list[set[int]]  # per user: movie rows of the target part rated >= relevant
    documents: list[str]  # movie documents, catalogue order
    pair_users: np.ndarray  # the target part's ratings as (user row, movie row, label)
    pair_movies: np.ndarray
    pair_labels: np.ndarray
    liked_rating: float
    manifest: dict
    target: str = "valid"  # the part scored: "valid" or "test"
    new_users: pl.DataFrame | None = None  # part "new": userId, movieId, rating, timestamp

    @property
    def popularity(self) -> np.ndarray:
        return np.asarray((self.history != 0).sum(axis=0)).ravel()


def load_eval_data(workdir: Path, relevant_rating: float = RELEVANT_RATING,
                   target: str | None = None) -> EvalData:
    """Read ingest/{ratings,movies}.parquet into matrices indexed by catalogue rows.

    target: the part scored ("valid" or "test"); None = "test" if the workspace has test
    ratings, else "valid". A workspace from before the three-way split (no `part` column)
    has its held-out ratings as "valid".
    """
    manifest = ingested.ingest_manifest(workdir)
    movies = ingested.documents(workdir, "movie")
    ratings = ingested.with_parts(ingested.read_table(workdir, artifacts.RATINGS_FILE))
    parts = set(ratings["part"].unique().to_list())
    target = target or ("test" if "test" in parts else "valid")
    if target not in ("valid", "test"):
        raise TagrecError(f"the evaluated part must be valid or test, not {quoted(target)}")
    movie_ids = movies["movieId"].to_numpy().astype(np.int64)
    known = ratings.filter(pl.col("movieId").is_in(movie_ids))
    hist = known.filter(pl.col("part") == "history")
    user_ids = np.unique(hist["userId"].to_numpy().astype(np.int64))

    def rows(df: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return (rows_of(user_ids, df["userId"].to_numpy().astype(np.int64)),
                rows_of(movie_ids, df["movieId"].to_numpy().astype(np.int64)))

    h_users, h_movies = rows(hist)
    history = sp.csr_matrix((hist["rating"].to_numpy().astype(np.float64),
                             (h_users, h_movies)), shape=(len(user_ids), len(movie_ids)))
    history.sum_duplicates()
    scored = known.filter(pl.col("part") == target)
    s_users, s_movies = rows(scored)
    ok = s_users >= 0  # a user whose every rating is held out has no history to rank from
    s_users, s_movies = s_users[ok], s_movies[ok]
    s_values = scored["rating"].to_numpy().astype(np.float64)[ok]
    relevant: list[set[int]] = [set() for _ in user_ids]
    for u, m in zip(s_users[s_values >= relevant_rating], s_movies[s_values >= relevant_rating],
                    strict=True):
        relevant[u].add(int(m))
    ingest_cfg = IngestConfig.from_settings(manifest.get("settings", {}))
    like = ingest_cfg.like_threshold
    new = known.filter(pl.col("part") == "new").select("userId", "movieId", "rating",
                                                         "timestamp")
    if "scored_new_users" in manifest:  # evaluate's validation stage leaves out two sets
        new = new.filter(pl.col("userId").is_in(manifest["scored_new_users"]))
    return EvalData(movie_ids=movie_ids, user_ids=user_ids, history=history, relevant=relevant,
                    documents=[d or "" for d in movies["document"].to_list()],
                    pair_users=s_users, pair_movies=s_movies,
                    pair_labels=scored.select(frames.pair_label(like))
                    .to_series().to_numpy().astype(np.int64)[ok],
                    liked_rating=ingest_cfg.liked_rating, manifest=manifest,
                    target=target, new_users=new if new.height else None)


def user_slices(data: EvalData, evaluated: np.ndarray) -> tuple[dict[str, list[set[int]]],
                                                                  float]:
    """Per slice (SLICES), each evaluated user's relevant movie rows (empty = not in the
    slice), and the low-history cut-off: history ratings <= it (module docstring)."""
    history_counts = np.diff(data.history.indptr)
    low_max = float(np.quantile(history_counts, 0.25)) if len(history_counts) else 0.0
    cold = data.popularity == 0
    relevant = [data.relevant[u] for u in evaluated]
    cold_relevant = [{m for m in r if cold[m]} for r in relevant]
    return {"all": relevant,
            "low_history": [r if history_counts[u] <= low_max else set()
                            for u, r in zip(evaluated, relevant, strict=True)],
            "cold_movies": cold_relevant, "cold_ranked": cold_relevant}, low_max
