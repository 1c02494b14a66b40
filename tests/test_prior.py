"""The popularity prior of the ranking score (tagrec_cli/prior.py) and where it is applied."""

from __future__ import annotations

import numpy as np
import pytest

from tagrec_cli import prior
from tagrec_cli.baselines import DotScorer


def test_movie_prior_is_the_z_score_of_log_counts_over_rated_movies():
    got = prior.movie_prior(np.array([0, 1, 9, 99]))
    x = np.log1p([1.0, 9.0, 99.0])
    assert got[0] == 0.0  # nobody rated it: the mean, not the bottom
    assert got[1:] == pytest.approx((x - x.mean()) / x.std(), abs=1e-6)
    assert got[1:].mean() == pytest.approx(0.0, abs=1e-6)
    assert got == pytest.approx([0.0, -1.1464, -0.1439, 1.2903], abs=1e-4)  # the docstring's


def test_movie_prior_without_spread_is_zero():
    assert prior.movie_prior(np.array([3, 3, 0])).tolist() == [0.0, 0.0, 0.0]
    assert prior.movie_prior(np.array([5])).tolist() == [0.0]
    assert prior.movie_prior(np.array([np.nan, 2.0, 8.0]))[0] == 0.0


def test_weights_shrink_with_the_ratings_a_user_is_known_by():
    w = prior.weights(np.array([0, 1, 5, 10, 100, 1000]), 0.05, 10.0)
    assert w[0] == 0.0  # a tags query: no prior
    assert w[1:] == pytest.approx([0.55, 0.15, 0.1, 0.055, 0.0505])
    assert np.all(np.diff(w[1:]) < 0)
    assert prior.weights(np.array([3, 30]), 0.0, 10.0).tolist() == [0.0, 0.0]


def test_scores_add_each_users_weight_times_the_prior():
    cos = np.array([[0.5, 0.4], [0.1, 0.2]], np.float32)
    out = prior.scores(cos, np.array([0.2, 0.0]), np.array([-1.0, 1.0], np.float32))
    assert out == pytest.approx(np.array([[0.3, 0.6], [0.1, 0.2]]))
    assert prior.scores(cos, None, None) is cos


def test_dot_scorer_ranks_and_scores_pairs_with_the_prior():
    users = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    items = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]], np.float32)
    pop = np.array([-1.0, 2.0, 0.0], np.float32)
    plain = DotScorer(users, items)
    with_prior = DotScorer(users, items, user_weights=np.array([0.1, 0.0], np.float32),
                           item_prior=pop)
    assert np.argmax(plain.scores(np.array([0]))[0]) == 0
    assert np.argmax(with_prior.scores(np.array([0]))[0]) == 1  # 0.8 + 0.2 > 0.9 - 0.1
    assert with_prior.scores(np.array([1])) == pytest.approx(plain.scores(np.array([1])))
    pairs = with_prior.pair_scores(np.array([0, 0, 1]), np.array([0, 1, 2]))
    assert pairs == pytest.approx([0.8, 1.0, 0.9])
    rows = with_prior.scores(np.array([0, 1]))
    assert pairs == pytest.approx(rows[[0, 0, 1], [0, 1, 2]])  # one score for both uses


def test_recommend_ranks_by_cosine_plus_the_prior_and_popularity_prior_0_is_cosine(
        embedded_sample_refit_300pairs_dim16, copy_workspace, tiny_bert):
    import json

    from helpers import invoke

    from tagrec_cli.config import ModelConfig
    from tagrec_cli.store import Store
    from tagrec_cli.store.embeddings import load_seen, load_table

    answers, tables = {}, {}
    for name, extra in (("default", []), ("cosine", ["--popularity-prior", "0"])):
        ws = copy_workspace(embedded_sample_refit_300pairs_dim16, name)
        for args in (["train", "--model", str(tiny_bert), "--dim", "16", "--epochs", "1",
                      "--device", "cpu", *extra], ["embed", "--device", "cpu"]):
            r = invoke(args, ws)
            assert r.exit_code == 0, r.output
        r = invoke(["recommend", "--user", "7", "--json", "-k", "10"], ws)
        assert r.exit_code == 0, r.output
        answers[name] = json.loads(r.stdout)["recommendations"]
        tables[name] = (load_table(ws, "user"), load_table(ws, "movie"), Store(ws).catalogue,
                        load_seen(ws).of(7)[0])
    users, movies, catalogue, seen = tables["default"]
    assert np.array_equal(movies.vectors, tables["cosine"][1].vectors)  # training ignores it
    cos = movies.vectors @ users.vectors[users.rows_of(np.array([7]))[0]]
    cos[np.isin(movies.ids, seen)] = -np.inf
    weight = ModelConfig().popularity_prior * (1 + ModelConfig().prior_shrink / len(seen))
    pop = prior.movie_prior(catalogue.rating_counts()[catalogue.rows(movies.ids)])
    for name, expected in (("cosine", cos), ("default", cos + weight * pop)):
        order = np.argsort(-expected, kind="stable")[:10]
        assert [x["movieId"] for x in answers[name]] == movies.ids[order].tolist()
        assert [x["score"] for x in answers[name]] == pytest.approx(expected[order], abs=1e-5)
    assert answers["default"] != answers["cosine"]
