"""The synthetic world: movies (themes, genres, release, quality, popularity), users (tastes,
active windows, activity), who rates what and how, and who tags what. Vectorised numpy over
one seeded stream; the words come from lexicon.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from tagrec_cli.datasets.synth.lexicon import (
    FACET_EXPONENT,
    FACET_SPACE,
    GENRES,
    LONG_TAIL_SHARE,
    NO_GENRES,
    TAG_POPULARITY,
    THEMES,
    facet_codes,
    power_law_rank,
    spelling_variants,
    tag_vocabulary,
    titles,
)

# Target share of each rating 0.5, 1.0, ..., 5.0 (own choice: 14.5% below 2.5, mean 3.47).
RATING_SHARES = np.array([0.015, 0.03, 0.025, 0.075, 0.06, 0.19, 0.14, 0.25, 0.09, 0.125])
DATA_START = 820_454_400  # 1996-01-01 UTC: first possible rating
DATA_END = 1_704_067_199  # 2023-12-31 23:59:59 UTC: last possible rating or tag
DAY = 86_400


@dataclass(frozen=True)
class World:
    """Generated tables plus the latent variables behind them (for tests and diagnostics)."""

    movies: pl.DataFrame
    ratings: pl.DataFrame
    tags: pl.DataFrame
    movie_ids: np.ndarray  # (M,) int64 movieId of movie index m
    movie_themes: np.ndarray  # (M, 3) int theme indices, slot 0 = main theme
    movie_theme_w: np.ndarray  # (M, 3) float weights summing to 1 (0 for unused slots)
    user_theme_pref: np.ndarray  # (U, K) float latent theme taste, userId = row + 1
    user_genre_pref: np.ndarray  # (U, G) float latent genre taste
    tag_theme: np.ndarray  # (T,) theme index of each tags row (-1: noise, person, remark)
    tag_long_tail: np.ndarray  # (T,) bool: the tags row is from the long tail


def _grouped_cdf(groups: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Flat CDF for _grouped_choice: entries sorted by group, value = group + CDF within group.

    groups must be sorted ascending; each group must have positive total weight.
    """
    csum = np.cumsum(weights)
    last = np.r_[np.flatnonzero(np.diff(groups)), len(groups) - 1]  # last index of each group
    first = np.r_[0, last[:-1] + 1]
    before = csum[first] - weights[first]  # cumulative weight before each group
    total = csum[last] - before
    gi = np.repeat(np.arange(len(last)), last - first + 1)
    cdf = (csum - before[gi]) / total[gi]
    cdf[last] = 1.0
    return groups.astype(np.float64) + cdf


def _grouped_choice(rng: np.random.Generator, flat_cdf: np.ndarray,
                    query_groups: np.ndarray) -> np.ndarray:
    """For each query group g, an entry index within g drawn in proportion to its weight.

    flat_cdf is from _grouped_cdf; group g occupies values in (g, g + 1], so a uniform draw
    r in [g, g + 1) lands in g's range. One searchsorted for all queries: no Python loop.
    """
    r = query_groups + rng.random(len(query_groups))
    idx = np.searchsorted(flat_cdf, r, side="right")
    return np.minimum(idx, len(flat_cdf) - 1)


def _gumbel_topk(rng: np.random.Generator, log_w: np.ndarray, k: int) -> np.ndarray:
    """(N, k) indices drawn without replacement in proportion to exp(log_w) per row."""
    keys = log_w + rng.gumbel(size=log_w.shape)
    return np.argsort(-keys, axis=1, kind="stable")[:, :k]


def _year_start_ts(years: np.ndarray) -> np.ndarray:
    """Unix time of Jan 1 of each year."""
    return (years - 1970).astype("datetime64[Y]").astype("datetime64[s]").astype(np.int64)


def simulate(n_users: int, n_movies: int, seed: int, ratings_per_user: float,
              tag_applications: int | None) -> World:
    """One seeded world: generate_movielens' arguments -> its tables and latent variables."""
    if n_users < 1 or n_movies < 2:
        raise ValueError("need n_users >= 1 and n_movies >= 2")
    if not ratings_per_user > 0:
        raise ValueError("ratings_per_user must be positive")
    if tag_applications is not None and tag_applications < 0:
        raise ValueError("tag_applications must be >= 0")
    rng = np.random.default_rng(seed)
    mv = _make_movies(rng, n_movies)
    us = _make_users(rng, n_users, mv, ratings_per_user)
    u, m = _pick_rated(rng, us, mv)
    rating, ts = _rate(rng, u, m, us, mv)
    n_tags = round(0.045 * len(u)) if tag_applications is None else tag_applications
    tags, tag_theme, tag_long_tail = _make_tags(rng, n_tags, u, m, ts, us, mv)

    ids = mv["ids"]
    movies = pl.DataFrame({"movieId": ids, "title": mv["titles"], "genres": mv["genre_str"]})
    ratings = pl.DataFrame({"userId": (u + 1).astype(np.int64), "movieId": ids[m],
                            "rating": rating, "timestamp": ts})
    return World(movies=movies, ratings=ratings, tags=tags, movie_ids=ids,
                  movie_themes=mv["th"], movie_theme_w=mv["th_w"],
                  user_theme_pref=us["p"], user_genre_pref=us["gp"], tag_theme=tag_theme,
                  tag_long_tail=tag_long_tail)


def _make_movies(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    k, g = len(THEMES), len(GENRES)
    # Theme mix: 1-3 themes per movie, drawn by global theme prevalence, Gamma(2) weights.
    prevalence = rng.dirichlet(np.full(k, 3.0))  # (K,)
    n_th = rng.choice([1, 2, 3], size=n, p=[0.45, 0.4, 0.15])
    th = _gumbel_topk(rng, np.broadcast_to(np.log(prevalence), (n, k)), 3)  # (M, 3)
    th_w = rng.gamma(2.0, size=(n, 3)) * (np.arange(3) < n_th[:, None])
    th_w = -np.sort(-th_w / th_w.sum(axis=1, keepdims=True), axis=1)  # slot 0 = main theme
    th = np.where(th_w > 0, th, th[:, :1])  # unused slots point at the main theme, weight 0

    # Genres: 1-3, drawn mostly from the themes' associated genres; 0.5% have none.
    assoc = np.zeros((k, g))  # (K, G) theme -> genre association
    for i, (genres, _) in enumerate(THEMES.values()):
        assoc[i, [GENRES.index(x) for x in genres]] = 1.0 / np.arange(1, len(genres) + 1)
    gw = np.einsum("mj,mjg->mg", th_w, assoc[th]) + 0.015  # (M, G)
    n_g = rng.choice([1, 2, 3], size=n, p=[0.35, 0.4, 0.25])
    n_g[rng.random(n) < 0.005] = 0
    gi = _gumbel_topk(rng, np.log(gw), 3)  # (M, 3)
    g_mask = np.arange(3) < n_g[:, None]  # (M, 3)
    genre_str = []
    for row, cnt in zip(gi.tolist(), n_g.tolist(), strict=True):  # cheap: M short joins
        genre_str.append("|".join(sorted(GENRES[j] for j in row[:cnt])) or NO_GENRES)

    # Year 1930-2023, skewed recent; released on a random day of that year.
    years = np.minimum(1930 + (94 * rng.beta(3.0, 1.3, size=n)).astype(np.int64), 2023)
    release = _year_start_ts(years) + rng.integers(0, 364 * DAY, size=n)
    quality = rng.normal(0.0, 0.45, size=n)
    # Zipf popularity over a rank that favours good and recent movies; 4% are never rated.
    order = np.argsort(-(0.8 * quality / 0.45 + 0.4 * (years - 1990) / 25
                         + rng.normal(size=n)), kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(1, n + 1)
    pop = rank.astype(np.float64) ** -0.65 * np.exp(rng.normal(0.0, 0.8, size=n))
    cold = rng.random(n) < 0.04
    cold[order[0]] = False  # keep at least one rateable movie
    pop[cold] = 0.0

    # Sparse increasing movieIds (gaps like MovieLens, with a few big jumps).
    gaps = rng.geometric(0.55, size=n) + (rng.random(n) < 0.002) * rng.integers(100, 3000, n)
    ids = np.cumsum(gaps).astype(np.int64)

    return {"ids": ids, "th": th, "th_w": th_w, "gi": gi, "g_mask": g_mask,
            "n_g": n_g, "genre_str": genre_str, "years": years, "release": release,
            "quality": quality, "pop": pop, "cold": cold, "prevalence": prevalence,
            "titles": titles(rng, years)}



def _make_users(rng: np.random.Generator, n: int, mv: dict[str, np.ndarray],
                ratings_per_user: float) -> dict[str, np.ndarray]:
    k, g = len(THEMES), len(GENRES)
    p = rng.normal(size=(n, k))  # (U, K) theme taste, used for choosing and rating
    gp = rng.normal(size=(n, g))  # (U, G) genre taste, used for rating
    bias = rng.normal(0.0, 0.35, size=n)
    mainstream = rng.beta(2.0, 5.0, size=n)  # share of picks by plain popularity

    # Active window: start skewed recent, lognormal length (median ~4 months, heavy tail).
    start = DATA_START + ((DATA_END - DATA_START) * rng.beta(1.3, 1.0, size=n)).astype(np.int64)
    length = np.exp(rng.normal(np.log(120 * DAY), 1.6, size=n)).astype(np.int64) + 3600
    end = np.minimum(start + length, DATA_END)

    # Rateable movies: released before the window ends. Extend short windows so that every
    # user can reach the minimum; cap each user at half of what is available.
    warm_release = np.sort(mv["release"][~mv["cold"]])
    min_r = int(min(20, max(1, ratings_per_user // 2)))
    need_avail = min(2 * min_r, len(warm_release)) - 1
    end = np.maximum(end, np.minimum(warm_release[need_avail] + DAY, DATA_END))
    avail = np.searchsorted(warm_release, end, side="right")
    cap = np.maximum(1, avail // 2)

    # Activity: min_r + heavy-tailed lognormal extra with the requested mean.
    extra = np.exp(rng.normal(-0.5 * 1.1**2, 1.1, size=n)) * (ratings_per_user - min_r)
    n_target = np.minimum(min_r + np.round(extra).astype(np.int64), cap)

    # Mixture over K theme components + 1 popularity component: (U, K+1) probabilities.
    tau = np.exp(1.5 * p) * np.sqrt(mv["prevalence"])
    tau /= tau.sum(axis=1, keepdims=True)
    mix = np.concatenate([tau * (1 - mainstream[:, None]), mainstream[:, None]], axis=1)
    return {"p": p, "gp": gp, "bias": bias, "start": start, "end": end, "avail": avail,
            "n_target": n_target, "mix": mix, "n_warm": len(warm_release)}


def _pick_rated(rng: np.random.Generator, us: dict[str, np.ndarray],
                mv: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, movie) pairs, n_target per user where possible, sorted by user, movie.

    Draw with replacement from each user's mixture (theme component k picks movie m with
    probability ~ theme weight x popularity), drop movies released after the user's window,
    dedupe, keep a random n_target per user; top up the users still short.
    """
    k = len(THEMES)
    n_users, n_movies = len(us["n_target"]), len(mv["pop"])
    # Component entries: (component, movie, weight); component K = plain popularity.
    comp = np.concatenate([mv["th"].ravel(), np.full(n_movies, k)])
    movie = np.concatenate([np.repeat(np.arange(n_movies), 3), np.arange(n_movies)])
    weight = np.concatenate([(mv["th_w"] * mv["pop"][:, None]).ravel(), mv["pop"]])
    keep = weight > 0
    comp, movie, weight = comp[keep], movie[keep], weight[keep]
    o = np.lexsort((movie, comp))
    comp, movie, weight = comp[o], movie[o], weight[o]
    mix = us["mix"].copy()
    present = np.isin(np.arange(k + 1), comp)
    mix[:, ~present] = 0.0  # a theme with no rateable movie: its mass goes to the rest
    mix /= mix.sum(axis=1, keepdims=True)
    # Re-index components to 0..C-1 so the flat CDF's groups are consecutive.
    remap = np.cumsum(present) - 1
    flat = _grouped_cdf(remap[comp], weight)
    mix = mix[:, present]
    n_comp = mix.shape[1]

    need = us["n_target"]
    accept = np.maximum(us["avail"] / us["n_warm"], 0.05)  # rough share released in time
    kept = np.empty(0, dtype=np.int64)  # keys user * M + movie
    for r in range(12):
        have = np.bincount(kept // n_movies, minlength=n_users)
        short = np.flatnonzero(have < need)
        if short.size == 0:
            break
        draws = np.ceil((need[short] - have[short]) * 1.3 * 1.6**r / accept[short]).astype(
            np.int64) + 2
        pv = mix[short]
        pv[:, -1] = np.maximum(0.0, 1.0 - pv[:, :-1].sum(axis=1))
        counts = rng.multinomial(draws, pv)  # (S, C) draws per user and component
        du = np.repeat(short, draws)  # user-major, matching counts' row order
        dc = np.repeat(np.tile(np.arange(n_comp), short.size), counts.ravel())
        dm = movie[_grouped_choice(rng, flat, dc)]
        ok = mv["release"][dm] <= us["end"][du]
        new = du[ok] * n_movies + dm[ok]
        # Existing pairs of the short users come first and are always kept.
        is_short = np.zeros(n_users, dtype=bool)
        is_short[short] = True
        old_mask = is_short[kept // n_movies]
        old = kept[old_mask]
        keys, first = np.unique(np.concatenate([old, new]), return_index=True)
        ku = keys // n_movies
        prio = ku + np.where(first < old.size, 0.0, 0.01 + 0.98 * rng.random(keys.size))
        order = np.argsort(prio, kind="stable")  # by user; old first, then random
        keys, ku = keys[order], ku[order]
        starts = np.cumsum(np.bincount(ku, minlength=n_users)) - np.bincount(ku,
                                                                             minlength=n_users)
        rank = np.arange(keys.size) - starts[ku]
        kept = np.concatenate([kept[~old_mask], keys[rank < need[ku]]])
    kept.sort()
    return kept // n_movies, kept % n_movies


def _rate(rng: np.random.Generator, u: np.ndarray, m: np.ndarray, us: dict[str, np.ndarray],
          mv: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Ratings (0.5 steps) and timestamps for the pairs (u, m), all arrays of length N."""
    k, g = len(THEMES), len(GENRES)
    p_flat, gp_flat = us["p"].ravel(), us["gp"].ravel()
    aff_t = np.zeros(u.size)
    aff_g = np.zeros(u.size)
    for j in range(3):  # 3 theme slots and 3 genre slots per movie: gathers of length N
        aff_t += mv["th_w"][m, j] * p_flat[u * k + mv["th"][m, j]]
        aff_g += mv["g_mask"][m, j] * gp_flat[u * g + mv["gi"][m, j]]
    aff_g /= np.maximum(mv["n_g"][m], 1)
    score = (1.1 * aff_t + 0.45 * aff_g + mv["quality"][m] + us["bias"][u]
             + rng.normal(0.0, 0.6, size=u.size))
    # Monotone map score -> rating: thresholds at the quantiles giving RATING_SHARES (taken
    # on a strided subsample: fast at 25M and deterministic).
    sub = score[:: max(1, score.size // 2_000_000)]
    thresholds = np.quantile(sub, np.cumsum(RATING_SHARES)[:-1]) if sub.size else np.zeros(9)
    rating = (np.searchsorted(thresholds, score) + 1) * 0.5

    # Timestamp: uniform over the part of the user's window after the movie's release.
    lo = np.maximum(us["start"][u], mv["release"][m])
    hi = us["end"][u]
    ts = lo + (rng.random(u.size) * (hi - lo + 1)).astype(np.int64)
    return rating, np.minimum(ts, hi)


def _make_tags(rng: np.random.Generator, n_tags: int, u: np.ndarray, m: np.ndarray,
               ts: np.ndarray, us: dict[str, np.ndarray],
               mv: dict[str, np.ndarray]) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """Tag applications by ~12% of users, on movies they rated (3% on never-rated movies).

    Returns the table plus each row's theme (-1: none) and whether it is a long-tail tag.
    """
    k = len(THEMES)
    n_users = len(us["n_target"])
    schema = {"userId": pl.Int64, "movieId": pl.Int64, "tag": pl.String, "timestamp": pl.Int64}
    n_rated = np.bincount(u, minlength=n_users)
    if n_tags == 0 or u.size == 0:
        return pl.DataFrame(schema=schema), np.zeros(0, np.int64), np.zeros(0, bool)
    row_start = np.cumsum(n_rated) - n_rated  # ratings are sorted by user

    # Taggers: a minority, more likely among active users; Pareto tag counts + power taggers.
    raters = np.flatnonzero(n_rated > 0)
    n_taggers = min(raters.size, max(1, round(0.12 * n_users)))
    w_act = np.sqrt(n_rated[raters].astype(np.float64))
    taggers = np.sort(rng.choice(raters, n_taggers, replace=False, p=w_act / w_act.sum()))
    w = rng.pareto(1.3, n_taggers) + 1.0
    w[rng.random(n_taggers) < 0.03] *= 10.0
    # Share out ~1.15 x n_tags (repeats are dropped below) in proportion to w, at most 4 per
    # rated movie: water-filling, a few vectorised passes.
    cap = 4.0 * n_rated[taggers]
    total = 1.15 * n_tags + 5
    fixed = np.zeros(n_taggers, dtype=bool)
    for _ in range(50):
        free_w = np.where(fixed, 0.0, w)
        alloc = np.where(fixed, cap, max(total - cap[fixed].sum(), 0.0) * free_w / max(
            free_w.sum(), 1e-300))
        over = ~fixed & (alloc > cap)
        if not over.any():
            break
        fixed |= over
    cnt = np.floor(alloc).astype(np.int64)
    cnt += rng.random(n_taggers) < alloc - cnt  # stochastic rounding
    cnt = np.minimum(cnt, cap.astype(np.int64))

    # Episodes: a tagger tags a distinct rated movie with ~2.2 tags at a time. Pick n_ep of
    # the tagger's rating rows without replacement, favouring popular movies (weight
    # pop^TAG_POPULARITY, so well-known films gather most tags): sort them by (tagger,
    # exponential race key Exp(1) / weight).
    n_ep = np.minimum(np.ceil(cnt / 2.2).astype(np.int64), n_rated[taggers])
    tr = np.repeat(np.arange(n_taggers), n_rated[taggers])  # (R_t,) tagger of each row
    tr_first = np.cumsum(n_rated[taggers]) - n_rated[taggers]
    rows = row_start[taggers][tr] + np.arange(tr.size) - tr_first[tr]
    race = rng.exponential(size=tr.size) / mv["pop"][m[rows]] ** TAG_POPULARITY
    order = np.lexsort((race, tr))
    tr, rows = tr[order], rows[order]
    pick = np.arange(tr.size) - tr_first[tr] < n_ep[tr]
    ep_row, ep_user = rows[pick], taggers[tr[pick]]
    ep_movie = m[ep_row]
    # Tagged soon after rating: minutes mostly, sometimes days.
    delay = np.where(rng.random(ep_user.size) < 0.8, rng.exponential(300.0, ep_user.size),
                     rng.exponential(3.0 * DAY, ep_user.size))
    ep_ts = ts[ep_row] + delay.astype(np.int64)
    cold = np.flatnonzero(mv["cold"])
    is_cold = (rng.random(ep_user.size) < 0.03) & (cold.size > 0)
    if is_cold.any():  # tags on never-rated movies, at a time in the window after release
        cm = cold[rng.integers(0, cold.size, int(is_cold.sum()))]
        cu = ep_user[is_cold]
        lo = np.maximum(us["start"][cu], mv["release"][cm])
        hi = np.maximum(us["end"][cu], lo)
        ep_movie[is_cold] = cm
        ep_ts[is_cold] = lo + (rng.random(cm.size) * (hi - lo + 1)).astype(np.int64)

    # Rows: each picks one of its tagger's episodes, then a theme of the movie (88%, by the
    # movie's theme weights) or the noise group, then a tag string of that group.
    ep_first = np.cumsum(n_ep) - n_ep
    ti = np.repeat(np.arange(n_taggers), cnt)
    ep = ep_first[ti] + (rng.random(ti.size) * n_ep[ti]).astype(np.int64)
    rm = ep_movie[ep]
    slot = (rng.random(ti.size)[:, None] >= np.cumsum(mv["th_w"][rm], axis=1)[:, :2]).sum(1)
    group = np.where(rng.random(ti.size) < 0.88, mv["th"][rm, slot], k)
    strings, v_group, v_weight = tag_vocabulary()
    tag = _grouped_choice(rng, _grouped_cdf(v_group, v_weight), group)
    theme = np.where(group < k, group, -1)

    # Long-tail rows: facet j of the row's movie, then that facet's fixed tag (see above).
    is_lt = rng.random(ti.size) < LONG_TAIL_SHARE
    salt = np.uint64(rng.integers(0, 2**62))
    lt_m = rm[is_lt]
    facet = power_law_rank(rng.random(lt_m.size), FACET_EXPONENT, FACET_SPACE)
    facet_key = (lt_m.astype(np.uint64) * np.uint64(FACET_SPACE) + facet.astype(np.uint64)) ^ salt
    lt_code, theme[is_lt] = facet_codes(facet_key, mv["th"][lt_m], mv["th_w"][lt_m])
    # Spelling variants: as generated (85%), other case (12%), stray whitespace (3%).
    variant = rng.choice(3, size=lt_code.size, p=[0.85, 0.12, 0.03])
    uniq, inv = np.unique(lt_code * 3 + variant, return_inverse=True)
    tag[is_lt] = len(strings) + inv
    vocab = pl.concat([pl.Series("tag", strings, dtype=pl.String),
                       spelling_variants(uniq // 3, uniq % 3)])
    row_ts = np.minimum(ep_ts[ep] + rng.integers(0, 90, ti.size), DATA_END)
    ru = taggers[ti]

    # Exact repeats (same user, movie, tag string) are kept only rarely, as in real data.
    key = (ru * len(mv["pop"]) + rm) * vocab.len() + tag
    _, first = np.unique(key, return_index=True)
    keep = rng.random(key.size) < 0.02
    keep[first] = True
    sel = np.flatnonzero(keep)
    if sel.size > n_tags:
        sel = np.sort(rng.choice(sel, n_tags, replace=False))
    ru, rm, tag, row_ts = ru[sel], rm[sel], tag[sel], row_ts[sel]
    order = np.lexsort((row_ts, rm, ru))  # MovieLens order: user, then movie
    table = pl.DataFrame({
        "userId": ru[order] + 1,
        "movieId": mv["ids"][rm[order]],
        "tag": vocab.gather(tag[order]),
        "timestamp": row_ts[order],
    }, schema=schema)
    return table, theme[sel][order], is_lt[sel][order]
