"""`tagrec evaluate`: baselines on toy data, end to end (the metrics: tests/test_metrics.py)."""

from __future__ import annotations

import json
import math
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
    lambda h: bl.fit_als(h, factors=4, iterations=15, regularization=0.05, seed=0),
    lambda h: bl.TfidfScorer(["space robot laser"] * 5 + ["wedding romance love"] * 5,
                             sp.csr_matrix(h >= 2.5)),
], ids=["ease", "als", "tfidf"])
def test_baselines_recover_the_missing_item_of_the_users_group(make):
    history = block_history()
    assert top1(make(history), history) == [obvious_item(u) for u in range(N_USERS)]


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
    assert set(report.methods["tagrec"].pairs) == {"auc", "sign_accuracy"}
    assert report.methods["als"].pairs is None
    # Same inputs, same numbers.
    again = run_evaluate(embedded, k=10, baselines=("random", "popular"))
    assert again.methods["popular"].slices == report.methods["popular"].slices
    assert again.methods["random"].slices == report.methods["random"].slices


def test_cli_evaluate_writes_json(embedded: Path, tmp_path: Path):
    path = tmp_path / "eval.json"
    result = invoke(["evaluate", "--json", str(path)], embedded)
    assert result.exit_code == 0, result.output
    assert "NDCG@10" in result.output and "ease" in result.output
    data = json.loads(path.read_text())
    assert set(data["methods"]) == {"tagrec", *BASELINES}
    assert data["settings"]["k"] == 10 and data["settings"]["relevant_rating"] == 4.0
    assert data["data_hash"] and data["model_config_hash"]
    all_ndcg = {name: m["slices"]["all"]["ndcg"] for name, m in data["methods"].items()}
    assert all_ndcg["popular"] > all_ndcg["random"]


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
    with pytest.raises(TagrecError, match="-k"):
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
