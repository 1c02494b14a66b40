"""Does `recommend --tags T` find the movies people go on to tag T? A check on real tags
(ml-latest-small), after the choice that benchmarks/tag_themes.py made on the sample world
(QUALITY.md, "Tags that name what is asked").

On a trained stage of `tagrec evaluate` (WS/evaluate/test), the tags its documents hold are
those applied before each user's cut-off (ingest.history_tags); every other tag application
of the data folder (the held-out time, the new users') is a future one. Each distinct future
tag T is a query, `recommend --tags T` over the whole catalogue; relevant are the movies
that got T in the future. Some of them already carried T (another user, earlier): the table
gives that share, since a tag match finds those and the cosine must find the rest.

    python benchmarks/future_tags.py ../shared/datasets/ml-latest-small WS/evaluate/test \
        --json future-tags.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import polars as pl
from tag_themes import MATCHES  # benchmarks/, first on sys.path

from tagrec_cli import artifacts
from tagrec_cli.config import TOP_K
from tagrec_cli.datasets.movielens import read_movielens
from tagrec_cli.documents.frames import clean_tag_column
from tagrec_cli.ingest import history_tags, user_cutoffs
from tagrec_cli.metrics import per_user_metrics
from tagrec_cli.recommend import build_queries, tag_share
from tagrec_cli.store import Store, ingested
from tagrec_cli.topk import top_k


def future_tags(data: Path, stage: Path) -> pl.DataFrame:
    """(tag, movieId) applied after the stage's cut-offs, each pair once."""
    _, raw, movies = read_movielens(data)
    tags = clean_tag_column(raw.join(movies.select("movieId"), on="movieId", how="semi"))
    split = ingested.read_table(stage, artifacts.RATINGS_FILE)
    known = history_tags(tags, user_cutoffs(split), split).unique()
    return (tags.select("userId", "movieId", "tag")
            .join(known, on=["userId", "movieId", "tag"], how="anti")
            .select("tag", "movieId").unique())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="the MovieLens folder the stage was ingested from")
    ap.add_argument("stages", type=Path, nargs="+", help="trained stages: WS/evaluate/test")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    results = {}
    for stage in args.stages:
        store = Store(stage)
        movies = store.table("movie")
        future = future_tags(args.data, stage)
        by_tag = future.group_by("tag").agg(pl.col("movieId")).sort("tag")
        tops: dict[str, list[np.ndarray]] = {}
        relevant, carried = [], []
        for tag, ids in by_tag.iter_rows():
            table_rows = movies.rows_of(np.array(ids, np.int64))
            rel = {int(r) for r in table_rows if r >= 0}
            if not rel:
                continue
            (q,) = build_queries(store, [], [tag])
            cosine = movies.vectors @ q.vector
            share = tag_share(store, [tag])
            carried.append(float(np.mean([share[r] > 0 for r in rel])))
            relevant.append(rel)
            for name, s in [("cosine", cosine)] + [(f"match_{b}", cosine + b * share)
                                                   for b in MATCHES]:
                tops.setdefault(name, []).append(top_k(s[None, :], TOP_K)[0][0])
        ndcg = {name: float(np.nanmean(per_user_metrics(np.stack(t), relevant, TOP_K)["ndcg"]))
                for name, t in tops.items()}
        results[str(stage)] = {"queries": len(relevant), "carried": float(np.mean(carried)),
                               "ndcg": ndcg}
        print(f"{stage}: {len(relevant)} future tags, {np.mean(carried):.2f} of their movies "
              "already carried the tag")
        for name, v in ndcg.items():
            print(f"  {name:<12} NDCG@10 {v:.4f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
