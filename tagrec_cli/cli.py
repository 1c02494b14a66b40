"""The `tagrec` command line: parse options, call the library, format results, map errors.

Heavy modules (polars, torch, transformers) are imported inside the commands that need them,
so `tagrec --help` stays instant.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tagrec_cli import __version__
from tagrec_cli.artifacts import DEFAULT_WORKDIR, WORKDIR_ENV
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
    "--workdir", "-w", envvar=WORKDIR_ENV, file_okay=False,
    help="Workspace folder shared by all commands.")]


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
    from rich.markup import escape  # messages quote user input: a title like "[/]" is text

    err.print(f"[bold red]Error:[/] {escape(message)}", highlight=False, soft_wrap=True)
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
            except OSError as exc:  # unwritable workdir, full disk, ...
                fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))

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

    try:
        s = generate_movielens(out_dir, n_users=users, n_movies=movies, seed=seed)
    except ValueError as exc:
        fail(str(exc))
    out.print(f"wrote {s.n_users} users, {s.n_movies} movies, {s.n_ratings} ratings and "
              f"{s.n_tags} tag applications to {s.out_dir}")


# ---------------------------------------------------------------- ingest


@command()
def ingest(
    data: Annotated[Path | None, typer.Option(
        "--data", "-d", file_okay=False,
        help="Folder with ratings.csv, tags.csv, movies.csv \\[default: bundled sample_data/].")
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
        min=0, help="Pairs per class over both splits; 0 keeps every pair (the seed drew "
        "6000).")] = 0,
    seed: Annotated[int, typer.Option(help="Seed for drawing pairs.")] = 42,
    with_genres: Annotated[bool, typer.Option(
        help="Put genres in movie documents, and the 5 genres a user liked most first in "
        "user documents.")] = True,
    with_year: Annotated[bool, typer.Option(help="Put the year in movie documents.")] = True,
    with_title: Annotated[bool, typer.Option(help="Put the title in movie documents.")] = True,
    side_features: Annotated[bool, typer.Option(
        help="Give the model rating counts, mean ratings, dislike shares and years as numbers "
        "(else the mean rating is a 'rating X.Y' word in the movie document).")] = True,
) -> None:
    """Build tag documents and like/dislike pairs from MovieLens CSV files.

    Example: tagrec ingest --data ml-latest-small --holdout-fraction 0.2
    """
    from tagrec_cli.ingest import IngestConfig, run_ingest

    cfg = IngestConfig(
        holdout_fraction=holdout_fraction, max_tags=max_tags, top_user_tags=top_user_tags,
        liked_rating=liked_rating, like_threshold=like_threshold,
        pairs_per_class=pairs_per_class, seed=seed, with_genres=with_genres,
        with_year=with_year, with_title=with_title, side_features=side_features)
    data_dir = data or default_data_dir()
    with err.status("ingesting") as status:
        summary = run_ingest(data_dir, workdir, cfg,
                             progress=lambda msg: status.update(f"ingest: {msg}"))
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
    out.print(f"read {data_dir}, wrote {summary.out_dir}", highlight=False, soft_wrap=True)
    for warning in summary.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)


# ---------------------------------------------------------------- train


class Device(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Pooling(StrEnum):
    mean = "mean"
    cls = "cls"


class Precision(StrEnum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


class Loss(StrEnum):
    hybrid = "hybrid"
    cosine = "cosine"
    softmax = "softmax"


def _metrics_table(epochs: list[dict], best: int | None) -> Table:
    table = Table(title="validation pairs per epoch (epoch 0 = untrained heads)")
    for name in ("epoch", "train loss", "valid loss", "ROC-AUC", "sign acc.", "seq/s"):
        table.add_column(name, justify="right")

    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None or value != value else format(value, spec)

    for m in epochs:
        style = "bold green" if m["epoch"] == best else None
        table.add_row(str(m["epoch"]), fmt(m.get("train_loss"), ".4f"), fmt(m["loss"], ".4f"),
                      fmt(m["auc"], ".4f"), fmt(m["accuracy"], ".4f"),
                      fmt(m.get("seqs_per_s"), ".1f"), style=style)
    return table


@command()
def train(
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
    model: Annotated[str, typer.Option(
        "--model", "-m", help="Hugging Face BERT id or local folder [default: all-MiniLM-L6-v2, "
        "installed with tagrec].")] = "all-MiniLM-L6-v2",
    device: Annotated[Device, typer.Option(help="auto = CUDA when available.")] = Device.auto,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training pairs.")] = 10,
    batch_size: Annotated[int, typer.Option(
        min=1, help="Pairs per step (per process under torchrun).")] = 1024,
    lr: Annotated[float, typer.Option(min=0.0, help="Encoder learning rate (AdamW).")] = 5e-5,
    head_lr: Annotated[float, typer.Option(min=0.0, help="Projection-head learning rate.")
                       ] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seed for heads, batches and dropout.")] = 42,
    freeze_encoder: Annotated[bool, typer.Option(
        help="Train only the projection heads on cached encoder outputs (fast); "
        "--no-freeze-encoder fine-tunes BERT too.")] = True,
    group_by_user: Annotated[bool, typer.Option(
        help="Batch each user's pairs together so long user documents are encoded once "
        "(fewer in-batch negatives).")] = False,
    pooling: Annotated[Pooling, typer.Option(help="Pool token states by mean or [CLS].")
                       ] = Pooling.mean,
    dim: Annotated[int, typer.Option(min=1, help="Embedding size.")] = 512,
    max_length: Annotated[int, typer.Option(min=8, max=512, help="Tokens per document.")] = 128,
    margin: Annotated[float, typer.Option(min=-1.0, max=1.0,
                                          help="CosineEmbeddingLoss margin.")] = 0.0,
    loss: Annotated[Loss, typer.Option(
        help="hybrid: in-batch softmax over the pairs rated >= --positive-rating plus a "
        "like/dislike logistic loss on every pair; cosine: CosineEmbeddingLoss on "
        "like/dislike pairs (the seed's); softmax: in-batch softmax over liked pairs.")
    ] = Loss.hybrid,
    temperature: Annotated[float, typer.Option(
        min=1e-4, help="Softmax loss temperature (cosine / temperature).")] = 0.05,
    log_q: Annotated[bool, typer.Option(
        help="Softmax loss: correct for how often each movie appears as a negative.")] = True,
    positive_rating: Annotated[float, typer.Option(
        help="hybrid: ratings >= this are the softmax's positives.")] = 4.0,
    bce_weight: Annotated[float, typer.Option(
        min=0.0, help="hybrid: weight of the like/dislike logistic loss.")] = 4.0,
    cold_dropout: Annotated[float, typer.Option(
        min=0.0, max=0.99, help="Share of batch movies shown as never rated and of users "
        "shown without history, so new movies and --tags queries are placed by their "
        "documents.")] = 0.2,
) -> None:
    """Train the user and movie towers on the ingested like/dislike pairs.

    On several GPUs or processes: torchrun --nproc-per-node 4 -m tagrec_cli train ...

    Example: tagrec train --device cuda --epochs 3
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from tagrec_cli.distributed import launch_rank
    from tagrec_cli.model import ModelConfig
    from tagrec_cli.train import TrainConfig, run_train

    # Under torchrun only rank 0 reports; the other processes train silently.
    main = launch_rank() == 0
    console = err if main else Console(stderr=True, quiet=True)

    model_cfg = ModelConfig(base_model=model, pooling=pooling.value, dim=dim,
                            max_length=max_length)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, head_lr=head_lr, seed=seed,
                      freeze_encoder=freeze_encoder, group_by_user=group_by_user,
                      device=device.value, margin=margin, loss=loss.value,
                      temperature=temperature, log_q=log_q, positive_rating=positive_rating,
                      bce_weight=bce_weight, cold_dropout=cold_dropout)
    progress = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(),
                        TextColumn("{task.completed}/{task.total} steps"),
                        TextColumn("loss {task.fields[loss]:.4f}"),
                        TextColumn("{task.fields[rate]:.0f} seq/s"), TimeRemainingColumn(),
                        console=console, transient=True, disable=not main)
    tasks: dict[int, int] = {}

    def on_step(epoch: int, step: int, steps: int, loss: float, rate: float) -> None:
        if epoch not in tasks:
            tasks[epoch] = progress.add_task("train", total=steps, epoch=epoch, loss=loss,
                                             rate=rate)
        progress.update(tasks[epoch], completed=step, loss=loss, rate=rate)

    def on_epoch(m: dict) -> None:
        progress.console.print(
            f"epoch {m['epoch']}: valid loss {m['loss']:.4f}, ROC-AUC {m['auc']:.4f}, "
            f"sign accuracy {m['accuracy']:.4f}", highlight=False)

    with progress:
        result = run_train(workdir, model_cfg, cfg, on_step=on_step, on_epoch=on_epoch,
                           on_status=lambda msg: progress.console.print(f"[dim]{msg}[/]"))
    if not main:
        if result.model_dir is None or result.interrupted:  # the exit status rank 0 gives
            raise typer.Exit(1 if result.model_dir is None else 130)
        return
    out.print(_metrics_table(result.epochs, result.best_epoch))
    if result.model_dir is None:
        fail("interrupted before the first epoch finished; no model was saved")
    best = next(m for m in result.epochs if m["epoch"] == result.best_epoch)
    out.print(f"best epoch {result.best_epoch} (ROC-AUC {best['auc']:.4f}) saved to "
              f"{result.model_dir} in {result.seconds:.1f} s", highlight=False)
    if result.interrupted:
        err.print("interrupted: the best model so far is kept")
        raise typer.Exit(130)


# ---------------------------------------------------------------- embed


@command()
def embed(
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
    model_dir: Annotated[Path | None, typer.Option(
        "--model-dir", file_okay=False, help="Trained model folder \\[default: WORKDIR/model].")
    ] = None,
    device: Annotated[Device, typer.Option(help="auto = CUDA when available.")] = Device.auto,
    batch_size: Annotated[int, typer.Option(min=1, help="Documents per batch.")] = 256,
    add_movies: Annotated[Path | None, typer.Option(
        "--add-movies", dir_okay=False, help="Only add the movies of this CSV (movieId,title,"
        "genres,tags; tags separated by '|') to the existing tables, without retraining.")
    ] = None,
    replace: Annotated[bool, typer.Option(
        "--replace", help="With --add-movies: overwrite movies already in the table.")] = False,
    precision: Annotated[Precision, typer.Option(
        help="auto = bf16 on CUDA, fp32 on CPU; bf16 on a CPU with AVX-512 BF16 is ~1.8x "
        "faster.")] = Precision.auto,
) -> None:
    """Encode every user and movie document into embedding tables (safetensors).

    Example: tagrec embed --device cpu   (or: tagrec embed --add-movies new_movies.csv)
    """
    from rich.progress import Progress

    from tagrec_cli.embed import add_movies as add
    from tagrec_cli.embed import run_embed

    if add_movies is not None:
        with err.status("adding movies"):
            added = add(workdir, add_movies, replace, device.value, batch_size)
        what = f"added {len(added.added):,}"
        if added.replaced:
            what += f" and replaced {len(added.replaced):,}"
        out.print(f"{what} movies; the movie table now holds {added.movies:,} "
                  f"({added.seconds:.1f} s)", highlight=False)
        return
    if replace:
        fail("--replace only goes with --add-movies")

    with Progress(console=err, transient=True) as progress:
        tasks: dict[str, int] = {}

        def on_batch(side: str, n: int, total: int) -> None:
            if side not in tasks:
                tasks[side] = progress.add_task(f"embedding {side}s", total=total)
            progress.advance(tasks[side], n)

        summary = run_embed(workdir, model_dir, device.value, batch_size, on_batch,
                            precision.value)
    reused = (f"; {summary.reused:,} documents' encoder outputs reused from training"
              if summary.reused else "")
    out.print(f"wrote {summary.users:,} user and {summary.movies:,} movie embeddings "
              f"(dim {summary.dim}) to {summary.out_dir} in {summary.seconds:.1f} s{reused}",
              highlight=False)


# ---------------------------------------------------------------- recommend and similar


def _because(reason: dict) -> str:
    """'heist, twist ending; like: Heat (1995)' from one row's reasons."""
    parts = [", ".join(reason["tags"])] if reason["tags"] else []
    if reason["like"]:
        parts.append(f"like: {reason['like']['title']}")
    return "; ".join(parts)


def _print_recommendations(results: list[dict], as_json: bool,
                           title: Callable[[dict], str]) -> None:
    import json

    if as_json:
        typer.echo(json.dumps(results if len(results) > 1 else results[0], ensure_ascii=False))
        return
    from rich.markup import escape  # titles and tags are data: "[REC] (2007)", "[/]"

    for res in results:
        table = Table(title=escape(title(res)))
        for name, justify in (("#", "right"), ("movieId", "right"), ("title", "left"),
                              ("genres", "left"), ("score", "right"), ("because", "left")):
            table.add_column(name, justify=justify)
        for r in res["recommendations"]:
            table.add_row(str(r["rank"]), str(r["movieId"]), escape(r["title"] or ""),
                          escape((r["genres"] or "").replace("|", ", ")), f"{r['score']:.3f}",
                          escape(_because(r["because"])))
        out.print(table)


def _results(workdir: Path, recs: list, k: int, key: str, catalogue=None) -> list[dict]:
    """Recommendations with titles and reasons, as the JSON output gives them."""
    from tagrec_cli.catalogue import Catalogue
    from tagrec_cli.recommend import reasons

    catalogue = catalogue or Catalogue.load(workdir)  # at 25M size ~0.6 s: load it once
    why = reasons(workdir, recs, catalogue)
    results = []
    for rec, rec_reasons in zip(recs, why, strict=True):
        rows = [{"rank": i + 1, **meta, "score": round(float(score), 6), "because": because}
                for i, (meta, score, because) in enumerate(
                    zip(catalogue.info(rec.movie_ids), rec.scores, rec_reasons, strict=True))]
        results.append({key: rec.query.label if key == "query" else rec.user,
                        "recommendations": rows})
        if len(rows) < k:
            err.print(f"note: only {len(rows)} movies left for {rec.query.label} "
                      f"(asked for {k})", highlight=False)
    return results


@command()
def recommend(
    user: Annotated[list[int] | None, typer.Option(
        "--user", "-u", help="User id (repeatable).")] = None,
    tags: Annotated[str | None, typer.Option(
        "--tags", "-t", help="Comma-separated tags describing a taste (quote a tag holding a "
        "comma: '\"rock, paper\", heist'); with --user, added to that user's document.")
    ] = None,
    tags_file: Annotated[Path | None, typer.Option(
        "--tags-file", dir_okay=False, help="Read the tags from a file (commas or lines).")
    ] = None,
    k: Annotated[int, typer.Option("-k", "--top", help="Movies per query.")] = 10,
    include_seen: Annotated[bool, typer.Option(
        "--include-seen", help="Also recommend movies the user already rated.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")
                       ] = False,
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
) -> None:
    """Print the top-k movies for users, or for a taste given as tags, with reasons.

    Example: tagrec recommend --user 42 -k 10   (or: tagrec recommend --tags "heist, noir")
    """
    from tagrec_cli.catalogue import Catalogue, parse_tags
    from tagrec_cli.recommend import build_queries, rank

    if tags is not None and tags_file is not None:
        fail("give --tags or --tags-file, not both")
    if tags_file is not None:
        try:
            tags = tags_file.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            fail(f"{tags_file} is not UTF-8 text")
    if not user and tags is None:
        fail("give --user ID, or --tags \"tag, tag\" for a taste without ratings")
    if k < 1:
        fail(f"-k must be at least 1 (got {k})")
    catalogue = Catalogue.load(workdir)
    queries = build_queries(workdir, user or [], None if tags is None else parse_tags(tags),
                            include_seen, catalogue)
    results = _results(workdir, rank(workdir, queries, k), k, "user" if user else "query",
                       catalogue)
    _print_recommendations(results, as_json, lambda res: f"top {len(res['recommendations'])} "
                           f"for {'user ' + str(res['user']) if user else 'your tags'}")


@command()
def similar(
    movie: Annotated[int | None, typer.Option("--movie", "-m", help="Movie id.")] = None,
    title: Annotated[str | None, typer.Option(
        "--title", help="Look the movie up by part of its title (case-insensitive).")] = None,
    k: Annotated[int, typer.Option("-k", "--top", min=1, help="Movies to list.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")
                       ] = False,
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
) -> None:
    """Print the movies nearest to a movie in the movie table, with the tags they share.

    Example: tagrec similar --movie 1   (or: tagrec similar --title "toy story")
    """
    from tagrec_cli.catalogue import Catalogue
    from tagrec_cli.recommend import similar_movies

    if (movie is None) == (title is None):
        fail("give --movie ID or --title TEXT")
    catalogue = Catalogue.load(workdir)
    if title is not None:
        matches = catalogue.find(title)
        if not matches:
            close = catalogue.close_titles(title)
            hint = f"; did you mean {', '.join(repr(t) for t in close)}?" if close else ""
            fail(f"no movie title contains {title!r}{hint}")
        if len(matches) > 1:
            from rich.markup import escape

            table = Table(title=escape(f"{len(matches)} movies match {title!r}"))
            table.add_column("movieId", justify="right")
            table.add_column("title")
            for m in matches[:50]:
                table.add_row(str(m), escape(catalogue.label(m)))
            if len(matches) > 50:
                table.add_row("…", f"and {len(matches) - 50} more")
            out.print(table)
            fail(f"{len(matches)} movies match {title!r}: pick one with --movie ID")
        movie = matches[0]
    rec = similar_movies(workdir, movie, k, catalogue)
    results = _results(workdir, [rec], k, "query", catalogue)
    name = catalogue.label(movie)
    results[0]["query"] = {"movieId": movie, "title": name}
    _print_recommendations(results, as_json,
                           lambda res: f"{len(res['recommendations'])} movies like {name}")


# ---------------------------------------------------------------- download


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
        "--force", help="Download again even if DEST/NAME already has ratings.csv.")] = False,
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

    from tagrec_cli.download import download_dataset, human_size

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
        err.print(f"download interrupted after {human_size(done)}"
                  f"{'' if total is None else ' of ' + human_size(total)}: nothing was kept "
                  f"— run `{retry}` again", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(130) from None
    if result.downloaded:
        out.print(f"downloaded {name.value}.zip ({result.size:,} bytes, checksum verified) "
                  f"and unpacked it into {result.folder}", highlight=False, markup=False,
                  soft_wrap=True)
    else:
        out.print(f"{result.folder} already has ratings.csv; nothing downloaded (use --force "
                  "to download it again)", highlight=False, markup=False, soft_wrap=True)
    if result.archive is not None:
        out.print(f"kept the archive as {result.archive}", highlight=False, markup=False,
                  soft_wrap=True)
    out.print(f"next: {shlex.join(['tagrec', 'ingest', '--data', str(result.folder)])}",
              highlight=False, markup=False, soft_wrap=True)


# ---------------------------------------------------------------- evaluate


@command()
def evaluate(
    k: Annotated[int, typer.Option("-k", "--top", min=1, help="Length of each ranked list.")
                 ] = 10,
    baselines: Annotated[str, typer.Option(
        help="Comma-separated baselines (random, popular, bias, tfidf, als, ease); '' = none.")
    ] = "random,popular,bias,tfidf,als,ease",
    relevant_rating: Annotated[float, typer.Option(
        help="A held-out rating >= this makes the movie relevant.")] = 4.0,
    baselines_only: Annotated[bool, typer.Option(
        "--baselines-only", help="Skip tagrec (no `tagrec embed` output needed).")] = False,
    json_path: Annotated[Path | None, typer.Option(
        "--json", dir_okay=False, help="Also write the numbers and settings to this file.")
    ] = None,
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
) -> None:
    """Rank the whole catalogue per user and score it against the held-out ratings.

    Example: tagrec evaluate -k 10 --baselines popular,als,ease --json eval.json
    """
    from rich import box

    from tagrec_cli import artifacts
    from tagrec_cli.evaluate import SLICES, run_evaluate

    names = [b.strip() for b in baselines.split(",") if b.strip()]
    with err.status("evaluating") as status:
        report = run_evaluate(workdir, k=k, baselines=names, relevant_rating=relevant_rating,
                              include_tagrec=not baselines_only,
                              progress=lambda msg: status.update(f"evaluate: {msg}"))

    def fmt(value: float | None, spec: str = ".4f") -> str:
        return "-" if value is None or value != value else format(value, spec)

    columns = [("ndcg", f"NDCG@{k}"), ("recall", f"Recall@{k}"), ("hit_rate", f"Hit@{k}"),
               ("mrr", f"MRR@{k}"), ("coverage", f"Cover@{k}"),
               ("popularity_percentile", "Pop.pct"), ("auc", "PairAUC")]
    rows = {name: {**m.slices["all"], "auc": (m.pairs or {}).get("auc")}
            for name, m in report.methods.items()}

    def best(key: str, slice_rows: dict[str, dict]) -> float | None:
        values = [r.get(key) for r in slice_rows.values()]
        values = [v for v in values if v is not None and v == v]
        return max(values) if values else None

    table = Table(title=f"all users ({report.users_evaluated:,} with a held-out rating >= "
                        f"{relevant_rating:g}); best in bold, Pop.pct not ranked",
                  box=box.SIMPLE_HEAD)
    table.add_column("method")
    for _, title in columns:
        table.add_column(title, justify="right", min_width=len(title))
    top = {key: best(key, rows) for key, _ in columns if key != "popularity_percentile"}
    for name, r in rows.items():
        cells = []
        for key, _ in columns:
            text = fmt(r.get(key), ".1f" if key == "popularity_percentile" else ".4f")
            cells.append(f"[bold]{text}[/]" if r.get(key) is not None
                         and r.get(key) == top.get(key) else text)
        table.add_row(name, *cells)
    for name in report.skipped:
        table.add_row(name, *["-"] * len(columns), style="dim")
    out.print(table)

    slice_table = Table(title=f"slices: low history = <= {report.low_history_max:g} history "
                              f"ratings; cold movies = {report.cold_relevant_movies:,} "
                              "relevant, never rated in history",
                        box=box.SIMPLE_HEAD, pad_edge=False)
    slice_table.add_column("method")
    for s in SLICES:
        n = report.slice_users[s]
        label = s.replace("_", " ")
        slice_table.add_column(f"{label}\n{n:,} users\nNDCG@{k}", justify="right")
        slice_table.add_column(f"\n\nRecall@{k}", justify="right")
    slice_best = {(s, key): best(key, {n: m.slices[s] for n, m in report.methods.items()})
                  for s in SLICES for key in ("ndcg", "recall")}
    for name, m in report.methods.items():
        cells = []
        for s in SLICES:
            for key in ("ndcg", "recall"):
                value = m.slices[s][key]
                text = fmt(value)
                cells.append(f"[bold]{text}[/]" if value == slice_best[(s, key)] else text)
        slice_table.add_row(name, *cells)
    out.print(slice_table)

    if "tagrec" in report.methods and report.methods["tagrec"].pairs:
        pairs = report.methods["tagrec"].pairs
        out.print(f"tagrec on {report.valid_pairs:,} valid pairs: ROC-AUC "
                  f"{fmt(pairs['auc'])}, sign accuracy {fmt(pairs.get('sign_accuracy'))}",
                  highlight=False)
    for name, reason in report.skipped.items():
        err.print(f"[yellow]{name} skipped:[/] {reason}", highlight=False)
    out.print(f"{report.users_evaluated:,} users evaluated, {report.users_skipped:,} skipped "
              f"(no held-out rating >= {relevant_rating:g}); catalogue "
              f"{report.catalogue_size:,} movies; {report.seconds:.1f} s", highlight=False)
    if json_path is not None:
        artifacts.write_json(json_path, report.to_dict())
        out.print(f"wrote {json_path}", highlight=False)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
