"""The new-users slice: users left out of every fit, each known by their first
NEW_USER_KNOWN ratings and scored on the next NEW_USER_SCORED (package docstring)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from tagrec_cli import baselines as bl
from tagrec_cli.config import NEW_USER_KNOWN, NEW_USER_SCORED, IngestConfig
from tagrec_cli.evaluate.data import EvalData
from tagrec_cli.metrics import metric_means, per_user_metrics
from tagrec_cli.store import Store, ingested
from tagrec_cli.topk import rows_of, top_k

# A function from (documents, side features or None, user ids, their known ratings) to
# (n, dim) unit user vectors: the trained user tower, which evaluate cannot import (torch
# lives in towers/, train/ and embed).
EncodeUsers = Callable[[list[str], np.ndarray | None, np.ndarray, pl.DataFrame], np.ndarray]


def new_user_parts(new: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each new user's first NEW_USER_KNOWN ratings by (timestamp, movieId), and the next
    NEW_USER_SCORED: (known, scored), both userId, movieId, rating, timestamp."""
    ranked = (new.sort(["userId", "timestamp", "movieId"])
              .with_columns(rank=pl.int_range(pl.len()).over("userId")))
    known = ranked.filter(pl.col("rank") < NEW_USER_KNOWN).drop("rank")
    scored = ranked.filter((pl.col("rank") >= NEW_USER_KNOWN)
                           & (pl.col("rank") < NEW_USER_KNOWN + NEW_USER_SCORED)).drop("rank")
    return known, scored


def new_user_documents(workdir: Path, data: EvalData, known: pl.DataFrame, users: np.ndarray,
                       ) -> tuple[list[str], np.ndarray | None]:
    """The documents and side features ingest would give each of `users` from their known
    ratings alone (ingested.rated_users)."""
    cfg = IngestConfig.from_settings(data.manifest.get("settings", {}))
    stats = data.manifest.get("feature_stats") if cfg.side_features else None
    return ingested.rated_users(workdir, known, users, stats)


def new_users_slice(workdir: Path, data: EvalData, fitted: dict[str, bl.Scorer], k: int,
                    relevant_rating: float, tagrec: bl.DotScorer | None,
                    encode_users: EncodeUsers | None, block_size: int = 256,
                    prior_weights: Callable[[np.ndarray], np.ndarray] | None = None,
                    keep: dict[str, np.ndarray] | None = None,
                    ) -> dict[str, dict[str, float]]:
    """Ranking metrics per method on the new users (module docstring): tagrec from the
    known ratings' document, the fitted scorers that can fold a user in. prior_weights:
    ratings known -> tagrec's prior weights (default: the workspace's, Store.prior_weights).
    keep: if given, filled with each method's per-user NDCG@k (NaN: no relevant movie)."""
    known, scored = new_user_parts(data.new_users)
    users = np.unique(known["userId"].to_numpy())
    n, n_items = len(users), len(data.movie_ids)
    urow = {int(u): i for i, u in enumerate(users)}

    def matrix(df: pl.DataFrame) -> sp.csr_matrix:
        r = np.array([urow[int(u)] for u in df["userId"].to_list()], dtype=np.int64)
        m = rows_of(data.movie_ids, df["movieId"].to_numpy().astype(np.int64))
        return sp.csr_matrix((np.ones(len(r)), (r, m)), shape=(n, n_items))

    x = matrix(known)
    relevant: list[set[int]] = [set() for _ in users]
    liked = scored.filter(pl.col("rating") >= relevant_rating)
    for u, m in zip(liked["userId"].to_list(),
                    rows_of(data.movie_ids, liked["movieId"].to_numpy().astype(np.int64)),
                    strict=True):
        relevant[urow[int(u)]].add(int(m))
    # Each method's (block, movies) scores of a block of new users, ranked a block at a time:
    # at MovieLens-25M size the 16,200 new users' dense scores would be 8 GB per method.
    rankers: dict[str, Callable[[slice], np.ndarray | None]] = {}
    if tagrec is not None and encode_users is not None:
        docs, feats = new_user_documents(workdir, data, known, users)
        vectors = encode_users(docs, feats, users, known)  # (n, dim)
        weights = None
        if tagrec.item_prior is not None:  # each known by their NEW_USER_KNOWN ratings
            weights = (prior_weights or Store(workdir).prior_weights)(np.diff(x.indptr))
        rankers["tagrec"] = lambda b: tagrec.vector_scores(
            vectors[b], None if weights is None else weights[b])
    for name, scorer in fitted.items():
        rankers[name] = lambda b, scorer=scorer: scorer.fold_in(x[b])  # None: cannot fold in
    out = {}
    for name, scores in rankers.items():
        top = np.full((n, k), -1, dtype=np.int64)
        for lo in range(0, n, block_size):
            block = slice(lo, min(lo + block_size, n))
            s = scores(block)
            if s is None:
                break
            top[block] = top_k(s, k, x[block])[0]
        else:
            per_user = per_user_metrics(top, relevant, k)
            m = metric_means(per_user, relevant)
            out[name] = {key: m[key] for key in ("ndcg", "recall", "hit_rate", "mrr", "users")}
            if keep is not None:
                keep[name] = per_user["ndcg"]
    return out
