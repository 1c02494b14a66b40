"""The `tagrec` command line: parse options, call the library, format results, map errors.

Heavy modules (polars, torch, transformers) are imported inside the commands that need them,
so `tagrec --help` stays instant.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tagrec_cli import __version__
from tagrec_cli.errors import TagrecError

app = typer.Typer(
    name="tagrec",
    help="Tag-driven movie recommender: learns user and movie embeddings from MovieLens tags.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

WorkdirOpt = Annotated[Path, typer.Option(
    "--workdir", "-w", envvar="TAGREC_WORKDIR", file_okay=False,
    help="Workspace folder shared by all commands.")]
DEFAULT_WORKDIR = Path("tagrec-workspace")


def default_data_dir() -> Path:
    """The bundled sample data: beside the package in a checkout, inside it when installed."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "sample_data", here / "sample_data"):
        if (candidate / "ratings.csv").is_file():
            return candidate
    return here.parent / "sample_data"


def _version(value: bool) -> None:
    if value:
        out.print(f"tagrec {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Tag-driven movie recommender.

    Example: tagrec ingest && tagrec train && tagrec embed && tagrec recommend --user 42
    """


def fail(message: str) -> None:
    err.print(f"[bold red]Error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def command(name: str | None = None) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register a command whose TagrecErrors become a one-line message and exit status 1."""

    def register(fn: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(fn)
        def wrapper(*args: object, **kwargs: object) -> None:
            try:
                fn(*args, **kwargs)
            except TagrecError as exc:
                fail(str(exc))

        return app.command(name)(wrapper)

    return register


# ---------------------------------------------------------------- sample-data


@command("sample-data")
def sample_data(
    out_dir: Annotated[Path, typer.Option("--out", file_okay=False,
                                          help="Folder to write the CSV files into.")],
    users: Annotated[int, typer.Option(min=1, help="Number of users.")] = 600,
    movies: Annotated[int, typer.Option(min=1, help="Number of movies.")] = 1500,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = 42,
) -> None:
    """Generate a synthetic MovieLens-format dataset with learnable taste structure.

    Example: tagrec sample-data --out my_data --users 300 --movies 800 --seed 7
    """
    from tagrec_cli.synth import generate_movielens

    s = generate_movielens(out_dir, n_users=users, n_movies=movies, seed=seed)
    out.print(f"wrote {s.n_users} users, {s.n_movies} movies, {s.n_ratings} ratings and "
              f"{s.n_tags} tag applications to {s.out_dir}")


# ---------------------------------------------------------------- ingest


@command()
def ingest(
    data: Annotated[Path | None, typer.Option(
        "--data", "-d", file_okay=False,
        help="Folder with ratings.csv, tags.csv, movies.csv [default: bundled sample_data/].")
    ] = None,
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
    holdout_fraction: Annotated[float, typer.Option(
        min=0.0, max=0.99, help="Latest share of each user's ratings held out for validation; "
        "0 = refit on everything.")] = 0.2,
    max_tags: Annotated[int, typer.Option(min=1, help="Tags per document at most.")] = 128,
    top_user_tags: Annotated[int, typer.Option(
        min=0, help="Tags a user document takes from the movies the user liked.")] = 50,
    liked_rating: Annotated[float, typer.Option(
        help="A history rating >= this makes a movie 'liked' for user documents.")] = 2.5,
    like_threshold: Annotated[float, typer.Option(
        help="Pair label: +1 (like) if rating >= this, else -1 (dislike).")] = 2.5,
    pairs_per_class: Annotated[int, typer.Option(
        min=0, help="Pairs per class over both splits; 0 keeps every pair.")] = 6000,
    seed: Annotated[int, typer.Option(help="Seed for drawing pairs.")] = 42,
    with_genres: Annotated[bool, typer.Option(help="Put genres in movie documents.")] = False,
    with_year: Annotated[bool, typer.Option(help="Put the year in movie documents.")] = False,
    with_title: Annotated[bool, typer.Option(help="Put the title in movie documents.")] = False,
) -> None:
    """Build tag documents and like/dislike pairs from MovieLens CSV files.

    Example: tagrec ingest --data ml-latest-small --holdout-fraction 0.2
    """
    from tagrec_cli.ingest import IngestConfig, run_ingest

    cfg = IngestConfig(
        holdout_fraction=holdout_fraction, max_tags=max_tags, top_user_tags=top_user_tags,
        liked_rating=liked_rating, like_threshold=like_threshold,
        pairs_per_class=pairs_per_class, seed=seed, with_genres=with_genres,
        with_year=with_year, with_title=with_title)
    data_dir = data or default_data_dir()
    with err.status("ingesting") as status:
        summary = run_ingest(data_dir, workdir, cfg,
                             progress=lambda msg: status.update(f"ingest: {msg}"))
    table = Table(title=f"ingest: {data_dir} -> {summary.out_dir}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("count", justify="right")
    rows = [
        ("users (documents)", summary.users), ("movies (documents)", summary.movies),
        ("ratings", summary.ratings), ("  history", summary.history_ratings),
        ("  held out", summary.holdout_ratings),
        ("tag applications (history)", summary.tag_applications),
        ("distinct tags", summary.distinct_tags),
        ("empty user documents", summary.empty_user_documents),
        ("empty movie documents", summary.empty_movie_documents),
    ]
    for split, counts in summary.pairs.items():
        rows += [(f"{split} pairs: like", counts["like"]),
                 (f"{split} pairs: dislike", counts["dislike"])]
    for name, value in rows:
        table.add_row(name, f"{value:,}")
    table.add_row("time", f"{summary.seconds:.2f} s")
    out.print(table)
    for warning in summary.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
