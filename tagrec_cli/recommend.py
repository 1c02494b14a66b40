"""`tagrec recommend` and `tagrec similar`: top-k movies from the embedding tables.

Rows of both tables are L2-normalised, so cosine similarity is a dot product; a user's
score adds the popularity prior (prior.py); a tags query's adds its tag match instead
(tag_match), and `similar` on a rated movie the term cosine of the two movies
(SIMILAR_TERMS). The one top-k
rule (topk.py) filters inside the selection: a query always gets the best k movies that
remain. `--unrated` ranks only the movies nobody rated, by the user's content profile
(unrated.py) instead.

A query is a known user's row of the user table, or a user document written from tags
(`--tags`) or from a new user's ratings (`--ratings`) by the document grammar ingest uses,
encoded by the user tower in numpy (towers/npbert.py) so that no torch is imported. It
reads only what `tagrec embed` wrote (through one Store), so it needs neither the ingest
output nor a GPU.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from tagrec_cli import documents, prior, unrated
from tagrec_cli.config import SIMILAR_TERMS, TAG_MATCH, TOP_K
from tagrec_cli.datasets.user_ratings import UserRatings
from tagrec_cli.documents.terms import carried_share, tags_query_document, user_document
from tagrec_cli.errors import QUOTE_LIMIT, QueryError, TagrecError
from tagrec_cli.features import rated_user_raw
from tagrec_cli.store import Store
from tagrec_cli.store.embeddings import NOT_NUMBERS, damaged, table_path
from tagrec_cli.topk import check_k, top_k
from tagrec_cli.towers.query import encode_user_documents

REASON_TAGS = 3  # shared tags shown per recommendation
INT64 = (-(2**63), 2**63 - 1)


def one_blas_thread():
    """numpy's BLAS on one thread (until the returned limits are restored, or for good if
    they are not). A query's products are small (one row against the movie table, a short
    document through the tower), so BLAS's own threads cost more than they give, and on a
    busy machine far more: `recommend --tags` took 2.9 s with OpenBLAS's threads and 0.6 s
    with one (2 loaded cores, whole process)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


class NotFinite(ValueError):
    """Scores that are not numbers: a row of the items (or a query) holds NaN or inf."""


def nearest(queries: np.ndarray, items: np.ndarray, k: int,
            exclude: list[np.ndarray] | None = None, weights: np.ndarray | None = None,
            item_prior: np.ndarray | None = None, boosts: list[np.ndarray | None] | None = None,
            ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Best k item rows per query by dot product (+ weights[q] x item_prior, prior.py;
    + boosts[q]), excluded rows left out.

    queries (Q, d), items (N, d); exclude[q] = item rows never returned for query q;
    weights (Q,) and item_prior (N,), or None for the dot product alone; boosts[q] (N,)
    added to query q's scores (None: nothing).
    Returns (rows, scores): Q arrays each of length min(k, N - len(excluded)), best first.
    A NaN or inf in a query or an item is NotFinite (a damaged table would otherwise lose
    its rows from every answer without a word).

    Example: queries [[1, 0]], items [[0, 1], [1, 0], [0.6, 0.8]], k 2 -> rows [[1, 2]]
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    queries = np.asarray(queries, dtype=np.float32)
    items = np.ascontiguousarray(items, dtype=np.float32)
    # One matrix-vector product per query: a batched matrix product may round the last bit
    # differently from a single query's, which could reorder near-ties.
    scores = (np.stack([items @ q for q in queries]) if len(queries)
              else np.zeros((0, len(items)), np.float32))  # (Q, N)
    if not np.isfinite(scores).all():  # free beside the products; top_k would drop NaN
        raise NotFinite("scores that are not numbers")
    for row, boost in zip(scores, boosts or [None] * len(scores), strict=True):
        if boost is not None:
            row += boost  # (scores is this call's own array)
    # A k beyond the table is every movie: top_k pads its (Q, k) answer, and a typo's
    # -k 10^11 must not ask for that much memory.
    k = min(k, max(len(items), 1))
    cols, values = top_k(prior.scores(scores, weights, item_prior), k, exclude)
    keep = [c >= 0 for c in cols]
    return ([c[m] for c, m in zip(cols, keep, strict=True)],
            [v[m].astype(np.float32) for v, m in zip(values, keep, strict=True)])


@dataclass
class Query:
    """What to rank the movie table against: a known user, tags, both, or new ratings."""

    user: int | None  # None for a query without a known user
    tags: list[str]  # the query document's tags, for the reasons
    vector: np.ndarray  # (dim,) unit
    exclude: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # movie rows
    history: tuple[np.ndarray, np.ndarray] | None = None  # (movie ids, ratings) of a new
    # user, for the reasons (a known user's come from the seen index)
    source: str = "tags"  # what a query without a known user was made from
    ratings: int = 0  # how many ratings the user is known by: the prior's weight (prior.py)
    asked: bool = False  # tags were given: the query is them, not the user's history
    boost: np.ndarray | None = None  # (N,) added to its scores over the movie table: the
    # asked tags' match (tag_match), or `similar`'s term cosine

    @property
    def label(self) -> str:
        return f"your {self.source}" if self.user is None else f"user {self.user}"


@dataclass
class Recommendation:
    query: Query
    movie_ids: np.ndarray  # (n,) best first
    scores: np.ndarray  # (n,) cosine similarity (+ the popularity prior for a user, prior.py;
    # + the tag match for a tags query, tag_match; + the term cosine for `similar`);
    # with --unrated, the dot product with the content profile (unrated.py), a mean of unit
    # vectors: on the cosine's scale, but lower

    @property
    def user(self) -> int | None:
        return self.query.user


def tags_document(store: Store, tags: list[str]) -> list[str]:
    """The user document ingest would write for someone who gave `tags` (documents.py)."""
    return tags_query_document(tags, store.catalogue.terms, store.ingest)


def tag_match(store: Store, tags: list[str]) -> np.ndarray:
    """(N,) float32 over the movie table's rows: TAG_MATCH x the share of `tags` each movie's
    document carries (of those some document carries: carried_share), added to a tags
    query's cosine. The tower reads the tags' expanded
    document, so the most rated movies came near any query: with this term the movies
    carrying what was asked come first (QUALITY.md, "Tags that name what is asked": on the
    sample world's test themes NDCG@10 0.71 against the cosine's 0.57).

    Example: tags [heist, noir], movies A (heist), B (noir, heist), C (drama) -> [0.25, 0.5, 0]
    """
    return TAG_MATCH * tag_share(store, tags)


def tag_share(store: Store, tags: list[str]) -> np.ndarray:
    """(N,) float32 over the movie table's rows: documents.terms.carried_share of `tags`."""
    catalogue = store.catalogue
    return store.per_table_row(carried_share(documents.clean_tags(tags), catalogue.terms,
                                             catalogue.with_genres))


def term_similarity(store: Store, row: int) -> np.ndarray:
    """(N,) float32 over the movie table's rows: the TF-IDF term cosine of the movie at table
    `row` with every movie (MovieTerms.term_cosine); 0 for a movie the catalogue lacks."""
    catalogue = store.catalogue
    at = int(store.catalogue_rows[row])
    if at < 0:
        return np.zeros(len(store.catalogue_rows), np.float32)
    return store.per_table_row(catalogue.terms.term_cosine(at, catalogue.with_genres))


def build_queries(store: Store, users: list[int], tags: list[str] | None = None,
                  include_seen: bool = False) -> list[Query]:
    """One query per user, or, with `tags`, one of the tags per user (their own movies left
    out), or one from tags alone."""
    movie_table = store.table("movie")
    for user in users:  # MovieLens ids are int64; a larger number names no user
        if not INT64[0] <= user <= INT64[1]:
            raise QueryError(f"unknown user {str(user)[:QUOTE_LIMIT]}: user ids are "
                             "64-bit integers", "user", unknown=True)
    ids = np.asarray(users, dtype=np.int64)
    user_vectors = store.rows("user", ids)
    if tags is not None and not tags:
        raise QueryError('tags holds no tag (separate them with commas, e.g. "heist, '
                         'twist ending")', "tags", names=("tags",))
    if include_seen and not users:  # it would do nothing, silently
        raise QueryError("include_seen needs a user: a taste given as tags alone has rated "
                         "no movie", "include_seen", names=("include_seen",))
    if tags:
        # The document of someone who liked the movies carrying the tags. With a user too,
        # the tags choose and the user's own movies are left out: their document or vector
        # beside the tags drowned them (QUALITY.md, "A user steered by tags": NDCG@10 on
        # the user's loved movies carrying the tag, 0.23 against 0.11 on test).
        document = tags_document(store, tags)
        vector = encode_user_documents(store, [documents.document_text(document)], [None])
        vectors = np.repeat(vector, max(len(ids), 1), axis=0)
        doc_tags = [documents.query_tags(tags, [], store.ingest.max_tags)] * len(vectors)
        boost = tag_match(store, tags)  # one array, shared by every user's query
    else:  # (user_vectors also checked that every user is known, with tags too)
        vectors, doc_tags = user_vectors, [store.user_tags(int(u)) for u in ids]
        boost = None
    queries = []
    for i, vector in enumerate(vectors):
        user = int(ids[i]) if len(ids) else None
        exclude = np.zeros(0, np.int64)
        seen = store.seen.of(user)[0] if user is not None else np.zeros(0, np.int64)
        if not include_seen:
            seen_rows = movie_table.rows_of(seen)
            exclude = seen_rows[seen_rows >= 0]
        # a tags query has no popularity prior (ratings 0), as for tags alone
        queries.append(Query(user, doc_tags[i], vector, exclude,
                             ratings=0 if tags else len(seen), asked=bool(tags),
                             boost=boost))
    return queries


def ratings_query(store: Store, ratings: UserRatings, include_seen: bool = False,
                  ) -> tuple[Query, list[int]]:
    """The query of a new user known by these ratings, built as ingest would build their
    document and side features, and the rated movie ids the catalogue does not know
    (left out). The rated movies are excluded from the answer unless include_seen."""
    catalogue, cfg = store.catalogue, store.ingest
    rows = catalogue.rows(ratings.movie_ids)
    known = rows >= 0
    unknown = ratings.movie_ids[~known].tolist()
    if not known.any():
        raise TagrecError(f"none of the {len(unknown)} rated movies is in the catalogue "
                          f"(e.g. movie {unknown[0]})")
    rated, stars, stamps = (ratings.movie_ids[known], ratings.ratings[known],
                            ratings.timestamps[known])
    liked = np.zeros(len(catalogue.ids), bool)
    liked[rows[known][stars >= cfg.liked_rating]] = True
    document = user_document([], liked, catalogue.terms, cfg)
    raw = rated_user_raw(stars, stamps, cfg.like_threshold)  # as ingest computes them
    vector = encode_user_documents(store, [documents.document_text(document)], [None], raw,
                                   [rated[stars >= cfg.like_threshold]])[0]
    seen_rows = store.table("movie").rows_of(rated)
    exclude = seen_rows[seen_rows >= 0] if not include_seen else np.zeros(0, np.int64)
    return Query(None, document, vector, exclude, (rated, stars), "ratings",
                 ratings=len(rated)), unknown


@contextmanager
def finite_movies(store: Store) -> Iterator[None]:
    """NotFinite inside -> the movie table's one-line error. Every query vector is checked
    where it is made (the user table's rows, the tower's output), so what is left is a
    row of the movie table (`similar`'s query is one too)."""
    try:
        yield
    except NotFinite:
        raise damaged(table_path(store.workdir, "movie"), NOT_NUMBERS) from None


def rank(store: Store, queries: list[Query], k: int) -> list[Recommendation]:
    """Top-k movies per query; a batch gives the same lists as one query at a time."""
    check_k(k)
    movies = store.table("movie")
    weights = store.prior_weights(np.array([q.ratings for q in queries]))
    with finite_movies(store):
        top_rows, top_scores = nearest(np.stack([q.vector for q in queries]), movies.vectors,
                                       k, [q.exclude for q in queries], weights,
                                       store.movie_prior if weights.any() else None,
                                       [q.boost for q in queries])
    return [Recommendation(q, movies.ids[r], s)
            for q, r, s in zip(queries, top_rows, top_scores, strict=True)]


def rated_history(store: Store, query: Query) -> tuple[np.ndarray, np.ndarray]:
    """(movie ids, ratings) the query knows its user by: a new user's ratings, a known user's
    from the seen index; none for a query of tags (the tags are what was asked for)."""
    if query.asked or (query.user is None and query.history is None):
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    return query.history if query.history is not None else store.seen.of(query.user)


def rank_unrated(store: Store, queries: list[Query], k: int) -> list[Recommendation]:
    """Top-k of the movies nobody has rated (Store.unrated_rows), per query, by the content
    profile (unrated.py); a batch gives the same lists as one query at a time."""
    check_k(k)
    movies = store.table("movie")
    candidates = store.unrated_rows  # (C,) ascending
    if not len(candidates):
        raise QueryError("every movie in the table has ratings: unrated ranks the movies "
                         "nobody rated, such as those added with `tagrec embed --add-movies "
                         "FILE`", "unrated", unknown=True, names=("unrated",))
    histories = []
    for q in queries:
        ids, stars = rated_history(store, q)
        histories.append((movies.rows_of(ids), stars))
    profiles = unrated.profiles(np.stack([q.vector for q in queries]),
                                *unrated.history_arrays(histories), movies.vectors)  # (Q, d)
    exclude = []  # positions in candidates of each query's excluded rows
    for q in queries:
        at = np.searchsorted(candidates, q.exclude).clip(max=len(candidates) - 1)
        exclude.append(at[candidates[at] == q.exclude])
    # a tags query's profile is its vector: its tag match too, as in the full ranking
    boosts = [None if q.boost is None else q.boost[candidates] for q in queries]
    with finite_movies(store):
        top, scores = nearest(profiles, movies.vectors[candidates], k, exclude, boosts=boosts)
    return [Recommendation(q, movies.ids[candidates[r]], s)
            for q, r, s in zip(queries, top, scores, strict=True)]


def recommend_for_users(store: Store, users: list[int], k: int = TOP_K,
                        include_seen: bool = False) -> list[Recommendation]:
    """Top-k movies for each known user, from the user table."""
    return rank(store, build_queries(store, users, None, include_seen), k)


def similar_movies(store: Store, movie_id: int, k: int = TOP_K) -> Recommendation:
    """The k movies nearest to `movie_id` in the movie table, the movie itself left out (and,
    for a movie nobody rated, every other such movie: unrated.similar_exclude); for a rated
    movie, nearest by the cosine + SIMILAR_TERMS x the term cosine of the two documents."""
    movies = store.table("movie")
    row = (int(movies.rows_of(np.array([movie_id]))[0])
           if INT64[0] <= movie_id <= INT64[1] else -1)
    if row < 0:
        # (each front end adds how to look a movie up by its title)
        raise QueryError(f"unknown movie {str(movie_id)[:QUOTE_LIMIT]}: not in the movie "
                         f"table (ids {int(movies.ids.min())}–{int(movies.ids.max())})",
                         "movie", unknown=True)
    catalogue = store.catalogue
    at = int(catalogue.rows(np.array([movie_id]))[0])
    boost = None
    if at >= 0 and not unrated.is_unrated(row, store.unrated_rows):  # + the term cosine
        boost = SIMILAR_TERMS * term_similarity(store, row)
    query = Query(None, catalogue.document_terms(at) if at >= 0 else [], movies.vectors[row],
                  unrated.similar_exclude(row, store.unrated_rows, len(movies.ids)),
                  boost=boost)
    return rank(store, [query], k)[0]


def shared_tags(query: list[str], movie: list[str], counts: Mapping[str, int],
                n: int = REASON_TAGS) -> list[str]:
    """Tags in both documents, rarest across movies first (ties alphabetical), at most n.
    counts: term -> how many movies' documents carry it.

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


def reasons(store: Store, recs: list[Recommendation]) -> list[list[dict]]:
    """Per recommendation row: {"tags": shared tags (rarest first), "like": history movie}.

    "like" is the movie the user liked (rated >= liked_rating) closest to the recommended
    one in the movie table; None for tags-only queries and for a user who liked nothing (a
    movie they disliked is no reason). No encoder pass: documents and tables only.
    """
    catalogue = store.catalogue
    movies = store.table("movie")
    liked = store.ingest.liked_rating
    out = []
    for rec in recs:
        terms = [catalogue.document_terms(r) if r >= 0 else []
                 for r in catalogue.rows(rec.movie_ids)]
        counts = catalogue.term_counts({t for ts in terms for t in ts})
        shared = [shared_tags(rec.query.tags, ts, counts) for ts in terms]
        like = np.full(len(rec.movie_ids), -1)
        seen = (rec.query.history if rec.query.history is not None else
                store.seen.of(rec.user) if rec.user is not None else None)
        if seen is not None:
            history, ratings = seen
            history = history[ratings >= liked]  # none liked: no "like" (closest_history: -1)
            h_rows = movies.rows_of(history)
            history, h_rows = history[h_rows >= 0], h_rows[h_rows >= 0]
            like = closest_history(movies.vectors[h_rows], history,
                                   movies.vectors[movies.rows_of(rec.movie_ids)], rec.movie_ids)
        titles = catalogue.labels(like)
        out.append([{"tags": tags, "like": None if m < 0 else {"movieId": m, "title": title}}
                    for tags, m, title in zip(shared, like.tolist(), titles, strict=True)])
    return out


def results(store: Store, recs: list[Recommendation], key: str) -> list[dict]:
    """Recommendations with titles and reasons, as `--json` gives them: per query
    {key: the user id (key "user") or the query's label (key "query"), "recommendations":
    [{rank, movieId, title, year, genres, score, because}, ...]}."""
    catalogue = store.catalogue
    why = reasons(store, recs)
    out = []
    for rec, rec_reasons in zip(recs, why, strict=True):
        rows = [{"rank": i + 1, **meta, "score": round(float(score), 6), "because": because}
                for i, (meta, score, because) in enumerate(
                    zip(catalogue.info(rec.movie_ids), rec.scores, rec_reasons, strict=True))]
        out.append({key: rec.query.label if key == "query" else rec.user,
                    "recommendations": rows})
    return out
