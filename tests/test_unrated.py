"""unrated.py: the content profile that ranks the movies nobody rated (recommend --unrated,
evaluate's cold_ranked slice)."""

from __future__ import annotations

import numpy as np
import pytest

from tagrec_cli.unrated import LOVED_RATING, history_arrays, profiles, similar_exclude

MOVIES = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], np.float32)


def test_worked_example():
    users = np.array([[0, 1], [0, 1]], np.float32)
    out = profiles(users, [0, 2, 3], [0, 2, 0], [5, 4, 3], MOVIES)
    assert out.dtype == np.float32
    # user 0 loved movies 0 and 2: their mean; user 1 loved nothing (a 3): their own vector
    assert np.allclose(out, [[0.8, 0.4], [0.0, 1.0]])


def test_only_ratings_at_or_above_the_threshold_count():
    users = np.zeros((1, 2), np.float32)
    below = np.nextafter(LOVED_RATING, 0)
    out = profiles(users, [0, 3], [0, 1, 2], [LOVED_RATING, below, LOVED_RATING], MOVIES)
    assert out[0].tolist() == pytest.approx(((MOVIES[0] + MOVIES[2]) / 2).tolist())


def test_movies_the_table_lacks_are_skipped():
    users = np.full((1, 2), 7, np.float32)
    out = profiles(users, [0, 2], [-1, 1], [5, 5], MOVIES)
    assert out[0].tolist() == pytest.approx(MOVIES[1].tolist())
    only_missing = profiles(users, [0, 1], [-1], [5], MOVIES)
    assert only_missing[0].tolist() == [7, 7]  # nothing loved in the table: own vector


def test_a_batch_equals_one_query_at_a_time():
    rng = np.random.default_rng(0)
    movies = rng.normal(size=(50, 8)).astype(np.float32)
    histories = [(rng.choice(50, size=n, replace=False), rng.choice([1, 3, 4, 4.5, 5], size=n))
                 for n in (0, 5, 1, 12, 3)]  # one user with no history, in the middle too
    users = rng.normal(size=(len(histories), 8)).astype(np.float32)
    batch = profiles(users, *history_arrays(histories), movies)
    for q, h in enumerate(histories):
        alone = profiles(users[q:q + 1], *history_arrays([h]), movies)
        assert np.array_equal(batch[q], alone[0])
        loved = h[0][h[1] >= LOVED_RATING]
        want = movies[loved].astype(np.float64).mean(0) if len(loved) else users[q]
        assert np.allclose(batch[q], want, atol=1e-6)


def test_history_arrays_of_no_queries_and_of_empty_histories():
    indptr, movies, ratings = history_arrays([])
    assert indptr.tolist() == [0] and len(movies) == len(ratings) == 0
    indptr, movies, ratings = history_arrays([(np.array([2, 0]), np.array([5.0, 1.0])),
                                              (np.zeros(0, np.int64), np.zeros(0))])
    assert indptr.tolist() == [0, 2, 2] and movies.tolist() == [2, 0]
    assert ratings.tolist() == [5.0, 1.0]


def test_similar_exclude_leaves_out_the_other_unrated_movies_for_an_unrated_one():
    assert similar_exclude(2, np.array([2, 5]), 6).tolist() == [2, 5]  # unrated: both out
    assert similar_exclude(1, np.array([2, 5]), 6).tolist() == [1]  # rated: itself only
    assert similar_exclude(3, np.zeros(0, np.int64), 6).tolist() == [3]
    # nobody rated anything: there is nothing else to compare with, so itself only
    assert similar_exclude(0, np.arange(3), 3).tolist() == [0]
