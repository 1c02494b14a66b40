"""Scoring one fitted workspace: top-k ranking quality of tagrec and baselines on its split.

`tagrec evaluate` runs this on the sub-workspaces its protocol fits (protocol.py): first on
the validation part, to choose epochs and the baselines' settings (tune_baselines), then
once on the test part. Protocol of one scoring (`target` = "valid" or "test"):

* Relevant movies are the user's target-part ratings >= ``relevant_rating``. Users with no
  relevant movie are skipped and counted.
* Every method ranks the WHOLE catalogue (every movie in ingest/movies.parquet) for each user,
  minus the user's history movies (part "history"), and keeps the top k. Ties go to the
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
  over the users who have any; ``cold_ranked`` = the same relevant movies and users, but each
  method ranks the cold movies only (the item cold-start protocol: can it order movies
  nobody has rated? Methods that score by history alone give every cold movie the same
  score, so the tie rule makes their list: a fixed one, catalogue order; random is chance;
  tagrec ranks them by the content profile, as `recommend --unrated` does: unrated.py).
  Its coverage and popularity figures are over the whole catalogue, as the other slices'.
* Comparisons: tagrec's per-user NDCG@k against each baseline's on the same users of each
  slice, as the difference and the relative difference with 95% paired bootstrap intervals
  over users (metrics.paired_bootstrap with BOOTSTRAP).
* Pairs: ROC-AUC on the target part's ratings as like/dislike pairs (rating >=
  like_threshold) for methods that can score a pair (tagrec's cosine, also with sign
  accuracy; popular; bias; random).
* New users (part "new", left out of everything the methods were fitted on): each is known
  by their first NEW_USER_KNOWN ratings and scored on the next NEW_USER_SCORED; tagrec
  encodes the document ingest would write from the known ratings, popular, EASE and
  ItemKNN fold them in.

Missing embeddings: tagrec is the point of the report, so without `tagrec embed` output
run_evaluate raises ArtifactError naming `tagrec embed`; pass ``include_tagrec=False``
(``--baselines-only``) to evaluate the baselines alone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from tagrec_cli import artifacts, unrated
from tagrec_cli import baselines as bl
from tagrec_cli.config import (
    BASELINE_GRIDS,
    BASELINES,
    MAX_RATING,
    MIN_RATING,
    NEW_USER_KNOWN,
    NEW_USER_SCORED,
    RELEVANT_RATING,
    TOP_K,
    IngestConfig,
    check_finite,
    on_scale,
)
from tagrec_cli.errors import ArtifactError, SettingError, TagrecError, quoted
from tagrec_cli.metrics import (
    catalogue_coverage,
    mean_popularity_percentile,
    metric_means,
    paired_bootstrap,
    per_user_metrics,
    popularity_percentiles,
    ranking_metrics,
    roc_auc,
    sign_accuracy,
)
from tagrec_cli.store import Store, ingested
from tagrec_cli.topk import check_k, rows_of, top_k

DEFAULT_BASELINES = BASELINES
BOOTSTRAP = {"resamples": 1000, "level": 0.95, "seed": 0}  # paired_bootstrap's settings
RANK_WORKERS = 4  # blocks ranked at once, at most (memory: a few (256, movies) arrays each)
METRICS = ("ndcg", "recall", "hit_rate", "mrr", "coverage", "popularity_percentile", "users")
SLICES = {
    "all": "every user with a relevant held-out movie",
    "low_history": "users in the bottom quartile of history rating count",
    "cold_movies": "relevant movies with no history rating, users who have any",
    "cold_ranked": "the cold movies' slice, ranked among the cold movies only",
}


# ---------------------------------------------------------------- workspace data


@dataclass
class EvalData:
    movie_ids: np.ndarray  # (N,) catalogue, movies.parquet order
    user_ids: np.ndarray  # (U,) every user with a history rating, sorted
    history: sp.csr_matrix  # (U, N) history ratings (values = rating)
    relevant: list[set[int]]  # per user: movie rows of the target part rated >= relevant
    documents: list[str]  # movie documents, catalogue order
    pair_users: np.ndarray  # the target part's ratings as (user row, movie row, label)
    pair_movies: np.ndarray
    pair_labels: np.ndarray
    liked_rating: float
    manifest: dict
    target: str = "valid"  # the part scored: "valid" or "test"
    new_users: pl.DataFrame | None = None  # part "new": userId, movieId, rating, timestamp

    @property
    def popularity(self) -> np.ndarray:
        return np.asarray((self.history != 0).sum(axis=0)).ravel()


def load_eval_data(workdir: Path, relevant_rating: float = RELEVANT_RATING,
                   target: str | None = None) -> EvalData:
    """Read ingest/{ratings,movies}.parquet into matrices indexed by catalogue rows.

    target: the part scored ("valid" or "test"); None = "test" if the workspace has test
    ratings, else "valid". A workspace from before the three-way split (no `part` column)
    has its held-out ratings as "valid".
    """
    manifest = ingested.ingest_manifest(workdir)
    movies = ingested.documents(workdir, "movie")
    ratings = ingested.read_table(workdir, artifacts.RATINGS_FILE)
    if "part" not in ratings.columns:
        ratings = ratings.with_columns(part=pl.when(pl.col("holdout")).then(pl.lit("valid"))
                                       .otherwise(pl.lit("history")))
    parts = set(ratings["part"].unique().to_list())
    target = target or ("test" if "test" in parts else "valid")
    if target not in ("valid", "test"):
        raise TagrecError(f"the evaluated part must be valid or test, not {quoted(target)}")
    movie_ids = movies["movieId"].to_numpy().astype(np.int64)
    known = ratings.filter(pl.col("movieId").is_in(movie_ids))
    hist = known.filter(pl.col("part") == "history")
    user_ids = np.unique(hist["userId"].to_numpy().astype(np.int64))

    def rows(df: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return (rows_of(user_ids, df["userId"].to_numpy().astype(np.int64)),
                rows_of(movie_ids, df["movieId"].to_numpy().astype(np.int64)))

    h_users, h_movies = rows(hist)
    history = sp.csr_matrix((hist["rating"].to_numpy().astype(np.float64),
                             (h_users, h_movies)), shape=(len(user_ids), len(movie_ids)))
    history.sum_duplicates()
    scored = known.filter(pl.col("part") == target)
    s_users, s_movies = rows(scored)
    ok = s_users >= 0  # a user whose every rating is held out has no history to rank from
    s_users, s_movies = s_users[ok], s_movies[ok]
    s_values = scored["rating"].to_numpy().astype(np.float64)[ok]
    relevant: list[set[int]] = [set() for _ in user_ids]
    for u, m in zip(s_users[s_values >= relevant_rating], s_movies[s_values >= relevant_rating],
                    strict=True):
        relevant[u].add(int(m))
    ingest_cfg = IngestConfig.from_settings(manifest.get("settings", {}))
    like = ingest_cfg.like_threshold
    new = known.filter(pl.col("part") == "new").select("userId", "movieId", "rating",
                                                         "timestamp")
    if "scored_new_users" in manifest:  # evaluate's validation stage leaves out two sets
        new = new.filter(pl.col("userId").is_in(manifest["scored_new_users"]))
    return EvalData(movie_ids=movie_ids, user_ids=user_ids, history=history, relevant=relevant,
                    documents=[d or "" for d in movies["document"].to_list()],
                    pair_users=s_users, pair_movies=s_movies,
                    pair_labels=np.where(s_values >= like, 1, -1).astype(np.int64),
                    liked_rating=ingest_cfg.liked_rating, manifest=manifest,
                    target=target, new_users=new if new.height else None)


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
    # The prior as recommend applies it: each user known by their history ratings.
    weights = store.prior_weights(np.diff(data.history.indptr))
    user_vectors, movie_vectors = users.vectors[u_rows], movies.vectors[m_rows]
    h = data.history  # the cold movies are ranked as `recommend --unrated` ranks them
    profiles = unrated.profiles(user_vectors, h.indptr, h.indices, h.data, movie_vectors)
    scorer = bl.DotScorer(user_vectors, movie_vectors, user_weights=weights,
                          item_prior=store.movie_prior[m_rows] if weights.any() else None,
                          cold_vectors=profiles)
    return scorer, manifest.get("model_config_hash")


DEFAULT_PARAMS: dict[str, dict] = {  # used where no tuning chose otherwise
    "bias": {"reg": 10.0}, "als": {"factors": 64, "regularization": 0.05},
    "ease": {"lam": 500.0}, "itemknn": {"neighbours": 100},
}


def make_baseline(name: str, data: EvalData, params: dict | None = None) -> bl.Scorer:
    """Fit one baseline on the history; BaselineUnavailable says why one cannot run."""
    p = {**DEFAULT_PARAMS.get(name, {}), **(params or {})}
    n_users, n_items = data.history.shape
    if name == "random":
        return bl.RandomScorer(n_users, n_items, seed=0)
    if name == "popular":
        return bl.PopularScorer(data.history)
    if name == "bias":
        return bl.BiasScorer(data.history, reg_user=p["reg"], reg_item=p["reg"])
    if name == "tfidf":
        liked = data.history.copy()
        liked.data = (liked.data >= data.liked_rating).astype(np.float64)
        liked.eliminate_zeros()
        return bl.TfidfScorer(data.documents, liked)
    if name == "als":
        return bl.fit_als(data.history, factors=int(p["factors"]), iterations=15,
                          regularization=float(p["regularization"]), seed=0)
    if name == "ease":
        return bl.EaseScorer(data.history, lam=float(p["lam"]))
    if name == "itemknn":
        return bl.ItemKnnScorer(data.history, neighbours=int(p["neighbours"]))
    raise TagrecError(f"unknown baseline {quoted(name)} "
                      f"(choose from {', '.join(DEFAULT_BASELINES)})")


def grid(name: str) -> list[dict]:
    """Every combination of a baseline's BASELINE_GRIDS values ([{}] for none).

    Example: {"a": (1, 2), "b": (3,)} -> [{"a": 1, "b": 3}, {"a": 2, "b": 3}]
    """
    combos: list[dict] = [{}]
    for key, values in BASELINE_GRIDS.get(name, {}).items():
        combos = [{**c, key: v} for c in combos for v in values]
    return combos


# ---------------------------------------------------------------- the report


@dataclass
class MethodResult:
    slices: dict[str, dict[str, float]]  # slice -> metric -> value
    pairs: dict[str, float] | None  # {"auc", maybe "sign_accuracy"}; None = cannot score pairs
    seconds: float
    params: dict = field(default_factory=dict)  # the hyper-parameters it was fitted with


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
    valid_pairs: int  # the target part's like/dislike pairs
    liked_rating: float
    data_hash: str | None
    model_config_hash: str | None
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)
    target: str = "valid"
    # The new-users slice: method -> {ndcg, recall, hit_rate, mrr, users}; users known by
    # their first NEW_USER_KNOWN ratings (empty without new users in the workspace).
    new_users: dict[str, dict[str, float]] = field(default_factory=dict)
    # slice (SLICES and "new_users") -> baseline -> paired_bootstrap of tagrec's per-user
    # NDCG@k against the baseline's on the same users ({} without tagrec; a slice maps to
    # {} without baselines).
    comparisons: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_scorer(scorer: bl.Scorer, data: EvalData, users: np.ndarray, k: int,
                    block_size: int = 256, workers: int | None = None) -> np.ndarray:
    """(len(users), k) top movie rows, history excluded, scored in blocks of users.

    `workers` blocks at a time (default: one per core, at most RANK_WORKERS): the scorers'
    products and top_k's selections run in numpy and BLAS without the GIL, so threads keep
    every core busy. Each block writes its own rows, so the result is the same.
    """
    return rank_blocks(scorer, data, users, k, block_size, workers)[0]


def rank_blocks(scorer: bl.Scorer, data: EvalData, users: np.ndarray, k: int,
                block_size: int = 256, workers: int | None = None,
                cold_rows: np.ndarray | None = None, cold_users: np.ndarray | None = None,
                ) -> tuple[np.ndarray, np.ndarray]:
    """evaluate_scorer's (len(users), k) top rows, and from the same block scores the
    cold-ranked lists: (len(users), k) top rows among `cold_rows` only for the users where
    the bool mask `cold_users` is set (-1 elsewhere). No exclusion there: a cold movie has no
    history rating, so it is in no user's history."""
    out = np.full((len(users), k), -1, dtype=np.int64)
    cold_out = np.full((len(users), k), -1, dtype=np.int64)

    def rank(lo: int) -> None:
        block = users[lo:lo + block_size]
        scores = scorer.scores(block)  # (B, movies)
        out[lo:lo + len(block)] = top_k(scores, k, data.history[block])[0]
        if cold_rows is None or cold_users is None or not len(cold_rows):
            return
        pick = np.flatnonzero(cold_users[lo:lo + len(block)])
        if len(pick):
            cols = top_k(scorer.cold_scores(block[pick], cold_rows, np.asarray(scores)[pick]),
                         k)[0]  # (P, k) into cold_rows
            cold_out[lo + pick] = np.where(cols >= 0, cold_rows[np.maximum(cols, 0)], -1)

    starts = range(0, len(users), block_size)
    workers = workers or min(RANK_WORKERS, os.cpu_count() or 1)
    if workers > 1 and len(starts) > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(rank, starts))  # list(): re-raises a block's exception
    else:
        for lo in starts:
            rank(lo)
    return out, cold_out


def user_slices(data: EvalData, evaluated: np.ndarray) -> tuple[dict[str, list[set[int]]],
                                                                  float]:
    """Per slice (SLICES), each evaluated user's relevant movie rows (empty = not in the
    slice), and the low-history cut-off: history ratings <= it (module docstring)."""
    history_counts = np.diff(data.history.indptr)
    low_max = float(np.quantile(history_counts, 0.25)) if len(history_counts) else 0.0
    cold = data.popularity == 0
    relevant = [data.relevant[u] for u in evaluated]
    cold_relevant = [{m for m in r if cold[m]} for r in relevant]
    return {"all": relevant,
            "low_history": [r if history_counts[u] <= low_max else set()
                            for u, r in zip(evaluated, relevant, strict=True)],
            "cold_movies": cold_relevant, "cold_ranked": cold_relevant}, low_max


def slice_metrics(top: np.ndarray, relevant: Sequence[set[int]], k: int, n_items: int,
                  percentiles: np.ndarray, per_user: dict[str, np.ndarray] | None = None,
                  ) -> dict[str, float]:
    """ranking_metrics of one slice's lists plus coverage and popularity; per_user: its
    per_user_metrics if already computed."""
    if per_user is None:
        per_user = per_user_metrics(top, relevant, k)
    m = metric_means(per_user, relevant)
    lists = top[np.array([bool(r) for r in relevant], dtype=bool)]
    return {"ndcg": m["ndcg"], "recall": m["recall"], "hit_rate": m["hit_rate"],
            "mrr": m["mrr"], "coverage": catalogue_coverage(lists, n_items),
            "popularity_percentile": mean_popularity_percentile(lists, percentiles),
            "users": m["users"]}


def check_names(baselines: Sequence[str]) -> list[str]:
    names = list(dict.fromkeys(b.strip().lower() for b in baselines if b.strip()))
    unknown = [b for b in names if b not in DEFAULT_BASELINES]
    if unknown:
        raise TagrecError(f"unknown baseline {quoted(unknown[0])} "
                          f"(choose from {', '.join(DEFAULT_BASELINES)})")
    return names


@dataclass
class Tuning:
    """Each baseline's grid on the validation part, and the setting chosen (best NDCG@k)."""

    k: int
    tried: dict[str, list[dict]]  # name -> [{"params": {...}, "ndcg": x}] in grid order
    chosen: dict[str, dict]  # name -> params
    skipped: dict[str, str]


def check_query(k: int, relevant_rating: float, n_movies: int | None = None) -> None:
    """evaluate's cut and relevance threshold: 1 <= k <= the catalogue's movies (a top
    10^11 is a typo, and its padding would not fit in memory), a finite threshold."""
    check_finite(relevant_rating=relevant_rating)
    if not on_scale(relevant_rating):
        raise SettingError(f"relevant_rating must be on the rating scale ({MIN_RATING:g}-"
                           f"{MAX_RATING:g}), or no movie or every one is relevant (got "
                           f"{relevant_rating:g})", ("relevant_rating",))
    check_k(k, n_movies, None if n_movies is None else f"the catalogue's {n_movies:,} movies")


def tune_baselines(workdir: Path, baselines: Sequence[str], k: int = TOP_K,
                   relevant_rating: float = RELEVANT_RATING, block_size: int = 256,
                   progress: Callable[[str], None] | None = None) -> Tuning:
    """Fit every grid setting of each named baseline on history and score NDCG@k on the
    validation part; the first best is chosen (ties: the earlier setting)."""
    say = progress or (lambda _msg: None)
    check_query(k, relevant_rating)
    data = load_eval_data(workdir, relevant_rating, "valid")
    check_query(k, relevant_rating, len(data.movie_ids))
    evaluated = np.flatnonzero([bool(r) for r in data.relevant])
    relevant = [data.relevant[u] for u in evaluated]
    tried: dict[str, list[dict]] = {}
    chosen: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    for name in check_names(baselines):
        if name not in BASELINE_GRIDS:
            continue
        rows = []
        for params in grid(name):
            say(f"tuning {name} {params}")
            try:
                scorer = make_baseline(name, data, params)
            except bl.BaselineUnavailable as exc:
                skipped[name] = str(exc)
                break
            top = evaluate_scorer(scorer, data, evaluated, k, block_size)
            rows.append({"params": params, "ndcg": ranking_metrics(top, relevant, k)["ndcg"]})
        if rows:
            tried[name] = rows
            chosen[name] = max(rows, key=lambda r: (r["ndcg"], -rows.index(r)))["params"]
    return Tuning(k, tried, chosen, skipped)


# A function from (documents, side features or None, user ids, their known ratings) to
# (n, dim) unit user vectors: the trained user tower, which evaluate cannot import (torch
# lives in towers/, train/ and embed).
EncodeUsers = Callable[[list[str], np.ndarray | None, np.ndarray, pl.DataFrame], np.ndarray]


def new_user_parts(new: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each new user's first NEW_USER_KNOWN ratings by (timestamp, movieId), and the next
    NEW_USER_SCORED: (known, scored), both userId, movieId, rating, timestamp."""
    ranked = (new.sort(["userId", "timestamp", "movieId"])
              .with_columns(rank=pl.int_range(pl.len()).over("userId")))
    known = ranked.filter(pl.col("rank") < NEW_USER_KNOWN).drop("rank")
    scored = ranked.filter((pl.col("rank") >= NEW_USER_KNOWN)
                           & (pl.col("rank") < NEW_USER_KNOWN + NEW_USER_SCORED)).drop("rank")
    return known, scored


def new_user_documents(workdir: Path, data: EvalData, known: pl.DataFrame, users: np.ndarray,
                       ) -> tuple[list[str], np.ndarray | None]:
    """The documents and side features ingest would give each of `users` from their known
    ratings alone (ingested.rated_users)."""
    cfg = IngestConfig.from_settings(data.manifest.get("settings", {}))
    stats = data.manifest.get("feature_stats") if cfg.side_features else None
    return ingested.rated_users(workdir, known, users, stats)


def new_users_slice(workdir: Path, data: EvalData, fitted: dict[str, bl.Scorer], k: int,
                    relevant_rating: float, tagrec: bl.DotScorer | None,
                    encode_users: EncodeUsers | None, block_size: int = 256,
                    prior_weights: Callable[[np.ndarray], np.ndarray] | None = None,
                    keep: dict[str, np.ndarray] | None = None,
                    ) -> dict[str, dict[str, float]]:
    """Ranking metrics per method on the new users (module docstring): tagrec from the
    known ratings' document, the fitted scorers that can fold a user in. prior_weights:
    ratings known -> tagrec's prior weights (default: the workspace's, Store.prior_weights).
    keep: if given, filled with each method's per-user NDCG@k (NaN: no relevant movie)."""
    known, scored = new_user_parts(data.new_users)
    users = np.unique(known["userId"].to_numpy())
    n, n_items = len(users), len(data.movie_ids)
    urow = {int(u): i for i, u in enumerate(users)}

    def matrix(df: pl.DataFrame) -> sp.csr_matrix:
        r = np.array([urow[int(u)] for u in df["userId"].to_list()], dtype=np.int64)
        m = rows_of(data.movie_ids, df["movieId"].to_numpy().astype(np.int64))
        return sp.csr_matrix((np.ones(len(r)), (r, m)), shape=(n, n_items))

    x = matrix(known)
    relevant: list[set[int]] = [set() for _ in users]
    liked = scored.filter(pl.col("rating") >= relevant_rating)
    for u, m in zip(liked["userId"].to_list(),
                    rows_of(data.movie_ids, liked["movieId"].to_numpy().astype(np.int64)),
                    strict=True):
        relevant[urow[int(u)]].add(int(m))
    # Each method's (block, movies) scores of a block of new users, ranked a block at a time:
    # at MovieLens-25M size the 16,200 new users' dense scores would be 8 GB per method.
    rankers: dict[str, Callable[[slice], np.ndarray | None]] = {}
    if tagrec is not None and encode_users is not None:
        docs, feats = new_user_documents(workdir, data, known, users)
        vectors = encode_users(docs, feats, users, known)  # (n, dim)
        weights = None
        if tagrec.item_prior is not None:  # each known by their NEW_USER_KNOWN ratings
            weights = (prior_weights or Store(workdir).prior_weights)(np.diff(x.indptr))
        rankers["tagrec"] = lambda b: tagrec.vector_scores(
            vectors[b], None if weights is None else weights[b])
    for name, scorer in fitted.items():
        rankers[name] = lambda b, scorer=scorer: scorer.fold_in(x[b])  # None: cannot fold in
    out = {}
    for name, scores in rankers.items():
        top = np.full((n, k), -1, dtype=np.int64)
        for lo in range(0, n, block_size):
            block = slice(lo, min(lo + block_size, n))
            s = scores(block)
            if s is None:
                break
            top[block] = top_k(s, k, x[block])[0]
        else:
            per_user = per_user_metrics(top, relevant, k)
            m = metric_means(per_user, relevant)
            out[name] = {key: m[key] for key in ("ndcg", "recall", "hit_rate", "mrr", "users")}
            if keep is not None:
                keep[name] = per_user["ndcg"]
    return out


def compare(ndcg: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, dict[str, float]]]:
    """slice -> baseline -> paired_bootstrap(tagrec's per-user NDCG, the baseline's), for
    every slice both have; {} without tagrec."""
    if "tagrec" not in ndcg:
        return {}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for s, mine in ndcg["tagrec"].items():
        out[s] = {name: paired_bootstrap(mine, slices[s], **BOOTSTRAP)
                  for name, slices in ndcg.items() if name != "tagrec" and s in slices}
    return out


def run_evaluate(workdir: Path, k: int = TOP_K, baselines: Sequence[str] = DEFAULT_BASELINES,
                 relevant_rating: float = RELEVANT_RATING, include_tagrec: bool = True,
                 block_size: int = 256,
                 progress: Callable[[str], None] | None = None, target: str | None = None,
                 params: dict[str, dict] | None = None,
                 encode_users: EncodeUsers | None = None) -> EvalReport:
    """Evaluate tagrec (unless include_tagrec is False) and the named baselines on one part
    of the workspace's split, each baseline with `params[name]` (else DEFAULT_PARAMS);
    the new-users slice too when the workspace has new users."""
    check_query(k, relevant_rating)
    names = check_names(baselines)
    params = params or {}
    say = progress or (lambda _msg: None)
    start = time.perf_counter()
    say("reading the workspace")
    data = load_eval_data(workdir, relevant_rating, target)
    check_query(k, relevant_rating, len(data.movie_ids))
    n_items = len(data.movie_ids)
    tagrec, config_hash = (tagrec_scorer(workdir, data) if include_tagrec else (None, None))

    evaluated = np.flatnonzero([bool(r) for r in data.relevant])
    slice_relevant, low_max = user_slices(data, evaluated)
    cold_relevant = set().union(*slice_relevant["cold_movies"]) if len(evaluated) else set()
    cold_rows = np.flatnonzero(data.popularity == 0)
    cold_users = np.array([bool(r) for r in slice_relevant["cold_ranked"]], dtype=bool)
    percentiles = popularity_percentiles(data.popularity)

    methods: dict[str, MethodResult] = {}
    ndcg: dict[str, dict[str, np.ndarray]] = {}  # method -> slice -> per-user NDCG@k
    skipped: dict[str, str] = {}
    fitted: dict[str, bl.Scorer] = {}
    todo: list[tuple[str, Callable[[], bl.Scorer]]] = []
    if tagrec is not None:
        todo.append(("tagrec", lambda: tagrec))
    todo += [(b, lambda b=b: make_baseline(b, data, params.get(b))) for b in names]
    for name, make in todo:
        say(f"fitting and ranking: {name}")
        t0 = time.perf_counter()
        try:
            scorer = make()
        except bl.BaselineUnavailable as exc:
            skipped[name] = str(exc)
            continue
        top, cold_top = rank_blocks(scorer, data, evaluated, k, block_size,
                                    cold_rows=cold_rows, cold_users=cold_users)
        tops = {s: cold_top if s == "cold_ranked" else top for s in slice_relevant}
        per_user = {s: per_user_metrics(tops[s], rel, k) for s, rel in slice_relevant.items()}
        ndcg[name] = {s: p["ndcg"] for s, p in per_user.items()}
        slices = {s: slice_metrics(tops[s], rel, k, n_items, percentiles, per_user[s])
                  for s, rel in slice_relevant.items()}
        pairs = None
        pair_scores = scorer.pair_scores(data.pair_users, data.pair_movies)
        if pair_scores is not None:
            pairs = {"auc": roc_auc(pair_scores, data.pair_labels)}
            if name == "tagrec":
                pairs["sign_accuracy"] = sign_accuracy(pair_scores, data.pair_labels)
        used = {} if name == "tagrec" else {**DEFAULT_PARAMS.get(name, {}),
                                            **params.get(name, {})}
        methods[name] = MethodResult(slices, pairs, round(time.perf_counter() - t0, 3), used)
        if name != "tagrec":
            fitted[name] = scorer
    new_users = {}
    if data.new_users is not None:
        say("the new-users slice")
        new_ndcg: dict[str, np.ndarray] = {}
        new_users = new_users_slice(workdir, data, fitted, k, relevant_rating,
                                    tagrec, encode_users, block_size, keep=new_ndcg)
        for name, values in new_ndcg.items():
            ndcg.setdefault(name, {})["new_users"] = values

    return EvalReport(
        k=k, relevant_rating=relevant_rating, baselines=names, methods=methods,
        skipped=skipped,
        slice_users={s: int(sum(bool(r) for r in rel)) for s, rel in slice_relevant.items()},
        users_total=len(data.user_ids), users_evaluated=len(evaluated),
        users_skipped=len(data.user_ids) - len(evaluated), low_history_max=low_max,
        catalogue_size=n_items, cold_relevant_movies=len(cold_relevant),
        valid_pairs=len(data.pair_labels), liked_rating=data.liked_rating,
        data_hash=data.manifest.get("data_hash"), model_config_hash=config_hash,
        seconds=round(time.perf_counter() - start, 3), target=data.target,
        new_users=new_users, comparisons=compare(ndcg),
        settings={"k": k, "relevant_rating": relevant_rating, "baselines": names,
                  "include_tagrec": include_tagrec, "liked_rating": data.liked_rating,
                  "target": data.target, "als_iterations": 15,
                  "ease_max_items": bl.EASE_MAX_ITEMS, "bias_iterations": 10,
                  "bootstrap": BOOTSTRAP})
