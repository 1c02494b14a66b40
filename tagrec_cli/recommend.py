"""`tagrec recommend` and `tagrec similar`: top-k movies from the embedding tables.

Rows of both tables are L2-normalised, so cosine similarity is a dot product. Filtering
happens inside top-k: excluded movies get -inf before selection, and k is capped at what is
left, so a query always gets the best k movies that remain.

A query is a known user's row of the user table, or a user document written from tags
(`--tags`), encoded by the user tower in numpy (npbert.py) so that no torch is imported. It
reads only what `tagrec embed` wrote, so it needs neither the ingest output nor a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file

from tagrec_cli import artifacts
from tagrec_cli.errors import ArtifactError, TagrecError

if TYPE_CHECKING:
    from tagrec_cli.catalogue import Catalogue

TABLE_FILE = {"user": "users.safetensors", "movie": "movies.safetensors"}
SEEN_FILE = "seen.safetensors"  # every user's rated movies (history and held out), as CSR


def rows_of(table_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Positions of `ids` in the (unsorted) id array `table_ids`; -1 where an id is absent.

    Example: table_ids [5, 1, 9], ids [9, 4] -> [2, -1]
    """
    ids = np.asarray(ids)
    if len(table_ids) == 0:
        return np.full(ids.shape, -1, dtype=np.int64)
    order = np.argsort(table_ids, kind="stable")
    pos = np.minimum(np.searchsorted(table_ids, ids, sorter=order), len(order) - 1)
    rows = order[pos]
    return np.where(table_ids[rows] == ids, rows, -1)


def embeddings_manifest(workdir: Path) -> dict:
    """The checked manifest of embeddings/ (older formats lack what recommend reads)."""
    return artifacts.read_manifest(workdir, artifacts.EMBEDDINGS_DIR,
                                   artifacts.EMBEDDINGS_FORMAT, min_version=2)


@dataclass
class EmbeddingTable:
    ids: np.ndarray  # (N,) int64 MovieLens ids
    vectors: np.ndarray  # (N, dim) float32, unit rows

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """ids -> row numbers; -1 where an id is not in the table."""
        return rows_of(self.ids, ids)


def damaged(path: Path, exc: Exception) -> ArtifactError:
    """The error for an unreadable file that `tagrec embed` wrote."""
    return ArtifactError(f"{path} is missing or damaged ({exc.__class__.__name__}) — "
                         "re-run `tagrec embed`")


_TABLES: dict[Path, tuple[tuple[int, int], EmbeddingTable]] = {}  # path -> (stat, table)


def load_table(workdir: Path, side: str) -> EmbeddingTable:
    """Read embeddings/{users,movies}.safetensors, checked against the manifest.

    Kept in memory for the process while the file is unchanged (files are only ever
    replaced by rename, which changes their stat), so one command reads each table once.
    """
    embeddings_manifest(workdir)
    path = (Path(workdir) / artifacts.EMBEDDINGS_DIR / TABLE_FILE[side]).resolve()
    try:
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_ino)
        if path in _TABLES and _TABLES[path][0] == stamp:
            return _TABLES[path][1]
        arrays = load_file(str(path))
        ids, vectors = arrays["ids"], arrays["embeddings"]
    except (OSError, KeyError, ValueError, SafetensorError) as exc:
        raise damaged(path, exc) from None
    table = EmbeddingTable(ids.astype(np.int64), vectors.astype(np.float32, copy=False))
    _TABLES[path] = (stamp, table)
    return table


def load_rows(workdir: Path, side: str, ids: np.ndarray) -> np.ndarray:
    """Vectors of `ids` (n, dim), read without the rest of the table.

    A MovieLens-25M user table is 330 MB; a query needs one row of it. An id not in the
    table is a TagrecError naming the table's id range.
    """
    embeddings_manifest(workdir)
    path = Path(workdir) / artifacts.EMBEDDINGS_DIR / TABLE_FILE[side]
    try:
        f = safe_open(str(path), framework="numpy")
        table_ids = f.get_tensor("ids").astype(np.int64)
        column = f.get_slice("embeddings")
    except (OSError, ValueError, SafetensorError) as exc:
        raise damaged(path, exc) from None
    rows = rows_of(table_ids, ids)
    if (rows < 0).any():
        unknown = int(np.asarray(ids)[rows < 0][0])
        raise TagrecError(f"unknown {side} {unknown}: no {side} document in the workspace "
                          f"({side}s {int(table_ids.min())}–{int(table_ids.max())})")
    if len(rows) == 0:
        return np.zeros((0, column.get_shape()[1]), np.float32)
    return np.concatenate([column[r:r + 1] for r in rows]).astype(np.float32)


def top_k(queries: np.ndarray, items: np.ndarray, k: int,
          exclude: list[np.ndarray] | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Best k item rows per query by dot product, excluded rows left out.

    queries (Q, d), items (N, d); exclude[q] = item rows never returned for query q.
    Returns (rows, scores): Q arrays each of length min(k, N - len(excluded)), best first.
    Ties go to the lower row, so results are deterministic.

    Example: queries [[1, 0]], items [[0, 1], [1, 0], [0.6, 0.8]], k 2 -> rows [[1, 2]]
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    queries = np.asarray(queries, dtype=np.float32)
    items = np.ascontiguousarray(items, dtype=np.float32)
    rows_out, scores_out = [], []
    for q in range(len(queries)):
        # One matrix-vector product per query: a batched matrix product may round the last
        # bit differently from a single query's, which could reorder near-ties.
        s = items @ queries[q]  # (N,)
        if exclude is not None and len(exclude[q]):
            s[exclude[q]] = -np.inf
        available = int(np.isfinite(s).sum())
        n = min(k, available)
        if n == 0:
            rows_out.append(np.zeros(0, dtype=np.int64))
            scores_out.append(np.zeros(0, dtype=np.float32))
            continue
        part = np.argpartition(-s, n - 1)[:n] if n < len(s) else np.arange(len(s))
        # Sort the candidates by score desc, then row asc. Candidates tied with the k-th
        # best outside `part` would be arbitrary, so widen to all rows with that score.
        kth = s[part].min()
        cand = np.flatnonzero(s >= kth)
        order = np.lexsort((cand, -s[cand]))[:n]
        rows_out.append(cand[order].astype(np.int64))
        scores_out.append(s[cand[order]])
    return rows_out, scores_out


class Seen:
    """Every user's rated movies and ratings (history and held out), read per user on demand.

    The file holds CSR arrays: users (U,) sorted ids, indptr (U+1,), and movies and ratings,
    where user i's are at [indptr[i]:indptr[i+1]]. At MovieLens-25M size that is 300 MB, of
    which a query needs a few hundred entries, so only those are read.
    """

    def __init__(self, path: Path):
        self.path = path
        try:
            self.file = safe_open(str(path), framework="numpy")
            self.users = self.file.get_tensor("users")
            self.indptr = self.file.get_tensor("indptr")
            self.file.get_slice("ratings")  # a format-1 file lacks ratings
        except (OSError, ValueError, SafetensorError) as exc:
            raise damaged(path, exc) from None

    def of(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """(movie ids, ratings) that `user` rated; empty arrays for a user with none."""
        i = int(np.searchsorted(self.users, user))
        if i == len(self.users) or self.users[i] != user:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        lo, hi = int(self.indptr[i]), int(self.indptr[i + 1])
        return (self.file.get_slice("movies")[lo:hi].astype(np.int64),
                self.file.get_slice("ratings")[lo:hi].astype(np.float32))


def load_seen(workdir: Path) -> Seen:
    return Seen(Path(workdir) / artifacts.EMBEDDINGS_DIR / SEEN_FILE)


def encode_user_documents(workdir: Path, documents: list[str],
                          users: list[int | None] | None = None) -> np.ndarray:
    """User documents -> (N, dim) unit rows, with the model that made the tables.

    users: whose history gives each document's side features (None: a tags query, no
    history), for a model with side features.
    """
    from tagrec_cli.catalogue import user_feature_rows
    from tagrec_cli.features import RAW_COLUMNS, user_features
    from tagrec_cli.npbert import load_tower

    model_dir = table_model_dir(workdir)
    stats = artifacts.read_model_config(model_dir)["model"].get("features")
    extra = None
    if stats is not None:
        raw = user_feature_rows(workdir, users or [None] * len(documents))
        extra = user_features(*(raw[c] for c in RAW_COLUMNS["user"]), stats)  # (N, F)
    tower = load_tower(model_dir, "user")
    if tower is not None:
        return tower.encode(documents, extra)
    # Not plain BERT: the same tower through torch (slower to start).
    import torch

    from tagrec_cli.embed import encode_documents
    from tagrec_cli.model import load_model

    model, tokenizer, _ = load_model(model_dir, "cpu")
    return encode_documents(model, tokenizer, documents, torch.device("cpu"), "user",
                            features=extra)


def table_model_dir(workdir: Path) -> Path:
    """The model folder the embedding tables were made with, checked to be that model still."""
    manifest = embeddings_manifest(workdir)
    model_dir = Path(manifest["model_dir"])
    try:
        digest = artifacts.file_digest(model_dir / "config.json")
    except OSError:
        raise ArtifactError(f"the model the tables were made with ({model_dir}) is gone — "
                            "re-run `tagrec train` and `tagrec embed`") from None
    if digest != manifest["model_config_hash"]:
        raise ArtifactError(f"the model in {model_dir} changed after the tables were made — "
                            "re-run `tagrec embed`")
    return model_dir


@dataclass
class Query:
    """What to rank the movie table against: a known user, tags, or both."""

    user: int | None  # None for a tags-only query
    tags: list[str]  # the query document's tags, for the reasons
    vector: np.ndarray  # (dim,) unit
    exclude: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # movie rows

    @property
    def label(self) -> str:
        return "your tags" if self.user is None else f"user {self.user}"


@dataclass
class Recommendation:
    query: Query
    movie_ids: np.ndarray  # (n,) best first
    scores: np.ndarray  # (n,) cosine similarity

    @property
    def user(self) -> int | None:
        return self.query.user


def build_queries(workdir: Path, users: list[int], tags: list[str] | None = None,
                  include_seen: bool = False, catalogue: Catalogue | None = None,
                  ) -> list[Query]:
    """One query per user (with `tags` added to the user's document), or one from tags alone.

    catalogue: the workspace's, if already loaded (a tags-only query reads it).
    """
    from tagrec_cli.catalogue import (
        Catalogue,
        document_text,
        normalize_tags,
        query_tags,
        tags_query_document,
        user_tags,
    )

    movie_table = load_table(workdir, "movie")
    ids = np.asarray(users, dtype=np.int64)
    user_vectors = load_rows(workdir, "user", ids)
    if tags is not None and not tags:
        raise TagrecError("--tags holds no tag (give comma-separated tags, e.g. "
                          "--tags \"heist, twist ending\")")
    settings = embeddings_manifest(workdir)["ingest_settings"]
    max_tags = int(settings["max_tags"])
    doc_tags = [user_tags(workdir, int(u)) for u in ids] if len(ids) else [[]]
    if tags and len(ids):  # a user's own document, with the tags put first
        doc_tags = [query_tags(tags, base, max_tags) for base in doc_tags]
        vectors = encode_user_documents(workdir, [document_text(t) for t in doc_tags],
                                        [int(u) for u in ids])
    elif tags:  # tags alone: the document of someone who liked the movies carrying them
        document = tags_query_document(
            normalize_tags(tags), catalogue or Catalogue.load(workdir), max_tags,
            int(settings.get("top_user_tags", 50)),
            # older workspaces wrote user documents without genres: 0 when not recorded
            int(settings.get("user_genres", 0)) if settings.get("with_genres") else 0)
        vectors = encode_user_documents(workdir, [document_text(document)], [None])
        doc_tags = [query_tags(tags, [], max_tags)]  # the reasons name the given tags
    else:
        vectors = user_vectors
    seen = load_seen(workdir) if len(ids) and not include_seen else None
    queries = []
    for i, vector in enumerate(vectors):
        user = int(ids[i]) if len(ids) else None
        exclude = np.zeros(0, np.int64)
        if seen is not None:
            seen_rows = movie_table.rows_of(seen.of(user)[0])
            exclude = seen_rows[seen_rows >= 0]
        queries.append(Query(user, doc_tags[i], vector, exclude))
    return queries


def rank(workdir: Path, queries: list[Query], k: int) -> list[Recommendation]:
    """Top-k movies per query; a batch gives the same lists as one query at a time."""
    if k < 1:
        raise TagrecError(f"-k must be at least 1 (got {k})")
    movies = load_table(workdir, "movie")
    top_rows, top_scores = top_k(np.stack([q.vector for q in queries]), movies.vectors, k,
                                 [q.exclude for q in queries])
    return [Recommendation(q, movies.ids[r], s)
            for q, r, s in zip(queries, top_rows, top_scores, strict=True)]


def recommend_for_users(workdir: Path, users: list[int], k: int = 10,
                        include_seen: bool = False) -> list[Recommendation]:
    """Top-k movies for each known user, from the user table."""
    if k < 1:
        raise TagrecError(f"-k must be at least 1 (got {k})")
    return rank(workdir, build_queries(workdir, users, None, include_seen), k)


def similar_movies(workdir: Path, movie_id: int, k: int = 10,
                   catalogue: Catalogue | None = None) -> Recommendation:
    """The k movies nearest to `movie_id` in the movie table, the movie itself left out."""
    movies = load_table(workdir, "movie")
    row = int(movies.rows_of(np.array([movie_id]))[0])
    if row < 0:
        raise TagrecError(f"unknown movie {movie_id}: not in the movie table (ids "
                          f"{int(movies.ids.min())}–{int(movies.ids.max())}); look a movie up "
                          "by title with --title, e.g. tagrec similar --title \"toy story\"")
    from tagrec_cli.catalogue import Catalogue

    catalogue = catalogue or Catalogue.load(workdir)
    at = int(catalogue.rows(np.array([movie_id]))[0])
    query = Query(None, catalogue.tags[at] if at >= 0 else [], movies.vectors[row],
                  np.array([row]))
    return rank(workdir, [query], k)[0]


def reasons(workdir: Path, recs: list[Recommendation],
            catalogue: Catalogue | None = None) -> list[list[dict]]:
    """Per recommendation row: {"tags": shared tags (rarest first), "like": history movie}.

    "like" is the movie the user rated (liked ones first) closest to the recommended one in
    the movie table; None for tags-only queries. No encoder pass: documents and tables only.
    """
    from tagrec_cli.catalogue import Catalogue, closest_history, shared_tags

    catalogue = catalogue or Catalogue.load(workdir)
    counts = catalogue.tag_movie_counts()
    tag_rows = catalogue.rows  # id -> catalogue row
    movies = load_table(workdir, "movie")
    liked = float(embeddings_manifest(workdir)["ingest_settings"]["liked_rating"])
    seen = load_seen(workdir) if any(r.user is not None for r in recs) else None
    out = []
    for rec in recs:
        rows = tag_rows(rec.movie_ids)
        shared = [shared_tags(rec.query.tags, catalogue.tags[r], counts) if r >= 0 else []
                  for r in rows]
        like = np.full(len(rec.movie_ids), -1)
        if rec.user is not None and seen is not None:
            history, ratings = seen.of(rec.user)
            history = history[ratings >= liked] if (ratings >= liked).any() else history
            h_rows = movies.rows_of(history)
            history, h_rows = history[h_rows >= 0], h_rows[h_rows >= 0]
            like = closest_history(movies.vectors[h_rows], history,
                                   movies.vectors[movies.rows_of(rec.movie_ids)], rec.movie_ids)
        out.append([{"tags": tags, "like": None if m < 0 else
                     {"movieId": int(m), "title": catalogue.label(int(m))}}
                    for tags, m in zip(shared, like, strict=True)])
    return out
