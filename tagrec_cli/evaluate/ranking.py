"""Top-k lists of a scorer for many users, a block of users at a time, and one slice's
metrics over them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tagrec_cli import baselines as bl
from tagrec_cli.evaluate.data import EvalData
from tagrec_cli.metrics import (
    catalogue_coverage,
    mean_popularity_percentile,
    metric_means,
    per_user_metrics,
)
from tagrec_cli.topk import top_k

RANK_WORKERS = 4  # blocks ranked at once, at most (memory: a few (256, movies) arrays each)


def evaluate_scorer(scorer: bl.Scorer, data: EvalData, users: np.ndarray, k: int,
                    block_size: int = 256, workers: int | None = None) -> np.ndarray:
    """(len(users), k) top movie rows, history excluded, scored in blocks of users.

    `workers` blocks at a time (default: one per core, at most RANK_WORKERS): the scorers'
    products and top_k's selections run in numpy and BLAS without the GIL, so threads keep
    every core busy. Each block writes its own rows, so the result is the same.
    """
    return rank_blocks(scorer, data, users, k, block_size, workers)[0]


def rank_blocks(scorer: bl.Scorer, data: EvalData, users: np.ndarray, k: int,
                block_size: int = 256, workers: int | None = None,
                cold_rows: np.ndarray | None = None, cold_users: np.ndarray | None = None,
                ) -> tuple[np.ndarray, np.ndarray]:
    """evaluate_scorer's (len(users), k) top rows, and from the same block scores the
    cold-ranked lists: (len(users), k) top rows among `cold_rows` only for the users where
    the bool mask `cold_users` is set (-1 elsewhere). No exclusion there: a cold movie has no
    history rating, so it is in no user's history."""
    out = np.full((len(users), k), -1, dtype=np.int64)
    cold_out = np.full((len(users), k), -1, dtype=np.int64)

    def rank(lo: int) -> None:
        block = users[lo:lo + block_size]
        scores = scorer.scores(block)  # (B, movies)
        out[lo:lo + len(block)] = top_k(scores, k, data.history[block])[0]
        if cold_rows is None or cold_users is None or not len(cold_rows):
            return
        pick = np.flatnonzero(cold_users[lo:lo + len(block)])
        if len(pick):
            cols = top_k(scorer.cold_scores(block[pick], cold_rows, np.asarray(scores)[pick]),
                         k)[0]  # (P, k) into cold_rows
            cold_out[lo + pick] = np.where(cols >= 0, cold_rows[np.maximum(cols, 0)], -1)

    starts = range(0, len(users), block_size)
    workers = workers or min(RANK_WORKERS, os.cpu_count() or 1)
    if workers > 1 and len(starts) > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(rank, starts))  # list(): re-raises a block's exception
    else:
        for lo in starts:
            rank(lo)
    return out, cold_out


def slice_metrics(top: np.ndarray, relevant: Sequence[set[int]], k: int, n_items: int,
                  percentiles: np.ndarray, per_user: dict[str, np.ndarray] | None = None,
                  ) -> dict[str, float]:
    """ranking_metrics of one slice's lists plus coverage and popularity; per_user: its
    per_user_metrics if already computed."""
    if per_user is None:
        per_user = per_user_metrics(top, relevant, k)
    m = metric_means(per_user, relevant)
    lists = top[np.array([bool(r) for r in relevant], dtype=bool)]
    return {"ndcg": m["ndcg"], "recall": m["recall"], "hit_rate": m["hit_rate"],
            "mrr": m["mrr"], "coverage": catalogue_coverage(lists, n_items),
            "popularity_percentile": mean_popularity_percentile(lists, percentiles),
            "users": m["users"]}
