"""Metrics on scores and on ranked lists, pure numpy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC-AUC of scores for labels (> 0 positive), ties counted half (Mann-Whitney U).

    Example: scores [0.1, 0.4, 0.35, 0.8], labels [-1, -1, 1, 1] -> 0.75
    Returns nan when one class is absent.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(labels) > 0
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # Average rank within each run of equal scores.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    run_ranks = first + (counts + 1) / 2.0  # 1-based average rank per run
    ranks[order] = np.repeat(run_ranks, counts)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def user_auc(scores: np.ndarray, labels: np.ndarray, users: np.ndarray) -> float:
    """Within-user ROC-AUC: each user's liked pairs against their own disliked ones (roc_auc
    per user), averaged over the users who have both. A score that is one offset per user
    (a user's rating habit) cannot move it, unlike the pooled roc_auc.

    Example: scores [0.9, 0.1, 0.2, 0.3], labels [1, -1, 1, -1], users [0, 0, 1, 1]
             -> (1.0 + 0.0) / 2 = 0.5 (the pooled roc_auc: 0.75)
    Returns nan when no user has both.
    """
    scores, labels, users = (np.asarray(a) for a in (scores, labels, users))
    if not len(scores) == len(labels) == len(users):
        raise ValueError(f"user_auc needs one label and one user per score ({len(scores)}, "
                         f"{len(labels)}, {len(users)})")
    if not len(scores):
        return float("nan")
    # roc_auc's Mann-Whitney U for every user at once: sort by (user, score); a score's rank
    # within its user, ties averaged; U = the positives' rank sum - n_pos (n_pos + 1) / 2.
    order = np.lexsort((scores.astype(np.float64), users))
    u, s, pos = users[order], scores[order].astype(np.float64), labels[order] > 0
    n = len(u)
    new_user = np.r_[True, u[1:] != u[:-1]]
    new_run = new_user | np.r_[True, s[1:] != s[:-1]]  # a run of equal scores of one user
    user_id = np.cumsum(new_user) - 1  # (n,) 0..users-1
    run_id = np.cumsum(new_run) - 1
    user_start = np.flatnonzero(new_user)
    run_start = np.flatnonzero(new_run)
    run_len = np.diff(np.r_[run_start, n])
    rank = (run_start - user_start[user_id[run_start]] + (run_len + 1) / 2.0)[run_id]
    n_pos = np.bincount(user_id, pos).astype(np.float64)
    n_neg = np.bincount(user_id) - n_pos
    both = (n_pos > 0) & (n_neg > 0)
    if not both.any():
        return float("nan")
    u_stat = np.bincount(user_id, rank * pos) - n_pos * (n_pos + 1) / 2.0
    return float(np.mean(u_stat[both] / (n_pos[both] * n_neg[both])))


def sign_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Share of pairs where the cosine's sign matches the label (cosine 0 counts as -1)."""
    predicted = np.where(np.asarray(scores) > 0, 1, -1)
    return float((predicted == np.sign(labels)).mean()) if len(scores) else float("nan")


def per_user_metrics(top: np.ndarray, relevant: Sequence[set[int]], k: int
                     ) -> dict[str, np.ndarray]:
    """Recall, NDCG, hit rate and reciprocal rank @k per user; NaN where ``relevant`` is empty.

    top (U, >=k) movie ids or rows best first (-1 = no movie); relevant[u] = relevant ids.
    """
    n = len(relevant)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    out = {name: np.full(n, np.nan) for name in ("recall", "ndcg", "hit_rate", "mrr")}
    for u, rel in enumerate(relevant):
        if not rel:
            continue
        hits = np.fromiter((int(m) in rel for m in top[u, :k]), dtype=bool, count=k)
        first = int(np.argmax(hits)) if hits.any() else -1
        ideal = discount[:min(k, len(rel))].sum()
        out["recall"][u] = hits.sum() / len(rel)
        out["ndcg"][u] = discount[hits].sum() / ideal
        out["hit_rate"][u] = float(first >= 0)
        out["mrr"][u] = 1.0 / (first + 1) if first >= 0 else 0.0
    return out


def ranking_metrics(top: np.ndarray, relevant: Sequence[set[int]], k: int) -> dict[str, float]:
    """Means of per_user_metrics over users with any relevant movie; ``users`` = how many,
    ``skipped`` = users with none (left out of every mean)."""
    return metric_means(per_user_metrics(top, relevant, k), relevant)


def metric_means(per_user: dict[str, np.ndarray], relevant: Sequence[set[int]],
                 ) -> dict[str, float]:
    """ranking_metrics from per_user_metrics' arrays (computed once, kept for paired_bootstrap)."""
    counted = np.array([bool(r) for r in relevant], dtype=bool)
    result = {name: float(v[counted].mean()) if counted.any() else float("nan")
              for name, v in per_user.items()}
    return result | {"users": int(counted.sum()), "skipped": int((~counted).sum())}


def catalogue_coverage(top: np.ndarray, n_items: int) -> float:
    """Distinct movies in the lists (ignoring -1) / catalogue size."""
    if n_items <= 0:
        return float("nan")
    return float(np.unique(top[top >= 0]).size / n_items)


def popularity_percentiles(counts: np.ndarray) -> np.ndarray:
    """Percentile rank in [0, 100] of each count: 0 = least popular, 100 = most; ties average.

    Example: counts [5, 0, 5, 9] -> [50, 0, 50, 100]
    """
    from scipy.stats import rankdata

    counts = np.asarray(counts)
    if counts.size <= 1:
        return np.full(counts.size, 50.0)
    return 100.0 * (rankdata(counts, method="average") - 1.0) / (counts.size - 1)


def mean_popularity_percentile(top: np.ndarray, percentiles: np.ndarray) -> float:
    """Mean popularity percentile over every recommended movie (rows, -1 ignored)."""
    rows = top[top >= 0]
    return float(percentiles[rows].mean()) if rows.size else float("nan")


def paired_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int = 1000, level: float = 0.95,
                     seed: int = 0) -> dict[str, float]:
    """How much a's mean is above b's, two per-user metrics of the same users (NaN = not
    counted in either), with a percentile interval from resampling users with replacement,
    each user's pair of values kept together (so the two methods share every draw).

    Returns diff = mean(a) - mean(b), ratio = mean(a) / mean(b) - 1, and each one's ``_low``
    / ``_high`` bounds at `level`; ``users`` = how many counted. The ratio and its bounds are
    NaN when b's mean is 0 in the data or in any draw (a baseline that scores on a handful of
    users): the relative difference is then undefined, and dropping those draws would make the
    interval look surer than it is; the difference is still given.
    Example: a [1, 1, 1, 0.5], b [1, 0.5, 1, 0.5] -> diff 0.125, ratio 1/6; a >= b for
    every user, so for every draw too: diff_low, ratio_low >= 0.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired metrics need the same users ({a.shape} vs {b.shape})")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    n = len(a)
    nan = float("nan")
    out = {"users": n, "diff": nan, "diff_low": nan, "diff_high": nan,
           "ratio": nan, "ratio_low": nan, "ratio_high": nan}
    if n == 0:
        return out
    rng = np.random.default_rng(seed)
    sums_a, sums_b = np.empty(resamples), np.empty(resamples)
    chunk = max(1, 2_000_000 // n)  # draws at a time: (chunk, n) indices, 16 MB, a[idx] 16 more
    for lo in range(0, resamples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, resamples - lo), n))
        sums_a[lo:lo + len(idx)], sums_b[lo:lo + len(idx)] = a[idx].sum(1), b[idx].sum(1)
    tail = 100 * (1 - level) / 2
    out["diff"] = float(a.mean() - b.mean())
    out["diff_low"], out["diff_high"] = (float(x) for x in np.percentile(
        (sums_a - sums_b) / n, [tail, 100 - tail]))
    if b.mean() > 0 and (sums_b > 0).all():
        out["ratio"] = float(a.mean() / b.mean() - 1)
        out["ratio_low"], out["ratio_high"] = (float(x) for x in np.percentile(
            sums_a / sums_b - 1, [tail, 100 - tail]))
    return out
