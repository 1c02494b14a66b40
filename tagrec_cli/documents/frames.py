"""The document grammar as polars expressions: what ingest applies to millions of rows.

Each function here is the twin of a rule in documents/__init__.py (tag cleaning, genres)
or builds the documents from whole tables (movie documents, user documents); tests check
that the twins agree and that a `--tags` query document (documents/terms.py) equals the one
these functions write for the user it describes.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp

from tagrec_cli.config import IngestConfig
from tagrec_cli.documents import NO_GENRES, SEPARATOR, USER_PART
from tagrec_cli.toptags import top_tags_for_users

# ---------------------------------------------------------------- tags and genres


def clean_tag_column(tags: pl.DataFrame) -> pl.DataFrame:
    """clean_tags on the `tag` column of a tags table: trimmed, lower case, empty rows dropped
    (repeats are counted, not dropped: a tag's frequency is how many people applied it)."""
    return (tags.with_columns(tag=pl.col("tag").str.strip_chars().str.to_lowercase())
            .filter(pl.col("tag").is_not_null() & (pl.col("tag") != "")))


def genre_list(genres: pl.Expr) -> pl.Expr:
    """genre_terms as a polars expression: a list column of a movie's genres."""
    return (pl.when(genres == NO_GENRES).then(pl.lit(None, pl.String)).otherwise(genres)
            .str.split("|")
            .list.eval(pl.element().str.strip_chars().str.to_lowercase())
            .list.eval(pl.element().filter(pl.element() != ""))
            .fill_null([]))


def ranked_tags(tag_counts: pl.DataFrame, key: str) -> pl.DataFrame:
    """Per `key`, all its tags by count desc then alphabetically: (key, tags list,
    tag_counts list) from (key, tag, count) rows."""
    return (tag_counts.sort([key, "count", "tag"], descending=[False, True, False])
            .group_by(key, maintain_order=True)
            .agg(tags=pl.col("tag"), tag_counts=pl.col("count")))


# ---------------------------------------------------------------- movie documents


def movie_fields(movies: pl.DataFrame) -> pl.DataFrame:
    """movies.csv rows + year, name ("Matrix, The (1999)" -> "The Matrix") and genre_text."""
    year = pl.col("title").str.extract(r"\((\d{4})\)\s*$", 1).cast(pl.Int32, strict=False)
    name = pl.col("title").str.replace(r"\s*\(\d{4}\)\s*$", "").str.strip_chars()
    name = name.str.replace(r"^(.*), (The|A|An)$", "$2 $1")  # "Matrix, The" -> "The Matrix"
    return movies.with_columns(year=year, name=name,
                               genre_text=genre_list(pl.col("genres")).list.join(SEPARATOR))


def movie_document_text(cfg: IngestConfig) -> pl.Expr:
    """[title, year, genres,] rating X.Y, tags... from movie_fields' columns, mean_rating, tags.

    Only the first cfg.max_tags tags (the most frequent) go in; the movie keeps all of them
    in movies.parquet and the catalogue, since a user's document counts every tag of the
    movies they liked (user_document_tags). Empty parts (no tags; no rating for a movie
    nobody rated) are left out.
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
    parts.append(pl.col("tags").list.head(cfg.max_tags).list.join(SEPARATOR))
    return pl.concat_list([p.fill_null("") for p in parts]).list.eval(
        pl.element().filter(pl.element() != "")).list.join(SEPARATOR)


# ---------------------------------------------------------------- user documents


def pair_label(like_threshold: float) -> pl.Expr:
    """A rating's training label, from the `rating` column: like (+1), or dislike (-1) below
    like_threshold. The one rule for ingest's pairs, the short-history users' next ratings
    (train/prefix.py) and evaluate's pairs."""
    return pl.when(pl.col("rating") >= like_threshold).then(1).otherwise(-1)


def user_stats(like_threshold: float) -> list[pl.Expr]:
    """A user's history statistics (features.RAW_COLUMNS["user"]) as aggregations over their
    ratings (userId, movieId, rating, timestamp, grouped by user): the one rule for
    ingest's users.parquet and for a user ingest never saw (store.ingested.rated_users)."""
    return [pl.len().alias("n_ratings"), pl.col("rating").mean().alias("mean_rating"),
            (pl.col("rating") < like_threshold).sum().cast(pl.Int64).alias("n_dislikes"),
            pl.col("timestamp").max().alias("last_timestamp")]


def own_tags(tags: pl.DataFrame) -> pl.DataFrame:
    """Per user, the tags they applied, on most movies first (ties alphabetical).

    tags: (userId, movieId, tag) cleaned. Returns (userId, tag, pos), pos 0 the first.
    """
    return (tags.unique(["userId", "movieId", "tag"]).group_by("userId", "tag")
            .agg(count=pl.len())
            .sort(["userId", "count", "tag"], descending=[False, True, False])
            .select("userId", "tag", pos=pl.int_range(pl.len()).over("userId")))


def tag_order(tags: pl.DataFrame) -> pl.DataFrame:
    """(tag, applications) in the global tie-break order: most applications, then alphabetical.

    tags: (userId, movieId, tag); an application is one user putting a tag on one movie.
    """
    return (tags.unique(["userId", "movieId", "tag"]).group_by("tag")
            .agg(applications=pl.len()).sort(["applications", "tag"], descending=[True, False]))


def liked_movie_tags(liked: pl.DataFrame, carries: pl.DataFrame, order: pl.DataFrame,
                     top: int, chunk_users: int = 2048) -> pl.DataFrame:
    """Per user, the `top` tags on most of the movies the user liked.

    liked: (userId, movieId); carries: (movieId, tag), which movie carries which tag;
    order: (tag, ...) every tag, in tie-break order (tag_order). Ties: the earlier tag in
    `order`. Returns (userId, tag, pos) with pos 0 the best. An exact sparse product
    (toptags.py), so it scales to MovieLens-25M.
    """
    schema = {"userId": pl.Int64, "tag": pl.String, "pos": pl.Int64}
    carries = carries.select("movieId", "tag").unique()
    if top == 0 or liked.height == 0 or carries.height == 0:
        return pl.DataFrame(schema=schema)
    # Number tags in tie-break order so that the sparse top-k can break ties by index.
    numbered = order.select("tag").with_row_index("t").with_columns(pl.col("t").cast(pl.Int64))
    movie_ids = carries.select("movieId").unique().sort("movieId").with_row_index("m")
    user_ids = liked.select("userId").unique().sort("userId").with_row_index("u")
    liked_idx = liked.join(movie_ids, on="movieId").join(user_ids, on="userId")
    carry_idx = carries.join(movie_ids, on="movieId").join(numbered, on="tag")
    liked_m = sp.csr_matrix((np.ones(liked_idx.height, np.int32),
                             (liked_idx["u"].to_numpy(), liked_idx["m"].to_numpy())),
                            (user_ids.height, movie_ids.height))
    carry_m = sp.csr_matrix((np.ones(carry_idx.height, np.int32),
                             (carry_idx["m"].to_numpy(), carry_idx["t"].to_numpy())),
                            (movie_ids.height, numbered.height))
    rows, cols, pos = top_tags_for_users(liked_m, carry_m, top, chunk_users)
    return (pl.DataFrame({"u": rows.astype(np.uint32), "t": cols, "pos": pos})
            .join(user_ids, on="u").join(numbered, on="t")
            .select("userId", "tag", "pos").cast(schema))


def liked_genres(liked: pl.DataFrame, movies: pl.DataFrame, n: int) -> pl.DataFrame:
    """Per user, the n genres most frequent among the movies the user liked (ties
    alphabetical), as movie documents write them. liked: (userId, movieId); movies:
    (movieId, genres). Returns (userId, tag, pos) with pos 0 the most frequent."""
    genres = (movies.select("movieId", genre=genre_list(pl.col("genres"))).explode("genre")
              .filter(pl.col("genre").is_not_null()))
    return (liked.join(genres, on="movieId").group_by("userId", "genre").agg(count=pl.len())
            .sort(["userId", "count", "genre"], descending=[False, True, False])
            .group_by("userId", maintain_order=True).head(n)
            .with_columns(pos=pl.int_range(pl.len()).over("userId"))
            .select("userId", tag=pl.col("genre"), pos=pl.col("pos").cast(pl.Int64)))


def user_document_tags(liked: pl.DataFrame, own: pl.DataFrame, carries: pl.DataFrame,
                       order: pl.DataFrame, movies: pl.DataFrame | None,
                       cfg: IngestConfig) -> pl.DataFrame:
    """Per user, the tags of its document: (userId, tags list), for users with any.

    liked: (userId, movieId) the movies each user liked; own: (userId, tag, pos) the user's
    own tags in order; carries, order: as for liked_movie_tags; movies: (movieId, genres),
    for the liked genres that start the document when cfg.with_genres (None: no genres).
    The parts come in USER_PART order, each ranked within itself; a term already in an
    earlier part is not repeated, and the document stops at cfg.max_tags terms.
    """
    cols = ["userId", "tag", "part", "pos"]
    parts = [own.with_columns(part=pl.lit(USER_PART["own"])).select(cols),
             liked_movie_tags(liked, carries, order, cfg.top_user_tags, cfg.chunk_users)
             .with_columns(part=pl.lit(USER_PART["liked"])).select(cols)]
    if cfg.with_genres and cfg.user_genres and movies is not None:
        parts.insert(0, liked_genres(liked, movies, cfg.user_genres)
                     .with_columns(part=pl.lit(USER_PART["genres"])).select(cols))
    return (pl.concat(parts, how="vertical_relaxed")
            .sort(["userId", "part", "pos"])
            .unique(["userId", "tag"], keep="first", maintain_order=True)
            .group_by("userId", maintain_order=True).agg(tags=pl.col("tag").head(cfg.max_tags)))

def rated_user_document(ratings: pl.DataFrame, movie_tags: pl.DataFrame, movies: pl.DataFrame,
                        cfg: IngestConfig) -> list[str]:
    """The user document ingest would write for someone known only by these ratings (a new
    user: no tags of their own): their liked genres, then the tags most frequent over the
    movies they rated >= cfg.liked_rating.

    ratings: (movieId, rating[, timestamp]) one user's ratings; movie_tags: (movieId, tag,
    applications) every movie's tags, as for tags_query_document; movies: (movieId, genres).
    Example: movie A (pixar, funny; Animation) rated 5, movie B (gritty; Drama) rated 1
             -> [animation, funny, pixar] with 5 user genres (ties: tag order, here by name)
    """
    doc = rated_users_documents(ratings.select(pl.lit(0, pl.Int64).alias("userId"), "movieId",
                                               "rating"), movie_tags, movies, cfg)
    return list(doc["tags"][0]) if doc.height else []


def rated_users_documents(ratings: pl.DataFrame, movie_tags: pl.DataFrame,
                          movies: pl.DataFrame, cfg: IngestConfig) -> pl.DataFrame:
    """rated_user_document for many users at once: ratings (userId, movieId, rating) ->
    (userId, tags list), for the users whose document has any term."""
    liked = (ratings.filter(pl.col("rating") >= cfg.liked_rating)
             .select(pl.col("userId").cast(pl.Int64), pl.col("movieId").cast(pl.Int64))
             .unique().sort(["userId", "movieId"]))
    own = pl.DataFrame(schema={"userId": pl.Int64, "tag": pl.String, "pos": pl.Int64})
    order = (movie_tags.group_by("tag").agg(applications=pl.col("applications").sum())
             .sort(["applications", "tag"], descending=[True, False]))
    return user_document_tags(liked, own, movie_tags.select("movieId", "tag"), order, movies,
                              cfg)
