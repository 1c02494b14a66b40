"""Side features (features.py) and the ingest defaults that feed them, by hand.

History of the tiny dataset (tests/conftest.py; 20% held out per user, latest first):
user 1 m1 5.0 @10, m2 2.0 @20, m3 4.0 @30, m4 1.0 @50 (m5 4.5 held out);
user 2 m1 3.0 @5, m2 4.0 @6, m3 3.0 @7, m4 2.5 @8; user 3 m1 0.5, m2 5.0, m3 3.5, m4 4.0.
12 history ratings: mean 37.5 / 12 = 3.125; 3 below 2.5 (2.0, 1.0, 0.5): dislike share 0.25.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tagrec_cli import features
from tagrec_cli.config import IngestConfig
from tagrec_cli.ingest import run_ingest
from tagrec_cli.store import ingested


@pytest.fixture
def tiny(ml_tiny_dir: Path, tmp_path: Path) -> Path:
    # The defaults, but with the hand-made split of conftest (the latest 20% held out) that
    # the expected values below are worked out from.
    run_ingest(ml_tiny_dir, tmp_path, IngestConfig(holdout_fraction=0.2))
    return tmp_path / "ingest"


def test_stats_problem_names_what_is_wrong_with_constants_read_back(tiny: Path) -> None:
    stats = json.loads((tiny / "manifest.json").read_text())["feature_stats"]
    assert set(stats) == set(features.STATS)
    assert features.stats_problem(stats) is None
    assert features.stats_problem("x") == f"has not the keys {', '.join(features.STATS)}"
    assert features.stats_problem({k: v for k, v in stats.items() if k != "last_year"}) \
        .startswith("has not the keys")
    for key, bad in [("log_max_user", 0), ("log_max_movie", -1.0), ("mean_rating", "x"),
                     ("dislike_share", True), ("last_year", float("nan")),
                     ("mean_rating", 10**400)]:  # a JSON integer past float's range
        assert features.stats_problem({**stats, key: bad}) == f"has {key} {str(bad)[:40]!r}"


def test_default_documents_have_title_year_genres_and_no_rating_word(tiny: Path) -> None:
    docs = dict(pl.read_parquet(tiny / "movies.parquet").select("movieId", "document")
                .iter_rows())
    assert docs[1] == "The Matrix, 1999, action, sci-fi, thriller, classic, cyberpunk"
    assert docs[4] == "Untitled, drama, boundary, classic, funny"  # no year in the title
    assert not any("rating" in d for d in docs.values())


def test_ingest_writes_the_raw_columns_and_the_global_stats(tiny: Path) -> None:
    movies = pl.read_parquet(tiny / "movies.parquet").sort("movieId")
    # m1: 5.0, 3.0, 0.5 -> 3 ratings, 1 dislike; m5, m6: never rated in history
    assert movies["n_ratings"].to_list() == [3, 3, 3, 3, 0, 0]
    assert movies["n_dislikes"].to_list() == [1, 1, 0, 1, 0, 0]
    users = pl.read_parquet(tiny / "users.parquet").sort("userId")
    assert users["n_ratings"].to_list() == [4, 4, 4]
    assert users["n_dislikes"].to_list() == [2, 0, 1]
    assert users["mean_rating"].to_list() == pytest.approx([3.0, 3.125, 3.25])
    assert users["last_timestamp"].to_list()[:2] == [50, 8]
    stats = json.loads((tiny / "manifest.json").read_text())["feature_stats"]
    assert stats["mean_rating"] == pytest.approx(3.125)
    assert stats["dislike_share"] == pytest.approx(0.25)
    assert stats["log_max_movie"] == pytest.approx(math.log(4))  # log1p(3)
    assert stats["log_max_user"] == pytest.approx(math.log(5))  # log1p(4)


STATS = {"mean_rating": 3.125, "dislike_share": 0.25, "log_max_movie": math.log(4),
         "log_max_user": math.log(5), "last_year": 2018.0}


def test_movie_features_by_hand() -> None:
    got = features.movie_features(np.array([3, 0]), np.array([8.5 / 3, np.nan]),
                                  np.array([1, 0]), np.array([1999, np.nan]), STATS)
    # m1: log1p(3) / log1p(3) = 1; shrunk mean (8.5 + 5 * 3.125) / 8 - 3.125 = -0.109375;
    # shrunk dislike share (1 + 5 * 0.25) / 8 = 0.28125; year (1999 - 1990) / 20 = 0.45;
    # rated. A movie nobody rated: 0, 0, the prior 0.25, year unknown -> 1990 -> 0, unrated.
    want = np.array([[1, -0.109375, 0.28125, 0.45, 0], [0, 0, 0.25, 0, 1]]) * 3
    assert got == pytest.approx(want)
    assert got.dtype == np.float32


def test_as_unrated_keeps_only_the_year() -> None:
    rated = features.movie_features(np.array([3]), np.array([4.0]), np.array([2]),
                                    np.array([2005]), STATS)
    unrated = features.movie_features(np.array([0]), np.array([np.nan]), np.array([0]),
                                      np.array([2005]), STATS)
    shown = features.as_unrated(rated, STATS)
    # exactly what a movie nobody rated gets (embed --add-movies), dislike share included
    assert np.array_equal(shown, unrated)
    assert rated[0, 4] == 0 and rated[0, 2] != unrated[0, 2]  # the input is left alone


def test_user_features_by_hand_and_for_a_tags_query() -> None:
    one_year = features.SECONDS_PER_YEAR
    got = features.user_features(np.array([4, 0]), np.array([3.0, np.nan]), np.array([2, 0]),
                                 np.array([40 * one_year, np.nan]), STATS)
    # user: log1p(4) / log1p(4) = 1; (12 + 15.625) / 9 - 3.125 = -0.055556;
    # (2 + 1.25) / 9 = 0.361111; last rating in 2010 -> (2010 - 1990) / 20 = 1.
    # tags query: no history -> 0, 0, the prior 0.25, the data's last year 2018 -> 1.4.
    want = np.array([[1, 27.625 / 9 - 3.125, 3.25 / 9, 1.0], [0, 0, 0.25, 1.4]]) * 3
    assert got == pytest.approx(want, abs=1e-5)


def test_side_features_follow_the_ids(tiny: Path) -> None:
    stats = json.loads((tiny / "manifest.json").read_text())["feature_stats"]
    both = ingested.side_features(tiny.parent, "movie", np.array([5, 1]), stats)
    one = ingested.side_features(tiny.parent, "movie", np.array([1]), stats)
    assert np.array_equal(both[1], one[0]) and both[0, 4] == 3.0 and both[1, 4] == 0.0


def test_default_user_documents_start_with_liked_genres(tiny: Path) -> None:
    docs = dict(pl.read_parquet(tiny / "users.parquet").select("userId", "document")
                .iter_rows())
    # user 1 liked m1 (5.0: action, sci-fi, thriller) and m3 (4.0, no genres): one each,
    # alphabetical. User 2 liked m1..m4 (>= 2.5): 7 genres once each, the first 5 kept.
    # User 3 liked m2, m3, m4 (m1 got 0.5). Then own tags, then liked-movie tags, as before.
    assert docs[1].startswith("action, sci-fi, thriller, funny, ")
    assert docs[2].startswith("action, adventure, animation, children, drama, classic, ")
    assert docs[3].startswith("adventure, animation, children, drama, classic, ")


def test_as_unknown_user_is_the_tags_query_vector() -> None:
    one_year = features.SECONDS_PER_YEAR
    known = features.user_features(np.array([4, 9]), np.array([3.0, 4.5]), np.array([2, 0]),
                                   np.array([40 * one_year, 45 * one_year]), STATS)
    query = features.user_features(np.array([0]), np.array([np.nan]), np.array([0]),
                                   np.array([np.nan]), STATS)
    shown = features.as_unknown_user(known, STATS)
    assert shown.shape == known.shape
    assert np.array_equal(shown, np.repeat(query, 2, axis=0))
    assert not np.array_equal(known[0], query[0])  # the input is not changed in place
