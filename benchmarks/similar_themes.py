"""Does `similar --movie ID` find movies about the same thing? Scored against the sample
world's latent themes (QUALITY.md, "`similar` for a rated movie": the rule was written before
this ran).

Every movie of the table with a rating is a query, asked as `similar` asks it (its row of the
movie table against every other rated movie; a movie nobody rated is not a query and, as
`similar` has it, not an answer to one either: unrated.similar_exclude); relevant are the
other movies with its latent main theme. Queries are split by their main theme, in the
halves of benchmarks/tag_themes.py.

    candidates  the cosine + s x the candidate's popularity prior + b x the term cosine of the
                two movies (MovieTerms.term_cosine), for s in PRIORS by b in TERMS;
                (0, 0) is the cosine alone, `similar` before SIMILAR_TERMS
    baselines   tfidf (the term cosine alone), popular, random

    python benchmarks/similar_themes.py WS42 WS1 WS2 --json similar-themes.json
    python benchmarks/similar_themes.py WS42 WS1 WS2 --split test --only "0,0" --only "-0.05,0.2"
    python benchmarks/similar_themes.py ML/evaluate/test ... --co-liked --only "0,0.5"
"""

from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path

import numpy as np
from tag_themes import theme_split, world_main_themes  # benchmarks/, first on sys.path

from tagrec_cli.config import SIMILAR_TERMS, TOP_K
from tagrec_cli.metrics import per_user_metrics
from tagrec_cli.recommend import similar_movies, term_similarity
from tagrec_cli.store import Store
from tagrec_cli.topk import top_k
from tagrec_cli.unrated import similar_exclude

PRIORS = (0.0, -0.02, -0.05, -0.1)
TERMS = (0.0, 0.1, 0.2, 0.5, 1.0, 2.0)  # 1, 2: "The two weights past their grids"
BASELINES = ("tfidf", "popular", "random")


def name(s: float, b: float) -> str:
    return f"{s:g},{b:g}"


def score_workspace(workdir: Path, splits: dict[str, list[str]], themes: dict[int, str],
                    only: list[str] | None) -> dict[str, dict[str, dict[str, float]]]:
    """{split: {method: {"ndcg", "precision", "queries"}}}"""
    store = Store(workdir)
    movies = store.table("movie")
    if (store.catalogue_rows < 0).any():
        raise SystemExit(f"{workdir}: the movie table holds movies the catalogue lacks")
    prior = store.movie_prior
    counts = store.rating_counts.astype(np.float64)
    unrated = store.unrated_rows
    theme = [themes.get(int(m)) for m in movies.ids]
    methods = [name(s, b) for s in PRIORS for b in TERMS] + list(BASELINES)
    methods = [m for m in methods if only is None or m in only]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for split, names in splits.items():
        wanted = set(names)
        queries = [r for r in range(len(movies.ids))
                   if theme[r] in wanted and counts[r] > 0]
        tops: dict[str, list[np.ndarray]] = {m: [] for m in methods}
        relevant = []
        for r in queries:
            cosine = movies.vectors @ movies.vectors[r]
            terms = term_similarity(store, r)
            exclude = [similar_exclude(r, unrated, len(movies.ids))]
            relevant.append({i for i, t in enumerate(theme) if t == theme[r] and i != r})
            for m in methods:
                if m == "tfidf":
                    s = terms
                elif m == "popular":
                    s = counts
                elif m == "random":
                    s = np.random.default_rng(zlib.crc32(str(r).encode())).random(len(counts))
                else:
                    a, b = (float(x) for x in m.split(","))
                    s = cosine + a * prior + b * terms
                tops[m].append(top_k(s[None, :], TOP_K, exclude)[0][0])
        out[split] = {}
        for m, t in tops.items():
            top = np.stack(t)
            precision = [np.isin(x, list(rel)).mean() for x, rel in zip(top, relevant, strict=True)]
            out[split][m] = {"ndcg": float(np.mean(per_user_metrics(top, relevant, TOP_K)["ndcg"])),
                             "precision": float(np.mean(precision)), "queries": len(queries)}
        # the shipped candidate is what `similar` returns: checked on the first queries
        if name(0, SIMILAR_TERMS) in tops:
            for r, got in list(zip(queries, tops[name(0, SIMILAR_TERMS)], strict=True))[:5]:
                served = similar_movies(store, int(movies.ids[r]), TOP_K).movie_ids
                assert served.tolist() == movies.ids[got].tolist(), (r, served, got)
    return out


def co_liked_check(stage: Path, methods: list[tuple[float, float]], queries: int = 400,
                   min_likes: int = 20, seed: int = 0) -> dict[str, dict[str, float]]:
    """On a trained stage of ml-latest-small: overlap@10 of each (prior, terms) candidate's ten
    with the ten movies most co-liked in the history, for movies with >= min_likes likes (a
    seeded draw), and the median likes of the ten (similar_cold.py's truth)."""
    from similar_cold import co_liked, like_matrix  # imports torch: only for this check

    store = Store(stage)
    movies = store.table("movie")
    x = like_matrix(stage, movies.ids)
    likes = np.asarray(x.sum(axis=0)).ravel()
    pool = np.flatnonzero(likes >= min_likes)
    draw = np.random.default_rng(seed).choice(pool, min(queries, len(pool)), replace=False)
    truth = co_liked(x, draw, TOP_K)
    found: dict[str, list[tuple[float, float]]] = {}
    for r, want in zip(draw, truth, strict=True):
        cosine = movies.vectors @ movies.vectors[r]
        terms = term_similarity(store, int(r))
        exclude = [similar_exclude(int(r), store.unrated_rows, len(movies.ids))]
        for a, b in methods:
            ten = top_k((cosine + a * store.movie_prior + b * terms)[None, :], TOP_K,
                        exclude)[0][0]
            found.setdefault(name(a, b), []).append(
                (len(set(ten.tolist()) & set(want.tolist())) / TOP_K,
                 float(np.median(likes[ten]))))
    return {m: {"overlap": float(np.mean([v[0] for v in values])),
                "median_likes": float(np.median([v[1] for v in values])),
                "queries": len(draw)} for m, values in found.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workspaces", type=Path, nargs="+", help="workspaces trained on sample_data")
    ap.add_argument("--split", choices=("valid", "test"), default="valid",
                    help="test only to report a rule chosen on valid, never to choose one")
    ap.add_argument("--only", action="append", help="a method to run (repeat); default: all")
    ap.add_argument("--co-liked", action="store_true",
                    help="the workspaces are ml-latest-small stages (WS/evaluate/test): the "
                         "check after the choice, the cosine alone (0,0) beside --only's")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.co_liked:
        methods = [(0.0, 0.0)] + [tuple(float(x) for x in m.split(",")) for m in args.only or []
                                  if m != name(0, 0)]
        checks = {str(ws): co_liked_check(ws, methods) for ws in args.workspaces}
        for ws, rows in checks.items():
            print(ws)
            for m, v in rows.items():
                print(f"  {m:<12} overlap@10 {v['overlap']:.4f}  median likes of the ten "
                      f"{v['median_likes']:.0f}  ({v['queries']} movies)")
        if args.json:
            args.json.write_text(json.dumps(checks, indent=1) + "\n")
        return 0
    splits = {args.split: theme_split()[args.split]}
    themes = world_main_themes()
    results = {Path(ws).name: score_workspace(ws, splits, themes, args.only)
               for ws in args.workspaces}
    split = args.split
    first = next(iter(results.values()))[split]
    print(f"{split}: {next(iter(first.values()))['queries']} query movies of the themes "
          f"{', '.join(splits[split])}")
    print(f"{'prior,terms':<12} " + "  ".join(f"{ws:>16}" for ws in results)
          + f"  {'mean NDCG':>9}  {'mean P@10':>9}")
    for method in first:
        cells = [results[ws][split][method] for ws in results]
        print(f"{method:<12} " + "  ".join(f"{c['ndcg']:.4f} / {c['precision']:.3f}".rjust(16)
                                           for c in cells)
              + f"  {np.mean([c['ndcg'] for c in cells]):>9.4f}"
              + f"  {np.mean([c['precision'] for c in cells]):>9.3f}")
    if args.json:
        args.json.write_text(json.dumps({"split": split, "themes": splits[split],
                                         "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
