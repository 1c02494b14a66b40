"""A straightforward pandas implementation of `tagrec ingest`, as a baseline and a cross-check.

The same semantics as tagrec_cli.ingest.run_ingest with the first tagrec's documents
(`IngestConfig(with_genres=False, with_year=False, with_title=False, side_features=False,
pairs_per_class=6000)`, benchmarks/ingest.py's SEED_FORMAT; today's defaults add title,
year, genres and side-feature columns, which this file does not implement), written the
obvious pandas way (merges, groupby counts, sorts, head(n)) with no attempt at being clever:

* ratings of movies missing from movies.csv are dropped; of repeated (user, movie) ratings the
  latest (by timestamp, then rating) is kept;
* per user, the latest floor(n * holdout_fraction) ratings by (timestamp, movieId) are held out;
* tags are trimmed and lowercased, empty ones dropped, and kept only if applied no later than
  the user's last history timestamp (users without ratings keep all their tags);
* movie documents: tags by number of distinct users desc, then alphabetically, at most
  max_tags, followed by "rating X.Y" (mean history rating, halves to even);
* user documents: the user's own tags (distinct movies desc, then alphabetically), then the
  top_user_tags tags over the movies the user liked (history rating >= liked_rating; frequency
  = liked movies carrying the tag; ties by total distinct (user, movie) applications, then
  alphabetically) without repeats, at most max_tags;
* class-balanced like/dislike pairs (train from history, validation from the held-out part).

The pairs are drawn with pandas' own sampler, so they are a different (equally valid) sample
than tagrec's; only their counts are comparable.

Usage: python benchmarks/pandas_ingest.py DATA_DIR [OUT_DIR]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from tagrec_cli.config import IngestConfig

RATING_TYPES = {"userId": "int64", "movieId": "int64", "rating": "float64", "timestamp": "int64"}
TAG_TYPES = {"userId": "int64", "movieId": "int64", "tag": "str", "timestamp": "int64"}
MOVIE_TYPES = {"movieId": "int64", "title": "str", "genres": "str"}


def read(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """ratings, tags, movies with the MovieLens columns (no validation beyond the types)."""
    def one(name: str, types: dict[str, str]) -> pd.DataFrame:
        # keep_default_na=False: a tag spelled "NA" or "null" is a tag, as in polars.
        return pd.read_csv(Path(data_dir) / name, usecols=list(types), dtype=types,
                           keep_default_na=False)

    return (one("ratings.csv", RATING_TYPES), one("tags.csv", TAG_TYPES),
            one("movies.csv", MOVIE_TYPES))


def split_ratings(ratings: pd.DataFrame, movies: pd.DataFrame,
                  holdout_fraction: float) -> pd.DataFrame:
    """Known movies, latest of repeated ratings, and a `holdout` column (latest per user)."""
    ratings = ratings[ratings["movieId"].isin(movies["movieId"])]
    ratings = (ratings.sort_values(["userId", "movieId", "timestamp", "rating"], kind="stable")
               .drop_duplicates(["userId", "movieId"], keep="last"))
    ratings = ratings.sort_values(["userId", "timestamp", "movieId"], kind="stable")
    per_user = ratings.groupby("userId")
    n = per_user["movieId"].transform("size")
    rank = per_user.cumcount()
    n_holdout = np.floor(n.astype("float64") * holdout_fraction).astype("int64")
    return ratings.assign(holdout=rank >= n - n_holdout).reset_index(drop=True)


def clean_tags(tags: pd.DataFrame, movies: pd.DataFrame, split: pd.DataFrame) -> pd.DataFrame:
    """Trimmed, lowercased, non-empty tags of known movies up to each user's cut-off, and
    none on a held-out movie at or after that rating's time."""
    history = split[~split["holdout"]]
    held = split.loc[split["holdout"], ["userId", "movieId", "timestamp"]].rename(
        columns={"timestamp": "held_at"})
    tags = tags[tags["movieId"].isin(movies["movieId"])].copy()
    tags["tag"] = tags["tag"].str.strip().str.lower()
    tags = tags[tags["tag"].notna() & (tags["tag"] != "")]
    cutoff = history.groupby("userId")["timestamp"].max().rename("cutoff").reset_index()
    tags = tags.merge(cutoff, on="userId", how="left")
    tags = tags[tags["cutoff"].isna() | (tags["timestamp"] <= tags["cutoff"])]
    tags = tags.merge(held, on=["userId", "movieId"], how="left")
    tags = tags[tags["held_at"].isna() | (tags["timestamp"] < tags["held_at"])]
    return tags[["userId", "movieId", "tag"]].reset_index(drop=True)


def movie_documents(movies: pd.DataFrame, history: pd.DataFrame, tags: pd.DataFrame,
                    cfg: IngestConfig) -> pd.DataFrame:
    counts = (tags.drop_duplicates(["movieId", "tag", "userId"])
              .groupby(["movieId", "tag"]).size().reset_index(name="count")
              .sort_values(["movieId", "count", "tag"], ascending=[True, False, True]))
    top = counts.groupby("movieId").head(cfg.max_tags)
    tag_lists = top.groupby("movieId", sort=False)["tag"].agg(list).rename("tags")
    mean = history.groupby("movieId")["rating"].mean().rename("mean_rating")
    docs = (movies.drop_duplicates("movieId")[["movieId"]]
            .merge(tag_lists, on="movieId", how="left")
            .merge(mean, on="movieId", how="left"))
    docs["tags"] = [t if isinstance(t, list) else [] for t in docs["tags"]]
    # One decimal; a half goes to the even digit (3.25 -> 3.2), like polars' round(1).
    rating = ["" if np.isnan(x) else f"rating {x}" for x in docs["mean_rating"].round(1)]
    docs["document"] = [", ".join([r, *t] if r else t)
                        for t, r in zip(docs["tags"], rating, strict=True)]
    return docs.sort_values("movieId").reset_index(drop=True)


def user_documents(history: pd.DataFrame, tags: pd.DataFrame, cfg: IngestConfig,
                   ) -> pd.DataFrame:
    applications = tags.drop_duplicates(["userId", "movieId", "tag"])
    own = (applications.groupby(["userId", "tag"]).size().reset_index(name="count")
           .sort_values(["userId", "count", "tag"], ascending=[True, False, True]))
    own["source"] = 0
    own["pos"] = own.groupby("userId").cumcount()

    # Top tags over liked movies: one row per (liked rating, tag the movie carries).
    liked = history.loc[history["rating"] >= cfg.liked_rating, ["userId", "movieId"]]
    carries = tags[["movieId", "tag"]].drop_duplicates()
    total = applications.groupby("tag").size().rename("total").reset_index()
    freq = (liked.merge(carries, on="movieId").groupby(["userId", "tag"]).size()
            .reset_index(name="freq").merge(total, on="tag")
            .sort_values(["userId", "freq", "total", "tag"],
                         ascending=[True, False, False, True]))
    top = freq.groupby("userId").head(cfg.top_user_tags).copy()
    top["source"] = 1
    top["pos"] = top.groupby("userId").cumcount()

    cols = ["userId", "tag", "source", "pos"]
    merged = (pd.concat([own[cols], top[cols]])
              .sort_values(["userId", "source", "pos"])
              .drop_duplicates(["userId", "tag"], keep="first"))
    tag_lists = (merged.groupby("userId").head(cfg.max_tags)
                 .groupby("userId")["tag"].agg(list).rename("tags"))
    users = history.groupby("userId").size().rename("n_ratings").reset_index()
    docs = users.merge(tag_lists, on="userId", how="left")
    docs["tags"] = [t if isinstance(t, list) else [] for t in docs["tags"]]
    docs["document"] = [", ".join(t) for t in docs["tags"]]
    return docs.sort_values("userId").reset_index(drop=True)


def draw_pairs(split: pd.DataFrame, cfg: IngestConfig) -> pd.DataFrame:
    split = split.assign(label=np.where(split["rating"] >= cfg.like_threshold, 1, -1),
                         split=np.where(split["holdout"], "valid", "train"))
    n_train = round(cfg.pairs_per_class * cfg.train_share)
    want = ({"train": cfg.pairs_per_class, "valid": 0} if cfg.holdout_fraction == 0
            else {"train": n_train, "valid": cfg.pairs_per_class - n_train})
    parts = []
    for name in ("train", "valid"):
        for label in (1, -1):
            pool = split[(split["split"] == name) & (split["label"] == label)]
            n = len(pool) if cfg.pairs_per_class == 0 else min(want[name], len(pool))
            parts.append(pool.sample(n=n, random_state=cfg.seed))
    return pd.concat(parts)[["userId", "movieId", "rating", "label", "split"]]


def ingest(data_dir: Path, cfg: IngestConfig | None = None,
           progress: Callable[[str], None] | None = None) -> dict[str, pd.DataFrame]:
    """Read a MovieLens folder; return {"movies", "users", "ratings", "pairs"} tables."""
    cfg = cfg or IngestConfig()
    say = progress or (lambda _msg: None)
    say("reading CSV files")
    ratings, raw_tags, movies = read(data_dir)
    say("splitting ratings by time")
    split = split_ratings(ratings, movies, cfg.holdout_fraction)
    history = split[~split["holdout"]]
    tags = clean_tags(raw_tags, movies, split)
    say("building movie documents")
    movie_docs = movie_documents(movies, history, tags, cfg)
    say("building user documents")
    user_docs = user_documents(history, tags, cfg)
    say("drawing pairs")
    return {"movies": movie_docs, "users": user_docs,
            "ratings": split[["userId", "movieId", "rating", "timestamp", "holdout"]],
            "pairs": draw_pairs(split, cfg)}


def write(tables: dict[str, pd.DataFrame], out_dir: Path) -> None:
    """Write the tables as parquet, like tagrec's workspace (no manifest)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        df.to_parquet(out_dir / f"{name}.parquet", index=False)


if __name__ == "__main__":
    start = time.perf_counter()
    result = ingest(Path(sys.argv[1]))
    if len(sys.argv) > 2:
        write(result, Path(sys.argv[2]))
    print({k: len(v) for k, v in result.items()}, f"{time.perf_counter() - start:.2f} s")
