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


def test_dot_scorer_ranks_with_the_prior_and_scores_pairs_by_the_cosine():
    users = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    items = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]], np.float32)
    pop = np.array([-1.0, 2.0, 0.0], np.float32)
    plain = DotScorer(users, items)
    with_prior = DotScorer(users, items, user_weights=np.array([0.1, 0.0], np.float32),
                           item_prior=pop)
    assert np.argmax(plain.scores(np.array([0]))[0]) == 0
    assert np.argmax(with_prior.scores(np.array([0]))[0]) == 1  # 0.8 + 0.2 > 0.9 - 0.1
    assert with_prior.scores(np.array([1])) == pytest.approx(plain.scores(np.array([1])))
    # A pair (did the user like a movie they rated?) is scored by the cosine, the score the
    # epoch is chosen by; the prior ranks the catalogue only.
    pairs = with_prior.pair_scores(np.array([0, 0, 1]), np.array([0, 1, 2]))
    assert pairs == pytest.approx([0.9, 0.8, 0.9])
    rows = plain.scores(np.array([0, 1]))
    assert pairs == pytest.approx(rows[[0, 0, 1], [0, 1, 2]])


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


def test_movie_prior_gives_a_movie_nobody_rated_the_cold_prior():
    got = prior.movie_prior(np.array([0, 1, 9, 99]), cold=1.5)
    assert got[0] == 1.5
    assert got[1:] == pytest.approx(prior.movie_prior(np.array([0, 1, 9, 99]))[1:])
    assert prior.movie_prior(np.array([0, 4]), cold=-1.0).tolist() == [-1.0, 0.0]  # no spread


def test_cold_prior_is_recorded_by_train_and_embed_and_ranks_added_movies(
        embedded_sample_refit_300pairs_dim16, copy_workspace, tiny_bert, tmp_path):
    import json

    from helpers import invoke

    from tagrec_cli.config import ModelConfig
    from tagrec_cli.store import Store
    from tagrec_cli.store.embeddings import load_seen, load_table

    ws = copy_workspace(embedded_sample_refit_300pairs_dim16)
    r = invoke(["train", "--model", str(tiny_bert), "--dim", "16", "--epochs", "1",
                "--device", "cpu", "--cold-prior", "2.5"], ws)
    assert r.exit_code == 0, r.output
    csv = tmp_path / "new.csv"
    csv.write_text("movieId,title,genres,tags\n900001,Heist (2031),Crime,safe cracking\n",
                   encoding="utf-8")
    for args in (["embed", "--device", "cpu"], ["embed", "--add-movies", str(csv)]):
        r = invoke(args, ws)
        assert r.exit_code == 0, r.output
    manifest = json.loads((ws / "embeddings" / "manifest.json").read_text())
    assert manifest["popularity_prior"]["cold"] == 2.5
    store = Store(ws)
    movies, users = load_table(ws, "movie"), load_table(ws, "user")
    row = movies.rows_of(np.array([900001]))[0]
    assert store.movie_prior[row] == 2.5  # an added movie: nobody rated it
    # the catalogue's movies nobody rated get it too; the rated ones keep their prior
    before = Store(embedded_sample_refit_300pairs_dim16).movie_prior
    counts = store.catalogue.rating_counts()[store.catalogue.rows(movies.ids[:row])]
    assert row == len(before) and 0 < np.sum(counts == 0) < row
    assert store.movie_prior[:row] == pytest.approx(np.where(counts == 0, 2.5, before))
    r = invoke(["recommend", "--user", "7", "--json", "-k", "100000"], ws)
    assert r.exit_code == 0, r.output
    scores = {x["movieId"]: x["score"] for x in json.loads(r.stdout)["recommendations"]}
    n = len(load_seen(ws).of(7)[0])
    cos = float(movies.vectors[row] @ users.vectors[users.rows_of(np.array([7]))[0]])
    cfg = ModelConfig()
    weight = cfg.popularity_prior * (1 + cfg.prior_shrink / n)
    assert scores[900001] == pytest.approx(cos + weight * 2.5, abs=1e-5)


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_cold_prior_that_is_not_a_number_is_a_one_line_error(
        embedded_sample_refit_300pairs_dim16, copy_workspace, tiny_bert, value):
    from helpers import invoke

    ws = copy_workspace(embedded_sample_refit_300pairs_dim16)
    before = (ws / "model" / "config.json").read_bytes()
    r = invoke(["train", "--model", str(tiny_bert), "--device", "cpu", "--cold-prior", value],
               ws)
    assert r.exit_code != 0
    assert "--cold-prior: must be a finite number" in r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert (ws / "model" / "config.json").read_bytes() == before  # the trained model is kept
