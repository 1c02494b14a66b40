"""How tagrec ranks the movies nobody has rated: the content profile; and whom `similar`
compares such a movie with.

    profile(user)      = mean of the movie-table vectors of the history movies the user
                         rated >= LOVED_RATING; a user with none (or a query without
                         history) keeps their own vector
    score(user, movie) = profile(user) . vector(movie)      (movie: unrated, so its vector
                                                             is its text head alone)

Why: a movie nobody rated has no learned part, and the served user vector (text head + pool
of learned parts) orders such movies no better than chance on ml-latest-small's validation
split; the mean similarity to the movies the user loved does better (benchmarks/QUALITY.md,
"The cold movies ranked by a content profile", where this rule was chosen among four on
validation). The full-catalogue ranking is untouched: this orders `recommend --unrated`, and
evaluate's `cold_ranked` slice scores tagrec's list by it, so the rule is written once, here.
(A tags query's profile is its own vector, and its list adds the tag match as the full
ranking does: recommend.tag_match.)
numpy only: a query imports neither scipy nor torch.
"""

from __future__ import annotations

import numpy as np

from tagrec_cli.config import LOVED_RATING


def similar_exclude(row: int, unrated_rows: np.ndarray, n_movies: int) -> np.ndarray:
    """Movie-table rows `similar` leaves out for the movie at `row` (unrated_rows: ascending,
    Store.unrated_rows; n_movies: the table's rows): itself, and, when nobody
    rated it, every movie nobody rated (while any movie has ratings).

    Why: such a movie has no learned part and the side features every unrated movie shares
    (features.as_unrated), so its cosine with another unrated movie says "also unrated" more
    than "alike": four films added at once listed each other first. Compared with the rated
    movies only, its ten share 57% more of the ten movies most co-liked with it on
    ml-latest-small's test stages (benchmarks/QUALITY.md, "`similar` for a movie nobody
    rated", where this was chosen on validation among six rules).

    Example: row 2, unrated rows [2, 5], 6 movies -> [2, 5]; row 1 -> [1]
    """
    if not is_unrated(row, unrated_rows) or len(unrated_rows) >= n_movies:
        return np.array([row], np.int64)
    return np.asarray(unrated_rows, np.int64)


def is_unrated(row: int, unrated_rows: np.ndarray) -> bool:
    """Whether movie-table `row` is one of unrated_rows (ascending, Store.unrated_rows).

    Example: row 5, unrated rows [2, 5] -> True; row 3 -> False
    """
    at = int(np.searchsorted(unrated_rows, row))  # (np.isin would import numpy.ma: slow)
    return at < len(unrated_rows) and int(unrated_rows[at]) == row


def profiles(user_vectors: np.ndarray, indptr: np.ndarray, movies: np.ndarray,
             ratings: np.ndarray, movie_vectors: np.ndarray) -> np.ndarray:
    """(Q, d) content profiles of Q users.

    user_vectors (Q, d): each user's own vector (kept where the user loved nothing).
    indptr (Q+1,), movies, ratings: the users' history in CSR form, user q's rated rows of
    movie_vectors (N, d) at movies[indptr[q]:indptr[q+1]], one rating per movie; rows < 0
    (movies the table lacks) are skipped.

    Example: movie vectors [[1, 0], [0, 1], [0.6, 0.8]], user vectors [[0, 1], [0, 1]],
             histories {0: 5, 2: 4} and {0: 3} -> [[0.8, 0.4], [0, 1]]
    """
    indptr, movies = np.asarray(indptr, np.int64), np.asarray(movies, np.int64)
    n = len(indptr) - 1
    owner = np.repeat(np.arange(n), np.diff(indptr))  # (E,) ascending
    keep = (np.asarray(ratings) >= LOVED_RATING) & (movies >= 0)
    owner, movies = owner[keep], movies[keep]
    out = np.array(user_vectors, dtype=np.float64, copy=True).reshape(
        n, np.shape(movie_vectors)[-1])
    counts = np.bincount(owner, minlength=n)  # (Q,) loved movies per user
    if len(owner):
        # Only the loved rows are read: a query's table may be a 127 MB memory map.
        rows, at = np.unique(movies, return_inverse=True)
        vectors = np.asarray(movie_vectors[rows], np.float64)[at.ravel()]  # (E', d)
        has = counts > 0
        starts = (np.cumsum(counts) - counts)[has]
        out[has] = np.add.reduceat(vectors, starts, axis=0) / counts[has, None]
    return out.astype(np.float32)


def history_arrays(histories: list[tuple[np.ndarray, np.ndarray]],
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query (movie rows, ratings) -> profiles' (indptr, movies, ratings)."""
    indptr = np.zeros(len(histories) + 1, np.int64)
    indptr[1:] = np.cumsum([len(rows) for rows, _ in histories])
    if not histories:
        return indptr, np.zeros(0, np.int64), np.zeros(0)
    return (indptr, np.concatenate([np.asarray(r, np.int64) for r, _ in histories]),
            np.concatenate([np.asarray(v, np.float64) for _, v in histories]))
