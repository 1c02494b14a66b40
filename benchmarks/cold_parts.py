"""Which part of tagrec's vectors orders the cold movies? A diagnosis of evaluate's
`cold_ranked` slice on one trained stage (QUALITY.md, "How sure").

For the users of the slice, the cold movies (no history rating) are ranked among themselves
by several scores built from the stage's own model, and NDCG@10 is printed for each:

* default: cosine of the served user vector (text head + pool of liked movies' vectors) and
  the movie's text head (a cold movie has no learned vector), as evaluate scores it;
* user text only / pool only: the user vector's two parts, each alone;
* content kNN: the mean cosine between the cold movie's text head and the movies the user
  liked in history, over their text heads (no learned vectors at all) or over their served
  vectors (text head + learned part, what the movie table holds), with "liked" as rated
  >= 4 (evaluate's relevance) or >= the ingest's like threshold (what the pool reads);
* newest first: one list for every user, the most recent year first (a recency check).

    python benchmarks/cold_parts.py WS/evaluate/valid --target valid
    python benchmarks/cold_parts.py WS/evaluate/test --target test   # to report, not choose
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from tagrec_cli import artifacts
from tagrec_cli import evaluate as ev
from tagrec_cli.embed import text_vectors
from tagrec_cli.metrics import ranking_metrics
from tagrec_cli.store import ingested
from tagrec_cli.topk import rows_of, top_k
from tagrec_cli.towers import collab
from tagrec_cli.towers import pooled as pooled_cache
from tagrec_cli.towers.encode import uses_bf16
from tagrec_cli.towers.model import load_model, resolve_device
from tagrec_cli.towers.tokens import token_tables


def text_heads(stage: Path, model, tokenizer, dev) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """side -> (ids, (N, dim) tower outputs before the collaborative part), as embed makes
    them (embed.text_vectors, from the stage's cache of pooled outputs where it has them)."""
    tables = token_tables(stage, tokenizer, model.cfg.max_length)
    cached = pooled_cache.load(stage, pooled_cache.cache_key(model, tables, dev,
                                                             uses_bf16(dev)), tables,
                            model.encoder.config.hidden_size)
    return {side: (table.ids, text_vectors(stage, model, table, side, dev,
                                           cached.get(side))[0].numpy())
            for side, table in tables.items()}


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", type=Path, help="a trained stage: WS/evaluate/valid or /test")
    ap.add_argument("--target", choices=("valid", "test"), required=True)
    args = ap.parse_args(argv)
    dev = resolve_device("cpu")
    model, tokenizer, _ = load_model(args.stage / artifacts.MODEL_DIR, dev)
    heads = text_heads(args.stage, model, tokenizer, dev)
    user_ids, user_text = heads["user"]
    movie_ids, movie_text = heads["movie"]
    data = ev.load_eval_data(args.stage, target=args.target)
    evaluated = np.flatnonzero([bool(r) for r in data.relevant])
    slices, _ = ev.user_slices(data, evaluated)
    in_slice = np.flatnonzero([bool(r) for r in slices["cold_ranked"]])
    relevant = [slices["cold_ranked"][i] for i in in_slice]
    users = evaluated[in_slice]  # rows of data.history
    u = rows_of(user_ids, data.user_ids[users])
    cold = np.flatnonzero(data.popularity == 0)  # catalogue rows
    heads_of_data = movie_text[rows_of(movie_ids, data.movie_ids)]  # (N, dim) catalogue order
    every = unit(heads_of_data)
    like = float(data.manifest["settings"].get("like_threshold", 2.5))
    liked = collab.workspace_liked(args.stage, user_ids, model.id_movies.cpu().numpy(), like)
    with torch.inference_mode():
        pool = collab.pool(model, liked).numpy()[u]  # (U, dim)
    text = user_text[u]
    cold_vecs = every[cold]  # (C, dim)
    served = unit(heads_of_data
                  + collab.movie_part(model, data.movie_ids).detach().numpy())  # (N, dim)
    history = data.history[users]
    liked_at = {4.0: (history >= 4).astype(np.float64),  # (U, N) each
                like: (history >= like).astype(np.float64)}
    years = ingested.read_table(args.stage, artifacts.INGEST_TABLE["movie"], ["year"])[
        "year"].fill_null(0).to_numpy()  # ingest's title-year rule (documents/frames.py)
    scores = {
        "default (text + pool)": unit(text + pool) @ cold_vecs.T,
        "user text only": unit(text) @ cold_vecs.T,
        "pool only": unit(pool) @ cold_vecs.T,
        **{f"content kNN, {name} heads, >= {t:g}": np.asarray(liked_at[t] @ (v @ cold_vecs.T))
           for t in liked_at for name, v in (("text", every), ("served", served))},
        "newest first (one list)": np.tile(years[cold].astype(np.float64), (len(users), 1)),
    }
    print(f"{args.stage} ({args.target}): {len(users)} users, {len(cold):,} cold movies")
    for name, s in scores.items():
        cols = top_k(s, 10)[0]  # (U, 10) into cold, -1 where fewer than 10 cold movies
        m = ranking_metrics(np.where(cols >= 0, cold[np.maximum(cols, 0)], -1), relevant, 10)
        print(f"  {name:32s} NDCG@10 {m['ndcg']:.4f}  HitRate@10 {m['hit_rate']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
