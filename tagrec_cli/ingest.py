"""`tagrec ingest`: MovieLens CSVs -> temporal split, tag documents and like/dislike pairs.

Order matters: the split comes first and every document is built from history only, so a
held-out (validation) rating can never influence a document.

    ratings --split per user by time--> history | holdout
    history ratings + history tags  --> movie documents, user documents, training pairs
    holdout ratings                 --> validation pairs
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from tagrec_cli import artifacts, features
from tagrec_cli.errors import DataError
from tagrec_cli.movielens import read_movielens
from tagrec_cli.toptags import top_tags_for_users

NO_CUTOFF = np.iinfo(np.int64).max


@dataclass(frozen=True)
class IngestConfig:
    holdout_fraction: float = 0.2  # latest share of each user's ratings held out for validation
    max_tags: int = 128  # cap on tags per document
    top_user_tags: int = 50  # tags taken from the movies a user liked
    liked_rating: float = 2.5  # a history rating >= this makes a movie "liked" for user documents
    like_threshold: float = 2.5  # pair label: +1 if rating >= this, else -1
    pairs_per_class: int = 0  # per label, over both splits; 0 keeps every pair (see QUALITY.md)
    train_share: float = 0.8  # share of each class's pairs for training (rest: validation)
    seed: int = 42
    with_genres: bool = True  # genres, year and title make documents distinct (QUALITY.md)
    with_year: bool = True
    with_title: bool = True
    # Rating counts, mean rating etc. go to the model as numbers (features.py) instead of a
    # "rating X.Y" word in the movie document.
    side_features: bool = True
    user_genres: int = 5  # with with_genres: the liked genres that start a user document
    chunk_users: int = 2048  # users per chunk of the sparse top-tags product

    def __post_init__(self) -> None:
        checks = {
            "holdout_fraction must be in [0, 1)": 0 <= self.holdout_fraction < 1,
            "max_tags must be >= 1": self.max_tags >= 1,
            "top_user_tags must be >= 0": self.top_user_tags >= 0,
            "user_genres must be >= 0": self.user_genres >= 0,
            "pairs_per_class must be >= 0": self.pairs_per_class >= 0,
            "train_share must be in (0, 1]": 0 < self.train_share <= 1,
            "chunk_users must be >= 1": self.chunk_users >= 1,
        }
        for message, ok in checks.items():
            if not ok:
                raise ValueError(message)


@dataclass
class IngestSummary:
    out_dir: Path
    users: int
    movies: int
    ratings: int
    history_ratings: int
    holdout_ratings: int
    tag_applications: int
    distinct_tags: int
    user_documents: int
    movie_documents: int
    empty_user_documents: int
    empty_movie_documents: int
    pairs: dict[str, dict[str, int]]  # split -> {"like": n, "dislike": n}
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


# ---------------------------------------------------------------- pure steps on DataFrames


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


def split_by_time(ratings: pl.DataFrame, holdout_fraction: float) -> pl.DataFrame:
    """Add `holdout`: per user, the latest floor(n * fraction) ratings by (timestamp, movieId).

    Example: a user with 10 ratings and fraction 0.2 -> the 2 latest are held out.
    """
    n = pl.len().over("userId")
    rank = pl.int_range(pl.len()).over("userId")
    # The epsilon keeps floor exact where n * fraction is whole (100 * 0.29 is 28.999...).
    n_holdout = (n.cast(pl.Float64) * holdout_fraction + 1e-9).floor().cast(pl.Int64)
    return (ratings.sort(["userId", "timestamp", "movieId"])
            .with_columns(holdout=rank >= n - n_holdout))


def user_cutoffs(split: pl.DataFrame) -> pl.DataFrame:
    """Per user, the last history timestamp: the user's later tags are not used.

    Every rated user has one, including users with nothing held out (floor(n * fraction) == 0),
    so that removing a held-out rating without changing the history never changes a document.
    """
    return (split.filter(~pl.col("holdout")).group_by("userId")
            .agg(cutoff=pl.col("timestamp").max()))


def normalize_tags(tags: pl.DataFrame) -> pl.DataFrame:
    """Trim and lowercase tags (they compare case-insensitively), drop empty ones."""
    return (tags.with_columns(tag=pl.col("tag").str.strip_chars().str.to_lowercase())
            .filter(pl.col("tag").is_not_null() & (pl.col("tag") != "")))


def history_tags(tags: pl.DataFrame, cutoffs: pl.DataFrame, split: pl.DataFrame,
                 ) -> pl.DataFrame:
    """Tags applied no later than their user's cut-off (users without ratings: all tags).

    A held-out rating can share the cut-off second (ties go by movieId), so a tag on a
    held-out movie at or after that rating's time is dropped too.
    """
    held = (split.filter(pl.col("holdout"))
            .select("userId", "movieId", held_at=pl.col("timestamp")))
    return (tags.join(cutoffs, on="userId", how="left")
            .filter(pl.col("timestamp") <= pl.col("cutoff").fill_null(NO_CUTOFF))
            .join(held, on=["userId", "movieId"], how="left")
            .filter(pl.col("held_at").is_null() | (pl.col("timestamp") < pl.col("held_at")))
            .select("userId", "movieId", "tag"))


def ranked_tags(tag_counts: pl.DataFrame, key: str, n: int) -> pl.DataFrame:
    """Per `key`, its tags by count desc then alphabetically, at most n: (key, tags list)."""
    return (tag_counts.sort([key, "count", "tag"], descending=[False, True, False])
            .group_by(key, maintain_order=True).agg(tags=pl.col("tag").head(n)))


def movie_fields(movies: pl.DataFrame) -> pl.DataFrame:
    """movies.csv rows + year, name ("Matrix, The (1999)" -> "The Matrix") and genre_text."""
    year = pl.col("title").str.extract(r"\((\d{4})\)\s*$", 1).cast(pl.Int32, strict=False)
    name = pl.col("title").str.replace(r"\s*\(\d{4}\)\s*$", "").str.strip_chars()
    name = name.str.replace(r"^(.*), (The|A|An)$", "$2 $1")  # "Matrix, The" -> "The Matrix"
    genres = (pl.when(pl.col("genres") == "(no genres listed)").then(pl.lit(""))
              .otherwise(pl.col("genres").str.replace_all("|", ", ", literal=True)
                         .str.to_lowercase()))
    return movies.with_columns(year=year, name=name, genre_text=genres.fill_null(""))


def movie_document_text(cfg: IngestConfig) -> pl.Expr:
    """[title, year, genres,] rating X.Y, tags... from movie_fields' columns, mean_rating, tags.

    Empty parts (no tags; no rating for a movie nobody rated) are left out.
    """
    parts = []
    if cfg.with_title:
        parts.append(pl.col("name"))
    if cfg.with_year:
        parts.append(pl.col("year").cast(pl.String))
    if cfg.with_genres:
        parts.append(pl.col("genre_text"))
    # The short fields go before the tags: BERT truncates documents from the right (128
    # tokens), and a well-tagged movie's rating would otherwise be the first thing cut.
    if not cfg.side_features:
        parts.append(pl.format("rating {}", pl.col("mean_rating").round(1)))
    parts.append(pl.col("tags").list.join(", "))
    return pl.concat_list([p.fill_null("") for p in parts]).list.eval(
        pl.element().filter(pl.element() != "")).list.join(", ")


def movie_documents(movies: pl.DataFrame, history: pl.DataFrame, tags: pl.DataFrame,
                    cfg: IngestConfig) -> pl.DataFrame:
    """One row per movie of movies.csv: tags (most users first), mean rating, document text."""
    # A tag's frequency on a movie = number of distinct users who applied it.
    counts = tags.unique(["movieId", "tag", "userId"]).group_by("movieId", "tag").agg(
        count=pl.len())
    stats = history.group_by("movieId").agg(
        n_ratings=pl.len(), mean_rating=pl.col("rating").mean(),
        n_dislikes=(pl.col("rating") < cfg.like_threshold).sum())
    df = (movie_fields(movies.unique("movieId", keep="first", maintain_order=True))
          .join(ranked_tags(counts, "movieId", cfg.max_tags), on="movieId", how="left")
          .join(stats, on="movieId", how="left")
          .with_columns(tags=pl.col("tags").fill_null([]),
                        n_ratings=pl.col("n_ratings").fill_null(0).cast(pl.Int64),
                        n_dislikes=pl.col("n_dislikes").fill_null(0).cast(pl.Int64)))
    return df.select("movieId", "title", "year", "genres", "tags", "n_ratings",
                     "mean_rating", "n_dislikes",
                     document=movie_document_text(cfg)).sort("movieId")


def liked_movie_tags(history: pl.DataFrame, tags: pl.DataFrame, cfg: IngestConfig,
                     ) -> pl.DataFrame:
    """Per user, the `top_user_tags` tags most frequent over the movies the user liked.

    Frequency = liked movies carrying the tag; ties: more applications across all movies,
    then alphabetical. Returns (userId, tag, pos) with pos 0 the best.
    """
    schema = {"userId": pl.Int64, "tag": pl.String, "pos": pl.Int64}
    liked = history.filter(pl.col("rating") >= cfg.liked_rating).select("userId", "movieId")
    carries = tags.select("movieId", "tag").unique()
    if cfg.top_user_tags == 0 or liked.height == 0 or carries.height == 0:
        return pl.DataFrame(schema=schema)
    # Number tags in tie-break order so that the sparse top-k can break ties by index.
    tag_order = (tags.unique(["userId", "movieId", "tag"]).group_by("tag")
                 .agg(total=pl.len()).sort(["total", "tag"], descending=[True, False])
                 .with_row_index("t", offset=0).with_columns(pl.col("t").cast(pl.Int64)))
    movie_ids = carries.select("movieId").unique().sort("movieId").with_row_index("m")
    user_ids = liked.select("userId").unique().sort("userId").with_row_index("u")
    liked_idx = liked.join(movie_ids, on="movieId").join(user_ids, on="userId")
    carry_idx = carries.join(movie_ids, on="movieId").join(tag_order, on="tag")
    shape_l = (user_ids.height, movie_ids.height)
    shape_c = (movie_ids.height, tag_order.height)
    liked_m = sp.csr_matrix((np.ones(liked_idx.height, np.int32),
                             (liked_idx["u"].to_numpy(), liked_idx["m"].to_numpy())), shape_l)
    carry_m = sp.csr_matrix((np.ones(carry_idx.height, np.int32),
                             (carry_idx["m"].to_numpy(), carry_idx["t"].to_numpy())), shape_c)
    rows, cols, pos = top_tags_for_users(liked_m, carry_m, cfg.top_user_tags, cfg.chunk_users)
    return (pl.DataFrame({"u": rows.astype(np.uint32), "t": cols, "pos": pos})
            .join(user_ids, on="u").join(tag_order.select("t", "tag"), on="t")
            .select("userId", "tag", "pos").cast(schema))


def liked_genres(history: pl.DataFrame, movies: pl.DataFrame, cfg: IngestConfig,
                 ) -> pl.DataFrame:
    """Per user, the cfg.user_genres genres most frequent among the movies the user liked.

    Ties alphabetical; genres as movie documents write them (lower case). Returns
    (userId, tag, pos) with pos 0 the most frequent.
    """
    genres = (movies.select("movieId", genre=pl.col("genres").str.split("|"))
              .explode("genre")
              .with_columns(pl.col("genre").str.strip_chars().str.to_lowercase())
              .filter(pl.col("genre").is_not_null() & (pl.col("genre") != "")
                      & (pl.col("genre") != "(no genres listed)")))
    return (history.filter(pl.col("rating") >= cfg.liked_rating).select("userId", "movieId")
            .join(genres, on="movieId").group_by("userId", "genre").agg(count=pl.len())
            .sort(["userId", "count", "genre"], descending=[False, True, False])
            .group_by("userId", maintain_order=True).head(cfg.user_genres)
            .with_columns(pos=pl.int_range(pl.len()).over("userId"))
            .select("userId", tag=pl.col("genre"), pos=pl.col("pos").cast(pl.Int64)))


def user_documents(history: pl.DataFrame, tags: pl.DataFrame, cfg: IngestConfig,
                   movies: pl.DataFrame | None = None) -> pl.DataFrame:
    """One row per user with a history rating: [liked genres,] own tags, liked-movie tags.

    With cfg.with_genres (and `movies` given) the document starts with the user's favourite
    genres, the words movie documents use for them, so the towers can match on them.
    """
    own = (tags.unique(["userId", "movieId", "tag"]).group_by("userId", "tag")
           .agg(count=pl.len())
           .sort(["userId", "count", "tag"], descending=[False, True, False])
           .with_columns(pos=pl.int_range(pl.len()).over("userId"), source=pl.lit(0)))
    liked = liked_movie_tags(history, tags, cfg).with_columns(source=pl.lit(1))
    cols = ["userId", "tag", "source", "pos"]
    parts = [own.select(cols), liked.select(cols)]
    if cfg.with_genres and cfg.user_genres and movies is not None:
        parts.insert(0, liked_genres(history, movies, cfg).with_columns(source=pl.lit(-1))
                     .select(cols))
    merged = (pl.concat(parts, how="vertical_relaxed")
              .sort(["userId", "source", "pos"])
              .unique(["userId", "tag"], keep="first", maintain_order=True)
              .group_by("userId", maintain_order=True).agg(tags=pl.col("tag").head(cfg.max_tags)))
    users = history.group_by("userId").agg(
        n_ratings=pl.len(), mean_rating=pl.col("rating").mean(),
        n_dislikes=(pl.col("rating") < cfg.like_threshold).sum().cast(pl.Int64),
        last_timestamp=pl.col("timestamp").max())
    return (users.join(merged, on="userId", how="left")
            .with_columns(tags=pl.col("tags").fill_null([]))
            .with_columns(document=pl.col("tags").list.join(", "))
            .select("userId", "tags", "n_ratings", "mean_rating", "n_dislikes",
                    "last_timestamp", "document").sort("userId"))


def draw_pairs(split: pl.DataFrame, cfg: IngestConfig) -> tuple[pl.DataFrame, list[str]]:
    """Class-balanced, seeded like (+1) / dislike (-1) pairs: train from history, valid held out.

    Per class, `pairs_per_class` pairs in all, `train_share` of them for training. With no
    holdout every pair is for training. Fewer available than asked: take all and warn.
    """
    labelled = split.with_columns(
        label=pl.when(pl.col("rating") >= cfg.like_threshold).then(1).otherwise(-1)
        .cast(pl.Int8),
        split=pl.when(pl.col("holdout")).then(pl.lit("valid")).otherwise(pl.lit("train")))
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
    cfg = cfg or IngestConfig()
    say = progress or (lambda _msg: None)
    start = time.perf_counter()
    data_dir = Path(data_dir)
    say("reading CSV files")
    ratings, raw_tags, movies = read_movielens(data_dir)
    ratings, warnings = clean_ratings(ratings, movies)
    if ratings.height == 0:
        raise DataError(f"no rating in {data_dir / 'ratings.csv'} is of a movie in movies.csv")
    say("splitting ratings by time")
    split = split_by_time(ratings, cfg.holdout_fraction)
    history = split.filter(~pl.col("holdout"))
    tags = normalize_tags(raw_tags.join(movies.select("movieId"), on="movieId", how="semi"))
    if cfg.holdout_fraction > 0:  # refit mode (0) uses every tag: nothing is held out
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
        history_ratings=history.height, holdout_ratings=split.height - history.height,
        tag_applications=tags.height, distinct_tags=tags["tag"].n_unique(),
        user_documents=user_docs.height, movie_documents=movie_docs.height,
        empty_user_documents=int((user_docs["document"] == "").sum()),
        empty_movie_documents=int((movie_docs["document"] == "").sum()),
        pairs=pair_counts, warnings=warnings)
    say("writing parquet tables")
    with artifacts.atomic_dir(out) as tmp:
        movie_docs.write_parquet(tmp / "movies.parquet")
        user_docs.write_parquet(tmp / "users.parquet")
        split.select("userId", "movieId", "rating", "timestamp", "holdout").write_parquet(
            tmp / "ratings.parquet")
        pairs.write_parquet(tmp / "pairs.parquet")
        summary.seconds = round(time.perf_counter() - start, 3)
        stats = {k: v for k, v in asdict(summary).items() if k not in ("out_dir", "warnings")}
        artifacts.write_manifest(
            tmp, artifacts.INGEST_DIR, artifacts.INGEST_FORMAT,
            data_dir=str(data_dir.resolve()),
            data_hash=artifacts.file_digest(*(data_dir / f for f in
                                              ("ratings.csv", "tags.csv", "movies.csv"))),
            settings=asdict(cfg), summary=stats, warnings=warnings,
            feature_stats=features.global_stats(
                history["rating"].to_numpy(), cfg.like_threshold,
                int(movie_docs["n_ratings"].max() or 0), int(user_docs["n_ratings"].max() or 0),
                float(history["timestamp"].max() or 0)))
    return summary
