"""ingest/: the documents, ratings and pairs that `tagrec ingest` wrote, read here only.

    movies.parquet   movieId, title, year, genres, tags, tag_counts, n_ratings, mean_rating,
                     n_dislikes, document
    users.parquet    userId, tags, n_ratings, mean_rating, n_dislikes, last_timestamp, document
    ratings.parquet  userId, movieId, rating, timestamp, holdout, part (history / valid /
                     test / new: which the documents and pairs may read; see ingest.py)
    pairs.parquet    userId, movieId, rating, label (+1 / -1), split (train / valid)

Every reader checks the manifest first and turns an unreadable table into one ArtifactError
that names the file and `tagrec ingest`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from tagrec_cli import artifacts, features
from tagrec_cli.artifacts import ingest_manifest
from tagrec_cli.errors import ArtifactError
from tagrec_cli.topk import rows_of

ID_COLUMN = {"user": "userId", "movie": "movieId"}


# What the readers of each table rely on: column -> the kind of its values, as ingest
# writes them. Ingests made before the three-way split lack "part", and those made before
# tag counts "tag_counts" (each tag then counts once).
COLUMNS: dict[str, dict[str, str]] = {
    artifacts.INGEST_TABLE["movie"]: {
        "movieId": "int", "title": "str", "year": "int", "genres": "str", "tags": "list",
        "tag_counts": "list", "n_ratings": "int", "mean_rating": "float", "n_dislikes": "int",
        "document": "str"},
    artifacts.INGEST_TABLE["user"]: {
        "userId": "int", "tags": "list", "n_ratings": "int", "mean_rating": "float",
        "n_dislikes": "int", "last_timestamp": "int", "document": "str"},
    artifacts.RATINGS_FILE: {"userId": "int", "movieId": "int", "rating": "float",
                             "timestamp": "int", "holdout": "bool", "part": "str"},
    artifacts.PAIRS_FILE: {"userId": "int", "movieId": "int", "rating": "float",
                           "label": "int", "split": "str"},
}
OPTIONAL_COLUMNS = {"part", "tag_counts"}
NOT_NULL = {"userId", "movieId", "rating", "timestamp", "holdout", "part", "label", "split"}


def _kind(dtype: pl.DataType) -> str:
    return ("int" if dtype.is_integer() else "float" if dtype.is_float()
            else "str" if dtype == pl.String else "bool" if dtype == pl.Boolean
            else "list" if isinstance(dtype, pl.List) else str(dtype))


def optional_columns(manifest: dict) -> set[str]:
    """OPTIONAL_COLUMNS for the ingest that wrote `manifest`: an ingest that held ratings
    out (test or new users: evaluate's stages) wrote "part", and is read by it."""
    settings = manifest.get("settings")
    split = isinstance(settings, dict) and (settings.get("test_fraction")
                                            or settings.get("new_users"))
    return OPTIONAL_COLUMNS - {"part"} if split else OPTIONAL_COLUMNS


def table_problem(name: str, df: pl.DataFrame, columns: list[str] | None,
                  optional: set[str] = OPTIONAL_COLUMNS) -> str | None:
    """What is wrong with ingest table `name` as read (its `columns`, or all): a column the
    readers need missing, of another kind, or null where an id, rating or label must be."""
    expected = COLUMNS.get(name, {})
    side_columns = {c for cols in features.RAW_COLUMNS.values() for c in cols}
    for column in columns or [c for c in expected
                              if c not in optional or c in df.columns]:
        if column not in df.columns:
            older = " (an ingest from before side features)" if column in side_columns else ""
            return f"no column {column}{older}"
        kind = _kind(df.schema[column])
        if column in expected and kind != expected[column]:
            return f"column {column} holds {kind}, not {expected[column]}"
        if column in NOT_NULL and df[column].null_count():
            return f"column {column} has {df[column].null_count():,} nulls"
    return None


ROWS_IN_SUMMARY = {artifacts.INGEST_TABLE["movie"]: "movies",
                   artifacts.INGEST_TABLE["user"]: "users"}  # table -> the summary's count


def rows_problem(name: str, height: int, manifest: dict) -> str | None:
    """A documents table with other rows than ingest's summary counted (a lost or emptied
    file: embed would write tables without those users or movies), or None. A manifest
    without the count is taken as it is."""
    summary = manifest.get("summary")
    want = summary.get(ROWS_IN_SUMMARY.get(name, "")) if isinstance(summary, dict) else None
    if type(want) is int and want != height:
        return f"{height:,} rows where ingest wrote {want:,}"
    return None


def tables_problem(workdir: Path) -> str | None:
    """What is wrong with the columns of ingest/'s tables, read from their parquet schemas
    alone (no data: nulls are found when a table is read), or None when all look whole."""
    optional = optional_columns(ingest_manifest(workdir))
    for name in COLUMNS:
        path = Path(workdir) / artifacts.INGEST_DIR / name
        try:
            schema = pl.read_parquet_schema(path)
        except (OSError, pl.exceptions.PolarsError) as exc:
            return f"{path}: {exc.__class__.__name__}"
        if problem := table_problem(name, pl.DataFrame(schema=schema), None, optional):
            return f"{path}: {problem}"
    return None


def read_table(workdir: Path, name: str, columns: list[str] | None = None) -> pl.DataFrame:
    """One table of ingest/ (a file name of artifacts), only `columns` if given; checked
    against COLUMNS, so that a damaged table is one line here, not a polars error later."""
    manifest = ingest_manifest(workdir)
    path = Path(workdir) / artifacts.INGEST_DIR / name
    try:
        df = pl.read_parquet(path, columns=columns, glob=False)  # a path, not a pattern
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ArtifactError(f"{path} is missing or damaged ({exc.__class__.__name__}) — "
                            "re-run `tagrec ingest`") from None
    problem = (table_problem(name, df, columns, optional_columns(manifest))
               or rows_problem(name, df.height, manifest))
    if problem:
        raise ArtifactError(f"{path} is damaged ({problem}) — re-run `tagrec ingest`")
    return df


def documents(workdir: Path, side: str) -> pl.DataFrame:
    """(id, document) of one side, in the table's order."""
    return read_table(workdir, artifacts.INGEST_TABLE[side], [ID_COLUMN[side], "document"])


def history_ratings(workdir: Path) -> pl.DataFrame:
    """The ratings the documents, features and training pairs were made from (userId,
    movieId, rating, timestamp): every rating but the held-out parts and new users."""
    ratings = with_parts(read_table(workdir, artifacts.RATINGS_FILE))
    return (ratings.filter(pl.col("part") == "history")
            .select("userId", "movieId", "rating", "timestamp"))


def with_parts(ratings: pl.DataFrame) -> pl.DataFrame:
    """ratings.parquet with its `part` column. An ingest from before the three-way split
    has none: its held-out ratings are "valid", the rest "history"."""
    if "part" in ratings.columns:
        return ratings
    return ratings.with_columns(part=pl.when(pl.col("holdout")).then(pl.lit("valid"))
                                .otherwise(pl.lit("history")))


def side_features(workdir: Path, side: str, ids: np.ndarray, stats: dict[str, float],
                  ) -> np.ndarray:
    """(len(ids), F) side features of these ids, from ingest/{movies,users}.parquet."""
    key = ID_COLUMN[side]
    path = Path(workdir) / artifacts.INGEST_DIR / artifacts.INGEST_TABLE[side]
    # read_table's own error names what is wrong: a missing ingest, a damaged file, or a
    # column lost ("... (an ingest from before side features)")
    df = read_table(workdir, artifacts.INGEST_TABLE[side], [key, *features.RAW_COLUMNS[side]])
    rows = rows_of(df[key].to_numpy().astype(np.int64), np.asarray(ids, dtype=np.int64))
    if (rows < 0).any():
        raise ArtifactError(f"{side} {int(np.asarray(ids)[rows < 0][0])} is not in {path} — "
                            "re-run `tagrec ingest`")
    return features.table_features(side, df, stats)[rows]


def rated_users(workdir: Path, known: pl.DataFrame, users: np.ndarray,
                stats: dict[str, float] | None) -> tuple[list[str], np.ndarray | None]:
    """The documents and side features ingest would give each of `users` from their `known`
    ratings alone (userId, movieId, rating, timestamp): frames.rated_users_documents and
    features.user_features, as for a new user. stats: the model's feature constants (None:
    no side features)."""
    from tagrec_cli.config import IngestConfig
    from tagrec_cli.documents import SEPARATOR, frames

    cfg = IngestConfig.from_settings(ingest_manifest(workdir).get("settings", {}))
    movies = read_table(workdir, artifacts.INGEST_TABLE["movie"],
                        ["movieId", "genres", "tags", "tag_counts"])
    movie_tags = (movies.select("movieId", "tags", "tag_counts").explode(["tags", "tag_counts"])
                  .drop_nulls().select("movieId", tag="tags",
                                       applications=pl.col("tag_counts").cast(pl.Int64)))
    docs = frames.rated_users_documents(known, movie_tags, movies.select("movieId", "genres"),
                                        cfg)
    by_user = dict(zip(docs["userId"].to_list(), docs["tags"].to_list(), strict=True))
    texts = [SEPARATOR.join(by_user.get(int(u), [])) for u in users]
    if stats is None:
        return texts, None
    raw = (known.group_by("userId").agg(frames.user_stats(cfg.like_threshold))
           .with_columns(pl.col(list(features.RAW_COLUMNS["user"])).cast(pl.Float64)))
    raw = pl.DataFrame({"userId": np.asarray(users, np.int64)}).join(raw, on="userId",
                                                                      how="left")
    counts = ("n_ratings", "n_dislikes")
    feats = features.user_features(*(raw[c].fill_null(0.0 if c in counts else np.nan).to_numpy()
                                     for c in features.RAW_COLUMNS["user"]), stats)
    return texts, feats.astype(np.float32)
