"""Tests for the synthetic MovieLens generator (tagrec_cli.datasets.synth)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from tagrec_cli.datasets import synth
from tagrec_cli.datasets.synth import (
    GENRES,
    NO_GENRES,
    TAG_THEMES,
    THEMES,
    generate_movielens,
    lexicon,
    world,
)

FILES = ("movies.csv", "ratings.csv", "tags.csv")
HEADERS = {
    "movies.csv": b"movieId,title,genres\r\n",
    "ratings.csv": b"userId,movieId,rating,timestamp\r\n",
    "tags.csv": b"userId,movieId,tag,timestamp\r\n",
}
SMALL = {"n_users": 50, "n_movies": 120, "ratings_per_user": 30.0}


@pytest.fixture(scope="module")
def default_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "nested" / "ml"
    summary = generate_movielens(out)
    assert summary.out_dir == out
    return out


@pytest.fixture(scope="module")
def default_tables(default_dir: Path) -> dict[str, pl.DataFrame]:
    return {name: pl.read_csv(default_dir / name) for name in FILES}


def _read_bytes(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in FILES}


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    a = generate_movielens(tmp_path / "a", seed=7, **SMALL)
    b = generate_movielens(tmp_path / "b", seed=7, **SMALL)
    c = generate_movielens(tmp_path / "c", seed=8, **SMALL)
    assert a.n_ratings == b.n_ratings and a.n_tags == b.n_tags
    assert _read_bytes(tmp_path / "a") == _read_bytes(tmp_path / "b")
    other = _read_bytes(tmp_path / "c")
    for name, data in _read_bytes(tmp_path / "a").items():
        assert data != other[name], name
    assert c.n_users == 50 and c.n_movies == 120


def test_headers_line_ends_and_no_leftover_temp_files(default_dir: Path) -> None:
    assert sorted(p.name for p in default_dir.iterdir()) == sorted(FILES)
    for name in FILES:
        data = (default_dir / name).read_bytes()
        assert data.startswith(HEADERS[name]), name
        assert data.endswith(b"\r\n")
        assert data.count(b"\n") == data.count(b"\r\n")  # CRLF throughout, like ml-latest-small
        data.decode("utf-8")


def test_a_run_stopped_while_writing_leaves_the_old_files_whole(tmp_path: Path,
                                                                   monkeypatch) -> None:
    # `sample-data --force` over a dataset, Ctrl-C while the third file is written: the
    # folder keeps the old three (it used to get the new movies.csv beside the old ratings)
    generate_movielens(tmp_path, n_users=30, n_movies=40, seed=1)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real, calls = pl.DataFrame.write_csv, []

    def stop_at_the_third(self, path, **kw):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, path, **kw)

    monkeypatch.setattr(pl.DataFrame, "write_csv", stop_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        generate_movielens(tmp_path, n_users=30, n_movies=40, seed=2)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temp file


def test_ctrl_c_during_the_renames_waits_for_all_three(tmp_path: Path, monkeypatch) -> None:
    import os
    import signal

    generate_movielens(tmp_path, n_users=30, n_movies=40, seed=1)
    new_dir = tmp_path / "new"
    generate_movielens(new_dir, n_users=30, n_movies=40, seed=2)
    new = {p.name: p.read_bytes() for p in new_dir.iterdir()}
    real = os.replace

    def replace_then_ctrl_c(src, dst):
        real(src, dst)
        os.kill(os.getpid(), signal.SIGINT)  # after the first rename, and each one after

    monkeypatch.setattr(synth.os, "replace", replace_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        generate_movielens(tmp_path, n_users=30, n_movies=40, seed=2)
    # the interrupt took effect once all three were in place: the new set, whole
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == new


def test_files_parse_with_polars_and_pandas(default_dir: Path) -> None:
    for name in FILES:
        p = pl.read_csv(default_dir / name)
        d = pd.read_csv(default_dir / name, keep_default_na=False)
        assert list(p.columns) == list(d.columns) == HEADERS[name].decode().strip().split(",")
        assert p.height == len(d) > 0
    movies = pd.read_csv(default_dir / "movies.csv")
    assert not movies["genres"].str.endswith("\r").any()
    titles = pl.read_csv(default_dir / "movies.csv")["title"]
    assert titles.to_list() == movies["title"].tolist()  # quoted commas and quotes round-trip


def test_summary_matches_files(tmp_path: Path) -> None:
    s = generate_movielens(tmp_path, seed=3, **SMALL)
    assert pl.read_csv(tmp_path / "ratings.csv").height == s.n_ratings
    assert pl.read_csv(tmp_path / "tags.csv").height == s.n_tags
    assert pl.read_csv(tmp_path / "movies.csv").height == s.n_movies == 120


def test_ratings_values_order_and_text(default_dir: Path,
                                        default_tables: dict[str, pl.DataFrame]) -> None:
    r = default_tables["ratings.csv"]
    assert r.schema == {"userId": pl.Int64, "movieId": pl.Int64, "rating": pl.Float64,
                        "timestamp": pl.Int64}
    x = r["rating"].to_numpy()
    assert x.min() >= 0.5 and x.max() <= 5.0
    assert np.all(x * 2 == np.round(x * 2))
    assert set(np.unique(x)) == {0.5 * i for i in range(1, 11)}
    # Written like MovieLens: "4.0", never "4" or "4.00".
    lines = (default_dir / "ratings.csv").read_text(encoding="utf-8").splitlines()[1:]
    assert all(re.fullmatch(r"\d+,\d+,[0-5]\.[05],\d{9,10}", line) for line in lines)
    # Ordered by userId then movieId; one rating per (user, movie).
    assert r.equals(r.sort(["userId", "movieId"]))
    assert r.select("userId", "movieId").is_unique().all()
    assert r["timestamp"].min() >= synth.DATA_START and r["timestamp"].max() <= synth.DATA_END


def test_default_size_stats(default_dir: Path, default_tables: dict[str, pl.DataFrame]) -> None:
    r, t, m = (default_tables[n] for n in ("ratings.csv", "tags.csv", "movies.csv"))
    assert sum((default_dir / n).stat().st_size for n in FILES) < 2_000_000
    assert 40_000 <= r.height <= 60_000
    assert 42 in set(r["userId"].to_list())
    assert sorted(r["userId"].unique().to_list()) == list(range(1, 601))
    per_user = r.group_by("userId").len()["len"]
    assert per_user.min() >= 20 and per_user.max() > 5 * per_user.median()  # heavy tail
    dislikes = (r["rating"] < 2.5).mean()
    assert 0.13 <= dislikes <= 0.20 and (r["rating"] < 2.5).sum() >= 6000
    assert 3.3 <= r["rating"].mean() <= 3.7
    assert (r["rating"] >= 4.0).mean() > 0.3
    # Zipf-like popularity: a head of popular movies, a long tail, cold-start movies.
    per_movie = r.group_by("movieId").len()["len"]
    assert per_movie.max() > 10 * per_movie.median()
    rated, tagged = set(r["movieId"].to_list()), set(t["movieId"].to_list())
    all_ids = set(m["movieId"].to_list())
    assert rated <= all_ids and tagged <= all_ids
    assert tagged - rated, "some movies have tags but no ratings"
    assert all_ids - rated - tagged, "some movies have neither"
    # Only a minority tag; a few power taggers.
    taggers = t["userId"].n_unique()
    assert 0.05 * 600 <= taggers <= 0.2 * 600
    per_tagger = t.group_by("userId").len()["len"]
    assert per_tagger.max() > 4 * per_tagger.median()
    assert 0.03 * r.height <= t.height <= 0.06 * r.height


def test_movies_titles_genres_and_ids(default_tables: dict[str, pl.DataFrame]) -> None:
    m = default_tables["movies.csv"]
    ids = m["movieId"].to_numpy()
    assert np.all(np.diff(ids) > 0) and ids.max() > len(ids)  # increasing, with gaps
    titles = m["title"].to_list()
    assert all(re.fullmatch(r".+ \(\d{4}\)", t) for t in titles)
    years = np.array([int(t[-5:-1]) for t in titles])
    assert years.min() >= 1930 and years.max() <= 2023
    assert any(", The (" in t for t in titles) and any('"' in t for t in titles)
    assert any(not t.isascii() for t in titles)
    valid = set(GENRES)
    for g in m["genres"].to_list():
        assert g == NO_GENRES or (set(g.split("|")) <= valid and 1 <= len(g.split("|")) <= 3
                                  and g.split("|") == sorted(g.split("|")))


def test_ratings_come_after_release(default_tables: dict[str, pl.DataFrame]) -> None:
    m = default_tables["movies.csv"].with_columns(
        year=pl.col("title").str.extract(r"\((\d{4})\)$").cast(pl.Int64))
    r = default_tables["ratings.csv"].join(m.select("movieId", "year"), on="movieId")
    rating_year = pl.from_epoch("timestamp", time_unit="s").dt.year()
    assert r.select((rating_year >= pl.col("year")).all()).item()


def test_tags_vocabulary_timing_and_messiness(default_tables: dict[str, pl.DataFrame]) -> None:
    r, t = default_tables["ratings.csv"], default_tables["tags.csv"]
    assert t.schema == {"userId": pl.Int64, "movieId": pl.Int64, "tag": pl.String,
                        "timestamp": pl.Int64}
    assert t.equals(t.sort(["userId", "movieId"], maintain_order=True))
    tags = t["tag"].to_list()
    normalised = [x.strip().lower() for x in tags]
    # About half the rows use the theme vocabulary, most of the rest the long tail.
    assert 0.35 < np.mean([x in TAG_THEMES for x in normalised]) < 0.6
    assert any(x != x.strip() for x in tags)  # surrounding whitespace
    assert any(x != x.lower() for x in tags)  # Mixed Case variants
    assert any("," in x for x in tags) and any(not x.isascii() for x in tags)
    # Taggers mostly tag movies they rated, close to when they rated them.
    j = t.join(r, on=["userId", "movieId"], how="left", suffix="_r")
    assert j["rating"].is_not_null().mean() > 0.9
    gap = (j["timestamp"] - j["timestamp_r"]).drop_nulls()
    assert gap.min() >= 0 and gap.median() < 86_400
    # Exact repeats exist in real data but are rare.
    assert t.select("userId", "movieId", "tag").is_duplicated().mean() < 0.05


def test_vocabulary_names_each_theme_once() -> None:
    strings, groups, weights = lexicon.tag_vocabulary()
    assert len(strings) == len(groups) == len(weights) and (weights > 0).all()
    n_base = sum(len(tags) for _, tags in THEMES.values())
    assert len(TAG_THEMES) == n_base  # no normalised tag in two themes
    assert not set(TAG_THEMES) & {x.strip().lower() for x in synth.NOISE_TAGS}
    assert 15 <= len(THEMES) <= 25


def test_long_tail_vocabulary_is_large_and_distinct_from_the_theme_vocabulary() -> None:
    size = int(lexicon._block_sizes().sum())
    strings = lexicon._long_tail_strings(np.arange(size))
    assert size > 300_000 and strings.null_count() == 0
    normalised = strings.str.strip_chars().str.to_lowercase()
    assert normalised.n_unique() == size  # every code is its own tag, in any spelling
    base = {x.strip().lower() for x in lexicon.tag_vocabulary()[0]}
    assert not base & set(normalised.to_list())
    assert (strings.str.strip_chars() == strings).all() and (strings.str.len_chars() > 2).all()


def test_tags_have_a_long_tail(default_tables: dict[str, pl.DataFrame]) -> None:
    """Many distinct tags, most used once; well-tagged movies carry many distinct tags."""
    t = default_tables["tags.csv"].with_columns(norm=pl.col("tag").str.strip_chars()
                                                .str.to_lowercase())
    per_tag = t.group_by("norm").len()["len"]
    assert per_tag.len() > 600  # ~130 theme and noise tags, the rest from the long tail
    assert (per_tag == 1).mean() > 0.6
    per_movie = t.group_by("movieId").agg(pl.col("norm").n_unique())["norm"]
    assert per_movie.max() >= 20


def test_long_tail_grows_with_the_data_and_keeps_the_theme_signal() -> None:
    small, big = world.simulate(600, 1500, 42, 80.0, None), world.simulate(3000, 3000, 42,
                                                                               80.0, None)

    def stats(w: world.World) -> tuple[int, int]:
        norm = w.tags["tag"].str.strip_chars().str.to_lowercase()
        per_movie = w.tags.with_columns(norm=norm).group_by("movieId").agg(
            pl.col("norm").n_unique())["norm"]
        return norm.n_unique(), int(per_movie.max())

    (n_small, top_small), (n_big, top_big) = stats(small), stats(big)
    assert big.tags.height > 4 * small.tags.height
    assert n_big > 2.5 * n_small and top_big > 2.5 * top_small
    # Long-tail theme phrases ("clever heist movie") sit on movies of their theme only.
    w = big
    assert 0.4 < w.tag_long_tail.mean() < 0.6
    index = {int(x): i for i, x in enumerate(w.movie_ids)}
    m = np.array([index[x] for x in w.tags["movieId"].to_list()])
    phrase = w.tag_long_tail & (w.tag_theme >= 0)
    assert phrase.mean() > 0.15

    def on_theme(movies: np.ndarray) -> float:
        return float((w.movie_themes[movies] == w.tag_theme[:, None]).any(axis=1)[phrase].mean())

    assert on_theme(m) == 1.0
    assert on_theme(np.random.default_rng(0).permutation(m)) < 0.3


def test_tags_match_movie_genres_beyond_chance(default_tables: dict[str, pl.DataFrame]) -> None:
    """A theme tag's associated genres overlap the tagged movie's genres far more than chance."""
    t, m = default_tables["tags.csv"], default_tables["movies.csv"]
    genres = dict(zip(m["movieId"].to_list(), m["genres"].to_list(), strict=True))
    theme_genres = {name: set(g) for name, (g, _) in THEMES.items()}
    rows = [(TAG_THEMES[x.strip().lower()], mid)
            for x, mid in zip(t["tag"].to_list(), t["movieId"].to_list(), strict=True)
            if x.strip().lower() in TAG_THEMES]
    shuffled = np.random.default_rng(0).permutation([mid for _, mid in rows])

    def overlap(pairs: list) -> float:
        return float(np.mean([bool(theme_genres[th] & set(genres[mid].split("|")))
                              for th, mid in pairs]))

    real = overlap(rows)
    chance = overlap(list(zip([th for th, _ in rows], shuffled, strict=True)))
    assert real > 0.75 and real > chance + 0.25


def _heldout_genre_win_rate(r: pl.DataFrame, movies: pl.DataFrame) -> float:
    """Share of users whose top genre in their earlier ratings wins on their later ratings.

    Ratings are centred on the movie's mean (so shared movie quality cannot explain a win);
    the top genre is the best mean residual among genres with >= 3 early ratings; a win is a
    higher mean residual on later movies of that genre than on later movies without it.
    """
    d = (r.with_columns(res=pl.col("rating") - pl.col("rating").mean().over("movieId"),
                        early=pl.col("timestamp").rank("ordinal").over("userId")
                        <= pl.len().over("userId") // 2)
         .join(movies.select("movieId", "genres"), on="movieId"))
    top = (d.filter("early").with_columns(pl.col("genres").str.split("|")).explode("genres")
           .group_by("userId", "genres").agg(pl.col("res").mean(), n=pl.len())
           .filter(pl.col("n") >= 3)
           .sort(["userId", "res", "genres"], descending=[False, True, False])
           .group_by("userId").first().select("userId", top="genres"))
    late = (d.filter(~pl.col("early")).join(top, on="userId")
            .with_columns(has=pl.col("genres").str.split("|").list.contains(pl.col("top"))))
    s = (late.group_by("userId")
         .agg(inside=pl.col("res").filter("has").mean(), n_in=pl.col("has").sum(),
              outside=pl.col("res").filter(~pl.col("has")).mean())
         .filter(pl.col("n_in") >= 3).drop_nulls())
    assert s.height >= 300
    return float((s["inside"] > s["outside"]).mean())


def test_structure_is_learnable_from_files_alone(default_tables: dict[str, pl.DataFrame]) -> None:
    r, m = default_tables["ratings.csv"], default_tables["movies.csv"]
    real = _heldout_genre_win_rate(r, m)
    # Control: shuffling ratings within each user keeps biases and activity but kills taste;
    # the same check must then sit near a coin flip, so it can fail.
    rng = np.random.default_rng(1)
    shuffled = (r.with_columns(key=pl.Series(rng.random(r.height)))
                .with_columns(pl.col("rating").sort_by("key").over("userId")).drop("key"))
    assert shuffled.group_by("userId").agg(pl.col("rating").sum()).sort("userId").equals(
        r.group_by("userId").agg(pl.col("rating").sum()).sort("userId"))
    assert not shuffled["rating"].equals(r["rating"])
    control = _heldout_genre_win_rate(shuffled, m)
    assert real > 0.7
    assert control < 0.6


def test_ratings_follow_latent_theme_taste() -> None:
    w = world.simulate(600, 1500, 42, 80.0, None)
    index = {int(x): i for i, x in enumerate(w.movie_ids)}
    m = np.array([index[x] for x in w.ratings["movieId"].to_list()])
    u = w.ratings["userId"].to_numpy() - 1
    top = w.user_theme_pref.argmax(axis=1)
    df = pl.DataFrame({"u": u, "rating": w.ratings["rating"],
                       "top": w.movie_themes[m, 0] == top[u]})
    s = (df.group_by("u").agg(inside=pl.col("rating").filter("top").mean(),
                              outside=pl.col("rating").filter(~pl.col("top")).mean())
         .drop_nulls())
    assert s.height > 500
    assert (s["inside"] > s["outside"]).mean() > 0.85
    # Users also pick their favourite theme more often than its share of movies.
    share_picked = df["top"].mean()
    share_movies = np.mean(w.movie_themes[:, 0][None, :] == top[:, None])
    assert share_picked > 1.5 * share_movies


def test_tag_applications_and_small_sizes(tmp_path: Path) -> None:
    s = generate_movielens(tmp_path / "a", tag_applications=100, **SMALL)
    assert s.n_tags == 100 and pl.read_csv(tmp_path / "a" / "tags.csv").height == 100
    s = generate_movielens(tmp_path / "b", tag_applications=0, **SMALL)
    assert s.n_tags == 0
    assert (tmp_path / "b" / "tags.csv").read_bytes() == HEADERS["tags.csv"]
    r = pl.read_csv(tmp_path / "a" / "ratings.csv")
    assert r["userId"].n_unique() == 50
    assert r.group_by("userId").len()["len"].min() >= 15  # min 15 = half of 30 per user


def test_rewrite_replaces_files(tmp_path: Path) -> None:
    generate_movielens(tmp_path, seed=1, **SMALL)
    first = _read_bytes(tmp_path)
    generate_movielens(tmp_path, seed=2, **SMALL)
    assert _read_bytes(tmp_path) != first
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)


@pytest.mark.parametrize("kwargs", [{"n_users": 0}, {"n_movies": 1},
                                    {"ratings_per_user": 0.0}, {"tag_applications": -1}])
def test_bad_arguments(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        generate_movielens(tmp_path, **kwargs)
