"""The popularity prior's settings (tagrec_cli/prior.py), tried on evaluate's validation.

The prior does not change training, so every (strength, shrink, cold prior) is scored on one
trained validation stage: its tables, re-ranked by cosine + weight(n) x prior. The slices are
evaluate's (all users, low history, cold movies, validation's own new users), NDCG@10.

    tagrec ingest --data DATA -w ws && tagrec train -w ws --seed 42
    tagrec evaluate -w ws --validation-only
    python benchmarks/prior_grid.py ws/evaluate/valid --json benchmarks/results/prior-grid.json
    python benchmarks/prior_grid.py ws/evaluate/valid --strengths 0.05 --shrinks 10 \
        --colds 0,0.5,1,1.5,2,3 --json cold-grid.json
    python benchmarks/prior_grid.py ws/evaluate/valid --strengths 0.05 --shrinks 10 \
        --cold-neighbours 0,20 --json nb.json   # a cold movie's prior from its neighbours
    python benchmarks/prior_grid.py ws/evaluate/valid --strengths 0.05 --shrinks 10 \
        --qualities 0,0.25,0.5,1 --json quality.json   # + q x the movie's rating quality
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from tagrec_cli import evaluate as ev
from tagrec_cli import prior, protocol
from tagrec_cli.baselines import BiasScorer, DotScorer
from tagrec_cli.config import RELEVANT_RATING, TOP_K
from tagrec_cli.metrics import ranking_metrics
from tagrec_cli.store import Store
from tagrec_cli.topk import top_k

STRENGTHS = "0,0.02,0.03,0.05,0.08"
SHRINKS = "0,5,10,20,40"


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def neighbour_prior(values: np.ndarray, vectors: np.ndarray, rated: np.ndarray, k: int,
                    block: int = 512) -> np.ndarray:
    """(N,) prior, (N, dim) unit movie vectors, (N,) bool rated -> (N,) prior where each
    unrated movie has the mean prior of its k nearest rated movies by cosine (QUALITY.md,
    "A cold movie's prior from its neighbours": a candidate that failed its rule)."""
    out = values.astype(np.float32).copy()
    warm, cold = np.flatnonzero(rated), np.flatnonzero(~rated)
    kk = min(k, len(warm))
    for start in range(0, len(cold), block):
        rows = cold[start:start + block]
        near, _ = top_k(vectors[rows] @ vectors[warm].T, kk)  # (B, kk) positions in warm
        out[rows] = values[warm[near]].mean(axis=1)
    return out


QUALITY_REG = 10.0  # --qualities: BiasScorer's reg for users and movies, fixed beforehand


def rating_quality(history, reg: float = QUALITY_REG) -> np.ndarray:
    """(U, N) history ratings -> (N,) each movie's shrunk mean-rating residual (the bias
    model's movie term), z-scored over the rated movies; 0 for a movie nobody rated (QUALITY.md,
    "A movie's ratings in its prior, not only their count")."""
    bias = BiasScorer(history, reg_user=reg, reg_item=reg).item_bias
    rated = np.asarray((history != 0).sum(axis=0)).ravel() > 0
    out = np.zeros(len(bias), np.float32)
    if rated.sum() >= 2 and bias[rated].std() > 0:
        out[rated] = (bias[rated] - bias[rated].mean()) / bias[rated].std()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", type=Path, help="a trained stage: WS/evaluate/valid")
    ap.add_argument("--strengths", type=floats, default=floats(STRENGTHS))
    ap.add_argument("--shrinks", type=floats, default=floats(SHRINKS))
    ap.add_argument("--colds", type=floats, default=[0.0],
                    help="cold priors: the prior of a movie nobody rated (z units)")
    ap.add_argument("--cold-neighbours", type=lambda s: [int(x) for x in s.split(",")],
                    default=[0], help="0: the cold prior above; K: a movie nobody rated "
                    "gets the mean prior of its K nearest rated movies instead")
    ap.add_argument("--qualities", type=floats, default=[0.0],
                    help="q: the prior gains q x the movie's rating quality (z units)")
    ap.add_argument("--target", choices=("valid", "test"), default="valid",
                    help="the part scored: test only to report a setting chosen on valid "
                    "(WS/evaluate/test), never to choose one")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    stage, k = args.stage, TOP_K
    data = ev.load_eval_data(stage, RELEVANT_RATING, args.target)
    base, _ = ev.tagrec_scorer(stage, data)
    store = Store(stage)
    # as Store.movie_prior: over the movie table's rows, then the evaluated movies' rows
    counts = store.rating_counts
    rows_of_data = store.table("movie").rows_of(data.movie_ids)
    history_n = np.diff(data.history.indptr)
    evaluated = np.flatnonzero([bool(r) for r in data.relevant])
    slices, _ = ev.user_slices(data, evaluated)
    # the prior is one constant over the cold movies, so it cannot reorder them: cold_ranked
    # would repeat the cosine's row in every line of the grid
    slices.pop("cold_ranked")
    like = float(data.manifest.get("settings", {}).get("like_threshold", 2.5))
    encode = protocol.user_encoder(stage, "cpu", like)
    rows = []
    table = store.table("movie")
    quality = rating_quality(data.history)  # (N,) in the evaluated catalogue's order
    grid = [(strength, shrink, cold, near, q) for strength in args.strengths
            for shrink in (args.shrinks if strength else [0.0])
            for cold in (args.colds if strength else [0.0])
            for near in (args.cold_neighbours if strength else [0])
            for q in (args.qualities if strength else [0.0])]
    for strength, shrink, cold, near, q in grid:
        movie_prior = prior.movie_prior(counts, cold)
        if near:
            movie_prior = neighbour_prior(movie_prior, table.vectors, counts > 0, near)
        scorer = DotScorer(base.users, base.items,
                           user_weights=prior.weights(history_n, strength, shrink),
                           item_prior=movie_prior[rows_of_data] + q * quality)
        top = ev.evaluate_scorer(scorer, data, evaluated, k)
        row = {"strength": strength, "shrink": shrink, "cold_prior": cold,
               "cold_neighbours": near, "quality": q}
        for name, rel in slices.items():
            row[name] = ranking_metrics(top, rel, k)["ndcg"]
        new = ev.new_users_slice(stage, data, {}, k, RELEVANT_RATING, scorer, encode,
                                 prior_weights=lambda n, s=strength, c=shrink:
                                 prior.weights(n, s, c))
        row["new_users"] = new["tagrec"]["ndcg"] if "tagrec" in new else None
        rows.append(row)
        print_row(row)
    if args.json:
        write_rows(args.json, {"stage": str(stage), "target": args.target, "k": k}, rows)
    return 0


def print_row(row: dict) -> None:
    """One grid row as `key value` pairs, floats to four decimals."""
    print("  ".join(f"{key} {value:.4f}" if isinstance(value, float) else
                    f"{key} {value}" for key, value in row.items()), flush=True)


def write_rows(path: Path, head: dict, rows: list[dict]) -> None:
    """The grid as JSON: the run's settings (`head`) and its rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**head, "rows": rows}, indent=1))


if __name__ == "__main__":
    raise SystemExit(main())
