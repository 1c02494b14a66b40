"""A personal popularity weight, tried on evaluate's validation (QUALITY.md, "A personal
popularity weight": the rule was written before this ran).

The default prior (tagrec_cli/prior.py) gives every user known by n ratings the same weight,
strength x (1 + shrink / n). But users differ in how popular the movies they rate are: on
ml-latest-small (its validation split approximated outside the project, QUALITY.md) the
tenth of users whose history is least popular have a relevant movie nobody rated before in
55% of cases, the most popular tenth in 2%. The candidate scales each user's weight by
their affinity for popular movies:

    affinity(u) = max(0, mu'(u) / mu)
    mu'(u)      = (sum of prior(m) over u's rated movies + shrink x mu) / (n + shrink)
    mu          = the mean prior over every history rating (> 0: rated movies are popular)

so a user whose movies are as popular as the average rating's keeps the default weight, a
niche user's weight falls (towards the cosine alone), a mainstream one's rises; a user known
by few ratings is shrunk towards 1 with the prior's own shrink (no new setting). The cold
prior stays 0.

    python benchmarks/personal_prior.py WS/evaluate/valid --json personal.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from prior_grid import print_row, write_rows  # benchmarks/, first on sys.path

from tagrec_cli import evaluate as ev
from tagrec_cli import prior, protocol
from tagrec_cli.baselines import DotScorer
from tagrec_cli.config import RELEVANT_RATING, TOP_K, ModelConfig
from tagrec_cli.metrics import ranking_metrics
from tagrec_cli.store import Store
from tagrec_cli.topk import rows_of


def affinity(rated: sp.csr_matrix, movie_prior: np.ndarray, mean: float,
             shrink: float) -> np.ndarray:
    """(Q, N) rated movies (any non-zero), (N,) prior -> (Q,) affinity (module docstring).

    Example: prior [2, 0, -1], mean 1, shrink 1, a user who rated movies 0 and 2
    -> mu' = (2 - 1 + 1 x 1) / (2 + 1) = 0.667 -> affinity 0.667
    """
    binary = (rated != 0).astype(np.float64)
    sums = binary @ movie_prior.astype(np.float64)
    n = np.asarray(binary.sum(axis=1)).ravel()
    if mean <= 0:
        return np.ones(len(n), np.float32)
    return np.maximum(0.0, (sums + shrink * mean) / (n + shrink) / mean).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", type=Path, help="a trained stage: WS/evaluate/valid")
    ap.add_argument("--target", choices=("valid", "test"), default="valid",
                    help="test only to report a setting chosen on valid, never to choose one")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    stage, k = args.stage, TOP_K
    cfg = ModelConfig()
    strength, shrink = cfg.popularity_prior, cfg.prior_shrink
    data = ev.load_eval_data(stage, RELEVANT_RATING, args.target)
    base, _ = ev.tagrec_scorer(stage, data)
    store = Store(stage)
    item_prior = store.movie_prior[store.table("movie").rows_of(data.movie_ids)]  # (N,)
    h = data.history
    mean = float((h != 0).astype(np.float64).sum(axis=0).A1 @ item_prior) / max(h.nnz, 1)
    history_n = np.diff(h.indptr)
    evaluated = np.flatnonzero([bool(r) for r in data.relevant])
    slices, _ = ev.user_slices(data, evaluated)
    slices.pop("cold_ranked")  # ranked by the content profile, which the prior does not touch
    like = float(data.manifest.get("settings", {}).get("like_threshold", 2.5))
    encode = protocol.user_encoder(stage, "cpu", like)
    # The new users' known ratings, in new_users_slice's row order (sorted user ids).
    known, _ = ev.new_user_parts(data.new_users)
    new_ids = np.unique(known["userId"].to_numpy())
    cols = rows_of(data.movie_ids, known["movieId"].to_numpy().astype(np.int64))
    new_rows = np.searchsorted(new_ids, known["userId"].to_numpy())
    new_x = sp.csr_matrix((np.ones(len(cols)), (new_rows, cols)),
                          shape=(len(new_ids), len(data.movie_ids)))
    rows = []
    for name in ("default", "personal"):
        user_w = prior.weights(history_n, strength, shrink)
        new_w = prior.weights(np.diff(new_x.indptr), strength, shrink)
        if name == "personal":
            user_w = user_w * affinity(h, item_prior, mean, shrink)
            new_w = new_w * affinity(new_x, item_prior, mean, shrink)
        scorer = DotScorer(base.users, base.items, user_weights=user_w, item_prior=item_prior)
        top = ev.evaluate_scorer(scorer, data, evaluated, k)
        row: dict[str, object] = {"weight": name}
        for slice_name, rel in slices.items():
            row[slice_name] = ranking_metrics(top, rel, k)["ndcg"]
        new = ev.new_users_slice(stage, data, {}, k, RELEVANT_RATING, scorer, encode,
                                 prior_weights=lambda n, w=new_w: w)
        row["new_users"] = new["tagrec"]["ndcg"] if "tagrec" in new else None
        if name == "personal":
            a = affinity(h, item_prior, mean, shrink)[evaluated]
            row["affinity_quartiles"] = [round(float(q), 3)
                                         for q in np.quantile(a, [0.25, 0.5, 0.75])]
        rows.append(row)
        print_row(row)
    if args.json:
        write_rows(args.json, {"stage": str(stage), "target": args.target, "k": k,
                               "mean_prior_of_a_rating": mean}, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
