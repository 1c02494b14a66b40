"""One person's ratings from a CSV, for `recommend --ratings`: pure Python, no polars.

    movieId,rating[,timestamp]     one row per movie, rating on MovieLens' 0.5-5 scale;
                                   other columns (a userId of one user) are ignored

Every problem is a DataError naming the file and line, so a bad file is one line of error.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagrec_cli.config import MAX_RATING, MIN_RATING, QUERY_FILE_LIMIT
from tagrec_cli.errors import DataError, quoted

REQUIRED = ("movieId", "rating")


@dataclass
class UserRatings:
    movie_ids: np.ndarray  # (n,) int64, in the file's order
    ratings: np.ndarray  # (n,) float64
    timestamps: np.ndarray  # (n,) float64 seconds, NaN where the file gives none


def read_query_text(path: Path, limit: int = QUERY_FILE_LIMIT) -> str:
    """The text of a file one query is read from (a ratings or tags file), at most `limit`
    bytes: a larger file, one that is not UTF-8 or cannot be read is a DataError."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise DataError(f"{path} is larger than {limit / 2**20:g} MiB: a query file holds "
                        "one person's ratings or tags")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text") from None


def check_once(path: Path, header: list[str], columns: tuple[str, ...]) -> None:
    """DataError if the header names one of `columns` more than once (movieId,rating,rating:
    which one is meant?). Also for ingest's and --add-movies' files (movielens.read_csv)."""
    twice = [c for c in columns if header.count(c) > 1]
    if twice:
        raise DataError(f"{path}, line 1: the column {twice[0]} appears "
                        f"{header.count(twice[0])} times (give it once)")


def read_user_ratings(path: Path) -> UserRatings:
    path = Path(path)
    text = read_query_text(path)
    rows = csv.reader(text.splitlines())
    try:
        header = [h.strip() for h in next(rows, [])]
    except csv.Error as exc:
        raise DataError(f"{path}, line 1: {exc}") from None
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise DataError(f"{path} lacks the column {missing[0]} (expected a header "
                        "movieId,rating[,timestamp], e.g. from MovieLens' ratings.csv)")
    check_once(path, header, (*REQUIRED, "timestamp", "userId"))
    at = {c: header.index(c) for c in (*REQUIRED, "timestamp", "userId") if c in header}
    try:
        cells = [(f"{path}, line {line}", f"line {line}",
                  {c: (row[i].strip() if i < len(row) else "") for c, i in at.items()})
                 for line, row in enumerate(rows, start=2)
                 if any(cell.strip() for cell in row)]  # blank lines skipped
    except csv.Error as exc:
        raise DataError(f"{path}: {exc}") from None
    users = {cell.get("userId", "") for _, _, cell in cells}
    if len(users) > 1:
        raise DataError(f"{path} holds the ratings of {len(users)} users (userId column): "
                        "give one person's ratings")
    return user_ratings(cells, f"{path} holds no ratings")


def user_ratings(rows: list[tuple[str, str, dict[str, str]]], empty: str) -> UserRatings:
    """UserRatings from (where, name, {movieId, rating[, timestamp]} as text) rows, checked:
    each problem a DataError that begins with its row's `where` ("FILE, line 3"; `name`,
    "line 3", for a later row that repeats its movie); `empty`: the message for none.
    The one rule for a new user's ratings, for a CSV file and for `tagrec serve`'s JSON."""
    movies, ratings, stamps = [], [], []
    first: dict[int, str] = {}
    for where, name, cell in rows:
        movie = _number(int, cell.get("movieId", ""), where, "movieId")
        rating = _number(float, cell.get("rating", ""), where, "rating")
        if not MIN_RATING <= rating <= MAX_RATING:
            raise DataError(f"{where}: rating {cell['rating']} is outside "
                            f"{MIN_RATING}–{MAX_RATING}")
        if movie in first:
            raise DataError(f"{where}: movie {movie} was already rated on {first[movie]}")
        first[movie] = name
        stamp = cell.get("timestamp", "")
        stamps.append(float(_number(int, stamp, where, "timestamp")) if stamp else math.nan)
        movies.append(movie)
        ratings.append(rating)
    if not movies:
        raise DataError(empty)
    return UserRatings(np.array(movies, np.int64), np.array(ratings, np.float64),
                       np.array(stamps, np.float64))


# As a CSV writes numbers: ASCII digits only. int() and float() alone would also take "1_0"
# (10) and other scripts' digits ("١" is 1), which no ratings file means.
_NUMBER = {int: re.compile(r"[+-]?[0-9]+"),
           float: re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(nan|inf)",
                             re.IGNORECASE)}


def _number(kind: type, text: str, where: str, column: str):
    try:
        if not _NUMBER[kind].fullmatch(text):
            raise ValueError(text)
        value = kind(text)
    except ValueError:
        raise DataError(f"{where}: {column} {quoted(text)} is not "
                        f"{'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):
        raise DataError(f"{where}: {column} {quoted(text)} is not a number")
    if kind is int and not -(2**63) <= value < 2**63:
        raise DataError(f"{where}: {column} {quoted(text)} is out of range")
    return value
