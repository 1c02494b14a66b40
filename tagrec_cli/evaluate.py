"""`tagrec evaluate`: top-k ranking quality of tagrec and baselines on the workspace's split.

Protocol (the split `tagrec ingest` made, nothing re-drawn):

* Test set: each user's held-out ratings (``holdout`` = True). Relevant movies are the held-out
  ones rated >= ``relevant_rating``. Users with no relevant movie are skipped and counted.
* Every method ranks the WHOLE catalogue (every movie in ingest/movies.parquet) for each user,
  minus the user's history movies (``holdout`` = False), and keeps the top k. Ties go to the
  movie listed first in movies.parquet, so every ranking is deterministic.
* Per user: Recall@k = hits / #relevant (not min(k, #relevant)); NDCG@k with binary gains and
  ideal DCG over min(k, #relevant) hits; HitRate@k = any hit; MRR@k = 1 / rank of the first
  hit (0 without one). Reported as means over the users of a slice.
* Over a slice's lists: coverage@k = distinct recommended movies / catalogue size; popularity
  percentile = mean percentile rank (0 = least, 100 = most rated in history, ties averaged)
  of the recommended movies.
* Slices: ``all`` evaluated users; ``low_history`` = users whose history rating count is in
  the bottom quartile (<= the 25th percentile over all users); ``cold_movies`` = relevant
  movies restricted to those with no history rating at all, still ranked among all movies,
  over the users who have any.
* Pairs: ROC-AUC on the 'valid' like/dislike pairs for methods that can score a pair (tagrec's
  cosine, also with sign accuracy; popular; bias; random), the seed's training measure.

Missing embeddings: tagrec is the point of the report, so without `tagrec embed` output
run_evaluate raises ArtifactError naming `tagrec embed`; pass ``include_tagrec=False``
(``--baselines-only``) to evaluate the baselines alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from tagrec_cli import artifacts
from tagrec_cli import baselines as bl
from tagrec_cli.config import BASELINES, RELEVANT_RATING, TOP_K
from tagrec_cli.errors import ArtifactError, TagrecError, quoted
from tagrec_cli.metrics import (
    catalogue_coverage,
    mean_popularity_percentile,
    popularity_percentiles,
    ranking_metrics,
    roc_auc,
    sign_accuracy,
)
from tagrec_cli.store import Store, ingested
from tagrec_cli.topk import rows_of, top_k

DEFAULT_BASELINES = BASELINES
METRICS = ("ndcg", "recall", "hit_rate", "mrr", "coverage", "popularity_percentile", "users")
SLICES = {
    "all": "every user with a relevant held-out movie",
    "low_history": "users in the bottom quartile of history rating count",
    "cold_movies": "relevant movies with no history rating, users who have any",
}


# ---------------------------------------------------------------- workspace data


@dataclass
class EvalData:
    movie_ids: np.ndarray  # (N,) catalogue, movies.parquet order
    user_ids: np.ndarray  # (U,) every user with a rating, sorted
    history: sp.csr_matrix  # (U, N) history ratings (values = rating)
    relevant: list[set[int]]  # per user: movie rows held out with rating >= relevant_rating
    documents: list[str]  # movie documents, catalogue order
    pair_users: np.ndarray  # 'valid' pairs as (user row, movie row, label)
    pair_movies: np.ndarray
    pair_labels: np.ndarray
    liked_rating: float
    manifest: dict

    @property
    def popularity(self) -> np.ndarray:
        return np.asarray((self.history != 0).sum(axis=0)).ravel()


def load_eval_data(workdir: Path, relevant_rating: float = RELEVANT_RATING) -> EvalData:
    """Read ingest/{ratings,movies,pairs}.parquet into matrices indexed by catalogue rows."""
    import polars as pl

    manifest = ingested.ingest_manifest(workdir)
    movies = ingested.documents(workdir, "movie")
    ratings = ingested.read_table(workdir, artifacts.RATINGS_FILE,
                                  ["userId", "movieId", "rating", "holdout"])
    pairs = ingested.read_table(workdir, artifacts.PAIRS_FILE,
                                ["userId", "movieId", "label", "split"])
    movie_ids = movies["movieId"].to_numpy().astype(np.int64)

    def movie_rows(ids: np.ndarray) -> np.ndarray:
        return rows_of(movie_ids, ids)

    r_users = ratings["userId"].to_numpy().astype(np.int64)
    r_movies = movie_rows(ratings["movieId"].to_numpy().astype(np.int64))
    keep = r_movies >= 0
    r_users, r_movies = r_users[keep], r_movies[keep]
    r_values = ratings["rating"].to_numpy().astype(np.float64)[keep]
    r_holdout = ratings["holdout"].to_numpy().astype(bool)[keep]
    user_ids = np.unique(r_users)
    u_rows = np.searchsorted(user_ids, r_users)
    shape = (len(user_ids), len(movie_ids))
    h = ~r_holdout
    history = sp.csr_matrix((r_values[h], (u_rows[h], r_movies[h])), shape=shape)
    history.sum_duplicates()
    relevant: list[set[int]] = [set() for _ in user_ids]
    for u, m in zip(u_rows[r_holdout & (r_values >= relevant_rating)],
                    r_movies[r_holdout & (r_values >= relevant_rating)], strict=True):
        relevant[u].add(int(m))

    valid = pairs.filter(pl.col("split") == "valid")
    p_users = rows_of(user_ids, valid["userId"].to_numpy().astype(np.int64))
    p_movies = movie_rows(valid["movieId"].to_numpy().astype(np.int64))
    ok = (p_users >= 0) & (p_movies >= 0)
    liked = manifest.get("settings", {}).get("liked_rating", 2.5)
    return EvalData(movie_ids=movie_ids, user_ids=user_ids, history=history, relevant=relevant,
                    documents=[d or "" for d in movies["document"].to_list()],
                    pair_users=p_users[ok], pair_movies=p_movies[ok],
                    pair_labels=valid["label"].to_numpy()[ok].astype(np.int64),
                    liked_rating=float(liked), manifest=manifest)


def tagrec_scorer(workdir: Path, data: EvalData) -> tuple[bl.DotScorer, str | None]:
    """tagrec's embeddings reordered to the evaluation's users and catalogue."""
    store = Store(workdir)
    why = store.stale()  # stale tables would score another model's or data's rankings
    if why:
        raise ArtifactError(why)
    manifest = store.manifest
    users, movies = store.table("user"), store.table("movie")
    u_rows, m_rows = users.rows_of(data.user_ids), movies.rows_of(data.movie_ids)
    if (u_rows < 0).any() or (m_rows < 0).any():
        missing = int((u_rows < 0).sum()), int((m_rows < 0).sum())
        raise ArtifactError(f"the embeddings lack {missing[0]} users and {missing[1]} movies "
                            "of the ingest output — re-run `tagrec embed`")
    scorer = bl.DotScorer(users.vectors[u_rows], movies.vectors[m_rows])
    return scorer, manifest.get("model_config_hash")


def make_baseline(name: str, data: EvalData) -> bl.Scorer:
    """Fit one baseline on the history; BaselineUnavailable says why one cannot run."""
    n_users, n_items = data.history.shape
    if name == "random":
        return bl.RandomScorer(n_users, n_items, seed=0)
    if name == "popular":
        return bl.PopularScorer(data.history)
    if name == "bias":
        return bl.BiasScorer(data.history)
    if name == "tfidf":
        liked = data.history.copy()
        liked.data = (liked.data >= data.liked_rating).astype(np.float64)
        liked.eliminate_zeros()
        return bl.TfidfScorer(data.documents, liked)
    if name == "als":
        return bl.fit_als(data.history, factors=64, iterations=15, regularization=0.05,
                                 seed=0)
    if name == "ease":
        return bl.EaseScorer(data.history, lam=500.0)
    raise TagrecError(f"unknown baseline {quoted(name)} "
                      f"(choose from {', '.join(DEFAULT_BASELINES)})")


# ---------------------------------------------------------------- the report


@dataclass
class MethodResult:
    slices: dict[str, dict[str, float]]  # slice -> metric -> value
    pairs: dict[str, float] | None  # {"auc", maybe "sign_accuracy"}; None = cannot score pairs
    seconds: float


@dataclass
class EvalReport:
    k: int
    relevant_rating: float
    baselines: list[str]
    methods: dict[str, MethodResult]  # in evaluation order, tagrec first
    skipped: dict[str, str]  # method -> reason
    slice_users: dict[str, int]  # users per slice
    users_total: int
    users_evaluated: int
    users_skipped: int  # no relevant held-out movie
    low_history_max: float  # history ratings of the bottom quartile's users are <= this
    catalogue_size: int
    cold_relevant_movies: int
    valid_pairs: int
    liked_rating: float
    data_hash: str | None
    model_config_hash: str | None
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_scorer(scorer: bl.Scorer, data: EvalData, users: np.ndarray, k: int,
                    block_size: int = 256) -> np.ndarray:
    """(len(users), k) top movie rows, history excluded, scored in blocks of users."""
    out = np.full((len(users), k), -1, dtype=np.int64)
    for lo in range(0, len(users), block_size):
        block = users[lo:lo + block_size]
        out[lo:lo + len(block)] = top_k(scorer.scores(block), k, data.history[block])[0]
    return out


def slice_metrics(top: np.ndarray, relevant: Sequence[set[int]], k: int, n_items: int,
                  percentiles: np.ndarray) -> dict[str, float]:
    m = ranking_metrics(top, relevant, k)
    lists = top[np.array([bool(r) for r in relevant], dtype=bool)]
    return {"ndcg": m["ndcg"], "recall": m["recall"], "hit_rate": m["hit_rate"],
            "mrr": m["mrr"], "coverage": catalogue_coverage(lists, n_items),
            "popularity_percentile": mean_popularity_percentile(lists, percentiles),
            "users": m["users"]}


def run_evaluate(workdir: Path, k: int = TOP_K, baselines: Sequence[str] = DEFAULT_BASELINES,
                 relevant_rating: float = RELEVANT_RATING, include_tagrec: bool = True,
                 block_size: int = 256,
                 progress: Callable[[str], None] | None = None) -> EvalReport:
    """Evaluate tagrec (unless include_tagrec is False) and the named baselines."""
    if k < 1:
        raise TagrecError(f"-k must be at least 1 (got {k})")
    names = list(dict.fromkeys(b.strip().lower() for b in baselines if b.strip()))
    unknown = [b for b in names if b not in DEFAULT_BASELINES]
    if unknown:
        raise TagrecError(f"unknown baseline {quoted(unknown[0])} "
                          f"(choose from {', '.join(DEFAULT_BASELINES)})")
    say = progress or (lambda _msg: None)
    start = time.perf_counter()
    say("reading the workspace")
    data = load_eval_data(workdir, relevant_rating)
    n_items = len(data.movie_ids)
    tagrec, config_hash = (tagrec_scorer(workdir, data) if include_tagrec else (None, None))

    history_counts = np.diff(data.history.indptr)
    low_max = float(np.quantile(history_counts, 0.25)) if len(history_counts) else 0.0
    evaluated = np.flatnonzero([bool(r) for r in data.relevant])
    popularity = data.popularity
    cold = popularity == 0
    relevant = [data.relevant[u] for u in evaluated]
    slice_relevant = {
        "all": relevant,
        "low_history": [r if history_counts[u] <= low_max else set()
                        for u, r in zip(evaluated, relevant, strict=True)],
        "cold_movies": [{m for m in r if cold[m]} for r in relevant],
    }
    cold_relevant = set().union(*slice_relevant["cold_movies"]) if relevant else set()
    percentiles = popularity_percentiles(popularity)

    methods: dict[str, MethodResult] = {}
    skipped: dict[str, str] = {}
    todo: list[tuple[str, Callable[[], bl.Scorer]]] = []
    if tagrec is not None:
        todo.append(("tagrec", lambda: tagrec))
    todo += [(b, lambda b=b: make_baseline(b, data)) for b in names]
    for name, make in todo:
        say(f"fitting and ranking: {name}")
        t0 = time.perf_counter()
        try:
            scorer = make()
        except bl.BaselineUnavailable as exc:
            skipped[name] = str(exc)
            continue
        top = evaluate_scorer(scorer, data, evaluated, k, block_size)
        slices = {s: slice_metrics(top, rel, k, n_items, percentiles)
                  for s, rel in slice_relevant.items()}
        pairs = None
        pair_scores = scorer.pair_scores(data.pair_users, data.pair_movies)
        if pair_scores is not None:
            pairs = {"auc": roc_auc(pair_scores, data.pair_labels)}
            if name == "tagrec":
                pairs["sign_accuracy"] = sign_accuracy(pair_scores, data.pair_labels)
        methods[name] = MethodResult(slices, pairs, round(time.perf_counter() - t0, 3))

    return EvalReport(
        k=k, relevant_rating=relevant_rating, baselines=names, methods=methods,
        skipped=skipped,
        slice_users={s: int(sum(bool(r) for r in rel)) for s, rel in slice_relevant.items()},
        users_total=len(data.user_ids), users_evaluated=len(evaluated),
        users_skipped=len(data.user_ids) - len(evaluated), low_history_max=low_max,
        catalogue_size=n_items, cold_relevant_movies=len(cold_relevant),
        valid_pairs=len(data.pair_labels), liked_rating=data.liked_rating,
        data_hash=data.manifest.get("data_hash"), model_config_hash=config_hash,
        seconds=round(time.perf_counter() - start, 3),
        settings={"k": k, "relevant_rating": relevant_rating, "baselines": names,
                  "include_tagrec": include_tagrec, "liked_rating": data.liked_rating,
                  "als": {"factors": 64, "iterations": 15, "regularization": 0.05,
                          "random_state": 0},
                  "ease": {"lambda": 500.0, "max_items": bl.EASE_MAX_ITEMS},
                  "bias": {"reg_user": 10.0, "reg_item": 10.0, "iterations": 10}})
