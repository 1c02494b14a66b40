"""What stands behind the embedding tables: titles and tags of movies, tags of users, and the
reasons shown beside a recommendation.

`tagrec embed` writes these beside the tables (embeddings/catalogue.parquet and
embeddings/user_tags.parquet), so `recommend` and `similar` read neither the ingest output
nor the model, and movies added later with `embed --add-movies` are covered too.
"""

from __future__ import annotations

import csv
import difflib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from tagrec_cli import artifacts
from tagrec_cli.errors import ArtifactError, TagrecError
from tagrec_cli.recommend import damaged, rows_of

CATALOGUE_FILE = "catalogue.parquet"  # movieId, title, year, genres, tags (list)
USER_TAGS_FILE = "user_tags.parquet"  # userId, tags (list): the user documents' tags
REASON_TAGS = 3  # shared tags shown per recommendation


def normalize_tags(tags: list[str]) -> list[str]:
    """Trim, lower-case, drop empty ones and repeats (first kept): as ingest treats tags."""
    seen: dict[str, None] = {}
    for tag in tags:
        tag = tag.strip().lower()
        if tag:
            seen.setdefault(tag, None)
    return list(seen)


def parse_tags(text: str) -> list[str]:
    """Comma- or newline-separated tags; a tag holding a comma is written in double quotes.

    Example: 'Dark comedy, "rock, paper", heist' -> ['dark comedy', 'rock, paper', 'heist']
    """
    rows = csv.reader(io.StringIO(text), skipinitialspace=True)
    try:
        return normalize_tags([tag for row in rows for tag in row])
    except csv.Error as exc:
        raise TagrecError(f"cannot read the tags {text!r}: {exc}") from None


def query_tags(extra: list[str], base: list[str], max_tags: int) -> list[str]:
    """A user document's tags with `extra` tags put first (before even its liked genres)."""
    return normalize_tags(extra + base)[:max_tags]


def tags_query_document(tags: list[str], catalogue: Catalogue, max_tags: int, top_tags: int,
                        n_genres: int) -> list[str]:
    """The document ingest would write for a user who liked the movies carrying `tags`.

    Ingest's rule for a user document, with the given tags as the user's own tags and, as
    the liked movies, every movie whose document carries one of them (a tag or a genre):
    [the n_genres genres most frequent among those movies (ties alphabetical),] the given
    tags, then the top_tags tags most frequent among them (ties: on more movies overall,
    then alphabetical; ingest breaks ties by tag applications, which the catalogue does not
    keep). n_genres: the workspace's user_genres setting, 0 when user documents carry none.
    A short query then reads like the documents the user tower was trained on, not like two
    stray words.
    Example: ["pixar"], movies A (pixar, funny; animation) and B (gritty; drama)
             -> [animation, pixar, funny] with n_genres 5
    """
    wanted = set(tags)
    liked = [r for r, terms in enumerate(catalogue.tags) if wanted & set(terms)]
    genre_count: dict[str, int] = {}
    tag_count: dict[str, int] = {}
    for r in liked:
        genres = genre_terms(catalogue.genres[r])
        for g in genres:
            genre_count[g] = genre_count.get(g, 0) + 1
        for t in catalogue.tags[r]:
            if t not in genres:
                tag_count[t] = tag_count.get(t, 0) + 1
    overall = catalogue.tag_movie_counts()

    top_genres = sorted(genre_count, key=lambda g: (-genre_count[g], g))[:n_genres]
    top = sorted(tag_count, key=lambda t: (-tag_count[t], -overall.get(t, 0), t))[:top_tags]
    return normalize_tags(top_genres + list(tags) + top)[:max_tags]


def genre_terms(genres: str | None) -> list[str]:
    """'Adventure|Animation' -> ['adventure', 'animation'], as they read in a document."""
    if not genres or genres == "(no genres listed)":
        return []
    return [g.strip().lower() for g in genres.split("|") if g.strip()]


def document_text(tags: list[str]) -> str:
    """A user document from its tags, exactly as ingest joins them."""
    return ", ".join(tags)


def _read(workdir: Path, name: str, where: pl.Expr | None = None) -> pl.DataFrame:
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
    df = _read(workdir, USER_TAGS_FILE, pl.col("userId") == user)
    return list(df["tags"][0]) if df.height else []


def user_feature_rows(workdir: Path, users: list[int | None]) -> dict[str, np.ndarray]:
    """features.RAW_COLUMNS of these users, as arrays; None (a tags query) has no history:
    0 ratings and no last timestamp (NaN)."""
    from tagrec_cli.features import RAW_COLUMNS

    known = [u for u in users if u is not None]
    df = _read(workdir, USER_TAGS_FILE, pl.col("userId").is_in(known)) if known else None
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
    tags: list[list[str]]  # each movie's document terms: its tags, then its genres when
    # ingest put genres in the documents ("animation" is then as much a reason as a tag)
    _counts: dict[str, int] | None = field(default=None, init=False, repr=False,
                                           compare=False)  # tag_movie_counts, once

    @classmethod
    def load(cls, workdir: Path, with_genres: bool | None = None) -> Catalogue:
        """with_genres None: as the workspace's ingest settings say."""
        if with_genres is None:
            from tagrec_cli.recommend import embeddings_manifest

            with_genres = bool(embeddings_manifest(workdir)["ingest_settings"]["with_genres"])
        df = _read(workdir, CATALOGUE_FILE)
        genres = df["genres"].to_list()
        tags = [list(t) for t in df["tags"].to_list()]
        if with_genres:
            tags = [normalize_tags(t + genre_terms(g)) for t, g in zip(tags, genres, strict=True)]
        return cls(df["movieId"].to_numpy().astype(np.int64), df["title"].to_list(),
                   df["year"].to_list(), genres, tags)

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

    def close_titles(self, text: str, n: int = 3) -> list[str]:
        """Titles that look like `text`, for "did you mean" messages."""
        names = {t.lower(): t for t in self.titles if t}
        # Compare against titles without the year, which users rarely type.
        bare = {k.rsplit(" (", 1)[0]: v for k, v in names.items()}
        return [bare[m] for m in difflib.get_close_matches(text.strip().lower(), list(bare),
                                                           n=n, cutoff=0.6)]

    def tag_movie_counts(self) -> dict[str, int]:
        """tag -> number of movies whose document carries it (low = distinctive).

        Counted once per catalogue: a tags query needs it for its document and again for the
        reasons. The catalogue's tags are not changed after loading.
        """
        if self._counts is None:
            counts: dict[str, int] = {}
            for tags in self.tags:
                for tag in tags:
                    counts[tag] = counts.get(tag, 0) + 1
            self._counts = counts
        return self._counts


def shared_tags(query: list[str], movie: list[str], counts: dict[str, int],
                n: int = REASON_TAGS) -> list[str]:
    """Tags in both documents, rarest across movies first (ties alphabetical), at most n.

    Example: query [drama, heist], movie [heist, drama, crime], counts {drama: 90, heist: 4}
             -> [heist, drama]
    """
    common = set(query) & set(movie)
    return sorted(common, key=lambda t: (counts.get(t, 0), t))[:n]


def closest_history(history_vectors: np.ndarray, history_ids: np.ndarray,
                    movie_vectors: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
    """Per recommended movie, the history movie most similar to it (never itself); -1 if none.

    history_vectors (h, d) and movie_vectors (k, d) are unit rows; returns (k,) movie ids.
    """
    if len(history_ids) == 0:
        return np.full(len(movie_ids), -1, dtype=np.int64)
    sims = movie_vectors @ history_vectors.T  # (k, h)
    sims[movie_ids[:, None] == history_ids[None, :]] = -np.inf
    best = sims.argmax(1)
    found = np.isfinite(sims[np.arange(len(movie_ids)), best])
    return np.where(found, history_ids[best], -1)
