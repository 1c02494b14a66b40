"""Does `recommend --tags WORD` find the movies about WORD? Scored against the sample world's
latent themes, not its tags (QUALITY.md, "Tags that name what is asked": the rule was written
before this ran).

sample_data/ comes from a seeded world (tagrec_cli/datasets/synth) where each movie has a
latent main theme and its tags are the few that users chose to write, from its themes'
vocabularies. Each base tag of each theme is one query, asked as `recommend --tags WORD`
asks it (the tags-alone vector, the whole catalogue ranked); relevant are the movies whose
main theme is the word's theme. The themes are split in a seeded order: the first half
validation, the rest test, so a theme's words are all in one split.

    candidates  cosine + a term, nothing retrained:
                cosine      the ranking before the match (no added term)
                match b     + b x the share of the query's terms the movie's document carries
                prior s     + s x the movie's popularity prior (prior.movie_prior)
    baselines   popular, carriers (movies carrying a query term, most rated first, then the
                rest by ratings), tfidf (the movies' term documents against the query's
                terms), random

    python benchmarks/tag_themes.py WS42 WS1 WS2 --json tag-themes.json
    python benchmarks/tag_themes.py WS42 WS1 WS2 --split test --only cosine,match_0.2
    python benchmarks/tag_themes.py WS42 WS1 WS2 --noise   # "WORD, NOISE" queries
    python benchmarks/tag_themes.py WS42 WS1 WS2 --pairs   # "WORD_A, WORD_B", two themes

--pairs (QUALITY.md, "Two tags of two themes"): per pair of a split's themes, PAIR_DRAWS
pairs of their words (seeded); a movie's gain is its latent theme weights on the two asked
themes, scored by graded NDCG@10, with the share of the ten whose themes include both.

Each WS is a workspace trained on sample_data/ (ingest, train --seed S, embed).
"""

from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from tagrec_cli.config import SAMPLE_DATA, TOP_K
from tagrec_cli.datasets.synth import THEMES
from tagrec_cli.datasets.synth.world import simulate
from tagrec_cli.documents import clean_tags
from tagrec_cli.metrics import per_user_metrics
from tagrec_cli.recommend import build_queries, tag_share
from tagrec_cli.store import Store
from tagrec_cli.topk import top_k

MATCHES = (0.05, 0.1, 0.2, 0.5, 1, 2)  # 1, 2: "The two weights past their grids"
# --noise: words no movie of the sample carries (checked), one put beside each query's word
NOISE = ("hiest", "zzz", "blorp", "qwerty", "asdf", "lorem", "ipsum", "xyzzy", "frobnicate",
         "plugh")
# --noise: the weight its rule was decided at ("A tag no movie carries"), TAG_MATCH then; at
# today's 1 the two shares rank "WORD, NOISE" alike (carriers first either way)
NOISE_MATCH = 0.5
PRIORS = (-0.05, 0.05)
PAIR_DRAWS = 3  # --pairs: word pairs per pair of themes
BASELINES = ("popular", "carriers", "tfidf", "random")


def theme_split(seed: int = 0) -> dict[str, list[str]]:
    """{"valid": first half of the themes in a seeded order, "test": the rest}."""
    names = list(THEMES)
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    half = len(order) // 2
    return {"valid": order[:half], "test": order[half:]}


def sample_world():
    """The seeded world sample_data/ was drawn from."""
    return simulate(SAMPLE_DATA["users"], SAMPLE_DATA["movies"], SAMPLE_DATA["seed"], 80.0,
                    None)


def world_main_themes() -> dict[int, str]:
    """movieId -> the latent main theme of the sample world (the seed sample_data/ has)."""
    world = sample_world()
    names = list(THEMES)
    return {int(m): names[t] for m, t in zip(world.movie_ids, world.movie_themes[:, 0],
                                             strict=True)}


def world_theme_weights() -> dict[int, dict[str, float]]:
    """movieId -> {theme: weight} over its one to three latent themes (weights sum to 1)."""
    world = sample_world()
    names = list(THEMES)
    out: dict[int, dict[str, float]] = {}
    for m, themes, weights in zip(world.movie_ids, world.movie_themes, world.movie_theme_w,
                                  strict=True):
        mix = out.setdefault(int(m), {})
        for t, w in zip(themes, weights, strict=True):
            if w > 0:
                mix[names[t]] = mix.get(names[t], 0.0) + float(w)
    return out


def theme_pair_queries(names: list[str], draws: int = 3, seed: int = 0
                       ) -> list[tuple[str, str, str, str]]:
    """(theme A, theme B, word of A, word of B): `draws` seeded word pairs per theme pair."""
    rng = np.random.default_rng(seed)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            wa, wb = THEMES[a][1], THEMES[b][1]
            for j in rng.choice(len(wa) * len(wb), min(draws, len(wa) * len(wb)), replace=False):
                out.append((a, b, wa[j // len(wb)], wb[j % len(wb)]))
    return out


def graded_ndcg(top: np.ndarray, gain: np.ndarray, k: int = TOP_K) -> float:
    """NDCG@k of the rows `top` (best first) under per-row gains `gain` (N,), over the ideal
    order of all N."""
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = (np.sort(gain)[::-1][:k] * discount).sum()
    return float((gain[top[:k]] * discount).sum() / ideal) if ideal > 0 else float("nan")


class Scorers:
    """Every candidate's and baseline's (N,) scores for a query of one or two words, over the
    movie table's rows, on one trained workspace."""

    def __init__(self, workdir: Path):
        self.store = Store(workdir)
        self.movies = self.store.table("movie")
        catalogue = self.store.catalogue
        rows = self.store.catalogue_rows  # catalogue row of each table row
        if (rows < 0).any():
            raise SystemExit(f"{workdir}: the movie table holds movies the catalogue lacks")
        self.terms = catalogue.terms
        self.counts = self.store.rating_counts.astype(np.float64)
        self.prior = self.store.movie_prior  # (N,) over the table's rows, as rank uses it
        docs = [catalogue.document_terms(int(r)) for r in rows]
        self.tfidf = TfidfVectorizer(analyzer=lambda terms: terms, norm="l2")
        self.tfidf_items = sp.csr_matrix(self.tfidf.fit_transform(docs))

    def query(self, words: list[str]) -> dict[str, np.ndarray]:
        (q,) = build_queries(self.store, [], words)
        cosine = self.movies.vectors @ q.vector
        share = tag_share(self.store, words)
        out = {"cosine": cosine}
        out.update({f"match_{b}": cosine + b * share for b in MATCHES})
        out.update({f"prior_{s}": cosine + s * self.prior for s in PRIORS})
        by_count = self.counts / (self.counts.max() + 1.0)  # < 1: a carrier stays ahead
        out["popular"] = by_count
        out["carriers"] = share * len(words) + by_count  # most asked terms, then most rated
        tf = self.tfidf.transform([clean_tags(words)])
        out["tfidf"] = np.asarray((self.tfidf_items @ tf.T).todense()).ravel()
        seed = zlib.crc32(", ".join(words).encode())
        out["random"] = np.random.default_rng(seed).random(len(cosine))
        return out


    def noise_query(self, word: str, noise: str) -> dict[str, np.ndarray]:
        """"WORD, NOISE" as `recommend --tags` asks it: the match's share over both asked
        terms or over the known one only (what ships since; QUALITY.md, "A tag no movie
        carries")."""
        wanted = clean_tags([word, noise])
        if self.terms.term_id(clean_tags([noise])[0]) >= 0:
            raise SystemExit(f"noise word {noise!r} is carried by a movie")
        (q,) = build_queries(self.store, [], [word, noise])
        cosine = self.movies.vectors @ q.vector
        share = tag_share(self.store, wanted)  # of the known terms
        known = sum(self.terms.term_id(t) >= 0 for t in wanted)
        return {"cosine": cosine,
                "all terms": cosine + NOISE_MATCH * share * known / len(wanted),
                "known terms": cosine + NOISE_MATCH * share}


def score_workspace(workdir: Path, splits: dict[str, list[str]], themes: dict[int, str],
                    only: list[str] | None, noise: bool = False,
                    ) -> dict[str, dict[str, dict[str, float]]]:
    """{split: {method: {"ndcg": mean NDCG@10, "precision": mean share relevant, "queries"}}}"""
    scorers = Scorers(workdir)
    movie_theme = [themes.get(int(m)) for m in scorers.movies.ids]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for split, names in splits.items():
        per: dict[str, list[np.ndarray]] = {}
        relevant, tops = [], {}
        for name in names:
            rel = {i for i, t in enumerate(movie_theme) if t == name}
            for word in THEMES[name][1]:
                scored = (scorers.noise_query(word, NOISE[zlib.crc32(word.encode()) % 10])
                          if noise else scorers.query([word]))
                relevant.append(rel)
                for method, s in scored.items():
                    if only is None or method in only:
                        tops.setdefault(method, []).append(top_k(s[None, :], TOP_K)[0][0])
        for method, rows in tops.items():
            top = np.stack(rows)  # (queries, TOP_K) table rows
            precision = [np.isin(t, list(r)).mean() for t, r in zip(top, relevant, strict=True)]
            per[method] = [per_user_metrics(top, relevant, TOP_K)["ndcg"], precision]
        out[split] = {method: {"ndcg": float(np.mean(v[0])), "precision": float(np.mean(v[1])),
                               "queries": len(relevant)} for method, v in per.items()}
    return out


def score_pairs(workdir: Path, splits: dict[str, list[str]],
                weights: dict[int, dict[str, float]], only: list[str] | None,
                ) -> dict[str, dict[str, dict[str, float]]]:
    """--pairs: {split: {method: {"ndcg": mean graded NDCG@10, "precision": mean share of the
    ten with both themes, "queries"}}}"""
    scorers = Scorers(workdir)
    mixes = [weights.get(int(m), {}) for m in scorers.movies.ids]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for split, names in splits.items():
        found: dict[str, list[tuple[float, float]]] = {}
        queries = theme_pair_queries(names, PAIR_DRAWS)
        for a, b, wa, wb in queries:
            gain = np.array([mix.get(a, 0.0) + mix.get(b, 0.0) for mix in mixes])
            both = np.array([a in mix and b in mix for mix in mixes])
            for method, s in scorers.query([wa, wb]).items():
                if only is None or method in only:
                    top = top_k(s[None, :], TOP_K)[0][0]
                    found.setdefault(method, []).append((graded_ndcg(top, gain),
                                                         float(both[top].mean())))
        out[split] = {m: {"ndcg": float(np.mean([v[0] for v in values])),
                          "precision": float(np.mean([v[1] for v in values])),
                          "queries": len(queries)} for m, values in found.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workspaces", type=Path, nargs="+", help="workspaces trained on sample_data")
    ap.add_argument("--split", choices=("valid", "test", "both"), default="valid",
                    help="test only to report a rule chosen on valid, never to choose one")
    ap.add_argument("--only", help="comma-separated methods (default: all)")
    ap.add_argument("--noise", action="store_true",
                    help='each query is "WORD, NOISE", NOISE a word no movie carries')
    ap.add_argument("--pairs", action="store_true",
                    help='each query is "WORD_A, WORD_B" of two themes, graded by the '
                         "movies' theme weights (P@10 column: the share with both themes)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    splits = theme_split()
    if args.split != "both":
        splits = {args.split: splits[args.split]}
    only = args.only.split(",") if args.only else None
    if args.pairs:
        weights = world_theme_weights()
        results = {str(ws): score_pairs(ws, splits, weights, only) for ws in args.workspaces}
    else:
        themes = world_main_themes()
        results = {str(ws): score_workspace(ws, splits, themes, only, args.noise)
                   for ws in args.workspaces}
    for split in splits:
        methods = list(next(iter(results.values()))[split])
        print(f"\n{split} themes: {', '.join(theme_split()[split])}")
        print(f"{'method':<14} " + "  ".join(f"{Path(ws).name:>16}" for ws in results)
              + f"  {'mean NDCG':>9}  {'mean P@10':>9}")
        for method in methods:
            cells = [results[ws][split][method] for ws in results]
            print(f"{method:<14} " + "  ".join(f"{c['ndcg']:.4f} / {c['precision']:.3f}"
                                               .rjust(16) for c in cells)
                  + f"  {np.mean([c['ndcg'] for c in cells]):>9.4f}"
                  + f"  {np.mean([c['precision'] for c in cells]):>9.3f}")
    if args.json:
        args.json.write_text(json.dumps({"splits": theme_split(), "results": results},
                                        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
