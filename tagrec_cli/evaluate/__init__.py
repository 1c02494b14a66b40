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
  like_threshold), pooled and within users (metrics.user_auc), for methods that can score a
  pair (tagrec's cosine, also with sign accuracy; popular; bias, whose setting is chosen by
  it; random).
* New users (part "new", left out of everything the methods were fitted on): each is known
  by their first NEW_USER_KNOWN ratings and scored on the next NEW_USER_SCORED; tagrec
  encodes the document ingest would write from the known ratings, popular, EASE and
  ItemKNN fold them in.

The parts: data.py reads the split (EvalData) and its slices, ranking.py ranks a scorer's
users in blocks, tuning.py fits the baselines and chooses their settings, new_users.py scores
the new-users slice; this module puts tagrec and the baselines through them (run_evaluate).

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

from tagrec_cli import baselines as bl
from tagrec_cli import unrated
from tagrec_cli.config import BASELINES, RELEVANT_RATING, TOP_K
from tagrec_cli.errors import ArtifactError
from tagrec_cli.evaluate.data import EvalData, load_eval_data, user_slices
from tagrec_cli.evaluate.new_users import (
    EncodeUsers,
    new_user_documents,
    new_user_parts,
    new_users_slice,
)
from tagrec_cli.evaluate.ranking import evaluate_scorer, rank_blocks, slice_metrics
from tagrec_cli.evaluate.tuning import (
    DEFAULT_PARAMS,
    Tuning,
    check_names,
    check_query,
    grid,
    make_baseline,
    tune_baselines,
    tuned_by,
)
from tagrec_cli.metrics import (
    paired_bootstrap,
    per_user_metrics,
    popularity_percentiles,
    roc_auc,
    sign_accuracy,
    user_auc,
)
from tagrec_cli.store import Store

__all__ = ["BOOTSTRAP", "DEFAULT_BASELINES", "DEFAULT_PARAMS", "SLICES", "EncodeUsers",
           "EvalData", "EvalReport", "MethodResult", "Tuning", "check_names", "check_query",
           "compare", "evaluate_scorer", "grid", "load_eval_data", "make_baseline",
           "new_user_documents", "new_user_parts", "new_users_slice", "rank_blocks",
           "run_evaluate", "slice_metrics", "tagrec_scorer", "tune_baselines", "tuned_by",
           "user_slices"]
DEFAULT_BASELINES = BASELINES
BOOTSTRAP = {"resamples": 1000, "level": 0.95, "seed": 0}  # paired_bootstrap's settings
SLICES = {
    "all": "every user with a relevant held-out movie",
    "low_history": "users in the bottom quartile of history rating count",
    "cold_movies": "relevant movies with no history rating, users who have any",
    "cold_ranked": "the cold movies' slice, ranked among the cold movies only",
}


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


@dataclass
class MethodResult:
    slices: dict[str, dict[str, float]]  # slice -> metric -> value
    # {"auc": pooled, "user_auc": within-user, maybe "sign_accuracy"}; None = cannot score pairs
    pairs: dict[str, float] | None
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
            pairs = {"auc": roc_auc(pair_scores, data.pair_labels),
                     "user_auc": user_auc(pair_scores, data.pair_labels, data.pair_users)}
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
