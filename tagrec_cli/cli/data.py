"""Commands that bring data in: `sample-data`, `download` and `ingest`."""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from tagrec_cli.cli.app import (
    DEFAULT_WORKDIR,
    WorkdirOpt,
    command,
    default_data_dir,
    err,
    fail,
    out,
    plain,
    shown,
)
from tagrec_cli.config import MAX_SEED, SAMPLE_DATA, IngestConfig

INGEST = IngestConfig()  # every ingest default


@command("sample-data")
def sample_data(
    out_dir: Annotated[Path, typer.Option("--out", file_okay=False,
                                          help="Folder to write the CSV files into.")],
    users: Annotated[int, typer.Option(min=1, max=1_000_000, help="Number of users.")
                     ] = SAMPLE_DATA["users"],
    movies: Annotated[int, typer.Option(min=2, max=200_000, help="Number of movies.")
                      ] = SAMPLE_DATA["movies"],
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED,
                                      help="Random seed; same seed, same bytes.")
                    ] = SAMPLE_DATA["seed"],
    force: Annotated[bool, typer.Option(
        "--force", help="Overwrite the CSV files a folder already has.")] = False,
) -> None:
    """Generate a synthetic MovieLens-format dataset with learnable taste structure.

    Example: tagrec sample-data --out my_data --users 300 --movies 800 --seed 7
    """
    from tagrec_cli.datasets.movielens import SCHEMAS
    from tagrec_cli.datasets.synth import generate_movielens

    there = [name for name in SCHEMAS if (out_dir / name).exists()]
    if there and not force:  # it may be a real dataset: never replaced without being asked
        fail(f"{out_dir} already has {', '.join(there)}; use --force to overwrite")
    try:
        s = generate_movielens(out_dir, n_users=users, n_movies=movies, seed=seed)
    except ValueError as exc:
        fail(str(exc))
    out.print(shown(f"wrote {s.n_users} users, {s.n_movies} movies, {s.n_ratings} ratings "
                    f"and {s.n_tags} tag applications to {s.out_dir}"), highlight=False)


class DatasetName(StrEnum):
    """The GroupLens archives `tagrec download` knows checksums for (download.ARCHIVES)."""

    ml_latest_small = "ml-latest-small"
    ml_25m = "ml-25m"
    ml_32m = "ml-32m"


@command()
def download(
    name: Annotated[DatasetName, typer.Argument(
        help="ml-latest-small (1 MB), ml-25m (262 MB) or ml-32m (239 MB).", show_default=False)],
    dest: Annotated[Path, typer.Option(
        "--dest", file_okay=False, help="Folder to unpack DEST/NAME into; created if missing.")
    ] = Path("."),
    force: Annotated[bool, typer.Option(
        "--force", help="Download again even if DEST/NAME already has the CSV files.")
    ] = False,
    keep_archive: Annotated[bool, typer.Option(
        "--keep-archive", help="Keep DEST/NAME.zip after unpacking it.")] = False,
    base_url: Annotated[str | None, typer.Option(
        "--base-url", envvar="TAGREC_DOWNLOAD_URL", show_default=False,
        help="Folder URL holding NAME.zip, e.g. a mirror (default: GroupLens); the archive "
        "is still checked against tagrec's recorded checksums.")] = None,
) -> None:
    """Download a MovieLens dataset from GroupLens, verify its checksum and unpack it.

    Example: tagrec download ml-latest-small --dest data
    """
    import shlex

    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from tagrec_cli.datasets.download import download_dataset, human_size

    progress = Progress(TextColumn(f"{name.value}.zip"), BarColumn(), DownloadColumn(),
                        TransferSpeedColumn(), TimeRemainingColumn(), console=err,
                        transient=True, disable=not err.is_terminal)  # no bar in logs
    task = progress.add_task("download", total=None)

    def on_progress(done: int, total: int | None) -> None:
        progress.update(task, completed=done, total=total)

    try:
        with progress:
            result = download_dataset(name.value, dest, base_url=base_url, force=force,
                                      keep_archive=keep_archive, on_progress=on_progress)
    except KeyboardInterrupt:
        done, total = progress.tasks[0].completed, progress.tasks[0].total
        retry = shlex.join(["tagrec", "download", name.value]
                           + ([] if dest == Path(".") else ["--dest", str(dest)]))
        err.print(plain(f"download interrupted after {human_size(done)}"
                        f"{'' if total is None else ' of ' + human_size(total)}: nothing was "
                        f"kept — run `{retry}` again"), highlight=False, markup=False,
                  soft_wrap=True)
        raise typer.Exit(130) from None
    if result.downloaded:
        out.print(plain(f"downloaded {name.value}.zip ({result.size:,} bytes, checksum "
                        f"verified) and unpacked it into {result.folder}"), highlight=False,
                  markup=False, soft_wrap=True)
    else:
        out.print(plain(f"{result.folder} already has the CSV files; nothing downloaded (use "
                        "--force to download it again)"), highlight=False, markup=False,
                  soft_wrap=True)
    if result.archive is not None:
        out.print(plain(f"kept the archive as {result.archive}"), highlight=False, markup=False,
                  soft_wrap=True)
    out.print(plain(f"next: {shlex.join(['tagrec', 'ingest', '--data', str(result.folder)])}"),
              highlight=False, markup=False, soft_wrap=True)


@command()
def ingest(
    data: Annotated[Path | None, typer.Option(
        "--data", "-d", file_okay=False,
        help="Folder with ratings.csv, tags.csv, movies.csv \\[default: bundled sample_data/].")
    ] = None,
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
    holdout_fraction: Annotated[float, typer.Option(
        min=0.0, max=0.99, help="Latest share of each user's ratings held out for validation; "
        "0 = refit on everything.")] = INGEST.holdout_fraction,
    max_tags: Annotated[int, typer.Option(min=1, max=100_000, help="Tags per document at most.")
                        ] = INGEST.max_tags,
    top_user_tags: Annotated[int, typer.Option(
        min=0, help="Tags a user document takes from the movies the user liked.")
    ] = INGEST.top_user_tags,
    liked_rating: Annotated[float, typer.Option(
        help="A history rating >= this makes a movie 'liked' for user documents.")
                            ] = INGEST.liked_rating,
    like_threshold: Annotated[float, typer.Option(
        help="Pair label: +1 (like) if rating >= this, else -1 (dislike).")
                              ] = INGEST.like_threshold,
    pairs_per_class: Annotated[int, typer.Option(
        min=0, help="Pairs per class over both splits; 0 keeps every pair (tagrec's first "
        "version drew 6000).")] = INGEST.pairs_per_class,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Seed for drawing pairs.")
                    ] = INGEST.seed,
    with_genres: Annotated[bool, typer.Option(
        help="Put genres in movie documents, and the genres a user liked most first in "
        "user documents.")] = INGEST.with_genres,
    with_year: Annotated[bool, typer.Option(help="Put the year in movie documents.")
                         ] = INGEST.with_year,
    with_title: Annotated[bool, typer.Option(help="Put the title in movie documents.")
                          ] = INGEST.with_title,
    side_features: Annotated[bool, typer.Option(
        help="Give the model rating counts, mean ratings, dislike shares and years as numbers "
        "(else the mean rating is a 'rating X.Y' word in the movie document).")
    ] = INGEST.side_features,
) -> None:
    """Build tag documents and like/dislike pairs from MovieLens CSV files.

    Example: tagrec ingest --data ml-latest-small
    """
    from tagrec_cli.ingest import run_ingest

    cfg = replace(
        INGEST,
        holdout_fraction=holdout_fraction, max_tags=max_tags, top_user_tags=top_user_tags,
        liked_rating=liked_rating, like_threshold=like_threshold,
        pairs_per_class=pairs_per_class, seed=seed, with_genres=with_genres,
        with_year=with_year, with_title=with_title, side_features=side_features)
    data_dir = data or default_data_dir()
    with err.status("ingesting") as status:
        summary = run_ingest(data_dir, workdir, cfg,
                             progress=lambda msg: status.update(f"ingest: {msg}"))
    from rich.table import Table  # here: a query command should not import it

    table = Table(title="ingest summary", show_header=False)
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
    out.print(shown(f"read {data_dir}, wrote {summary.out_dir}"), highlight=False,
              soft_wrap=True)
    for warning in summary.warnings:
        err.print(f"[yellow]warning:[/] {shown(warning)}", highlight=False)


@command()
def clean(
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
    caches: Annotated[bool, typer.Option(
        "--caches", help="Also remove cache/ (token tables, encoder outputs; rebuilt when "
        "needed).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would go.")
                       ] = False,
) -> None:
    """Remove what no artifact needs: dead commands' leftovers, and with --caches the caches.

    Example: tagrec clean --caches --dry-run
    """
    from tagrec_cli.clean import run_clean
    from tagrec_cli.datasets.download import human_size

    removed = run_clean(workdir, caches, dry_run)
    verb = "would remove" if dry_run else "removed"
    for path, size in removed:
        out.print(shown(f"{verb} {path} ({human_size(size)})"), highlight=False,
                  soft_wrap=True)
    total = human_size(sum(size for _, size in removed))
    out.print(shown(f"{verb} {len(removed)} item(s), {total}, from {workdir}"), highlight=False,
              soft_wrap=True)
