"""embeddings/catalogue.safetensors and user_tags.safetensors: what stands behind the tables.

`tagrec embed` writes them beside the tables (titles, genres and tags of every movie, the
tags and history statistics of every user), so `recommend` and `similar` read neither the
ingest output nor the model, and movies added later with `embed --add-movies` are covered
too. Both are plain arrays, so a query loads them in milliseconds without polars:

    catalogue.safetensors  ids (N,); title.*, genres.* (strings); year, n_ratings (+ .valid);
                           terms.* (documents/terms.py MovieTerms: every movie's tags and
                           genres as ids into a sorted vocabulary, and how many movies
                           carry each term)
    user_tags.safetensors  users (U,) sorted; tags.indptr (U+1,), tags.ids into terms.*;
                           feature.<column> (U,) float64 (NaN: none) for features.RAW_COLUMNS

A string column NAME is NAME.text (the strings' UTF-8, concatenated, uint8), NAME.offsets
((n+1,) character offsets into the decoded text) and NAME.valid ((n,) 0 where None).
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

from tagrec_cli import artifacts
from tagrec_cli.documents.terms import MovieTerms
from tagrec_cli.errors import QueryError, quoted
from tagrec_cli.features import RAW_COLUMNS
from tagrec_cli.store.embeddings import damaged, write_seen
from tagrec_cli.topk import rows_of

CATALOGUE_COLUMNS = ("movieId", "title", "year", "genres", "tags", "tag_counts", "n_ratings")
# MovieTerms.movies_per_term, counted by embed: with genres in the documents, and without
COUNTED = {True: "terms.movies_per_term", False: "terms.movies_per_tag"}


# ---------------------------------------------------------------- string columns


def pack_strings(name: str, values: list[str | None]) -> dict[str, np.ndarray]:
    """NAME.text, NAME.offsets, NAME.valid for a list of strings (None allowed)."""
    text = "".join(v or "" for v in values)
    offsets = np.zeros(len(values) + 1, np.int64)
    offsets[1:] = np.cumsum([len(v or "") for v in values])
    return {f"{name}.text": np.frombuffer(text.encode("utf-8"), np.uint8).copy(),
            f"{name}.offsets": offsets,
            f"{name}.valid": np.array([v is not None for v in values], np.uint8)}


class Strings(Sequence):
    """A string column, each string cut from the decoded text when it is asked for (a query
    reads a few titles of 62,000; making them all Python strings would cost more)."""

    def __init__(self, arrays: dict[str, np.ndarray], name: str):
        self.text = arrays[f"{name}.text"].tobytes().decode("utf-8")
        self.offsets = arrays[f"{name}.offsets"]
        self.valid = arrays[f"{name}.valid"]
        if len(self.offsets) != len(self.valid) + 1:
            raise ValueError(f"{name}: offsets and values differ in length")

    def __len__(self) -> int:
        return len(self.valid)

    def __getitem__(self, i: int) -> str | None:  # type: ignore[override] - no slices
        if not self.valid[i]:
            return None
        return self.text[int(self.offsets[i]):int(self.offsets[i + 1])]


def unpack_strings(arrays: dict[str, np.ndarray], name: str) -> Strings:
    return Strings(arrays, name)


class OptionalInts(Sequence):
    """An integer column with gaps (NAME, NAME.valid), each value made a Python int (or
    None) when it is asked for: a query reads ten years of 62,000."""

    def __init__(self, arrays: dict[str, np.ndarray], name: str):
        self.values, self.valid = arrays[name], arrays[f"{name}.valid"]
        if len(self.values) != len(self.valid):
            raise ValueError(f"{name}: values and validity differ in length")

    def __len__(self) -> int:
        return len(self.valid)

    def __getitem__(self, i: int) -> int | None:  # type: ignore[override] - no slices
        return int(self.values[i]) if self.valid[i] else None


def _optional(arrays: dict[str, np.ndarray], name: str) -> OptionalInts:
    return OptionalInts(arrays, name)


def _with_valid(name: str, values: list) -> dict[str, np.ndarray]:
    return {name: np.array([0 if v is None else v for v in values], np.int64),
            f"{name}.valid": np.array([v is not None for v in values], np.uint8)}


def _read(path: Path) -> dict[str, np.ndarray]:
    try:
        return load_file(str(path))
    except (OSError, ValueError, SafetensorError) as exc:
        raise damaged(path, exc) from None


# ---------------------------------------------------------------- the catalogue


@dataclass
class Catalogue:
    """The movies of the movie table: (N,) arrays and lists in the catalogue file's order."""

    ids: np.ndarray  # (N,) int64
    titles: Sequence[str | None]
    years: Sequence[int | None]
    genres: Sequence[str | None]  # as movies.csv gives them ("Adventure|Animation")
    terms: MovieTerms  # each movie's tags (most applied first, with counts) and genres
    n_ratings: Sequence[int | None]  # history ratings per movie (None: added later, none yet)
    with_genres: bool = False  # ingest put genres in the documents
    counted: dict[bool, np.ndarray] | None = None  # movies_per_term, as embed counted it
    # (with genres / without); None: count when asked
    # row -> document_terms(row), for the rows asked for so far (at most N): every answer's
    # reasons read them, and a server answers thousands a second from the same catalogue
    terms_of: dict[int, tuple[str, ...]] = field(default_factory=dict, init=False, repr=False,
                                                 compare=False)

    @classmethod
    def load(cls, workdir: Path, with_genres: bool) -> Catalogue:
        return cls.read(Path(workdir) / artifacts.EMBEDDINGS_DIR / artifacts.CATALOGUE_FILE,
                        with_genres)

    @classmethod
    def read(cls, path: Path, with_genres: bool = False) -> Catalogue:
        arrays = _read(path)
        try:
            terms = MovieTerms(unpack_strings(arrays, "terms"),
                               *(arrays[f"terms.{a}"].astype(np.int64)
                                 for a in MovieTerms.ARRAYS))
            out = cls(arrays["ids"].astype(np.int64), unpack_strings(arrays, "title"),
                      _optional(arrays, "year"), unpack_strings(arrays, "genres"), terms,
                      _optional(arrays, "n_ratings"), with_genres,
                      {g: arrays[COUNTED[g]].astype(np.int64) for g in (True, False)})
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            raise damaged(path, exc) from None
        n = len(out.ids)
        if not (len(out.titles) == len(out.years) == len(out.genres) == len(terms) == n):
            raise damaged(path, "columns of different lengths")
        if problem := terms.problem():
            raise damaged(path, problem)
        if any(len(c) != len(terms.terms) for c in out.counted.values()):
            raise damaged(path, "term counts of another length than the terms")
        return out

    @cached_property
    def order(self) -> np.ndarray:
        return np.argsort(self.ids, kind="stable")

    def rating_counts(self) -> np.ndarray:
        """(N,) int64 history ratings per movie, 0 where there are none (added later)."""
        col = self.n_ratings
        if isinstance(col, OptionalInts):
            return np.where(col.valid, col.values, 0).astype(np.int64)
        return np.array([n or 0 for n in col], dtype=np.int64)

    def rows(self, movie_ids: np.ndarray) -> np.ndarray:
        return rows_of(self.ids, np.asarray(movie_ids, dtype=np.int64), self.order)

    def document_terms(self, row: int) -> list[str]:
        """Movie `row`'s terms: all its tags (its document holds the first max_tags of them),
        and its genres when documents have them: what a reason can name."""
        if row not in self.terms_of:
            self.terms_of[row] = tuple(self.terms.document_terms(row, self.with_genres))
        return list(self.terms_of[row])  # a copy: the caller may change its list

    @cached_property
    def movies_per_term(self) -> np.ndarray:
        """(V,) how many movies carry each term of self.terms (low = distinctive)."""
        if self.counted is not None:
            return self.counted[self.with_genres]
        return self.terms.movies_per_term(self.with_genres)

    def term_counts(self, terms: set[str]) -> dict[str, int]:
        """term -> how many movies' documents carry it, for these terms."""
        ids = {t: self.terms.term_id(t) for t in terms}
        return {t: int(self.movies_per_term[i]) if i >= 0 else 0 for t, i in ids.items()}

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
        return self.labels(np.array([movie_id]))[0]

    def labels(self, movie_ids: np.ndarray) -> list[str]:
        """Each movie's title, or "movie ID" for one without (one lookup for them all)."""
        return [self.titles[r] if r >= 0 and self.titles[r] else f"movie {m}"
                for m, r in zip(np.asarray(movie_ids).tolist(), self.rows(movie_ids).tolist(),
                                strict=True)]

    @cached_property
    def searched(self) -> list[tuple[str, ...]]:
        """Each title as a search reads it (title_forms), made once per process."""
        return [title_forms(t) if t else () for t in self.titles]

    def find(self, text: str) -> list[int]:
        """Ids of movies whose title contains `text` (title_forms: case, accents and a
        trailing article aside), in id order."""
        needle = fold(text.strip())
        if not needle:
            raise QueryError("title is empty", "title", names=("title",))
        hits = [int(m) for m, forms in zip(self.ids, self.searched, strict=True)
                if any(needle in f for f in forms)]
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
        needle = fold(text.strip())
        rows = self.rows(np.array(matches))
        exact = [m for m, r in zip(matches, rows, strict=True)
                 if any(needle in (f, f.rsplit(" (", 1)[0]) for f in self.searched[r])]
        counts = dict(zip(matches, (self.n_ratings[r] or 0 for r in rows), strict=True))
        best = min(exact or matches, key=lambda m: (-counts[m], m))
        return best, matches

    def lookup(self, text: str) -> tuple[int, list[int]]:
        """pick(text), where no match is an error that says which titles are close."""
        movie, matches = self.pick(text)
        if not matches:
            close = self.close_titles(text)
            hint = f"; did you mean {', '.join(repr(t) for t in close)}?" if close else ""
            raise QueryError(f"no movie title contains {quoted(text)}{hint}", "title",
                             unknown=True)
        return movie, matches

    def close_titles(self, text: str, n: int = 3) -> list[str]:
        """Titles that look like `text`, for "did you mean" messages."""
        # Compare against titles without the year, which users rarely type.
        bare = {f.rsplit(" (", 1)[0]: t for t, forms in zip(self.titles, self.searched,
                                                           strict=True) for f in forms}
        found = difflib.get_close_matches(fold(text.strip()), list(bare), n=2 * n, cutoff=0.6)
        return list(dict.fromkeys(bare[m] for m in found))[:n]  # a title's two forms: once

    def columns(self) -> dict[str, list]:
        """CATALOGUE_COLUMNS as lists (tags and tag_counts per movie), for a rewrite."""
        rows = range(len(self.ids))
        return {"movieId": self.ids.tolist(), "title": self.titles, "year": self.years,
                "genres": self.genres, "tags": [self.terms.tags(r) for r in rows],
                "tag_counts": [self.terms.counts(r) for r in rows],
                "n_ratings": self.n_ratings}


# MovieLens writes a leading article at the end of the title: "Matrix, The (1999)".
ARTICLES = ("the", "a", "an", "la", "le", "les", "l'", "il", "el", "los", "las", "das", "der",
            "die", "den", "det")
_MOVED = re.compile(r"^(.*), (" + "|".join(map(re.escape, ARTICLES)) + r")( \(.*\))?$")


# Letters that are not a base letter with a mark, so NFKD leaves them: as a keyboard types them
_LETTERS = str.maketrans({"ø": "o", "æ": "ae", "œ": "oe", "ß": "ss", "ł": "l", "đ": "d",
                          "ð": "d", "þ": "th", "ı": "i"})


def fold(text: str) -> str:
    """Lower case without accents: what a title search compares.
    Example: "Søren's Café" -> "soren's cafe"
    """
    text = text.lower()
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text.translate(_LETTERS))
                   if not unicodedata.combining(c))


def title_forms(title: str) -> tuple[str, ...]:
    """A title as searches read it: folded, and with a trailing article put in front.

    Example: "Matrix, The (1999)" -> ("matrix, the (1999)", "the matrix (1999)")
    """
    folded = fold(title)
    m = _MOVED.match(folded) if ", " in folded else None  # (the test first: 2x faster)
    if not m:
        return (folded,)
    name, article, year = m.group(1), m.group(2), m.group(3) or ""
    return folded, f"{article}{'' if article.endswith(chr(39)) else ' '}{name}{year}"


def merge_columns(old: dict[str, list], new: dict[str, list]) -> dict[str, list]:
    """Catalogue columns with `new`'s movies added at the end, replacing any of the same id
    (a column `new` lacks is None for its movies)."""
    replaced = set(new["movieId"])
    keep = [i for i, m in enumerate(old["movieId"]) if m not in replaced]
    n = len(new["movieId"])
    return {c: [old[c][i] for i in keep] + list(new.get(c) or [None] * n)
            for c in CATALOGUE_COLUMNS}


def write_catalogue(path: Path, columns: dict[str, list]) -> None:
    """A catalogue file from CATALOGUE_COLUMNS as lists (tag_counts or n_ratings may be
    missing or hold None: no counts recorded (1 each), nobody rated the movie yet)."""
    n = len(columns["movieId"])
    counts = columns.get("tag_counts") or [None] * n
    counts = [c if c is not None else [1] * len(t)
              for t, c in zip(columns["tags"], counts, strict=True)]
    terms = MovieTerms.from_lists([list(t or []) for t in columns["tags"]],
                                  [list(c) for c in counts], columns["genres"])
    arrays = {"ids": np.asarray(columns["movieId"], np.int64),
              **pack_strings("title", columns["title"]),
              **pack_strings("genres", columns["genres"]),
              **_with_valid("year", columns["year"]),
              **_with_valid("n_ratings", columns.get("n_ratings") or [None] * n),
              **pack_strings("terms", terms.terms),
              **{f"terms.{a}": getattr(terms, a) for a in MovieTerms.ARRAYS},
              # counted once here, not per query (a np.unique over every term of every movie)
              **{COUNTED[g]: terms.movies_per_term(g) for g in (True, False)}}
    save_file(arrays, str(path), metadata={"format": "tagrec-catalogue"})


# ---------------------------------------------------------------- users


class UserTags:
    """Each user's document tags and side-feature columns, read per user on demand."""

    def __init__(self, workdir: Path):
        self.path = Path(workdir) / artifacts.EMBEDDINGS_DIR / artifacts.USER_TAGS_FILE
        try:
            self.file = safe_open(str(self.path), framework="numpy")
            self.users = self.file.get_tensor("users")
            self.indptr = self.file.get_slice("tags.indptr")
        except (OSError, ValueError, SafetensorError) as exc:
            raise damaged(self.path, exc) from None

    @cached_property
    def vocabulary(self) -> list[str]:
        f = self.file
        try:
            return unpack_strings({k: f.get_tensor(k) for k in
                                   ("terms.text", "terms.offsets", "terms.valid")}, "terms")
        except (ValueError, UnicodeDecodeError, SafetensorError) as exc:
            raise damaged(self.path, exc) from None

    def _row(self, user: int) -> int:
        i = int(np.searchsorted(self.users, user))
        return i if i < len(self.users) and self.users[i] == user else -1

    def tags(self, user: int) -> list[str]:
        """The tags of `user`'s document (empty when the user has none)."""
        i = self._row(user)
        if i < 0:
            return []
        lo, hi = (int(v) for v in self.indptr[i:i + 2])
        if hi <= lo:  # safetensors cannot slice [0:0] of an empty tensor (no user has tags)
            return []
        try:
            ids = self.file.get_slice("tags.ids")[lo:hi]
            if ids.dtype.kind not in "iu" or not (ids.min() >= 0 and ids.max() < len(
                    self.vocabulary)):  # (a negative id would pick a term from the end)
                raise ValueError("tag ids that name no term")
            return [self.vocabulary[t] for t in ids.tolist()]
        except (ValueError, SafetensorError) as exc:
            raise damaged(self.path, exc) from None

    def feature_rows(self, users: list[int | None]) -> dict[str, np.ndarray]:
        """features.RAW_COLUMNS of these users, as arrays; None (a tags query) or a user
        without history has none: 0 ratings and no last timestamp (NaN)."""
        out = {c: np.zeros(len(users)) for c in RAW_COLUMNS["user"]}
        out["last_timestamp"][:] = np.nan
        for i, user in enumerate(users):
            row = -1 if user is None else self._row(user)
            if row < 0:
                continue
            for c in RAW_COLUMNS["user"]:
                try:
                    out[c][i] = float(self.file.get_slice(f"feature.{c}")[row:row + 1][0])
                except (ValueError, SafetensorError) as exc:  # no such column
                    raise damaged(self.path, exc) from None
        return out


def write_users(path: Path, users: list[int], tags: list[list[str]],
                features: dict[str, list[float | None]]) -> None:
    """A user_tags file from users sorted by id, their document tags and RAW_COLUMNS."""
    vocabulary = sorted({t for ts in tags for t in ts})
    index = {t: i for i, t in enumerate(vocabulary)}
    indptr = np.zeros(len(users) + 1, np.int64)
    indptr[1:] = np.cumsum([len(t) for t in tags])
    arrays = {"users": np.asarray(users, np.int64), "tags.indptr": indptr,
              "tags.ids": np.array([index[t] for ts in tags for t in ts], np.int32),
              **pack_strings("terms", vocabulary),
              **{f"feature.{c}": np.array([np.nan if v is None else v for v in values],
                                          np.float64) for c, values in features.items()}}
    save_file(arrays, str(path), metadata={"format": "tagrec-user-tags"})


def write_lookups(workdir: Path, folder: Path) -> None:
    """What `recommend` needs besides the tables, from ingest/, so that it never reads ingest/.

    seen.safetensors: every user's rated movies and ratings (history and held out) as CSR;
    catalogue.safetensors: the movies' titles, genres and tags; user_tags.safetensors: the
    users' tags and the columns of their side features.
    """
    from tagrec_cli.store.ingested import read_table  # polars: not on the query path

    seen = read_table(workdir, artifacts.RATINGS_FILE, ["userId", "movieId", "rating"]).sort(
        "userId", "movieId")
    write_seen(folder, seen["userId"].to_numpy(), seen["movieId"].to_numpy(),
               seen["rating"].to_numpy())
    movies = read_table(workdir, artifacts.INGEST_TABLE["movie"])
    write_catalogue(Path(folder) / artifacts.CATALOGUE_FILE,
                    {c: movies[c].to_list() for c in CATALOGUE_COLUMNS if c in movies.columns})
    users = read_table(workdir, artifacts.INGEST_TABLE["user"]).sort("userId")
    write_users(Path(folder) / artifacts.USER_TAGS_FILE, users["userId"].to_list(),
                [list(t) for t in users["tags"].to_list()],
                {c: users[c].cast(float).to_list() for c in RAW_COLUMNS["user"]})
