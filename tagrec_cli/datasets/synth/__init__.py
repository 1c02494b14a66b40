"""Seeded synthetic MovieLens-format data: movies.csv, ratings.csv, tags.csv.

The files have the columns, header, quoting and CRLF line ends of MovieLens ml-latest-small; no
MovieLens data is used, only the format. The data has learnable structure: movies mix a few
"tag themes" (correlated with their genres), users have latent tastes over themes and genres,
pick movies by popularity x taste and rate them by taste + quality + bias + noise, and the few
users who tag describe the movies with their themes' vocabularies plus a long tail of rare
tags (theme phrases, people, remarks), so that, as in real MovieLens, the number of distinct tags
grows with the data and the most tagged movies carry hundreds of them. Everything is vectorised
numpy (MovieLens-25M scale runs in under a minute) and reproducible byte for byte.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from tagrec_cli.config import SAMPLE_DATA
from tagrec_cli.datasets.synth.lexicon import GENRES, NO_GENRES, NOISE_TAGS, TAG_THEMES, THEMES
from tagrec_cli.datasets.synth.world import DATA_END, DATA_START, simulate

__all__ = ["DATA_END", "DATA_START", "GENRES", "NOISE_TAGS", "NO_GENRES", "TAG_THEMES",
           "THEMES", "SynthSummary", "generate_movielens"]
LINE_END = "\r\n"  # ml-latest-small's CSVs end lines with CRLF


@dataclass(frozen=True)
class SynthSummary:
    """What generate_movielens wrote."""

    out_dir: Path
    n_users: int
    n_movies: int
    n_ratings: int
    n_tags: int  # tag application rows


def generate_movielens(out_dir: Path, n_users: int = SAMPLE_DATA["users"],
                       n_movies: int = SAMPLE_DATA["movies"], seed: int = SAMPLE_DATA["seed"],
                       ratings_per_user: float = 80.0,
                       tag_applications: int | None = None) -> SynthSummary:
    """Write movies.csv, ratings.csv and tags.csv for a synthetic MovieLens into out_dir.

    ratings_per_user is the target mean: each user gets min(20, mean / 2) plus a heavy-tailed
    extra, capped at half the movies released before their active window ends (so small
    catalogues give fewer). tag_applications=None means round(4.5% of the ratings); fewer are
    written only when taggers run out (at most 4 per movie they rated). The same arguments
    always give byte-identical files.
    """
    world = simulate(n_users, n_movies, seed, ratings_per_user, tag_applications)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_all(out_dir, {"movies.csv": world.movies, "ratings.csv": world.ratings,
                         "tags.csv": world.tags})
    return SynthSummary(out_dir=out_dir, n_users=n_users, n_movies=n_movies,
                        n_ratings=world.ratings.height, n_tags=world.tags.height)


@contextlib.contextmanager
def _ctrl_c_held() -> Iterator[None]:
    """Ctrl-C inside the block takes effect when it ends. A handler, not a signal mask: a
    mask holds back only this thread's signals, and polars' threads would still take it."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers (and only it gets KeyboardInterrupt)
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _write_all(out_dir: Path, frames: dict[str, pl.DataFrame]) -> None:
    """Write every CSV under a temporary name first (artifacts' names, which recover() and
    `tagrec clean` know), then rename them all into place with Ctrl-C held back: a Ctrl-C
    leaves the old set or the new one, never a mix (`sample-data --force` over a dataset);
    only a kill between the renames could."""
    from tagrec_cli.artifacts import recover, temp_name

    tmps = {name: temp_name(out_dir / name) for name in frames}
    try:
        for name, df in frames.items():
            recover(out_dir, name)  # what a killed run left
            df.write_csv(tmps[name], line_terminator=LINE_END, check_extension=False)
        with _ctrl_c_held():
            for name in frames:
                os.replace(tmps[name], out_dir / name)
    finally:
        # polars raises KeyboardInterrupt from inside a write and Python's handler raises it
        # again at the next line: the clean-up must outlast that second one
        again = None
        for tmp in tmps.values():
            while True:
                try:
                    tmp.unlink(missing_ok=True)
                    break
                except KeyboardInterrupt as exc:
                    again = exc
        if again is not None:
            raise again
