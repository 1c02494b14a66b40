"""The popularity prior: the second term of the score a user and a movie are ranked by.

    score(user, movie) = cosine(user, movie) + weight(n) * prior(movie)

    prior(movie) = z-score of log(1 + history ratings of the movie) over the rated movies;
                   for a movie nobody rated (added later, or cold), whose popularity is
                   unknown rather than low: `cold` (0 = the mean of the rated ones)
    weight(n)    = strength * (1 + shrink / n) for a user known by n >= 1 ratings; 0 for a
                   query without ratings (tags alone ask for those tags, not what is popular)

Why: the towers' cosine under-ranks popular movies. On evaluate's validation split, adding this
term raised NDCG@10 on all users, low-history users and new users of ml-latest-small and of the
sample data, most for the users known by a handful of ratings, whose vector says least; it
lowered the cold-movie slice (benchmarks/QUALITY.md, where strength and shrink were chosen).
`similar` (movie to movie) does not use it. Every ranking of users (recommend, serve,
evaluate) goes through `scores` here, so the rule is written once.
"""

from __future__ import annotations

import numpy as np


def movie_prior(n_ratings: np.ndarray, cold: float = 0.0) -> np.ndarray:
    """(N,) history ratings per movie (0 or NaN: nobody rated it) -> (N,) float32 prior.

    Example: counts [0, 1, 9, 99] -> log1p [-, 0.69, 2.30, 4.61] z-scored over the three rated
    movies -> [cold, -1.15, -0.14, 1.29]
    """
    n = np.nan_to_num(np.asarray(n_ratings, dtype=np.float64), nan=0.0)
    rated = n > 0
    out = np.full(len(n), cold, dtype=np.float64)
    out[rated] = 0.0
    if rated.sum() >= 2:
        x = np.log1p(n[rated])
        std = x.std()
        out[rated] = (x - x.mean()) / std if std > 0 else 0.0
    return out.astype(np.float32)


def weights(n_ratings: np.ndarray, strength: float, shrink: float) -> np.ndarray:
    """(Q,) ratings each user is known by -> (Q,) float32 weight of the prior.

    Example: strength 0.05, shrink 10, n [0, 5, 100] -> [0, 0.15, 0.055]
    """
    n = np.asarray(n_ratings, dtype=np.float64)
    out = strength * (1.0 + shrink / np.maximum(n, 1.0))
    return np.where(n >= 1, out, 0.0).astype(np.float32)


def scores(cosines: np.ndarray, user_weights: np.ndarray | None,
           prior: np.ndarray | None) -> np.ndarray:
    """(Q, N) cosines + user_weights[:, None] * prior[None, :] (no prior: the cosines)."""
    if user_weights is None or prior is None or not np.any(user_weights):
        return cosines
    return cosines + np.asarray(user_weights, np.float32)[:, None] * prior[None, :]

