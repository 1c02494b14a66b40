"""Why no method puts a cold movie in a full-catalogue top 10: the hit rate of each place.

For the users of evaluate's cold-movie slice (a relevant movie nobody rated in the history),
the share of users whose movie at place r of tagrec's full ranking is relevant (any
relevant movie), beside the share whose r-th movie of the cold-only ranking
(`recommend --unrated`'s content profile) is a relevant cold movie. A cold movie can earn
the tenth place of a list only where its hit rate beats the tenth warm movie's; where it is
lower, every way of placing cold movies in the full ranking trades hits on warm movies for
fewer on cold ones (QUALITY.md, "Why the full-catalogue cold slice stays 0"). A diagnosis:
it chooses nothing.

    python benchmarks/cold_slots.py WS/evaluate/valid --target valid --json slots.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from tagrec_cli import evaluate as ev
from tagrec_cli.config import RELEVANT_RATING, TOP_K


def place_hit_rates(top: np.ndarray, relevant: list[set[int]]) -> np.ndarray:
    """(U, k) ranked rows (-1: none), per user a set of relevant rows -> (k,) share of users
    whose row at each place is relevant.

    Example: top [[3, 5], [4, 3]], relevant [{5}, {4, 3}] -> [0.5, 1.0]
    """
    hits = np.array([[int(m) in rel for m in row] for row, rel in zip(top, relevant,
                                                                      strict=True)])
    return hits.mean(axis=0) if len(hits) else np.zeros(top.shape[1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", type=Path, help="a trained stage: WS/evaluate/valid or test")
    ap.add_argument("--target", choices=("valid", "test"), default="valid")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    k = TOP_K
    data = ev.load_eval_data(args.stage, RELEVANT_RATING, args.target)
    scorer, _ = ev.tagrec_scorer(args.stage, data)
    evaluated = np.flatnonzero([bool(r) for r in data.relevant])
    slices, _ = ev.user_slices(data, evaluated)
    in_slice = np.array([bool(r) for r in slices["cold_movies"]])
    users = evaluated[in_slice]
    cold_rows = np.flatnonzero(data.popularity == 0)
    top, cold_top = ev.rank_blocks(scorer, data, users, k, cold_rows=cold_rows,
                                   cold_users=np.ones(len(users), bool))
    full = place_hit_rates(top, [data.relevant[u] for u in users])
    cold = place_hit_rates(cold_top, [r for r, s in zip(slices["cold_movies"], in_slice,
                                                        strict=True) if s])
    out = {"stage": str(args.stage), "target": args.target, "users": int(len(users)),
           "cold_movies": int(len(cold_rows)), "full_ranking_place_hit_rate": full.tolist(),
           "cold_ranking_place_hit_rate": cold.tolist()}
    print(f"{len(users)} users, {len(cold_rows)} cold movies")
    print("place  full ranking (any relevant)  cold-only ranking (relevant cold)")
    for r in range(k):
        print(f"{r + 1:5d}  {full[r]:26.3f}  {cold[r]:33.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
