"""Every movie's terms as ids into one sorted vocabulary, and a `--tags` query's document.

`tagrec embed` stores the catalogue's tags and genres in this form (store/catalogue.py), so a
query reads a few arrays instead of a table and needs no polars:

    terms        (V,) every tag and genre term, sorted (so ties broken "alphabetically" are
                 ties broken by id)
    tag_indptr   (N+1,) movie i's tags are tag_ids[tag_indptr[i]:tag_indptr[i+1]], most
    tag_ids      (nnz,) applied first, with tag_counts (nnz,) applications (people who put
    tag_counts   the tag on the movie)
    genre_indptr (N+1,), genre_ids: movie i's genre terms, in movies.csv's order

`tags_query_document` is ingest's user document (documents/frames.py user_document_tags)
for someone who gave the query's tags and liked every movie carrying one of them, computed
on these arrays; tests check that the two give the same document.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from tagrec_cli.config import IngestConfig
from tagrec_cli.documents import clean_tags, genre_terms


@dataclass
class MovieTerms:
    terms: list[str]  # (V,) sorted
    tag_indptr: np.ndarray  # (N+1,) int64
    tag_ids: np.ndarray  # (nnz,) int64
    tag_counts: np.ndarray  # (nnz,) int64
    genre_indptr: np.ndarray  # (N+1,) int64
    genre_ids: np.ndarray  # (nnz_g,) int64
    # term -> id of the terms looked up so far, found ones only (so at most V entries): the
    # reasons look up every recommended movie's terms, and a server does so on every request
    found: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    # (what, with_genres) -> distinct_pairs, or the index term_cosine reads: built on first
    # use, since a query reads them again and again and a 25M-sized catalogue has millions
    # of entries (serve builds them before its first request: ServeStore.warm)
    indexed: dict[tuple[str, bool], tuple[np.ndarray, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    ARRAYS = ("tag_indptr", "tag_ids", "tag_counts", "genre_indptr", "genre_ids")

    @classmethod
    def from_lists(cls, movie_tags: list[list[str]], tag_counts: list[list[int]] | None,
                   genres: list[str | None]) -> MovieTerms:
        """From each movie's tags (cleaned, most applied first), their applications (None:
        1 each) and its movies.csv genres string."""
        genre_lists = [genre_terms(g) for g in genres]
        terms = sorted({t for tags in movie_tags for t in tags}
                       | {g for gs in genre_lists for g in gs})
        index = {t: i for i, t in enumerate(terms)}

        def csr(lists: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
            indptr = np.zeros(len(lists) + 1, np.int64)
            indptr[1:] = np.cumsum([len(x) for x in lists])
            return indptr, np.array([index[t] for x in lists for t in x], np.int64)

        counts = tag_counts or [[1] * len(t) for t in movie_tags]
        return cls(terms, *csr(movie_tags), np.array([c for cs in counts for c in cs], np.int64),
                   *csr(genre_lists))

    def __len__(self) -> int:
        return len(self.tag_indptr) - 1

    def problem(self) -> str | None:
        """What makes these arrays no whole MovieTerms (read back from a file), or None:
        each indptr runs from 0 up to its entries' count, both over the same movies, and
        every entry names a term.

        Example: tag_indptr [0, 2] with one tag id -> "tag_indptr does not end at 1 entries"
        """
        if len(self.genre_indptr) != len(self.tag_indptr) or not len(self.tag_indptr):
            return "tag_indptr and genre_indptr cover different movies"
        for name, indptr, entries in (("tag", self.tag_indptr, self.tag_ids),
                                      ("genre", self.genre_indptr, self.genre_ids)):
            if indptr[0] != 0 or (np.diff(indptr) < 0).any():
                return f"{name}_indptr does not rise from 0"
            if indptr[-1] != len(entries):
                return f"{name}_indptr does not end at {len(entries)} entries"
            if len(entries) and not (entries.min() >= 0 and entries.max() < len(self.terms)):
                return f"{name}_ids name terms that are not there"
        if len(self.tag_counts) != len(self.tag_ids):
            return "tag_counts and tag_ids differ in length"
        return None

    def _decode(self, ids: np.ndarray) -> list[str]:
        at = ids.tolist()
        out = [self.terms[i] for i in at]
        # what is decoded is looked up next (the reasons count each term's movies): record the
        # ids now, so term_id need not bisect (which decodes ~log2(V) terms per lookup)
        self.found.update(zip(out, at, strict=True))
        return out

    def tags(self, row: int) -> list[str]:
        return self._decode(self.tag_ids[self.tag_indptr[row]:self.tag_indptr[row + 1]])

    def counts(self, row: int) -> list[int]:
        return self.tag_counts[self.tag_indptr[row]:self.tag_indptr[row + 1]].tolist()

    def genres(self, row: int) -> list[str]:
        return self._decode(self.genre_ids[self.genre_indptr[row]:self.genre_indptr[row + 1]])

    def document_terms(self, row: int, with_genres: bool) -> list[str]:
        """The terms movie `row`'s document carries: its tags, then (with genres) its genres."""
        return clean_tags(self.tags(row) + self.genres(row)) if with_genres else self.tags(row)

    def term_id(self, term: str) -> int:
        """The id of a cleaned term, or -1 when no movie carries it."""
        if term in self.found:
            return self.found[term]
        i = bisect.bisect_left(self.terms, term)  # each step decodes a term (store.Strings)
        if i < len(self.terms) and self.terms[i] == term:
            self.found[term] = i
            return i
        return -1

    @cached_property
    def tag_rows(self) -> np.ndarray:
        """(nnz,) the movie row of each entry of tag_ids."""
        return np.repeat(np.arange(len(self), dtype=np.int64), np.diff(self.tag_indptr))

    @cached_property
    def genre_rows(self) -> np.ndarray:
        """(nnz_g,) the movie row of each entry of genre_ids."""
        return np.repeat(np.arange(len(self), dtype=np.int64), np.diff(self.genre_indptr))

    def distinct_terms(self, rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """The term ids of (movie row, term id) entries, each pair once: a term counts once
        per movie."""
        return _distinct(rows, ids, len(self.terms))[1]

    def distinct_pairs(self, with_genres: bool) -> tuple[np.ndarray, np.ndarray]:
        """(movie rows, term ids) of every term a movie's document carries, each pair once
        (a genre may also be a tag), sorted by movie row (kept: computed once)."""
        key = ("pairs", with_genres)
        if key not in self.indexed:
            rows, ids = self.tag_rows, self.tag_ids
            if with_genres:
                rows = np.concatenate([rows, self.genre_rows])
                ids = np.concatenate([ids, self.genre_ids])
            self.indexed[key] = _distinct(rows, ids, len(self.terms))
        rows, ids = self.indexed[key]
        return rows, ids

    def index(self, with_genres: bool) -> tuple[np.ndarray, ...]:
        """What term_cosine reads, built once: (carriers (nnz,) movie rows sorted by term,
        starts (V+1,) term t's carriers are carriers[starts[t]:starts[t+1]], ids (nnz,)
        the pairs' terms, movie_at (N+1,) movie m's are ids[movie_at[m]:movie_at[m+1]],
        idf2 (V,) squared idf, norms (N,) each movie's TF-IDF norm)."""
        key = ("cosine", with_genres)
        if key not in self.indexed:
            rows, ids = self.distinct_pairs(with_genres)
            n = len(self)
            idf2 = (np.log((1 + n) / (1 + np.bincount(ids, minlength=len(self.terms)))) + 1) ** 2
            norms = np.sqrt(np.bincount(rows, weights=idf2[ids], minlength=n))
            by_term = np.argsort(ids, kind="stable")
            starts = np.searchsorted(ids[by_term], np.arange(len(self.terms) + 1))
            movie_at = np.searchsorted(rows, np.arange(n + 1))  # rows are sorted
            self.indexed[key] = (rows[by_term], starts, ids, movie_at, idf2, norms)
        return self.indexed[key]

    def term_cosine(self, row: int, with_genres: bool) -> np.ndarray:
        """(N,) float32: the cosine of movie `row`'s binary TF-IDF term vector with every
        movie's (sklearn's TfidfVectorizer(binary=True): idf = ln((1 + N) / (1 + df)) + 1,
        rows L2-normalised); 0 for a movie without terms.

        Example: A (heist, noir), B (heist), C (drama): A's -> [1, 0.60, 0] (idf heist 1.29,
                 noir 1.69: 1.29^2 / (1.29 x 2.13))
        """
        carriers, starts, ids, movie_at, idf2, norms = self.index(with_genres)
        dots = np.zeros(len(self))
        for term in ids[movie_at[row]:movie_at[row + 1]].tolist():  # its distinct terms
            dots[carriers[starts[term]:starts[term + 1]]] += idf2[term]  # each movie once
        denominator = norms * norms[row]
        out = np.divide(dots, denominator, out=np.zeros(len(self)), where=denominator > 0)
        return out.astype(np.float32)

    def movies_per_term(self, with_genres: bool) -> np.ndarray:
        """(V,) how many movies carry each term (low = distinctive)."""
        return np.bincount(self.distinct_pairs(with_genres)[1], minlength=len(self.terms))


def _distinct(rows: np.ndarray, ids: np.ndarray, n_terms: int) -> tuple[np.ndarray, np.ndarray]:
    """(movie rows, term ids) entries -> each pair once, sorted by row then term. np.unique,
    written out: numpy's would import numpy.ma (17 ms of a query) to ask whether the keys
    are a masked array."""
    width = max(n_terms, 1)
    keys = np.sort(rows * width + ids)
    first = np.ones(len(keys), bool)
    first[1:] = keys[1:] != keys[:-1]
    return keys[first] // width, keys[first] % width


def _top(ids: np.ndarray, n: int, *tie_breaks: np.ndarray) -> list[int]:
    """The n ids occurring most often in `ids`; ties by each of tie_breaks (ascending, per
    term id), then by id."""
    if n <= 0 or len(ids) == 0:
        return []
    found, counts = np.unique(ids, return_counts=True)
    order = np.lexsort((found, *[t[found] for t in reversed(tie_breaks)], -counts))
    return found[order[:n]].tolist()


def user_document(own: list[str], liked: np.ndarray, movies: MovieTerms,
                  cfg: IngestConfig) -> list[str]:
    """The user document ingest writes (frames.user_document_tags) for a user with these own
    tags (in order) who liked the movies of `liked` ((N,) bool over movie rows):
    [liked genres,] own tags, the tags on most liked movies; each part ranked within
    itself, a term never repeated, at most cfg.max_tags terms.

    Ties among the liked movies' tags go to the tag with more applications over the whole
    catalogue, then alphabetically; among genres, alphabetically; as in ingest.
    """
    parts: list[list[str]] = []
    if cfg.with_genres and cfg.user_genres:
        parts.append([movies.terms[i] for i in _top(
            movies.genre_ids[liked[movies.genre_rows]], cfg.user_genres)])
    parts.append(clean_tags(own))
    # Each liked movie counts once per tag; the tie-break order is most applications first.
    applications = np.bincount(movies.tag_ids, weights=movies.tag_counts,
                               minlength=len(movies.terms))
    on_liked = liked[movies.tag_rows]
    per_movie = movies.distinct_terms(movies.tag_rows[on_liked], movies.tag_ids[on_liked])
    parts.append([movies.terms[i] for i in _top(per_movie, cfg.top_user_tags, -applications)])
    return clean_tags([t for part in parts for t in part])[:cfg.max_tags]


def tags_query_document(tags: list[str], movies: MovieTerms, cfg: IngestConfig) -> list[str]:
    """The user document ingest would write (user_document) for someone who gave `tags`
    (their own tags, in the order given) and liked every movie whose document carries one
    of them (as a tag, or as a genre when documents have genres).

    Example: ["pixar"], movies A (pixar, funny; Animation) and B (gritty; Drama)
             -> [animation, pixar, funny] with 5 user genres
    """
    wanted = clean_tags(tags)
    liked = carried_share(wanted, movies, cfg.with_genres) > 0
    return user_document(wanted, liked, movies, cfg)


def carried_share(wanted: list[str], movies: MovieTerms, with_genres: bool) -> np.ndarray:
    """(N,) float32: the share of the cleaned terms `wanted` that each movie's document
    carries (a tag, or a genre when documents have genres); 0 for none. A term no movie
    carries (a typo, a tag nobody wrote) is left out of the share: it says nothing about
    which movie matches (QUALITY.md, "A tag no movie carries").

    Example: wanted [heist, noir, zzz], movies A (heist; Crime) and B (noir, heist)
             -> [0.5, 1.0]
    """
    asked = np.zeros(max(len(movies.terms), 1), bool)
    asked[[i for i in (movies.term_id(t) for t in wanted) if i >= 0]] = True
    rows, ids = movies.distinct_pairs(with_genres)
    hit = asked[ids]  # (nnz,) entries that are an asked term
    carried = np.zeros(len(asked), bool)  # the asked terms some document carries: a genre is
    carried[ids[hit]] = True  # a term of the vocabulary even where documents have no genres
    counts = np.bincount(rows[hit], minlength=len(movies))
    return (counts / max(int(carried.sum()), 1)).astype(np.float32)
