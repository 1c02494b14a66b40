"""metrics.py: pair metrics (ROC-AUC, sign accuracy) and ranking metrics, on hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tagrec_cli.metrics import (
    catalogue_coverage,
    mean_popularity_percentile,
    paired_bootstrap,
    per_user_metrics,
    popularity_percentiles,
    ranking_metrics,
    roc_auc,
    sign_accuracy,
    user_auc,
)

# ---------------------------------------------------------------- pair metrics


def test_roc_auc_by_hand_with_ties():
    # positives 0.35, 0.8; negatives 0.1, 0.4: pairs (pos > neg): 0.35>0.1, 0.8>0.1, 0.8>0.4
    # = 3 of 4 -> 0.75
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([-1, -1, 1, 1])) == 0.75
    # a tie between a positive and a negative counts half: pos {0.5, 0.9}, neg {0.5, 0.1}
    # (0.5 vs 0.5) 0.5 + (0.5 > 0.1) 1 + (0.9 > both) 2 = 3.5 / 4 = 0.875
    assert roc_auc(np.array([0.5, 0.9, 0.5, 0.1]), np.array([1, 1, -1, -1])) == 0.875
    assert math.isnan(roc_auc(np.array([0.1, 0.2]), np.array([1, 1])))
    # matches the brute-force definition on random data with many ties
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 200).astype(float)
    y = rng.choice([-1, 1], 200)
    pos, neg = s[y > 0], s[y < 0]
    brute = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (
        len(pos) * len(neg))
    assert roc_auc(s, y) == pytest.approx(brute)


def test_user_auc_averages_each_users_own_auc_and_ignores_a_per_user_offset():
    # user 0: like 0.9 > dislike 0.1 -> 1.0; user 1: like 0.2 < dislike 0.3 -> 0.0; mean 0.5
    scores, labels = np.array([0.9, 0.1, 0.2, 0.3]), np.array([1, -1, 1, -1])
    users = np.array([0, 0, 1, 1])
    assert user_auc(scores, labels, users) == 0.5
    assert roc_auc(scores, labels) == 0.75  # pooled: 0.9>0.1, 0.9>0.3, 0.2>0.1, 0.2<0.3
    # users in any order; one with a single class (user 7) is left out of the mean
    shuffled = np.array([3, 0, 2, 1, 4])
    s5, y5, u5 = (np.r_[scores, 0.5][shuffled], np.r_[labels, 1][shuffled],
                  np.r_[users, 7][shuffled])
    assert user_auc(s5, y5, u5) == 0.5
    # a per-user offset (a rating habit) moves the pooled AUC, not the within-user one
    rng = np.random.default_rng(0)
    users = rng.integers(0, 20, 500)
    labels = rng.choice([-1, 1], 500)
    scores = rng.normal(size=500) + 0.5 * labels
    shifted = scores + 5.0 * np.where(users % 2, 1.0, -1.0)
    assert user_auc(shifted, labels, users) == pytest.approx(user_auc(scores, labels, users))
    assert roc_auc(shifted, labels) != pytest.approx(roc_auc(scores, labels))
    assert math.isnan(user_auc(np.array([0.1, 0.2]), np.array([1, 1]), np.array([0, 1])))
    assert math.isnan(user_auc(np.array([]), np.array([]), np.array([])))
    # the same as roc_auc user by user, with many ties within and across users
    scores = rng.integers(0, 4, 500).astype(float)
    per_user = [roc_auc(scores[users == u], labels[users == u]) for u in np.unique(users)]
    assert user_auc(scores, labels, users) == pytest.approx(np.nanmean(per_user))
    with pytest.raises(ValueError, match="one label and one user per score"):
        user_auc(np.array([0.1, 0.2, 0.3]), np.array([1, -1, 1]), np.array([0, 0]))


def test_sign_accuracy():
    # signs: +, -, 0 (-> -1), + vs labels +, +, -, - -> right, wrong, right, wrong
    assert sign_accuracy(np.array([0.3, -0.2, 0.0, 0.9]), np.array([1, 1, -1, -1])) == 0.5


# ---------------------------------------------------------------- ranking metrics


def test_ndcg_with_two_relevant_items_at_ranks_1_and_3():
    # k = 5, relevant {10, 30} found at ranks 1 and 3:
    # DCG = 1/log2(2) + 1/log2(4) = 1 + 0.5 = 1.5; IDCG = 1 + 1/log2(3) = 1.630930
    # NDCG = 1.5 / 1.630930 = 0.919721; recall 2/2 = 1; MRR 1/1; hit 1.
    m = ranking_metrics(np.array([[10, 20, 30, 40, 50]]), [{10, 30}], 5)
    assert m["ndcg"] == pytest.approx(0.919721, abs=1e-6)
    assert m["recall"] == 1.0 and m["mrr"] == 1.0 and m["hit_rate"] == 1.0


def test_mrr_recall_and_ndcg_with_first_hit_at_rank_3():
    # k = 5, 4 relevant {3, 7, 8, 9}, one hit (3) at rank 3:
    # recall = 1/4 (hits / #relevant); MRR = 1/3;
    # NDCG = (1/log2 4) / (1 + 1/log2 3 + 1/log2 4 + 1/log2 5) = 0.5 / 2.561606 = 0.195190
    m = ranking_metrics(np.array([[1, 2, 3, 4, 5]]), [{3, 7, 8, 9}], 5)
    assert m["recall"] == 0.25
    assert m["mrr"] == pytest.approx(1 / 3)
    assert m["ndcg"] == pytest.approx(0.195190, abs=1e-6)


def test_recall_divides_by_all_relevant_items_not_min_k():
    # 12 relevant items, k = 10, all 10 recommended are hits: recall = 10/12, NDCG = 1.
    m = ranking_metrics(np.arange(10)[None, :], [set(range(12))], 10)
    assert m["recall"] == pytest.approx(10 / 12)
    assert m["ndcg"] == pytest.approx(1.0)


def test_users_without_relevance_are_skipped_and_short_lists_count_as_misses():
    top = np.array([[5, -1, -1], [1, 2, 3], [4, 9, -1]])
    relevant = [{5}, set(), {7}]
    # user 0: hit at rank 1 -> every metric 1; user 1 skipped; user 2: no hit -> 0.
    m = ranking_metrics(top, relevant, 3)
    assert (m["users"], m["skipped"]) == (2, 1)
    assert m["ndcg"] == m["recall"] == m["hit_rate"] == m["mrr"] == 0.5
    per_user = per_user_metrics(top, relevant, 3)
    assert math.isnan(per_user["ndcg"][1])
    nobody = ranking_metrics(top, [set(), set(), set()], 3)
    assert math.isnan(nobody["ndcg"]) and nobody["users"] == 0


def test_coverage_and_popularity_percentile():
    # Lists recommend rows {0, 1, 2} out of 10 -> coverage 0.3 (-1 is no movie).
    assert catalogue_coverage(np.array([[0, 1, -1], [1, 2, -1]]), 10) == pytest.approx(0.3)
    # counts [5, 0, 5, 9] rank 2.5, 1, 2.5, 4 -> 100 * (rank - 1) / 3 = [50, 0, 50, 100]
    pct = popularity_percentiles(np.array([5, 0, 5, 9]))
    assert pct.tolist() == [50.0, 0.0, 50.0, 100.0]
    # recommended rows 3, 0, 1 -> (100 + 50 + 0) / 3 = 50
    assert mean_popularity_percentile(np.array([[3, 0], [1, -1]]), pct) == pytest.approx(50.0)


# ---------------------------------------------------------------- paired bootstrap


def test_paired_bootstrap_example_and_a_sure_improvement():
    # a [1, 1, 1, 0.5] vs b [1, 0.5, 1, 0.5]: means 0.875 and 0.75 -> diff 0.125, ratio 1/6.
    # a >= b for every user, so no draw of users can make a's mean smaller than b's.
    c = paired_bootstrap(np.array([1.0, 1, 1, 0.5]), np.array([1.0, 0.5, 1, 0.5]), seed=3)
    assert c["users"] == 4
    assert c["diff"] == pytest.approx(0.125) and c["ratio"] == pytest.approx(1 / 6)
    assert 0.0 <= c["diff_low"] <= c["diff"] <= c["diff_high"] <= 0.5
    assert 0.0 <= c["ratio_low"] <= c["ratio"] <= c["ratio_high"] <= 1.0


def test_paired_bootstrap_keeps_pairs_together():
    # Two methods that differ by the same 0.1 for every user: every draw's difference is
    # exactly 0.1, however spread the users' values are. Resampling the two arrays apart
    # would give a wide interval.
    rng = np.random.default_rng(0)
    b = rng.random(500)
    c = paired_bootstrap(b + 0.1, b, resamples=200)
    assert c["diff_low"] == pytest.approx(0.1) and c["diff_high"] == pytest.approx(0.1)


def test_paired_bootstrap_interval_covers_the_truth_and_skips_nan():
    # Per-user values with NaN (users without a relevant movie) in either array are left out
    # of both; a 5% gap in means on 4,000 users of spread 0.3 has an interval of about +-2%.
    rng = np.random.default_rng(1)
    b = rng.normal(0.5, 0.3, 4000)
    a = b * 1.05 + rng.normal(0, 0.05, 4000)
    a[:10] = np.nan
    b[10:20] = np.nan
    c = paired_bootstrap(a, b)
    assert c["users"] == 3980
    assert c["ratio_low"] < 0.05 < c["ratio_high"] and c["ratio_high"] - c["ratio_low"] < 0.05


def test_paired_bootstrap_of_a_zero_baseline_gives_the_difference_only():
    c = paired_bootstrap(np.array([0.5, 0.0]), np.zeros(2))
    assert c["diff"] == 0.25 and math.isnan(c["ratio"]) and math.isnan(c["ratio_low"])
    assert 0.0 <= c["diff_low"] <= c["diff_high"] <= 0.5
    # A baseline that scores on one user of 60 has draws where it scores on nobody: there
    # the ratio is undefined, so none is given (dropping those draws would make the ratio's
    # interval look sure); the difference's interval reaches 0, as it should.
    b = np.zeros(60)
    b[0] = 1.0
    c = paired_bootstrap(np.zeros(60), b)
    assert math.isnan(c["ratio"]) and math.isnan(c["ratio_low"]) and math.isnan(c["ratio_high"])
    assert c["diff"] == pytest.approx(-1 / 60) and c["diff_high"] == 0.0 < -c["diff_low"]
    empty = paired_bootstrap(np.array([np.nan]), np.array([1.0]))
    assert empty["users"] == 0 and math.isnan(empty["diff"])
    with pytest.raises(ValueError, match="same users"):
        paired_bootstrap(np.zeros(2), np.zeros(3))
