"""Metrics on scores, pure numpy."""

from __future__ import annotations

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


def sign_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Share of pairs where the cosine's sign matches the label (cosine 0 counts as -1)."""
    predicted = np.where(np.asarray(scores) > 0, 1, -1)
    return float((predicted == np.sign(labels)).mean()) if len(scores) else float("nan")
