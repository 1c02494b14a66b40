"""train/plan.py: an epoch's step inputs, made at once, equal what each step computed alone."""

from __future__ import annotations

import numpy as np
import pytest

from tagrec_cli.config import TrainConfig
from tagrec_cli.train.batches import Pairs, epoch_batches, length_groups, softmax_positives
from tagrec_cli.train.plan import other_positives, plan_epoch, unique_per_step


def per_step(cfg, pairs, batch, log_q, rng):
    """What the training step worked out for itself before plan.py (commit 511ecb0)."""
    user_unique, user_inverse = np.unique(pairs.user_rows[batch], return_inverse=True)
    movie_unique, movie_inverse = np.unique(pairs.movie_rows[batch], return_inverse=True)
    labels = pairs.labels[batch]
    positive = np.flatnonzero(softmax_positives(cfg, labels, pairs.ratings[batch]))
    unrated = unknown = None
    if rng is not None and cfg.cold_dropout > 0:
        unrated = rng.random(len(movie_unique)) < cfg.cold_dropout
        unknown = rng.random(len(user_unique)) < cfg.cold_dropout
    u, m = user_inverse[positive], movie_inverse[positive]
    cand = np.arange(len(movie_unique)) if cfg.loss == "softmax" else np.unique(m)
    col = np.full(len(movie_unique), -1)
    col[cand] = np.arange(len(cand))
    m = col[m]
    other = np.zeros((len(positive), len(cand)), dtype=bool)
    rows_, cols_ = np.nonzero(u[:, None] == u[None, :])
    other[rows_, m[cols_]] = True
    other[np.arange(len(positive)), m] = False
    return dict(users=user_unique, movies=movie_unique, user_inverse=user_inverse,
                movie_inverse=movie_inverse, labels=labels, pos_user=u, pos_col=m, cand=cand,
                log_q=None if log_q is None else log_q[movie_unique[cand]], other=other,
                unrated=unrated, unknown=unknown)


def random_pairs(rng, n_pairs=3000, n_users=60, n_movies=200):
    ratings = rng.choice(np.arange(1, 11) / 2, n_pairs).astype(np.float32)
    return Pairs(rng.integers(0, n_users, n_pairs), rng.integers(0, n_movies, n_pairs),
                 np.where(ratings >= 2.5, 1.0, -1.0).astype(np.float32), ratings)


@pytest.mark.parametrize("loss, group_by_user, batch_size, dropout", [
    ("hybrid", False, 256, 0.2), ("hybrid", True, 100, 0.2), ("softmax", True, 7, 0.0),
    ("softmax", False, 64, 0.5), ("cosine", False, 128, 0.2)])
def test_plan_equals_the_per_step_computation(loss, group_by_user, batch_size, dropout):
    rng = np.random.default_rng(3)
    pairs = random_pairs(rng)
    cfg = TrainConfig(loss=loss, cold_dropout=dropout, group_by_user=group_by_user)
    log_q = rng.normal(size=200).astype(np.float32)
    lengths = {"user": rng.integers(3, 129, 60), "movie": rng.integers(3, 129, 200)}
    old_rng, new_rng = np.random.default_rng(9), np.random.default_rng(9)
    for _epoch in range(2):  # the dropout stream carries on into the next epoch alike
        batches = epoch_batches(pairs.user_rows, batch_size, rng, group_by_user)
        plan = plan_epoch(cfg, pairs, batches, lengths, log_q, new_rng)
        assert plan.steps == len(batches)
        for s, batch in enumerate(batches):
            want = per_step(cfg, pairs, batch, log_q, old_rng)

            def cut(name, off, s=s, plan=plan):
                return getattr(plan, name)[off[s]:off[s + 1]]

            got = dict(users=cut("users", plan.user_off), movies=cut("movies", plan.movie_off),
                       user_inverse=cut("user_inverse", plan.pair_off),
                       movie_inverse=cut("movie_inverse", plan.pair_off),
                       labels=cut("labels", plan.pair_off),
                       pos_user=cut("pos_user", plan.pos_off),
                       pos_col=cut("pos_col", plan.pos_off), cand=cut("cand", plan.cand_off),
                       log_q=cut("cand_log_q", plan.cand_off))
            for name, value in got.items():
                assert np.array_equal(value, want[name]), (s, name)
            other = np.zeros_like(want["other"])
            other[cut("mask_pos", plan.mask_off), cut("mask_col", plan.mask_off)] = True
            assert np.array_equal(other, want["other"]), s
            if dropout:
                assert np.array_equal(cut("unrated", plan.movie_off), want["unrated"])
                assert np.array_equal(cut("unknown", plan.user_off), want["unknown"])
            else:
                assert plan.unrated is None and plan.unknown is None
            assert plan.encoded(s) == len(want["users"]) + len(want["movies"])
            assert plan.has_target[s] == (len(want["pos_user"]) > 0)
            for side, rows in (("user", want["users"]), ("movie", want["movies"])):
                g = plan.groups[side]
                groups = length_groups(lengths[side][rows], cfg.length_groups)
                lo, hi = getattr(plan, f"{side}_off")[s:s + 2]
                assert np.array_equal(g.order[lo:hi], np.concatenate(groups))
                assert np.array_equal(g.restore[lo:hi], np.argsort(np.concatenate(groups)))
                assert g.sizes[s] == [len(x) for x in groups]
                assert g.widths[s] == [int(lengths[side][rows][x].max()) for x in groups]
    # The softmax with tiny batches meets steps without a positive.
    if batch_size == 7:
        assert not plan.has_target.all()


def test_unique_per_step_example():
    off, unique, inverse = unique_per_step(np.array([0, 0, 1]), np.array([5, 3, 5]), 3)
    assert off.tolist() == [0, 2, 3, 3]
    assert unique.tolist() == [3, 5, 5] and inverse.tolist() == [1, 0, 0]


def test_other_positives_example():
    # one step; positives' users [0, 0, 1] with target columns [0, 1, 2]
    off, pos, col = other_positives(np.zeros(3, np.int64), np.array([0, 3]),
                                    np.array([0, 0, 1]), np.array([0, 1, 2]), 1)
    assert off.tolist() == [0, 2]
    assert sorted(zip(pos.tolist(), col.tolist(), strict=True)) == [(0, 1), (1, 0)]


def test_frozen_plan_has_no_length_groups_and_an_empty_epoch_plans():
    pairs = random_pairs(np.random.default_rng(0), 50)
    plan = plan_epoch(TrainConfig(), pairs, [np.arange(50)])
    assert plan.groups == {} and plan.unrated is None and plan.cand_log_q is None
    empty = plan_epoch(TrainConfig(), pairs, [])
    assert empty.steps == 0 and len(empty.users) == 0
