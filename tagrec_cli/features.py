"""Numeric side features: what a tower knows about a movie or user besides its document.

Text alone cannot say how many people rated a movie, and a pretrained encoder reads
"rating 3.9" as a word, not a number. So each tower also gets a few numbers from the
history ratings, appended to the pooled encoder output before the linear head:

    movie: popularity, mean rating, dislike share, release year, unrated (1 = nobody rated it)
    user:  activity, mean rating, dislike share, year of the last history rating

Means and shares are shrunk towards the global value with SHRINK pseudo-ratings, so a movie
with one 5-star rating does not look like the best movie of all. Features are multiplied by
SCALE (3): counts, means and shares then lie within about [-3, 3], years at
3 * (year - 1990) / 20 (1902 -> -13.2, 2018 -> 4.2). A missing year counts as 1990.
`stats` holds the global values, computed once by ingest and saved with the model, so that
embed and recommend compute a new movie's or a tags query's features the same way.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

MOVIE_FEATURES = ("popularity", "mean_rating", "dislike_share", "year", "unrated")
USER_FEATURES = ("activity", "mean_rating", "dislike_share", "last_year")
NAMES = {"movie": MOVIE_FEATURES, "user": USER_FEATURES}
# Columns of ingest's movies.parquet / users.parquet the features are computed from.
RAW_COLUMNS = {"movie": ("n_ratings", "mean_rating", "n_dislikes", "year"),
               "user": ("n_ratings", "mean_rating", "n_dislikes", "last_timestamp")}
SHRINK = 5.0  # pseudo-ratings at the global mean
SCALE = 3.0
YEAR_ORIGIN, YEAR_SPAN = 1990.0, 20.0  # year 1990 -> 0, 2010 -> 1 (before SCALE)
SECONDS_PER_YEAR = 365.25 * 24 * 3600
STATS = ("mean_rating", "dislike_share", "log_max_movie", "log_max_user", "last_year")


def global_stats(ratings: np.ndarray, like_threshold: float, max_movie_ratings: int,
                 max_user_ratings: int, last_timestamp: float) -> dict[str, float]:
    """The constants every feature is computed against, from the history ratings."""
    ratings = np.asarray(ratings, dtype=np.float64)
    return {"mean_rating": float(ratings.mean()) if ratings.size else 3.5,
            "dislike_share": float((ratings < like_threshold).mean()) if ratings.size else 0.0,
            "log_max_movie": math.log1p(max(max_movie_ratings, 1)),
            "log_max_user": math.log1p(max(max_user_ratings, 1)),
            "last_year": _year(last_timestamp)}


def stats_problem(stats: object) -> str | None:
    """What is wrong with `stats` read back from a file (global_stats' keys, each a finite
    number, the log maxima > 0 since they divide), or None.

    Example: stats_problem({**good, "log_max_user": 0}) -> "has log_max_user 0"
    """
    if not isinstance(stats, dict) or set(stats) != set(STATS):
        return f"has not the keys {', '.join(STATS)}"
    for key in STATS:
        value = stats[key]
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not finite(value) or (key.startswith("log_max") and value <= 0)):
            return f"has {key} {str(value)[:40]!r}"
    return None


def finite(value: float) -> bool:
    """math.isfinite for a number read from JSON, which may be an int past float's range.

    Example: finite(10**400) -> False; finite(3) -> True
    """
    try:
        return math.isfinite(value)
    except OverflowError:  # a JSON integer past float's range (10**400)
        return False


def _year(timestamp: Any) -> Any:
    return np.asarray(timestamp, dtype=np.float64) / SECONDS_PER_YEAR + 1970.0


def _shrunk(total: np.ndarray, n: np.ndarray, prior: float) -> np.ndarray:
    return (total + SHRINK * prior) / (n + SHRINK)


def movie_features(n_ratings: np.ndarray, mean_rating: np.ndarray, n_dislikes: np.ndarray,
                   year: np.ndarray, stats: dict[str, float]) -> np.ndarray:
    """Per movie (n_ratings, mean rating or NaN, dislikes, release year or NaN) -> (N, 5).

    Example: a movie nobody rated -> [0, 0, stats' dislike share, its year, 1] * SCALE
    (mean rating and dislike share at their priors; 0 for the mean, centred on the prior).
    """
    n = np.asarray(n_ratings, dtype=np.float64)
    total = np.nan_to_num(np.asarray(mean_rating, dtype=np.float64)) * n
    year = np.asarray(year, dtype=np.float64)
    year = np.where(np.isnan(year), YEAR_ORIGIN, year)
    out = np.stack([np.log1p(n) / stats["log_max_movie"],
                    _shrunk(total, n, stats["mean_rating"]) - stats["mean_rating"],
                    _shrunk(np.asarray(n_dislikes, dtype=np.float64), n,
                            stats["dislike_share"]),
                    (year - YEAR_ORIGIN) / YEAR_SPAN,
                    (n == 0).astype(np.float64)], axis=1)
    return (out * SCALE).astype(np.float32)


def as_unrated(features: np.ndarray, stats: dict[str, float]) -> np.ndarray:
    """Movie features as if nobody had rated the movie (the year is kept): (N, 5) -> (N, 5).

    Exactly what movie_features gives a movie with no ratings, as `embed --add-movies` and
    every never-rated movie get them. Training swaps these in for a share of movies, so the
    model learns to place a movie it knows only by its document.
    """
    out = np.array(features, dtype=np.float32, copy=True)
    out[:, 0] = 0.0
    out[:, 1] = 0.0
    out[:, 2] = stats["dislike_share"] * SCALE
    out[:, 4] = SCALE
    return out


def as_unknown_user(features: np.ndarray, stats: dict[str, float]) -> np.ndarray:
    """User features as for a tags query (no history): (U, 4) -> (U, 4).

    Training swaps these in for a share of users, so that the user tower also learns to
    place someone it knows only by their document: `recommend --tags`.
    """
    out = np.array(features, dtype=np.float32, copy=True)
    out[:] = user_features(np.zeros(1), np.full(1, np.nan), np.zeros(1), np.full(1, np.nan),
                           stats)[0]
    return out


def user_features(n_ratings: np.ndarray, mean_rating: np.ndarray, n_dislikes: np.ndarray,
                  last_timestamp: np.ndarray, stats: dict[str, float]) -> np.ndarray:
    """Per user (history ratings, their mean, dislikes, last rating's unix time) -> (U, 4).

    A tags query (no history) is n_ratings 0 with last_timestamp NaN: priors, and the year
    of the newest history rating in the data.
    """
    n = np.asarray(n_ratings, dtype=np.float64)
    total = np.nan_to_num(np.asarray(mean_rating, dtype=np.float64)) * n
    last = _year(last_timestamp)
    last = np.where(np.isnan(last), stats["last_year"], last)
    out = np.stack([np.log1p(n) / stats["log_max_user"],
                    _shrunk(total, n, stats["mean_rating"]) - stats["mean_rating"],
                    _shrunk(np.asarray(n_dislikes, dtype=np.float64), n,
                            stats["dislike_share"]),
                    (last - YEAR_ORIGIN) / YEAR_SPAN], axis=1)
    return (out * SCALE).astype(np.float32)


def table_features(side: str, df: Any, stats: dict[str, float]) -> np.ndarray:
    """Features for the rows of ingest's movies.parquet / users.parquet (a polars frame)."""
    if side == "movie":
        return movie_features(df["n_ratings"].to_numpy(), df["mean_rating"].to_numpy(),
                              df["n_dislikes"].to_numpy(), df["year"].to_numpy(), stats)
    return user_features(df["n_ratings"].to_numpy(), df["mean_rating"].to_numpy(),
                         df["n_dislikes"].to_numpy(), df["last_timestamp"].to_numpy(), stats)


def rated_user_raw(ratings: np.ndarray, timestamps: np.ndarray,
                   like_threshold: float) -> dict[str, np.ndarray]:
    """RAW_COLUMNS["user"] of one user known only by these ratings, as (1,) arrays, as
    ingest computes them from a history (timestamps: NaN where unknown)."""
    r = np.asarray(ratings, dtype=np.float64)
    t = np.asarray(timestamps, dtype=np.float64)
    return {"n_ratings": np.array([float(len(r))]),
            "mean_rating": np.array([r.mean() if len(r) else np.nan]),
            "n_dislikes": np.array([float((r < like_threshold).sum())]),
            "last_timestamp": np.array([np.nanmax(t) if np.isfinite(t).any() else np.nan])}
