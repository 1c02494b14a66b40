"""The baselines: fitted with their settings, and those settings chosen on the validation
part (tune_baselines: each grid of config.BASELINE_GRIDS tried, the best kept by NDCG@k, or
by pairs AUC where config.BASELINE_TUNED_BY says so)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tagrec_cli import baselines as bl
from tagrec_cli.config import (
    BASELINE_GRIDS,
    BASELINE_TUNED_BY,
    BASELINES,
    MAX_RATING,
    MIN_RATING,
    RELEVANT_RATING,
    TOP_K,
    check_finite,
    on_scale,
)
from tagrec_cli.errors import SettingError, TagrecError, quoted
from tagrec_cli.evaluate.data import EvalData, load_eval_data
from tagrec_cli.evaluate.ranking import evaluate_scorer
from tagrec_cli.metrics import ranking_metrics, roc_auc
from tagrec_cli.topk import check_k

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
                      f"(choose from {', '.join(BASELINES)})")


MEASURES = ("ndcg", "auc")  # what can choose a baseline's setting: NDCG@k, or pairs ROC-AUC


def tuned_by(name: str) -> str:
    """The validation measure that chooses a baseline's setting (config.BASELINE_TUNED_BY;
    "ndcg" where it names none)."""
    by = BASELINE_TUNED_BY.get(name, "ndcg")
    if by not in MEASURES:
        raise TagrecError(f"{name} is tuned by {quoted(by)}, which is none of "
                          f"{', '.join(MEASURES)} (config.BASELINE_TUNED_BY)")
    return by


def grid(name: str) -> list[dict]:
    """Every combination of a baseline's BASELINE_GRIDS values ([{}] for none).

    Example: {"a": (1, 2), "b": (3,)} -> [{"a": 1, "b": 3}, {"a": 2, "b": 3}]
    """
    combos: list[dict] = [{}]
    for key, values in BASELINE_GRIDS.get(name, {}).items():
        combos = [{**c, key: v} for c in combos for v in values]
    return combos


def check_names(baselines: Sequence[str]) -> list[str]:
    names = list(dict.fromkeys(b.strip().lower() for b in baselines if b.strip()))
    unknown = [b for b in names if b not in BASELINES]
    if unknown:
        raise TagrecError(f"unknown baseline {quoted(unknown[0])} "
                          f"(choose from {', '.join(BASELINES)})")
    return names


@dataclass
class Tuning:
    """Each baseline's grid on the validation part, and the setting chosen: the best by the
    measure `by` names."""

    k: int
    tried: dict[str, list[dict]]  # name -> [{"params": {...}, "ndcg": x[, "auc": y]}], grid order
    chosen: dict[str, dict]  # name -> params
    skipped: dict[str, str]
    by: dict[str, str] = field(default_factory=dict)  # name -> "ndcg" or "auc" (tuned_by)


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
    """Fit every grid setting of each named baseline on history and score NDCG@k (and, for
    a baseline tuned by AUC, pairs AUC) on the validation part; the first best by
    tuned_by(name) is chosen (ties: the earlier setting)."""
    say = progress or (lambda _msg: None)
    check_query(k, relevant_rating)
    data = load_eval_data(workdir, relevant_rating, "valid")
    check_query(k, relevant_rating, len(data.movie_ids))
    evaluated = np.flatnonzero([bool(r) for r in data.relevant])
    relevant = [data.relevant[u] for u in evaluated]
    tried: dict[str, list[dict]] = {}
    chosen: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    by: dict[str, str] = {}
    for name in check_names(baselines):
        if name not in BASELINE_GRIDS:
            continue
        measure = tuned_by(name)
        rows = []
        for params in grid(name):
            say(f"tuning {name} {params}")
            try:
                scorer = make_baseline(name, data, params)
            except bl.BaselineUnavailable as exc:
                skipped[name] = str(exc)
                break
            top = evaluate_scorer(scorer, data, evaluated, k, block_size)
            row = {"params": params, "ndcg": ranking_metrics(top, relevant, k)["ndcg"]}
            if measure == "auc":
                pairs = scorer.pair_scores(data.pair_users, data.pair_movies)
                if pairs is None:
                    raise TagrecError(f"{name} scores no pairs, so pairs AUC cannot choose its "
                                      "setting (config.BASELINE_TUNED_BY)")
                row["auc"] = roc_auc(pairs, data.pair_labels)
            rows.append(row)
        if rows:
            tried[name], by[name] = rows, measure
            chosen[name] = max(rows, key=lambda r: (r[measure], -rows.index(r)))["params"]
    return Tuning(k, tried, chosen, skipped, by)
