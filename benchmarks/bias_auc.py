"""The bias model tuned by the pairs AUC it is compared on (QUALITY.md, "The bias model tuned
for the AUC it is compared on": the rule was written before this ran).

Until 2026-12-08 `tagrec evaluate` chose the bias model's reg by validation NDCG@10, like
every baseline's setting, while the pairs-AUC goal compares it with tagrec, whose epoch is
chosen by validation pairs AUC. This fits the bias model (baselines.BiasScorer) over a grid
of user and movie regularisations on an evaluate stage's history, picks the best by
validation pairs AUC (one reg for both sides, as `evaluate` now tunes it, and the crossed
grid), and scores those on test. With --tagrec, tagrec's test pairs AUC beside the one-reg
choice, evaluate's (the stage's tables, pairs scored as `evaluate` scores them), and how sure
the difference is: a 95% interval from resampling users with replacement, each user's pairs
together.

    python benchmarks/bias_auc.py WS/evaluate/valid WS/evaluate/test --json bias-auc.json
    python benchmarks/bias_auc.py WS/evaluate/valid WS/evaluate/test --tagrec
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from tagrec_cli.baselines import BiasScorer
from tagrec_cli.evaluate.data import EvalData, load_eval_data
from tagrec_cli.metrics import roc_auc

REGS = (1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 10000.0)


def bias_pair_scores(data: EvalData, reg_user: float, reg_movie: float) -> np.ndarray:
    """(P,) the bias model's scores of the stage's pairs, fitted on its history."""
    scorer = BiasScorer(data.history, reg_user=reg_user, reg_item=reg_movie)
    return scorer.pair_scores(data.pair_users, data.pair_movies)


def tagrec_against(stage: Path, data: EvalData, reg_user: float, reg_movie: float,
                   draws: int = 1000, seed: int = 0) -> dict[str, float]:
    """tagrec's and the bias model's test pairs AUC, and the difference's user-resampled 95%
    interval (pooled AUC is no mean over users, so metrics.paired_bootstrap does not apply)."""
    from tagrec_cli.evaluate import tagrec_scorer

    ours = tagrec_scorer(stage, data)[0].pair_scores(data.pair_users, data.pair_movies)
    bias = bias_pair_scores(data, reg_user, reg_movie)
    labels, users = data.pair_labels, data.pair_users
    order = np.argsort(users, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(users[order])) + 1)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(draws):
        rows = np.concatenate([groups[g] for g in rng.integers(0, len(groups), len(groups))])
        diffs.append(roc_auc(ours[rows], labels[rows]) - roc_auc(bias[rows], labels[rows]))
    low, high = np.percentile(diffs, [2.5, 97.5])
    return {"tagrec": roc_auc(ours, labels), "bias": roc_auc(bias, labels),
            "diff_low": float(low), "diff_high": float(high), "users": len(groups)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("valid", type=Path, help="an evaluate validation stage: WS/evaluate/valid")
    ap.add_argument("test", type=Path, help="its test stage: WS/evaluate/test")
    ap.add_argument("--tagrec", action="store_true",
                    help="also tagrec's test pairs AUC and the difference's interval")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    data = load_eval_data(args.valid, target="valid")  # one read for the whole grid
    grid = {}
    for ru in REGS:
        for rm in REGS:
            grid[(ru, rm)] = roc_auc(bias_pair_scores(data, ru, rm), data.pair_labels)
    print(f"validation pairs AUC ({len(data.pair_labels)} pairs); rows reg_user, columns "
          "reg_movie")
    print("reg_user " + "".join(f"{rm:>8g}" for rm in REGS))
    for ru in REGS:
        print(f"{ru:>8g} " + "".join(f"{grid[(ru, rm)]:>8.4f}" for rm in REGS))
    same = max(REGS, key=lambda r: grid[(r, r)])
    best = max(grid, key=grid.get)
    print(f"one reg for both: best {same:g} (validation {grid[(same, same)]:.4f})")
    print(f"crossed: best reg_user {best[0]:g}, reg_movie {best[1]:g} "
          f"(validation {grid[best]:.4f})")
    chosen = {"reg 100 (evaluate's before 2026-12-08, by NDCG@10)": (100.0, 100.0),
              "one reg, by AUC": (same, same), "crossed, by AUC": best}
    test_data = load_eval_data(args.test, target="test")
    test = {name: roc_auc(bias_pair_scores(test_data, *regs), test_data.pair_labels)
            for name, regs in chosen.items()}
    for name, auc in test.items():
        print(f"test pairs AUC, {name}: {auc:.4f}")
    against = tagrec_against(args.test, test_data, same, same) if args.tagrec else None
    if against:
        print(f"test pairs AUC, tagrec: {against['tagrec']:.4f}; tagrec - bias (one reg, by "
              f"AUC) {against['tagrec'] - against['bias']:+.4f}, 95% interval over "
              f"{against['users']} users [{against['diff_low']:+.4f}, {against['diff_high']:+.4f}]")
    if args.json:
        args.json.write_text(json.dumps({
            "valid": [{"reg_user": ru, "reg_movie": rm, "auc": a}
                      for (ru, rm), a in grid.items()],
            "chosen": {n: {"reg_user": r[0], "reg_movie": r[1], "valid_auc": grid[r],
                           "test_auc": test[n]} for n, r in chosen.items()},
            "tagrec": against}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
