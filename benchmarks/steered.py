"""Does `recommend --user ID --tags T` follow both the user and the tags? Rules for the
query vector of a known user who also asks for tags, scored on evaluate's own split
(QUALITY.md, "A user steered by tags": the rule was written before this ran).

The protocol, on a trained stage (WS/evaluate/valid or test): every user with a relevant
target movie (rated >= 4 in the scored part) that carries a tag in the stage's catalogue
(tags applied in the history only) gets one query. A seeded draw picks one of those movies,
and the query's tag t is its first tag, the one most users applied: the user says what they
want now. Relevant: the user's relevant target movies that carry t. Each rule gives a query
vector; the whole movie table is ranked as `recommend` ranks it (the popularity prior with
the user's own weight, their history movies left out), and NDCG@10 is taken, beside the
share of the top 10 that carry t.

    user       the user's row of the table (the tags ignored)
    tags       the tags alone, as `recommend --tags t` encodes them (no prior)
    current    t put in front of the user's document, encoded with their side features and
               the pool of their history likes (what `recommend --user --tags` did)
    blend w    (1 - w) x user + w x tags: on the cosine's scale, a mix of the two scores

The stage's seen index holds the held-out ratings too, so the history is read from the
stage's ingest, never from it.

    python benchmarks/steered.py WS/evaluate/valid --json steered.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl
from prior_grid import write_rows  # benchmarks/, first on sys.path

from tagrec_cli import artifacts, documents
from tagrec_cli.config import RELEVANT_RATING, TOP_K
from tagrec_cli.metrics import per_user_metrics
from tagrec_cli.recommend import nearest, tags_document
from tagrec_cli.store import Store, ingested
from tagrec_cli.towers.query import encode_user_documents

BLENDS = (0.25, 0.5, 0.75)


def draw_queries(ratings: pl.DataFrame, movie_tags: dict[int, list[str]], target: str,
                 seed: int) -> list[tuple[int, str, set[int]]]:
    """(user, tag, relevant movieIds carrying it) per user with a tagged relevant target
    movie; a seeded draw of the movie, its first tag.

    Example: user 1 loved movies 5 (tags [heist, noir]) and 6 (no tags) in the target part
             -> (1, "heist", {5})
    """
    rng = np.random.default_rng(seed)
    loved = (ratings.filter((pl.col("part") == target) & (pl.col("rating") >= RELEVANT_RATING))
             .group_by("userId").agg(pl.col("movieId").sort()).sort("userId"))
    out = []
    for user, movies in loved.iter_rows():
        tagged = [m for m in movies if movie_tags.get(m)]
        if not tagged:
            continue
        tag = movie_tags[tagged[int(rng.integers(len(tagged)))]][0]
        out.append((int(user), tag, {m for m in movies if tag in movie_tags.get(m, ())}))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", type=Path, help="a trained stage: WS/evaluate/valid or test")
    ap.add_argument("--target", choices=("valid", "test"), default="valid",
                    help="test only to report a rule chosen on valid, never to choose one")
    ap.add_argument("--seed", type=int, default=0, help="the draw of each user's movie")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    store = Store(args.stage)
    movies = store.table("movie")
    ratings = ingested.read_table(args.stage, artifacts.RATINGS_FILE)
    tagged = ingested.read_table(args.stage, artifacts.INGEST_TABLE["movie"], ["movieId", "tags"])
    movie_tags = dict(zip(tagged["movieId"].to_list(), tagged["tags"].to_list(), strict=True))
    queries = draw_queries(ratings, movie_tags, args.target, args.seed)
    history = ratings.filter(pl.col("part") == "history")
    by_user = {u: (np.array(m, np.int64), np.array(r))
               for u, m, r in history.group_by("userId").agg("movieId", "rating").iter_rows()}
    users = np.array([u for u, _, _ in queries], np.int64)
    tags = [t for _, t, _ in queries]
    like = store.ingest.like_threshold
    max_tags = store.ingest.max_tags

    vectors = {"user": store.rows("user", users)}  # (Q, d)
    distinct = sorted(set(tags))
    alone = encode_user_documents(store, [documents.document_text(tags_document(store, [t]))
                                          for t in distinct], [None] * len(distinct))
    vectors["tags"] = alone[[distinct.index(t) for t in tags]]
    steered_docs = [documents.document_text(documents.query_tags([t], store.user_tags(int(u)),
                                                                 max_tags))
                    for u, t in zip(users, tags, strict=True)]
    liked = [by_user[int(u)][0][by_user[int(u)][1] >= like] for u in users]
    vectors["current"] = encode_user_documents(store, steered_docs, [int(u) for u in users],
                                               liked=liked)
    for w in BLENDS:
        vectors[f"blend {w}"] = (1 - w) * vectors["user"] + w * vectors["tags"]

    exclude = [movies.rows_of(by_user[int(u)][0]) for u in users]
    exclude = [e[e >= 0] for e in exclude]
    weights = store.prior_weights(np.array([len(by_user[int(u)][0]) for u in users]))
    relevant = [set(movies.rows_of(np.array(sorted(r))).tolist()) - {-1}
                for _, _, r in queries]
    carries = [np.array([t in movie_tags.get(int(m), ()) for m in movies.ids])
               for t in distinct]
    rows = []
    for name, vecs in vectors.items():
        no_prior = name == "tags"  # as `recommend --tags` ranks
        top, _ = nearest(vecs, movies.vectors, TOP_K, exclude,
                         None if no_prior else weights, None if no_prior else store.movie_prior)
        top = np.array([np.pad(t, (0, TOP_K - len(t)), constant_values=-1) for t in top])
        ndcg = per_user_metrics(top, relevant, TOP_K)["ndcg"]  # NaN: none in the table
        share = np.mean([carries[distinct.index(t)][row[row >= 0]].mean()
                         for t, row in zip(tags, top, strict=True)])
        rows.append({"rule": name, "ndcg@10": float(np.nanmean(ndcg)), "tag_share": float(share)})
    head = {"stage": str(args.stage), "target": args.target, "seed": args.seed,
            "queries": len(queries), "distinct_tags": len(distinct)}
    print(f"{args.stage} ({args.target}): {len(queries)} queries, {len(distinct)} tags")
    print(f"{'rule':12s} {'NDCG@10':>8s} {'top 10 carrying t':>18s}")
    for r in rows:
        print(f"{r['rule']:12s} {r['ndcg@10']:8.4f} {r['tag_share']:18.3f}")
    if args.json:
        write_rows(args.json, head, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
