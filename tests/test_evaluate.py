"""`tagrec evaluate`: baselines on toy data, end to end (the metrics: tests/test_metrics.py)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import invoke

from tagrec_cli import baselines as bl
from tagrec_cli.config import BASELINES
from tagrec_cli.errors import ArtifactError, TagrecError
from tagrec_cli.evaluate import evaluate_scorer, run_evaluate

# ---------------------------------------------------------------- baselines on toy data

# Two taste groups: users 0-5 rated items 0-4 (group A), users 6-11 items 5-9 (group B),
# each user all of their group except item (user % 5) of it. The obvious recommendation is
# the one group item the user has not rated.
N_USERS, N_ITEMS = 12, 10


def block_history() -> sp.csr_matrix:
    x = np.zeros((N_USERS, N_ITEMS))
    for u in range(N_USERS):
        group = 0 if u < 6 else 5
        x[u, group:group + 5] = 4.0
        x[u, group + u % 5] = 0.0
    return sp.csr_matrix(x)


def obvious_item(u: int) -> int:
    return (0 if u < 6 else 5) + u % 5


def test_blocks_ranked_in_threads_equal_one_at_a_time():
    rng = np.random.default_rng(0)
    users, items = 50, 300
    scorer = bl.DotScorer(rng.standard_normal((users, 8)), rng.standard_normal((items, 8)))
    data = SimpleNamespace(history=sp.csr_matrix(rng.random((users, items)) < 0.1))
    rows = rng.permutation(users)
    serial = evaluate_scorer(scorer, data, rows, k=7, block_size=4, workers=1)
    threaded = evaluate_scorer(scorer, data, rows, k=7, block_size=4, workers=4)
    assert np.array_equal(serial, threaded)
    assert (serial >= 0).all()


def top1(scorer: bl.Scorer, history: sp.csr_matrix) -> list[int]:
    users = np.arange(N_USERS)
    top = evaluate_scorer(scorer, SimpleNamespace(history=history), users, k=N_ITEMS)
    # history items are never recommended, and every unseen item is listed
    for u in users:
        listed = set(top[u][top[u] >= 0].tolist())
        assert listed == set(range(N_ITEMS)) - set(history[u].indices.tolist())
    return top[:, 0].tolist()


@pytest.mark.parametrize("make", [
    lambda h: bl.EaseScorer(h, lam=1.0),
    lambda h: bl.ItemKnnScorer(h, neighbours=4),
    lambda h: bl.fit_als(h, factors=4, iterations=15, regularization=0.05, seed=0),
    lambda h: bl.TfidfScorer(["space robot laser"] * 5 + ["wedding romance love"] * 5,
                             sp.csr_matrix(h >= 2.5)),
], ids=["ease", "itemknn", "als", "tfidf"])
def test_baselines_recover_the_missing_item_of_the_users_group(make):
    history = block_history()
    assert top1(make(history), history) == [obvious_item(u) for u in range(N_USERS)]


@pytest.mark.parametrize("make", [lambda h: bl.EaseScorer(h, lam=1.0),
                                  lambda h: bl.ItemKnnScorer(h, neighbours=3),
                                  bl.PopularScorer], ids=["ease", "itemknn", "popular"])
def test_fold_in_of_a_history_row_scores_as_that_user(make):
    # A user folded in from their own history row gets the scores the fitted user gets.
    history = block_history()
    scorer = make(history)
    rows = np.array([0, 7])
    assert np.allclose(scorer.fold_in(history[rows]), scorer.scores(rows))


def test_itemknn_keeps_only_the_nearest_neighbours():
    # Items 0-4 co-occur in group A only: each item's 2 kept neighbours are in its group.
    knn = bl.ItemKnnScorer(block_history(), neighbours=2)
    assert np.diff(knn.sim.indptr).max() <= 2
    rows, cols = knn.sim.nonzero()
    assert ((rows < 5) == (cols < 5)).all() and (rows != cols).all()


def test_grid_lists_every_combination():
    from tagrec_cli.config import BASELINE_GRIDS
    from tagrec_cli.evaluate import grid

    als = grid("als")
    assert len(als) == len(BASELINE_GRIDS["als"]["factors"]) * len(
        BASELINE_GRIDS["als"]["regularization"])
    assert {"factors": 64, "regularization": 0.1} in als
    assert grid("popular") == [{}]


def test_cold_ranked_lists_hold_cold_movies_only_best_first():
    from tagrec_cli.evaluate import rank_blocks

    # 3 users x 6 movies; movies 1, 3 and 4 are cold. User 0 scores 4 > 1 > 3 among them,
    # whatever the warm movies score (movie 5 is its best overall); user 1 is not in the
    # cold slice, so its cold list stays empty.
    scores = np.array([[0.1, 0.5, 0.2, 0.3, 0.9, 2.0],
                       [0.0, 0.1, 0.0, 0.7, 0.2, 0.0],
                       [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    class Fixed(bl.Scorer):
        def scores(self, rows):
            return scores[rows]

    scorer = Fixed()
    data = SimpleNamespace(history=sp.csr_matrix((3, 6)))
    users, cold = np.array([0, 1, 2]), np.array([1, 3, 4])
    top, cold_top = rank_blocks(scorer, data, users, 4, block_size=2, workers=1,
                                cold_rows=cold, cold_users=np.array([True, False, True]))
    assert top[0].tolist() == [5, 4, 1, 3]
    assert cold_top.tolist() == [[4, 1, 3, -1], [-1] * 4, [1, 3, 4, -1]]  # ties: listed first
    assert np.array_equal(top, evaluate_scorer(scorer, data, users, 4, block_size=2))
    _, none = rank_blocks(scorer, data, users, 2, cold_rows=np.array([], np.int64),
                          cold_users=np.ones(3, bool))
    assert (none == -1).all()
    # A scorer that ranks the cold movies by other vectors (tagrec's content profiles):
    # its cold lists follow them, its full lists do not change.
    items = np.eye(6, dtype=np.float32)
    dot = bl.DotScorer(scores.astype(np.float32), items,
                       cold_vectors=-scores.astype(np.float32))
    top2, cold2 = rank_blocks(dot, data, users, 4, workers=1, cold_rows=cold,
                              cold_users=np.array([True, False, True]))
    assert np.array_equal(top2, top)
    assert cold2[0].tolist() == [3, 1, 4, -1]  # -scores: 3 > 1 > 4 among the cold movies


def test_popular_and_bias_rank_by_history():
    # Popularity: item 0 rated by 3 users, item 1 by 2, item 2 by 1, item 3 by nobody.
    history = sp.csr_matrix(np.array([[5, 4, 0, 0], [5, 0, 0, 0], [1, 5, 5, 0.0]]))
    popular = bl.PopularScorer(history)
    assert popular.popularity.tolist() == [3, 2, 1, 0]
    top = evaluate_scorer(popular, SimpleNamespace(history=history), np.arange(3), k=2)
    assert top.tolist() == [[2, 3], [1, 2], [3, -1]]
    assert popular.pair_scores(np.array([0, 0]), np.array([2, 0])).tolist() == [1, 3]
    # Bias model: item 1 (ratings 4, 5) earns a larger bias than item 0 (5, 5, 1), so any
    # user is predicted to like item 1 more; mu is the mean of the 6 history ratings, 25/6.
    bias = bl.BiasScorer(history, reg_user=0.1, reg_item=0.1, iterations=50)
    assert bias.mu == pytest.approx(25 / 6)
    assert bias.item_bias[1] > bias.item_bias[0]
    pred = bias.pair_scores(np.array([2, 2]), np.array([1, 0]))
    assert pred[0] > pred[1]
    assert np.allclose(bias.scores(np.array([2]))[0, [1, 0]], pred)


def test_random_is_reproducible_and_block_independent():
    r = bl.RandomScorer(5, 20, seed=3)
    assert np.array_equal(r.scores(np.array([0, 1, 2]))[1], r.scores(np.array([1]))[0])


def test_ease_refuses_a_large_catalogue():
    with pytest.raises(bl.BaselineUnavailable, match="EASE"):
        bl.EaseScorer(block_history(), max_items=5)


# ---------------------------------------------------------------- end to end


@pytest.fixture
def embedded(embedded_small_300pairs_dim16: Path) -> Path:
    """conftest's embedded_small_300pairs_dim16 (read-only)."""
    return embedded_small_300pairs_dim16


def test_run_evaluate_reports_every_method(embedded: Path):
    report = run_evaluate(embedded, k=10)
    assert list(report.methods) == ["tagrec", *BASELINES]
    assert report.skipped == {}
    assert report.users_evaluated + report.users_skipped == report.users_total
    assert report.users_evaluated > 0
    for m in report.methods.values():
        for name, values in m.slices.items():
            assert values["users"] == report.slice_users[name]
            for metric in ("ndcg", "recall", "hit_rate", "mrr", "coverage"):
                v = values[metric]
                assert math.isnan(v) or 0.0 <= v <= 1.0
    assert set(report.methods["tagrec"].pairs) == {"auc", "user_auc", "sign_accuracy"}
    assert report.methods["als"].pairs is None
    # tagrec's pairs are scored by the cosine its epoch is chosen by, not cosine + the prior
    # that ranks the catalogue (QUALITY.md, "tagrec's pairs AUC of the score its epoch is
    # chosen by")
    from tagrec_cli.evaluate import load_eval_data, user_slices
    from tagrec_cli.metrics import ranking_metrics, roc_auc, user_auc
    from tagrec_cli.store import Store

    data, store = load_eval_data(embedded), Store(embedded)
    users, movies = store.table("user"), store.table("movie")
    cosines = np.einsum("pd,pd->p", users.vectors[users.rows_of(data.user_ids)][data.pair_users],
                        movies.vectors[movies.rows_of(data.movie_ids)][data.pair_movies])
    assert store.prior_weights(np.diff(data.history.indptr)).any()  # a prior to leave out
    assert report.methods["tagrec"].pairs["auc"] == pytest.approx(
        roc_auc(cosines, data.pair_labels), abs=1e-6)
    assert report.methods["tagrec"].pairs["user_auc"] == pytest.approx(
        user_auc(cosines, data.pair_labels, data.pair_users), abs=1e-6)
    # The cold-ranked slice has the cold slice's users. Ranked among the cold movies only,
    # each relevant cold movie can only move up, so no method scores lower there.
    assert report.slice_users["cold_ranked"] == report.slice_users["cold_movies"] > 0
    for m in report.methods.values():
        assert m.slices["cold_ranked"]["ndcg"] >= m.slices["cold_movies"]["ndcg"]
    # popular ties every cold movie (none has a rating), so its list is the first 10 cold
    # movies in catalogue order, for every user: the slice's NDCG by hand from that list.
    slices, _ = user_slices(data, np.flatnonzero([bool(r) for r in data.relevant]))
    first = np.flatnonzero(data.popularity == 0)[:10]
    lists = np.tile(np.pad(first, (0, 10 - len(first)), constant_values=-1),
                    (len(slices["cold_ranked"]), 1))
    by_hand = ranking_metrics(lists, slices["cold_ranked"], 10)["ndcg"]
    assert report.methods["popular"].slices["cold_ranked"]["ndcg"] == pytest.approx(by_hand)
    # tagrec against every baseline on every slice, the same users as the slice's means.
    assert not report.new_users  # this workspace has no new users' part
    assert set(report.comparisons) == set(report.slice_users)
    for s, against in report.comparisons.items():
        assert set(against) == set(BASELINES)
        for name, c in against.items():
            assert c["users"] == report.slice_users[s]
            mine, theirs = (report.methods[n].slices[s]["ndcg"] for n in ("tagrec", name))
            if c["users"]:
                assert c["diff"] == pytest.approx(mine - theirs)
                assert c["diff_low"] <= c["diff"] + 1e-12 and c["diff"] <= c["diff_high"] + 1e-12
    # Same inputs, same numbers.
    again = run_evaluate(embedded, k=10, baselines=("random", "popular"))
    assert again.methods["popular"].slices == report.methods["popular"].slices
    assert again.methods["random"].slices == report.methods["random"].slices


def test_tagrec_ranks_the_cold_movies_by_the_content_profile(embedded: Path):
    # By hand: per user of the slice, the mean table vector of the history movies rated
    # >= 4 (none: the user's own vector), dotted with each cold movie's, best 10 first.
    from safetensors.numpy import load_file

    from tagrec_cli.evaluate import load_eval_data, user_slices
    from tagrec_cli.metrics import ranking_metrics

    report = run_evaluate(embedded, k=10, baselines=())
    data = load_eval_data(embedded)
    evaluated = np.flatnonzero([bool(r) for r in data.relevant])
    slices, _ = user_slices(data, evaluated)
    tables = {side: load_file(str(embedded / "embeddings" / f"{side}s.safetensors"))
              for side in ("user", "movie")}
    movie_vec = dict(zip(tables["movie"]["ids"].tolist(), tables["movie"]["embeddings"],
                         strict=True))
    user_vec = dict(zip(tables["user"]["ids"].tolist(), tables["user"]["embeddings"],
                        strict=True))
    cold = np.flatnonzero(data.popularity == 0)
    lists, relevant, fallbacks = [], [], 0
    for u, rel in zip(evaluated, slices["cold_ranked"], strict=True):
        if not rel:
            continue
        row = data.history[u].toarray().ravel()
        loved = np.flatnonzero(row >= 4)
        fallbacks += not len(loved)
        profile = (np.mean([movie_vec[int(data.movie_ids[m])] for m in loved], axis=0)
                   if len(loved) else user_vec[int(data.user_ids[u])])
        s = np.array([movie_vec[int(data.movie_ids[m])] @ profile for m in cold])
        lists.append(cold[np.argsort(-s, kind="stable")[:10]])
        relevant.append(rel)
    assert len(relevant) == report.slice_users["cold_ranked"] > 0
    by_hand = ranking_metrics(np.array(lists), relevant, 10)["ndcg"]
    assert report.methods["tagrec"].slices["cold_ranked"]["ndcg"] == pytest.approx(by_hand)


# ---------------------------------------------------------------- the protocol


def test_protocol_never_touches_the_served_workspace(evaluated_small_refit_dim16):
    work, report, served = evaluated_small_refit_dim16
    now = {str(p): p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()
           and not p.is_relative_to(work / "evaluate")}
    assert now == served
    for stage in ("valid", "test"):
        assert (work / "evaluate" / stage / "embeddings" / "movies.safetensors").is_file()
    assert (work / "evaluate" / "report.json").is_file()


def test_protocol_chooses_on_validation_and_reports_test_once(evaluated_small_refit_dim16):
    import polars as pl

    from tagrec_cli.evaluate import grid, tuned_by

    work, report, _ = evaluated_small_refit_dim16
    assert report.valid.target == "valid" and report.test.target == "test"
    assert list(report.test.methods) == ["tagrec", *BASELINES]
    # The epoch: the valid stage's best by validation AUC; the test stage trains that many.
    valid_cfg = json.loads((work / "evaluate/valid/model/config.json").read_text())
    test_cfg = json.loads((work / "evaluate/test/model/config.json").read_text())
    aucs = [e["auc"] for e in valid_cfg["history"] if e["epoch"] >= 1]
    assert report.best_epoch == 1 + int(np.argmax(aucs)) == valid_cfg["best_epoch"]
    assert test_cfg["training"]["epochs"] == report.best_epoch
    assert test_cfg["data"]["valid_pairs"] == 0  # nothing of test can pick an epoch
    # Baselines: every grid setting tried on validation, the best chosen and used on test.
    for name, rows in report.tuning.tried.items():
        assert [r["params"] for r in rows] == grid(name)
        by = tuned_by(name)  # the bias model, the pairs-AUC goal's bar, by AUC as tagrec's epoch
        assert by == ("auc" if name == "bias" else "ndcg") == report.tuning.by[name]
        best = max(r[by] for r in rows)
        assert [r[by] for r in rows if r["params"] == report.tuning.chosen[name]] == [best]
        assert report.test.methods[name].params == report.tuning.chosen[name]
        if by == "auc":  # the AUC it was chosen by is the one its validation row reports
            assert report.valid.methods[name].pairs["auc"] == pytest.approx(best)
    # The same test ratings in both stages (but those of validation's own new users, left
    # out there); the test stage's history is valid + history.
    stage = {s: pl.read_parquet(work / f"evaluate/{s}/ingest/ratings.parquet")
             for s in ("valid", "test")}
    valid_new = json.loads((work / "evaluate/valid/ingest/manifest.json").read_text())[
        "scored_new_users"]
    key = ["userId", "movieId"]
    assert stage["valid"].filter(pl.col("part") == "test").select(key).sort(key).equals(
        stage["test"].filter((pl.col("part") == "test") & ~pl.col("userId").is_in(valid_new))
        .select(key).sort(key))
    assert set(stage["test"]["part"].unique()) == {"history", "test", "new"}
    assert report.test.users_evaluated > 0 and report.valid.users_evaluated > 0


def test_new_users_slice(evaluated_small_refit_dim16):
    import polars as pl

    from tagrec_cli.config import NEW_USER_KNOWN, NEW_USER_SCORED, NEW_USER_SHARE

    work, report, _ = evaluated_small_refit_dim16
    assert set(report.test.new_users) == {"tagrec", "popular", "ease", "itemknn"}
    ratings = pl.read_parquet(work / "evaluate/test/ingest/ratings.parquet")
    new = set(ratings.filter(pl.col("part") == "new")["userId"].to_list())
    all_users = ratings["userId"].n_unique()
    assert len(new) == round(NEW_USER_SHARE * all_users)
    counts = ratings.filter(pl.col("part") == "new").group_by("userId").len()
    assert counts["len"].min() >= NEW_USER_KNOWN + NEW_USER_SCORED
    for stage in ("valid", "test"):  # left out of training entirely
        users = pl.read_parquet(work / f"evaluate/{stage}/ingest/users.parquet")
        pairs = pl.read_parquet(work / f"evaluate/{stage}/ingest/pairs.parquet")
        assert not new & set(users["userId"].to_list())
        assert not new & set(pairs["userId"].to_list())
    for m in report.test.new_users.values():
        assert 0 < m["users"] <= len(new) and 0.0 <= m["ndcg"] <= 1.0
    # Validation scores new users of its own, disjoint from test's; both sets are left out
    # of the validation stage's fit, so test's new users choose nothing.
    valid = pl.read_parquet(work / "evaluate/valid/ingest/ratings.parquet")
    valid_manifest = json.loads((work / "evaluate/valid/ingest/manifest.json").read_text())
    scored = set(valid_manifest["scored_new_users"])
    assert len(scored) == len(new) and not scored & new
    assert set(valid.filter(pl.col("part") == "new")["userId"].to_list()) == scored | new
    assert set(report.valid.new_users) == {"tagrec", "popular", "ease", "itemknn"}
    assert all(0 < m["users"] <= len(scored) for m in report.valid.new_users.values())
    test_manifest = json.loads((work / "evaluate/test/ingest/manifest.json").read_text())
    assert set(test_manifest["scored_new_users"]) == new
    # Popular ranks the same for everyone, so on new users it is the test stage's popular.
    assert report.test.new_users["popular"]["ndcg"] >= 0.0


def test_new_users_are_ranked_in_blocks_with_the_same_result(evaluated_small_refit_dim16):
    from tagrec_cli.evaluate import load_eval_data, make_baseline, new_users_slice

    work, _, _ = evaluated_small_refit_dim16
    test = work / "evaluate" / "test"
    data = load_eval_data(test, target="test")
    fitted = {b: make_baseline(b, data) for b in ("popular", "ease", "itemknn", "bias")}
    whole = new_users_slice(test, data, fitted, 10, 4.0, None, None, block_size=10_000)
    blocks = new_users_slice(test, data, fitted, 10, 4.0, None, None, block_size=3)
    assert set(whole) == {"popular", "ease", "itemknn"}  # bias cannot fold a user in
    assert blocks == whole


def test_protocol_reuses_unchanged_stages(evaluated_small_refit_dim16, copy_workspace):
    from tagrec_cli.protocol import run_protocol

    work = copy_workspace(evaluated_small_refit_dim16[0])
    weights = [work / f"evaluate/{s}/{d}" for s in ("valid", "test")
               for d in ("model/model.safetensors", "embeddings/users.safetensors")]
    before = [p.stat().st_mtime_ns for p in weights]
    again = run_protocol(work, baselines=("popular",))
    assert [p.stat().st_mtime_ns for p in weights] == before
    first = evaluated_small_refit_dim16[1]
    assert again.test.methods["tagrec"].slices["all"] == first.test.methods["tagrec"].slices["all"]


def test_cli_evaluate_prints_grids_and_writes_json(evaluated_small_refit_dim16, copy_workspace,
                                                   tmp_path):
    work = copy_workspace(evaluated_small_refit_dim16[0])
    path = tmp_path / "eval.json"
    result = invoke(["evaluate", "--json", str(path), "--baselines", "popular,ease,bias"], work)
    assert result.exit_code == 0, result.output
    assert "ease on validation, NDCG@10: lam=25" in result.output
    # the bias model's grid by the measure that chose it, and every pair scorer's two AUCs
    assert "bias on validation, pairs ROC-AUC: reg=1 0." in result.output
    assert re.search(r"PairAUC\s+UserAUC", result.output), result.output
    assert re.search(r"ROC-AUC 0\.\d+ \(within users 0\.\d+\)", result.output), result.output
    assert "test (reported once)" in result.output and "new users" in result.output
    # off a terminal (as here) each phase is a line of its own, not a spinner nobody sees
    assert "evaluate: test: scoring" in result.stderr
    data = json.loads(path.read_text())
    assert set(data["test"]["methods"]) == {"tagrec", "popular", "ease", "bias"}
    assert data["tuning"]["by"] == {"ease": "ndcg", "bias": "auc"}  # in the report too
    assert data["test"]["settings"]["k"] == 10 and data["best_epoch"] >= 1
    assert data["test"]["data_hash"] and data["test"]["model_config_hash"]
    # New users are compared with the baselines that fold a user in; the table says so.
    new = data["test"]["comparisons"]["new_users"]
    assert set(new) == {"popular", "ease"} and new["ease"]["users"] > 0
    assert "95% interval" in result.output
    assert re.search(r"^\s*all\s+(popular|ease)\s+\d", result.output, re.M), result.output


def test_a_baseline_tuned_by_a_measure_it_cannot_give_is_a_clear_error(
        evaluated_small_refit_dim16, monkeypatch):
    from tagrec_cli.errors import TagrecError
    from tagrec_cli.evaluate import tuning

    valid = evaluated_small_refit_dim16[0] / "evaluate" / "valid"
    monkeypatch.setattr(tuning, "BASELINE_TUNED_BY", {"ease": "auc", "bias": "mrr"})
    with pytest.raises(TagrecError, match="ease scores no pairs, so pairs AUC cannot choose"):
        tuning.tune_baselines(valid, ["ease"])
    with pytest.raises(TagrecError, match="bias is tuned by 'mrr', which is none of ndcg, auc"):
        tuning.tune_baselines(valid, ["bias"])


def test_evaluate_without_a_model_names_tagrec_train(tmp_path, small_data):
    from tagrec_cli.config import IngestConfig
    from tagrec_cli.ingest import run_ingest

    run_ingest(small_data, tmp_path, IngestConfig(pairs_per_class=100))
    result = invoke(["evaluate", "-w", str(tmp_path)])
    assert result.exit_code == 1 and "tagrec train" in result.output


def test_missing_embeddings_name_tagrec_embed_unless_baselines_only(tmp_path, small_data):
    from tagrec_cli.config import IngestConfig
    from tagrec_cli.ingest import run_ingest

    run_ingest(small_data, tmp_path, IngestConfig(pairs_per_class=100))
    with pytest.raises(ArtifactError, match="tagrec embed"):
        run_evaluate(tmp_path, baselines=("popular",))
    report = run_evaluate(tmp_path, baselines=("popular", "random"), include_tagrec=False)
    assert list(report.methods) == ["popular", "random"]
    result = invoke(["evaluate", "--baselines-only", "--baselines", "popular",
                     "-w", str(tmp_path)])
    assert result.exit_code == 0, result.output
    result = invoke(["evaluate", "--baselines", "nope", "--baselines-only",
                     "-w", str(tmp_path)])
    assert result.exit_code == 1 and "unknown baseline" in result.output
    with pytest.raises(TagrecError, match=r"^k must be at least 1 \(got 0\)"):
        run_evaluate(tmp_path, k=0, include_tagrec=False)


def test_missing_package_is_reported_as_skipped(tmp_path, small_data, monkeypatch):
    import builtins

    from tagrec_cli.config import IngestConfig
    from tagrec_cli.ingest import run_ingest

    real_import = builtins.__import__

    def no_implicit(name, *args, **kwargs):
        if name.startswith("implicit"):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    run_ingest(small_data, tmp_path, IngestConfig(pairs_per_class=100))
    monkeypatch.setattr(builtins, "__import__", no_implicit)
    report = run_evaluate(tmp_path, baselines=("als", "popular"), include_tagrec=False)
    assert list(report.methods) == ["popular"]
    assert "implicit" in report.skipped["als"]
