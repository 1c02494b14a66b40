"""Short-history users for training: the users the product meets with a few ratings.

`recommend --ratings`, serve's POST and evaluate's new users show the user tower someone
known by a handful of ratings, while every training user shows their whole history (a
document of up to 128 terms, counts from hundreds of ratings, a pool of many movies). So,
per training user, a pseudo-user is made from their first n history ratings by time (n drawn
from 1..short_history per user, seeded) exactly as a new user is made: the document and side
features ingest would write from those n ratings alone (ingested.rated_users) and the pool of
the ones they liked; its pairs are the user's next short_history_next training pairs after
those n ratings (so a sampled --pairs-per-class stays sampled), labelled as ingest labels
them. Only users with a pair after their first n ratings get one.

Pseudo-users are rows appended to the training tables only (ids -1, -2, ...): the tables
embed writes, the seen index and the pooled cache never hold them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch

from tagrec_cli.documents import frames
from tagrec_cli.store import ingested
from tagrec_cli.towers.tokens import TokenTable, tokenize
from tagrec_cli.train.batches import Pairs


@dataclass
class ShortHistory:
    ids: np.ndarray  # (P,) int64, negative: the pseudo-users' ids in the training tables
    owners: np.ndarray  # (P,) int64: the user each one is the start of
    documents: list[str]  # (P,) their documents
    features: np.ndarray | None  # (P, F) their side features (a model with features)
    known: pl.DataFrame  # (userId = pseudo id, movieId, rating): what each one is known by
    pairs: pl.DataFrame  # (userId = pseudo id, movieId, rating, label +1/-1)


def short_history_users(workdir: Path, history: pl.DataFrame, train_pairs: pl.DataFrame,
                        max_known: int, n_next: int, like_threshold: float,
                        stats: dict[str, float] | None, seed: int) -> ShortHistory | None:
    """The pseudo-users of these history ratings (userId, movieId, rating, timestamp) and
    training pairs (userId, movieId), or None when no user has a pair after their first n
    ratings (or max_known / n_next is 0).

    Example: a user with ratings r1..r30 by time, each a pair, and n = 3 -> a pseudo-user
    known by r1..r3 with pairs r4..r23.
    """
    if max_known < 1 or n_next < 1 or history.height == 0:
        return None
    ranked = (history.sort(["userId", "timestamp", "movieId"])
              .with_columns(rank=pl.int_range(pl.len()).over("userId"),
                            n=pl.len().over("userId")))
    users = ranked.select("userId", "n").unique("userId").sort("userId")
    rng = np.random.default_rng([seed, 7])  # its own stream: the batches stay as they were
    known_n = rng.integers(1, max_known + 1, size=users.height)
    users = (users.with_columns(known=pl.Series(known_n, dtype=pl.Int64))
             .filter(pl.col("n") > pl.col("known")))
    if users.height == 0:
        return None
    users = users.with_columns(pseudo=-pl.int_range(1, users.height + 1, dtype=pl.Int64))
    ranked = ranked.join(users.select("userId", "known", "pseudo"), on="userId")
    # (a join's row order is not fixed; the features' means must not depend on it)
    known = ranked.filter(pl.col("rank") < pl.col("known")).sort(["userId", "rank"])
    nxt = (ranked.filter(pl.col("rank") >= pl.col("known"))
           .join(train_pairs.select("userId", "movieId").unique(), on=["userId", "movieId"],
                 how="semi")
           .sort(["userId", "rank"]).group_by("userId", maintain_order=True).head(n_next))
    users = users.filter(pl.col("userId").is_in(nxt["userId"].unique().implode()))
    if users.height == 0:
        return None
    known = known.filter(pl.col("userId").is_in(users["userId"].implode()))
    known = known.select(userId="pseudo", movieId="movieId", rating="rating",
                         timestamp="timestamp")
    ids = users["pseudo"].to_numpy().astype(np.int64)
    documents, feats = ingested.rated_users(workdir, known, ids, stats)
    pairs = nxt.select(userId="pseudo", movieId="movieId", rating="rating",
                       label=frames.pair_label(like_threshold))
    return ShortHistory(ids, users["userId"].to_numpy().astype(np.int64), documents, feats,
                        known.drop("timestamp"), pairs)


def add_short_history(short: ShortHistory, tables: dict[str, TokenTable],
                      pairs: dict[str, Pairs], side: dict[str, torch.Tensor] | None,
                      liked: sp.csr_matrix | None, tokenizer: Any, max_length: int,
                      like_threshold: float) -> tuple[dict, dict, dict | None, Any]:
    """The training inputs with the pseudo-users appended as user rows: (tables, pairs, side,
    liked), the inputs themselves left as they were."""
    offsets, tokens = tokenize(tokenizer, short.documents, max_length)
    users = tables["user"].extended(short.ids, offsets, tokens)
    tables = {**tables, "user": users}
    train = pairs["train"]
    extra = Pairs(users.row_of(short.pairs["userId"].to_numpy()),
                  tables["movie"].row_of(short.pairs["movieId"].to_numpy()),
                  short.pairs["label"].to_numpy().astype(np.float32),
                  short.pairs["rating"].to_numpy().astype(np.float32))
    pairs = {**pairs, "train": Pairs(*(np.concatenate([getattr(train, f), getattr(extra, f)])
                                       for f in ("user_rows", "movie_rows", "labels",
                                                 "ratings")))}
    if side is not None:
        side = {**side, "user": torch.cat([side["user"], torch.from_numpy(short.features)])}
    if liked is not None:
        from tagrec_cli.towers import collab

        known = collab.liked_matrix(short.ids, tables["movie"].ids, short.known, like_threshold)
        liked = sp.vstack([liked, known], format="csr")
    return tables, pairs, side, liked
