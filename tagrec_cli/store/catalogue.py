"""embeddings/catalogue.parquet and user_tags.parquet: what stands behind the tables.

`tagrec embed` writes them beside the tables (titles, genres and tags of every movie, the tags
and history statistics of every user), so `recommend` and `similar` read neither the ingest
output nor the model, and movies added later with `embed --add-movies` are covered too.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from tagrec_cli import artifacts
from tagrec_cli.documents import clean_tags, genre_terms
from tagrec_cli.errors import ArtifactError, TagrecError
from tagrec_cli.features import RAW_COLUMNS
from tagrec_cli.store.embeddings import damaged, write_seen
from tagrec_cli.store.ingested import read_table
from tagrec_cli.topk import rows_of

CATALOGUE_COLUMNS = ("movieId", "title", "year", "genres", "tags", "tag_counts", "n_ratings")


def read_lookup(workdir: Path, name: str, where: pl.Expr | None = None) -> pl.DataFrame:
    """A parquet file of embeddings/, only the rows `where` selects (a filtered scan reads
    only the row groups that can hold them)."""
    path = Path(workdir) / artifacts.EMBEDDINGS_DIR / name
    try:
        scan = pl.scan_parquet(path)
        return (scan if where is None else scan.filter(where)).collect()
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise damaged(path, exc) from None


def user_tags(workdir: Path, user: int) -> list[str]:
    """The tags of `user`'s document (empty when the user has none)."""
    df = read_lookup(workdir, artifacts.USER_TAGS_FILE, pl.col("userId") == user)
    return list(df["tags"][0]) if df.height else []


def user_feature_rows(workdir: Path, users: list[int | None]) -> dict[str, np.ndarray]:
    """features.RAW_COLUMNS of these users, as arrays; None (a tags query) has no history:
    0 ratings and no last timestamp (NaN)."""
    known = [u for u in users if u is not None]
    df = (read_lookup(workdir, artifacts.USER_TAGS_FILE, pl.col("userId").is_in(known))
          if known else None)
    if df is not None and not set(RAW_COLUMNS["user"]) <= set(df.columns):
        raise ArtifactError("the embeddings were made before side features — re-run "
                            "`tagrec embed`")
    out = {c: np.zeros(len(users)) for c in RAW_COLUMNS["user"]}
    out["last_timestamp"][:] = np.nan
    for i, user in enumerate(users):
        if user is None or df is None:
            continue
        row = df.filter(pl.col("userId") == user)
        if row.height:
            for c in RAW_COLUMNS["user"]:
                out[c][i] = float(row[c][0]) if row[c][0] is not None else np.nan
    return out


@dataclass
class Catalogue:
    """The movies of the movie table: (N,) arrays and lists in the catalogue file's order."""

    ids: np.ndarray  # (N,) int64
    titles: list[str | None]
    years: list[int | None]
    genres: list[str | None]
    movie_tags: list[list[str]]  # each movie's own tags, most applied first
    tag_counts: list[list[int]] | None = None  # applications of each of those tags; None:
    # not recorded (an older ingest, or movies added from a CSV): 1 each
    with_genres: bool = False  # ingest put genres in the documents
    n_ratings: list[int] | None = None  # history ratings per movie (None: not recorded)
    _counts: dict[str, int] | None = field(default=None, init=False, repr=False,
                                           compare=False)  # tag_movie_counts, once

    def __post_init__(self) -> None:
        # Each movie's document terms: its tags, then its genres when ingest put genres in
        # the documents ("animation" is then as much a reason as a tag).
        self.tags = ([clean_tags(t + genre_terms(g))
                      for t, g in zip(self.movie_tags, self.genres, strict=True)]
                     if self.with_genres else self.movie_tags)

    @classmethod
    def load(cls, workdir: Path, with_genres: bool) -> Catalogue:
        df = read_lookup(workdir, artifacts.CATALOGUE_FILE)
        counts = ([list(c) if c is not None else [1] * len(t) for t, c in
                   zip(df["tags"].to_list(), df["tag_counts"].to_list(), strict=True)]
                  if "tag_counts" in df.columns else None)
        n_ratings = ([int(n or 0) for n in df["n_ratings"].to_list()]
                     if "n_ratings" in df.columns else None)  # added movies: null, none yet
        return cls(df["movieId"].to_numpy().astype(np.int64), df["title"].to_list(),
                   df["year"].to_list(), df["genres"].to_list(),
                   [list(t) for t in df["tags"].to_list()], counts, with_genres, n_ratings)

    def tag_applications(self) -> pl.DataFrame:
        """(movieId, tag, applications): how many people put each tag on each movie."""
        counts = self.tag_counts or [[1] * len(t) for t in self.movie_tags]
        return pl.DataFrame({"movieId": np.repeat(self.ids, [len(t) for t in self.movie_tags]),
                             "tag": [t for tags in self.movie_tags for t in tags],
                             "applications": [c for cs in counts for c in cs]},
                            schema={"movieId": pl.Int64, "tag": pl.String,
                                    "applications": pl.Int64})

    def genre_frame(self) -> pl.DataFrame:
        """(movieId, genres) of every movie, as movies.csv gives them."""
        return pl.DataFrame({"movieId": self.ids, "genres": self.genres},
                            schema={"movieId": pl.Int64, "genres": pl.String})

    def rows(self, movie_ids: np.ndarray) -> np.ndarray:
        return rows_of(self.ids, np.asarray(movie_ids, dtype=np.int64))

    def info(self, movie_ids: np.ndarray) -> list[dict]:
        """{movieId, title, year, genres} per id, in order (None fields for an unknown id)."""
        out = []
        for m, r in zip(movie_ids, self.rows(movie_ids), strict=True):
            known = r >= 0
            out.append({"movieId": int(m), "title": self.titles[r] if known else None,
                        "year": self.years[r] if known else None,
                        "genres": self.genres[r] if known else None})
        return out

    def label(self, movie_id: int) -> str:
        r = int(self.rows(np.array([movie_id]))[0])
        return self.titles[r] if r >= 0 and self.titles[r] else f"movie {movie_id}"

    def find(self, text: str) -> list[int]:
        """Ids of movies whose title contains `text` (case-insensitive), in id order."""
        needle = text.strip().lower()
        if not needle:
            raise TagrecError("--title is empty")
        hits = [int(m) for m, t in zip(self.ids, self.titles, strict=True)
                if t and needle in t.lower()]
        return sorted(hits)

    def pick(self, text: str) -> tuple[int, list[int]]:
        """The movie a title search means, and every match: (movie id, matching ids).

        Of the titles containing `text`, one equal to it (with or without its year) wins;
        else, and among several equal ones, the most rated (ties: the lower id). An empty
        list of matches means none: the caller says so.
        Example: "matrix" -> Matrix, The (1999) among its sequels (it is the most rated)
        """
        matches = self.find(text)
        if not matches:
            return -1, []
        needle = text.strip().lower()
        rows = self.rows(np.array(matches))
        titles = [(self.titles[r] or "").lower() for r in rows]
        exact = [m for m, t in zip(matches, titles, strict=True)
                 if needle in (t, t.rsplit(" (", 1)[0])]
        counts = dict(zip(self.ids.tolist(), self.n_ratings or [0] * len(self.ids),
                          strict=True))
        best = min(exact or matches, key=lambda m: (-counts.get(m, 0), m))
        return best, matches

    def close_titles(self, text: str, n: int = 3) -> list[str]:
        """Titles that look like `text`, for "did you mean" messages."""
        names = {t.lower(): t for t in self.titles if t}
        # Compare against titles without the year, which users rarely type.
        bare = {k.rsplit(" (", 1)[0]: v for k, v in names.items()}
        return [bare[m] for m in difflib.get_close_matches(text.strip().lower(), list(bare),
                                                           n=n, cutoff=0.6)]

    def tag_movie_counts(self) -> dict[str, int]:
        """term -> number of movies whose document carries it (low = distinctive).

        Counted once per catalogue: the reasons of every row need it. The catalogue's tags
        are not changed after loading.
        """
        if self._counts is None:
            counts: dict[str, int] = {}
            for tags in self.tags:
                for tag in tags:
                    counts[tag] = counts.get(tag, 0) + 1
            self._counts = counts
        return self._counts


def write_lookups(workdir: Path, folder: Path) -> None:
    """What `recommend` needs besides the tables, from ingest/, so that it never reads ingest/.

    seen.safetensors: every user's rated movies and ratings (history and held out) as CSR;
    catalogue.parquet: the movies' titles, genres and tags; user_tags.parquet: the users'
    tags and the columns of their side features.
    """
    seen = read_table(workdir, artifacts.RATINGS_FILE, ["userId", "movieId", "rating"]).sort(
        "userId", "movieId")
    write_seen(folder, seen["userId"].to_numpy(), seen["movieId"].to_numpy(),
               seen["rating"].to_numpy())
    movies = read_table(workdir, artifacts.INGEST_TABLE["movie"])
    movies.select(*[c for c in CATALOGUE_COLUMNS if c in movies.columns]).write_parquet(
        Path(folder) / artifacts.CATALOGUE_FILE)
    users = read_table(workdir, artifacts.INGEST_TABLE["user"])
    # The side-feature columns too (older ingest output has none): a --user --tags query
    # re-encodes that user's document with these.
    users.select("userId", "tags", *[c for c in RAW_COLUMNS["user"] if c in users.columns]
                 ).write_parquet(Path(folder) / artifacts.USER_TAGS_FILE)
