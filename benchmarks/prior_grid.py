"""The popularity prior's settings (tagrec_cli/prior.py), tried on evaluate's validation.

The prior does not change training, so every (strength, shrink, cold prior) is scored on one
trained validation stage: its tables, re-ranked by cosine + weight(n) x prior. The slices are
evaluate's (all users, low history, cold movies, validation's own new users), NDCG@10.

    tagrec ingest --data DATA -w ws && tagrec train -w ws --seed 42
    tagrec evaluate -w ws --validation-only
    python benchmarks/prior_grid.py ws/evaluate/valid --json benchmarks/results/prior-grid.json
    python benchmarks/prior_grid.py ws/evaluate/valid --strengths 0.05 --shrinks 10 \
        --colds 0,0.5,1,1.5,2,3 --json cold-grid.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from tagrec_cli import evaluate as ev
from tagrec_cli import prior, protocol
from tagrec_cli.baselines import DotScorer
from tagrec_cli.config import RELEVANT_RATING, TOP_K
from tagrec_cli.store import Store

STRENGTHS = "0,0.02,0.03,0.05,0.08"
SHRINKS = "0,5,10,20,40"


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", type=Path, help="a trained stage: WS/evaluate/valid")
    ap.add_argument("--strengths", type=floats, default=floats(STRENGTHS))
    ap.add_argument("--shrinks", type=floats, default=floats(SHRINKS))
    ap.add_argument("--colds", type=floats, default=[0.0],
                    help="cold priors: the prior of a movie nobody rated (z units)")
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
    grid = [(strength, shrink, cold) for strength in args.strengths
            for shrink in (args.shrinks if strength else [0.0])
            for cold in (args.colds if strength else [0.0])]
    for strength, shrink, cold in grid:
        scorer = DotScorer(base.users, base.items,
                           user_weights=prior.weights(history_n, strength, shrink),
                           item_prior=prior.movie_prior(counts, cold)[rows_of_data])
        top = ev.evaluate_scorer(scorer, data, evaluated, k)
        row = {"strength": strength, "shrink": shrink, "cold_prior": cold}
        for name, rel in slices.items():
            row[name] = ev.ranking_metrics(top, rel, k)["ndcg"]
        new = ev.new_users_slice(stage, data, {}, k, RELEVANT_RATING, scorer, encode,
                                 prior_weights=lambda n, s=strength, c=shrink:
                                 prior.weights(n, s, c))
        row["new_users"] = new["tagrec"]["ndcg"] if "tagrec" in new else None
        rows.append(row)
        print("  ".join(f"{key} {value:.4f}" if isinstance(value, float) else
                        f"{key} {value}" for key, value in row.items()), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"stage": str(stage), "target": args.target, "k": k,
                                         "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
