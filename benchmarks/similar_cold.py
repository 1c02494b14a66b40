"""`similar` for a movie nobody rated: rated movies made cold one at a time.

On a trained stage, movies with >= --min-likes likes (ratings >= 4) in its history are drawn
and each in turn gets the movie-table row `embed --add-movies` would give it: its text head
with the unrated side features (features.as_unrated) and no learned part. Each candidate rule
then lists its ten nearest, and the list is scored against the ten movies most co-liked with
it (cosine of the like columns of the history): overlap@10, with the share of the ten that
nobody liked and their median likes (QUALITY.md, "`similar` for a movie nobody rated").

    python benchmarks/similar_cold.py WS/evaluate/valid --json similar-cold.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch

from tagrec_cli import features
from tagrec_cli.config import RELEVANT_RATING, TOP_K
from tagrec_cli.recommend import term_similarity
from tagrec_cli.store import Store, ingested
from tagrec_cli.topk import rows_of, top_k
from tagrec_cli.towers import pooled as pooled_cache
from tagrec_cli.towers.encode import encode_rows, uses_bf16
from tagrec_cli.towers.model import load_model, resolve_device
from tagrec_cli.towers.tokens import token_tables
from tagrec_cli.unrated import similar_exclude

ANCHORS = (3, 5, 10, 20)


def cold_vectors(stage: Path, rows: np.ndarray) -> np.ndarray:
    """(R, dim) unit rows `embed --add-movies` would write for these movie-table rows."""
    dev = resolve_device("cpu")
    model, tokenizer, _ = load_model(stage / "model", dev)
    tables = token_tables(stage, tokenizer, model.cfg.max_length)
    table = tables["movie"]
    cached = pooled_cache.load(stage, pooled_cache.cache_key(
        model, tables, dev, uses_bf16(dev, "auto")), tables,
        model.encoder.config.hidden_size)
    with torch.inference_mode():
        if "movie" in cached and cached["movie"][1][rows].all():
            pooled = cached["movie"][0][torch.from_numpy(rows)].float()
        else:
            pooled = encode_rows(model, table, rows, dev, 256, None, None, "auto")
        stats = model.cfg.features
        extra = None if stats is None else torch.from_numpy(features.as_unrated(
            ingested.side_features(stage, "movie", table.ids[rows], stats), stats))
        head = model.project("movie", pooled, extra).float()
    return torch.nn.functional.normalize(head, dim=1).numpy()


def like_matrix(stage: Path, ids: np.ndarray) -> sp.csr_matrix:
    """(users, len(ids)) 0/1: the history ratings >= RELEVANT_RATING of the movies `ids`."""
    liked = ingested.history_ratings(stage).filter(pl.col("rating") >= RELEVANT_RATING)
    users = liked["userId"].to_numpy().astype(np.int64)
    u = rows_of(np.unique(users), users)
    m = rows_of(ids, liked["movieId"].to_numpy().astype(np.int64))
    ok = m >= 0
    x = sp.csr_matrix((np.ones(int(ok.sum())), (u[ok], m[ok])),
                      shape=(int(u.max()) + 1, len(ids)))
    x.data[:] = 1.0
    return x


def co_liked(x: sp.csr_matrix, rows: np.ndarray, n: int) -> np.ndarray:
    """(R, n) columns of x most co-liked with each of `rows` (cosine; itself left out)."""
    likes = np.asarray(x.sum(axis=0)).ravel()
    co = (x.T.tocsr()[rows] @ x).toarray() / np.sqrt(likes[rows, None] * np.maximum(likes, 1))
    co[np.arange(len(rows)), rows] = -np.inf
    return top_k(co, n)[0]


def candidates(query: np.ndarray, row: int, table: np.ndarray, unrated_rows: np.ndarray,
               ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per candidate rule: (query vector, candidate rows) for one cold movie at `row`;
    "rated only" is what `similar` ships (unrated.similar_exclude)."""
    everything = np.arange(len(table))
    unrated_rows = np.union1d(unrated_rows, [row])  # the movie is unrated now
    others = np.setdiff1d(everything, unrated_rows)
    shipped = np.setdiff1d(everything, similar_exclude(row, unrated_rows, len(table)))
    near = top_k((table[others] @ query)[None, :], max(ANCHORS))[0][0]  # nearest rated
    out = {"today": (query, everything), "rated only": (query, shipped),
           "rated only + terms 0.5": (query, shipped)}
    for k in ANCHORS:
        mean = table[others[near[:k]]].mean(axis=0)
        out[f"anchor {k}"] = (mean / np.linalg.norm(mean), np.arange(len(table)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", type=Path, help="a trained stage: WS/evaluate/valid or test")
    ap.add_argument("--queries", type=int, default=400)
    ap.add_argument("--min-likes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    store = Store(args.stage)
    movies = store.table("movie")
    table = np.array(movies.vectors, np.float32)  # a copy: rows are swapped below
    unrated_rows = store.unrated_rows
    x = like_matrix(args.stage, movies.ids)
    likes = np.asarray(x.sum(axis=0)).ravel()  # (N,)
    pool = np.flatnonzero(likes >= args.min_likes)
    draw = np.random.default_rng(args.seed).choice(pool, min(args.queries, len(pool)),
                                                   replace=False)
    truth = co_liked(x, draw, TOP_K)
    cold = cold_vectors(args.stage, draw)

    scores: dict[str, list[tuple[float, float, float]]] = {}
    for row, vector, want in zip(draw, cold, truth, strict=True):
        saved = table[row].copy()
        table[row] = vector  # the movie as if just added
        for name, (query, rows) in candidates(vector, int(row), table, unrated_rows).items():
            rows = rows[rows != row]
            score = table[rows] @ query
            if name.endswith("+ terms 0.5"):  # the weight the rule named, kept for the record
                score = score + 0.5 * term_similarity(store, int(row))[rows]
            ten = rows[top_k(score[None, :], TOP_K)[0][0]]
            scores.setdefault(name, []).append((len(set(ten) & set(want)) / TOP_K,
                                                float(np.mean(likes[ten] == 0)),
                                                float(np.median(likes[ten]))))
        table[row] = saved
    out = {"stage": str(args.stage), "queries": int(len(draw)), "min_likes": args.min_likes,
           "seed": args.seed, "rows": {}}
    for name, values in scores.items():
        overlap, unliked, median = np.mean(values, axis=0)
        out["rows"][name] = {"overlap": float(overlap), "unliked_share": float(unliked),
                             "median_likes": float(median)}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    print(f"{len(draw)} movies with >= {args.min_likes} likes, made cold one at a time")
    print(f"{'candidate':12s}  overlap@10  nobody-liked share  median likes")
    for name, row in out["rows"].items():
        print(f"{name:12s}  {row['overlap']:10.4f}  {row['unliked_share']:18.3f}  "
              f"{row['median_likes']:12.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
