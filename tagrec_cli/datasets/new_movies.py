"""The CSV of movies `tagrec embed --add-movies` adds: polars only, so that the command
can refuse a bad file before it loads torch and the model (seconds).

    movieId,title,genres,tags      tags separated by '|', in the order the user gave them
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tagrec_cli import documents
from tagrec_cli.datasets.movielens import read_csv
from tagrec_cli.errors import DataError

NEW_MOVIE_COLUMNS = ("movieId", "title", "genres", "tags")


def read_new_movies(path: Path):
    """A CSV of movieId,title,genres,tags (tags separated by '|') -> polars DataFrame.

    Tags are cleaned as ingest cleans them and keep the file's order (there are no counts
    to rank them by); all are kept, and the document takes the first max_tags, as ingest's
    (frames.movie_document_text).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist (expected a CSV with columns "
                        f"{','.join(NEW_MOVIE_COLUMNS)})")
    if not path.is_file():  # a folder, a pipe, a device: read twice (header, then rows)
        raise DataError(f"{path} is not a regular file (expected a CSV file with columns "
                        f"{','.join(NEW_MOVIE_COLUMNS)})")
    schema = {"movieId": pl.Int64, "title": pl.String, "genres": pl.String, "tags": pl.String}
    df = read_csv(path, schema)
    if df.height == 0:
        raise DataError(f"{path} has no movies")
    repeated = df.filter(pl.col("movieId").is_duplicated())
    if repeated.height:
        raise DataError(f"{path}: movieId {repeated['movieId'][0]} appears more than once")
    untitled = df.with_row_index().filter(pl.col("title").fill_null("").str.strip_chars() == "")
    if untitled.height:
        raise DataError(f"{path}, line {untitled['index'][0] + 2}: empty title")
    tags = [documents.clean_tags((t or "").split("|")) for t in df["tags"].to_list()]
    return df.with_columns(pl.Series("tags", tags, dtype=pl.List(pl.String)),
                           pl.col("title").str.strip_chars())


def comma_joined(movies) -> tuple[int, str] | None:
    """The first movie of read_new_movies' frame whose tags are one tag holding a comma, as
    (its CSV line, that tag): most likely tags meant as 'heist|caper' written 'heist, caper'
    (a tag may hold a comma, so it is read as written, and the user is told). None: none."""
    for i, tags in enumerate(movies["tags"].to_list()):
        if len(tags) == 1 and "," in tags[0]:
            return i + 2, tags[0]  # line 1 is the header
    return None
