"""train/prefix.py: the short-history users training adds, each a user's first n ratings
(known) and their next training pairs, built as a new user is."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from tagrec_cli.store import ingested
from tagrec_cli.train.prefix import short_history_users


def test_each_pseudo_user_is_a_users_first_ratings_and_next_training_pairs(
        ingested_small_600pairs: Path):
    ws = ingested_small_600pairs  # pairs sampled (600 per class): not every rating is a pair
    history = ingested.history_ratings(ws)
    pairs = ingested.read_table(ws, "pairs.parquet").filter(pl.col("split") == "train")
    stats = json.loads((ws / "ingest" / "manifest.json").read_text())["feature_stats"]
    short = short_history_users(ws, history, pairs, 4, 3, 2.5, stats, seed=5)
    assert short is not None and len(short.ids) > 10
    assert (short.ids < 0).all() and len(set(short.ids.tolist())) == len(short.ids)
    # each pseudo-user's known ratings are its owner's first n by time
    by_time = history.sort(["userId", "timestamp", "movieId"])
    firsts = {}
    for user, rows in by_time.group_by("userId", maintain_order=True):
        firsts[user[0]] = rows
    pair_set = set(zip(pairs["userId"].to_list(), pairs["movieId"].to_list(), strict=True))
    checked = 0
    assert len(set(short.owners.tolist())) == len(short.owners)  # one per user at most
    for pseudo, owner in zip(short.ids.tolist(), short.owners.tolist(), strict=True):
        known = short.known.filter(pl.col("userId") == pseudo)
        n = known.height
        assert 1 <= n <= 4
        rows = firsts[owner]
        assert known["movieId"].to_list() == rows["movieId"].head(n).to_list()
        assert known["rating"].to_list() == rows["rating"].head(n).to_list()
        later = [(m, r) for m, r in zip(rows["movieId"].to_list()[n:],
                                        rows["rating"].to_list()[n:], strict=True)
                 if (owner, m) in pair_set][:3]
        mine = short.pairs.filter(pl.col("userId") == pseudo)
        assert list(zip(mine["movieId"].to_list(), mine["rating"].to_list(), strict=True)) \
            == later
        assert mine["label"].to_list() == [1 if r >= 2.5 else -1 for _, r in later]
        checked += 1
    assert checked == len(short.ids)
    # the documents and features a new user with those ratings gets
    docs, feats = ingested.rated_users(ws, short.known.with_columns(
        timestamp=pl.lit(0)), short.ids, None)
    assert docs == short.documents and feats is None
    assert short.features.shape == (len(short.ids), 4) and np.isfinite(short.features).all()


def test_none_when_turned_off_or_nobody_has_enough(ingested_small_600pairs: Path):
    ws = ingested_small_600pairs
    history = ingested.history_ratings(ws)
    pairs = ingested.read_table(ws, "pairs.parquet").filter(pl.col("split") == "train")
    assert short_history_users(ws, history, pairs, 0, 20, 2.5, None, 1) is None
    assert short_history_users(ws, history, pairs, 5, 0, 2.5, None, 1) is None
    one_each = history.group_by("userId").head(1)  # nobody has a rating after their first
    assert short_history_users(ws, one_each, pairs, 1, 20, 2.5, None, 1) is None
