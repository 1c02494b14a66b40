"""`tagrec ingest`: MovieLens CSVs -> temporal split, tag documents and like/dislike pairs.

Order matters: the split comes first and every document is built from history only, so a
held-out (validation or test) rating can never influence a document.

    ratings --split per user by time--> history | valid | test  (+ "new": users left out)
    history ratings + history tags  --> movie documents, user documents, training pairs
    valid ratings                   --> validation pairs
    test ratings, new users         --> nothing but ratings.parquet (evaluate scores them)

The default (every share 0) is the refit that `recommend` serves: every rating is history.
`tagrec evaluate` ingests its own sub-workspaces with the shares set (protocol.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from tagrec_cli import artifacts, features
from tagrec_cli.config import NEW_USER_KNOWN, NEW_USER_SCORED, IngestConfig
from tagrec_cli.datasets.movielens import read_movielens
from tagrec_cli.documents import SEPARATOR, frames
from tagrec_cli.errors import DataError

NO_CUTOFF = np.iinfo(np.int64).max


@dataclass
class IngestSummary:
    out_dir: Path
    users: int
    movies: int
    ratings: int
    history_ratings: int
    holdout_ratings: int  # validation
    tag_applications: int
    distinct_tags: int
    user_documents: int
    movie_documents: int
    empty_user_documents: int
    empty_movie_documents: int
    pairs: dict[str, dict[str, int]]  # split -> {"like": n, "dislike": n}
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    test_ratings: int = 0
    new_users: int = 0  # left out of everything but ratings.parquet


# ---------------------------------------------------------------- pure steps on DataFrames


def unique_movies(movies: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """movies.csv with one row per movieId (the first), and a warning when it had repeats:
    a repeated row would otherwise count its genres twice in user documents."""
    unique = movies.unique("movieId", keep="first", maintain_order=True)
    repeated = movies.height - unique.height
    if not repeated:
        return movies, []
    first = int(movies.filter(pl.col("movieId").is_duplicated())["movieId"][0])
    return unique, [f"movies.csv lists {repeated} movieId(s) more than once (first: {first}); "
                    "kept the first row of each"]


def clean_ratings(ratings: pl.DataFrame, movies: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """Drop ratings of movies missing from movies.csv; keep the latest of duplicate ratings."""
    warnings = []
    known = ratings.join(movies.select("movieId"), on="movieId", how="semi")
    if known.height < ratings.height:
        warnings.append(f"ignored {ratings.height - known.height} ratings of movies "
                        "not in movies.csv")
    pair_key = pl.col("userId") * (pl.col("movieId").max() + 1) + pl.col("movieId")
    if known.select(pair_key.n_unique()).item() == known.height:
        return known, warnings  # no repeats: skip sorting 25M rows
    deduped = (known.sort(["userId", "movieId", "timestamp", "rating"])
               .unique(["userId", "movieId"], keep="last", maintain_order=True))
    if deduped.height < known.height:
        warnings.append(f"kept the latest of {known.height - deduped.height} repeated "
                        "(user, movie) ratings")
    return deduped, warnings




def draw_new_users(ratings: pl.DataFrame, share: float, seed: int, min_ratings: int,
                   exclude: list[int] | None = None, stream: int = 7) -> list[int]:
    """A seeded `share` of all users, drawn among those with >= min_ratings ratings and not
    in `exclude` (sorted). stream: which seeded draw (a second share draws its own).

    Example: 100 users, share 0.1, 40 of them with enough ratings -> 10 of those 40.
    """
    if share == 0:
        return []
    counts = ratings.group_by("userId").len().sort("userId")
    eligible = counts.filter((pl.col("len") >= min_ratings)
                             & ~pl.col("userId").is_in(exclude or []))["userId"].to_numpy()
    n = min(int(round(share * counts.height)), len(eligible))
    drawn = np.random.default_rng([seed, stream]).choice(eligible, size=n, replace=False)
    return sorted(int(u) for u in drawn)


def split_by_time(ratings: pl.DataFrame, holdout_fraction: float, test_fraction: float = 0.0,
                  new_users: list[int] | None = None) -> pl.DataFrame:
    """Add `part` and `holdout` (part != "history"): per user by (timestamp, movieId), the
    latest floor(n * test_fraction) ratings are "test", the floor(n * holdout_fraction)
    before them "valid", the rest "history"; every rating of `new_users` is "new".

    Example: a user with 10 ratings, fractions 0.1 and 0.1 -> 8 history, 1 valid, 1 test.
    """
    n = pl.len().over("userId")
    rank = pl.int_range(pl.len()).over("userId")

    def floor(fraction: float) -> pl.Expr:
        # The epsilon keeps floor exact where n * fraction is whole (100 * 0.29 is 28.999...).
        return (n.cast(pl.Float64) * fraction + 1e-9).floor().cast(pl.Int64)

    n_test = floor(test_fraction)
    part = (pl.when(rank >= n - n_test).then(pl.lit("test"))
            .when(rank >= n - n_test - floor(holdout_fraction)).then(pl.lit("valid"))
            .otherwise(pl.lit("history")))
    if new_users:
        part = pl.when(pl.col("userId").is_in(new_users)).then(pl.lit("new")).otherwise(part)
    return (ratings.sort(["userId", "timestamp", "movieId"])
            .with_columns(part=part)
            .with_columns(holdout=pl.col("part") != "history"))


def user_cutoffs(split: pl.DataFrame) -> pl.DataFrame:
    """Per user, the last history timestamp: the user's later tags are not used.

    Every rated user has one, including users with nothing held out (floor(n * fraction) == 0),
    so that removing a held-out rating without changing the history never changes a document.
    New users have none (no history): history_tags drops their tags.
    """
    return (split.filter(~pl.col("holdout")).group_by("userId")
            .agg(cutoff=pl.col("timestamp").max()))


def history_tags(tags: pl.DataFrame, cutoffs: pl.DataFrame, split: pl.DataFrame,
                 ) -> pl.DataFrame:
    """Tags applied no later than their user's cut-off (users without ratings: all tags;
    new users, left out of training: none).

    A held-out rating can share the cut-off second (ties go by movieId), so a tag on a
    held-out movie at or after that rating's time is dropped too.
    """
    held = (split.filter(pl.col("holdout"))
            .select("userId", "movieId", held_at=pl.col("timestamp")))
    new = split.filter(pl.col("part") == "new").select("userId").unique()
    return (tags.join(new, on="userId", how="anti")
            .join(cutoffs, on="userId", how="left")
            .filter(pl.col("timestamp") <= pl.col("cutoff").fill_null(NO_CUTOFF))
            .join(held, on=["userId", "movieId"], how="left")
            .filter(pl.col("held_at").is_null() | (pl.col("timestamp") < pl.col("held_at")))
            .select("userId", "movieId", "tag"))


def movie_documents(movies: pl.DataFrame, history: pl.DataFrame, tags: pl.DataFrame,
                    cfg: IngestConfig) -> pl.DataFrame:
    """One row per movie of movies.csv: all its tags (most users first), mean rating, and
    the document text (with the first max_tags of them)."""
    # A tag's frequency on a movie = number of distinct users who applied it.
    counts = tags.unique(["movieId", "tag", "userId"]).group_by("movieId", "tag").agg(
        count=pl.len())
    stats = history.group_by("movieId").agg(
        n_ratings=pl.len(), mean_rating=pl.col("rating").mean(),
        n_dislikes=(pl.col("rating") < cfg.like_threshold).sum())
    df = (frames.movie_fields(movies.unique("movieId", keep="first", maintain_order=True))
          .join(frames.ranked_tags(counts, "movieId"), on="movieId",
                how="left")
          .join(stats, on="movieId", how="left")
          .with_columns(tags=pl.col("tags").fill_null([]),
                        tag_counts=pl.col("tag_counts").fill_null([]),
                        n_ratings=pl.col("n_ratings").fill_null(0).cast(pl.Int64),
                        n_dislikes=pl.col("n_dislikes").fill_null(0).cast(pl.Int64)))
    return df.select("movieId", "title", "year", "genres", "tags", "tag_counts", "n_ratings",
                     "mean_rating", "n_dislikes",
                     document=frames.movie_document_text(cfg)).sort("movieId")


def user_documents(history: pl.DataFrame, tags: pl.DataFrame, cfg: IngestConfig,
                   movies: pl.DataFrame | None = None) -> pl.DataFrame:
    """One row per user with a history rating: its document (frames.user_document_tags)
    and the history statistics its side features come from."""
    liked = history.filter(pl.col("rating") >= cfg.liked_rating).select("userId", "movieId")
    merged = frames.user_document_tags(liked, frames.own_tags(tags), tags,
                                       frames.tag_order(tags), movies, cfg)
    users = history.group_by("userId").agg(frames.user_stats(cfg.like_threshold))
    return (users.join(merged, on="userId", how="left")
            .with_columns(tags=pl.col("tags").fill_null([]))
            .with_columns(document=pl.col("tags").list.join(SEPARATOR))
            .select("userId", "tags", "n_ratings", "mean_rating", "n_dislikes",
                    "last_timestamp", "document").sort("userId"))


def draw_pairs(split: pl.DataFrame, cfg: IngestConfig) -> tuple[pl.DataFrame, list[str]]:
    """Class-balanced, seeded like (+1) / dislike (-1) pairs: train from history, valid from
    the validation part; test ratings and new users make no pair.

    Per class, `pairs_per_class` pairs in all, `train_share` of them for training. With no
    holdout every pair is for training. Fewer available than asked: take all and warn.
    """
    labelled = split.filter(pl.col("part").is_in(["history", "valid"])).with_columns(
        label=frames.pair_label(cfg.like_threshold).cast(pl.Int8),
        split=pl.when(pl.col("part") == "valid").then(pl.lit("valid"))
        .otherwise(pl.lit("train")))
    if cfg.holdout_fraction == 0:
        want = {"train": cfg.pairs_per_class, "valid": 0}
    else:
        n_train = round(cfg.pairs_per_class * cfg.train_share)
        want = {"train": n_train, "valid": cfg.pairs_per_class - n_train}
    parts, warnings = [], []
    for i, (name, label) in enumerate([(s, lab) for s in ("train", "valid") for lab in (1, -1)]):
        pool = labelled.filter((pl.col("split") == name) & (pl.col("label") == label))
        n = pool.height if cfg.pairs_per_class == 0 else want[name]
        if pool.height < n:
            kind = "like" if label == 1 else "dislike"
            warnings.append(f"only {pool.height} {kind} pairs available for {name} "
                            f"(asked for {n}); using all of them")
        parts.append(pool.sample(n=min(n, pool.height), seed=cfg.seed + i, shuffle=True))
    pairs = pl.concat(parts).select("userId", "movieId", "rating", "label", "split")
    return pairs, warnings


# ---------------------------------------------------------------- the command


def run_ingest(data_dir: Path, workdir: Path, cfg: IngestConfig | None = None,
               progress: Callable[[str], None] | None = None) -> IngestSummary:
    """Read MovieLens CSVs from data_dir and write workdir/ingest/ atomically."""
    with artifacts.workspace_lock(workdir):
        return _ingest(data_dir, workdir, cfg, progress)


def _ingest(data_dir: Path, workdir: Path, cfg: IngestConfig | None,
            progress: Callable[[str], None] | None) -> IngestSummary:
    cfg = cfg or IngestConfig()
    say = progress or (lambda _msg: None)
    start = time.perf_counter()
    data_dir = Path(data_dir)
    say("reading CSV files")
    ratings, raw_tags, movies = read_movielens(data_dir)
    movies, warnings = unique_movies(movies)
    ratings, rating_warnings = clean_ratings(ratings, movies)
    warnings += rating_warnings
    if ratings.height == 0:
        raise DataError(f"no rating in {data_dir / 'ratings.csv'} is of a movie in movies.csv")
    say("splitting ratings by time")
    new_users = draw_new_users(ratings, cfg.new_users, cfg.seed,
                               NEW_USER_KNOWN + NEW_USER_SCORED)
    valid_new = draw_new_users(ratings, cfg.valid_new_users, cfg.seed,
                               NEW_USER_KNOWN + NEW_USER_SCORED, new_users, stream=8)
    scored_new = valid_new if cfg.valid_new_users else new_users  # the ones evaluate scores
    new_users = sorted(new_users + valid_new)
    split = split_by_time(ratings, cfg.holdout_fraction, cfg.test_fraction, new_users)
    history = split.filter(~pl.col("holdout"))
    tags = frames.clean_tag_column(raw_tags.join(movies.select("movieId"), on="movieId",
                                                    how="semi"))
    if cfg.holdout_fraction or cfg.test_fraction or new_users:  # the refit uses every tag
        tags = history_tags(tags, user_cutoffs(split), split)
    say("building movie documents")
    movie_docs = movie_documents(movies, history, tags, cfg)
    say("building user documents")
    user_docs = user_documents(history, tags, cfg, movies)
    say("drawing pairs")
    pairs, pair_warnings = draw_pairs(split, cfg)
    warnings += pair_warnings

    out = Path(workdir) / artifacts.INGEST_DIR
    counts = pairs.group_by("split", "label").len()
    pair_counts = {s: {k: int(counts.filter((pl.col("split") == s) & (pl.col("label") == v))
                              ["len"].sum()) for k, v in (("like", 1), ("dislike", -1))}
                   for s in ("train", "valid")}
    summary = IngestSummary(
        out_dir=out, users=user_docs.height, movies=movie_docs.height, ratings=split.height,
        history_ratings=history.height,
        holdout_ratings=int((split["part"] == "valid").sum()),
        test_ratings=int((split["part"] == "test").sum()), new_users=len(new_users),
        tag_applications=tags.height, distinct_tags=tags["tag"].n_unique(),
        user_documents=user_docs.height, movie_documents=movie_docs.height,
        empty_user_documents=int((user_docs["document"] == "").sum()),
        empty_movie_documents=int((movie_docs["document"] == "").sum()),
        pairs=pair_counts, warnings=warnings)
    say("writing parquet tables")
    with artifacts.atomic_dir(out) as tmp:
        movie_docs.write_parquet(tmp / artifacts.INGEST_TABLE["movie"])
        user_docs.write_parquet(tmp / artifacts.INGEST_TABLE["user"])
        split.select("userId", "movieId", "rating", "timestamp", "holdout", "part"
                     ).write_parquet(tmp / artifacts.RATINGS_FILE)
        pairs.write_parquet(tmp / artifacts.PAIRS_FILE)
        summary.seconds = round(time.perf_counter() - start, 3)
        stats = {k: v for k, v in asdict(summary).items() if k not in ("out_dir", "warnings")}
        data_hash = artifacts.file_digest(*(data_dir / f for f in
                                            ("ratings.csv", "tags.csv", "movies.csv")))
        artifacts.write_manifest(
            tmp, artifacts.INGEST_DIR, artifacts.INGEST_FORMAT,
            data_dir=str(data_dir.resolve()), data_hash=data_hash,
            ingest_key=artifacts.ingest_key(data_hash, asdict(cfg)),
            settings=asdict(cfg), summary=stats, warnings=warnings, scored_new_users=scored_new,
            feature_stats=features.global_stats(
                history["rating"].to_numpy(), cfg.like_threshold,
                int(movie_docs["n_ratings"].max() or 0), int(user_docs["n_ratings"].max() or 0),
                float(history["timestamp"].max() or 0)))
    return summary
