"""Commands that make the model and its tables: `train` and `embed`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tagrec_cli.cli.app import (
    DEFAULT_WORKDIR,
    Device,
    Loss,
    Pooling,
    Precision,
    WorkdirOpt,
    command,
    err,
    fail,
    out,
    shown,
)
from tagrec_cli.config import EMBED_BATCH_SIZE, MAX_SEED, ModelConfig, TrainConfig
from tagrec_cli.errors import quoted

MODEL, TRAIN = ModelConfig(), TrainConfig()  # every model and training default


NO_VALIDATION = ("no validation pairs: the default ingest trains on every rating, and "
                 "`tagrec evaluate` measures quality on its own split")


def _number(x: float | None) -> bool:
    return x is not None and x == x  # not None, not NaN


def _validated(m: dict) -> bool:
    return _number(m["auc"])  # NaN without validation pairs


def _metrics_table(epochs: list[dict], best: int | None):
    from rich.table import Table  # here: a query command should not import it

    title = ("validation pairs per epoch (epoch 0 = untrained heads)"
             if any(_validated(m) for m in epochs) else "training per epoch")
    table = Table(title=title)
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
        "--model", "-m", help="Hugging Face BERT id or local folder (the default is "
        "installed with tagrec).")] = MODEL.base_model,
    device: Annotated[Device, typer.Option(help="auto = CUDA when available.")
                      ] = Device(TRAIN.device),
    epochs: Annotated[int, typer.Option(min=1, max=1000, help="Passes over the training pairs.")
                      ] = TRAIN.epochs,
    max_steps: Annotated[int, typer.Option(
        min=0, help="Stop after this many steps, the last epoch cut short, so that large "
        "data trains in bounded time (0 = no limit; steps of all processes together).")
    ] = TRAIN.max_steps,
    batch_size: Annotated[int, typer.Option(
        min=1, help="Pairs per step (per process under torchrun).")] = TRAIN.batch_size,
    lr: Annotated[float, typer.Option(min=0.0, help="Encoder learning rate (AdamW).")
                   ] = TRAIN.lr,
    head_lr: Annotated[float, typer.Option(min=0.0, help="Projection-head learning rate.")
                       ] = TRAIN.head_lr,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED,
                                      help="Seed for heads, batches and dropout.")
                    ] = TRAIN.seed,
    freeze_encoder: Annotated[bool, typer.Option(
        help="Train only the projection heads on cached encoder outputs (fast); "
        "--no-freeze-encoder fine-tunes BERT too.")] = TRAIN.freeze_encoder,
    group_by_user: Annotated[bool, typer.Option(
        help="Batch each user's pairs together so long user documents are encoded once "
        "(fewer in-batch negatives).")] = TRAIN.group_by_user,
    pooling: Annotated[Pooling, typer.Option(help="Pool token states by mean or \\[CLS].")
                       ] = Pooling(MODEL.pooling),
    dim: Annotated[int, typer.Option(min=1, max=16384, help="Embedding size.")] = MODEL.dim,
    collaborative: Annotated[bool, typer.Option(
        help="Learn a vector per movie, added to its text's, and pool the liked movies' "
        "vectors into each user's (new movies and users fall back to text).")
    ] = MODEL.collaborative,
    popularity_prior: Annotated[float, typer.Option(
        min=0.0, help="Rank by cosine + this x (1 + --prior-shrink / n) x the movie's "
        "popularity (z-scored log ratings), for a user known by n ratings; 0 = cosine "
        "alone. Used by embed, recommend, serve and evaluate, not by training.")
    ] = MODEL.popularity_prior,
    prior_shrink: Annotated[float, typer.Option(
        min=0.0, help="How much more the popularity prior weighs for users known by few "
        "ratings (see --popularity-prior).")] = MODEL.prior_shrink,
    cold_prior: Annotated[float, typer.Option(
        help="The popularity prior of a movie nobody rated (an added one, say), in standard "
        "deviations of the rated movies' (0 = their mean).")] = MODEL.cold_prior,
    max_length: Annotated[int, typer.Option(min=8, max=512, help="Tokens per document.")
                      ] = MODEL.max_length,
    margin: Annotated[float, typer.Option(min=-1.0, max=1.0,
                                          help="CosineEmbeddingLoss margin.")] = TRAIN.margin,
    loss: Annotated[Loss, typer.Option(
        help="hybrid: in-batch softmax over the pairs rated >= --positive-rating plus a "
        "like/dislike logistic loss on every pair; cosine: CosineEmbeddingLoss on "
        "like/dislike pairs (tagrec's first objective); softmax: in-batch softmax over liked "
        "pairs.")
    ] = Loss(TRAIN.loss),
    temperature: Annotated[float, typer.Option(
        min=1e-4, help="Softmax loss temperature (cosine / temperature).")] = TRAIN.temperature,
    log_q: Annotated[bool, typer.Option(
        help="Softmax loss: correct for how often each movie appears as a negative.")
    ] = TRAIN.log_q,
    positive_rating: Annotated[float, typer.Option(
        help="hybrid: ratings >= this are the softmax's positives.")
    ] = TRAIN.positive_rating,
    bce_weight: Annotated[float, typer.Option(
        min=0.0, help="hybrid: weight of the like/dislike logistic loss.")
    ] = TRAIN.bce_weight,
    cold_dropout: Annotated[float, typer.Option(
        min=0.0, max=0.99, help="Share of batch movies shown as never rated and of users "
        "shown without history, so new movies and --tags queries are placed by their "
        "documents.")] = TRAIN.cold_dropout,
    short_history: Annotated[int, typer.Option(
        min=0, help="Train also on pseudo-users known only by each user's first 1..N "
        "ratings, as new users are (0 = none).")] = TRAIN.short_history,
    short_history_next: Annotated[int, typer.Option(
        min=1, help="Pairs of each short-history user: the user's next ones.")
    ] = TRAIN.short_history_next,
    compile: Annotated[bool, typer.Option(
        "--compile", help="torch.compile the encoder and heads: faster steps on a GPU after "
        "a slow first few (needs a C compiler on the CPU).")] = TRAIN.compile,
) -> None:
    """Train the user and movie towers on the ingested like/dislike pairs.

    On several GPUs or processes: torchrun --nproc-per-node 4 -m tagrec_cli train ...

    Example: tagrec train --device cuda --epochs 3
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from tagrec_cli.train import run_train
    from tagrec_cli.train.distributed import launch_rank

    # Under torchrun only rank 0 reports; the other processes train silently.
    main = launch_rank() == 0
    console = err if main else Console(stderr=True, quiet=True)

    # A local folder is recorded by its absolute path: evaluate trains its stages from the
    # recorded one, and from another folder "tinybert" would name another encoder (or none).
    if model != MODEL.base_model and Path(model).expanduser().is_dir():  # (the default is
        model = str(Path(model).expanduser().resolve())  # the packaged one, by its name)
    model_cfg = replace(MODEL, base_model=model, pooling=pooling.value, dim=dim,
                        max_length=max_length, collaborative=collaborative,
                        popularity_prior=popularity_prior, prior_shrink=prior_shrink,
                        cold_prior=cold_prior)
    cfg = replace(TRAIN, epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr,
                      head_lr=head_lr, seed=seed,
                      freeze_encoder=freeze_encoder, group_by_user=group_by_user,
                      device=device.value, margin=margin, loss=loss.value,
                      temperature=temperature, log_q=log_q, positive_rating=positive_rating,
                      bce_weight=bce_weight, cold_dropout=cold_dropout,
                      short_history=short_history, short_history_next=short_history_next,
                      compile=compile)
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
        if _validated(m):
            line = (f"epoch {m['epoch']}: valid loss {m['loss']:.4f}, ROC-AUC {m['auc']:.4f}, "
                    f"sign accuracy {m['accuracy']:.4f}")
        elif _number(m.get("train_loss")):
            line = f"epoch {m['epoch']}: train loss {m['train_loss']:.4f}"
        else:
            return  # epoch 0 has nothing to say without validation pairs
        progress.console.print(line, highlight=False)

    with progress:
        result = run_train(workdir, model_cfg, cfg, on_step=on_step, on_epoch=on_epoch,
                           on_status=lambda msg: progress.console.print(f"[dim]{shown(msg)}[/]"))
    if not main:
        if result.model_dir is None or result.interrupted:  # the exit status rank 0 gives
            raise typer.Exit(1 if result.model_dir is None else 130)
        return
    out.print(_metrics_table(result.epochs, result.best_epoch))
    if result.model_dir is None:  # Ctrl-C in epoch 1: a status of 130 like any Ctrl-C
        err.print("[bold red]Error:[/] interrupted before the first epoch finished; no model "
                  "was saved", highlight=False, soft_wrap=True)
        raise typer.Exit(130)
    if result.kept_previous:  # a finished model is not replaced by a cut-short run's
        err.print(shown(f"interrupted: {result.model_dir} keeps the model it had; this run's "
                        f"best epoch ({result.best_epoch}) was not saved"),
                  highlight=False, soft_wrap=True)
        raise typer.Exit(130)
    best = next(m for m in result.epochs if m["epoch"] == result.best_epoch)
    chosen = (f"best epoch {result.best_epoch} (ROC-AUC {best['auc']:.4f})" if _validated(best)
              else f"epoch {result.best_epoch} ({NO_VALIDATION})")
    out.print(shown(f"{chosen} saved to {result.model_dir} in {result.seconds:.1f} s"),
              highlight=False)
    if result.interrupted:
        err.print("interrupted: the best model so far is kept")
        raise typer.Exit(130)


@command()
def embed(
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
    model_dir: Annotated[Path | None, typer.Option(
        "--model-dir", file_okay=False, help="Trained model folder \\[default: WORKDIR/model].")
    ] = None,
    device: Annotated[Device, typer.Option(help="auto = CUDA when available.")] = Device.auto,
    batch_size: Annotated[int, typer.Option(min=1, help="Documents per batch.")
                          ] = EMBED_BATCH_SIZE,
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

    if add_movies is not None:  # a bad file is one line now, not after torch loads (seconds)
        from tagrec_cli.datasets.new_movies import comma_joined, read_new_movies

        joined = comma_joined(read_new_movies(add_movies))
        if joined is not None:
            line, tag = joined
            err.print(shown(f"note: {add_movies}, line {line}: the tags {quoted(tag)} are "
                            "read as one tag; separate tags with '|' (heist|caper)"),
                      highlight=False, soft_wrap=True)
    if model_dir is not None and not model_dir.is_dir():
        fail(f"--model-dir {model_dir} is not a folder (give the folder `tagrec train` "
             "wrote)")
    from tagrec_cli.embed import add_movies as add
    from tagrec_cli.embed import run_embed

    if add_movies is not None:
        with err.status("adding movies"):
            added = add(workdir, add_movies, replace, device.value, batch_size)
        what = f"added {len(added.added):,}"
        if added.replaced:
            what += f" and replaced {len(added.replaced):,}"
        noun = "movie" if len(added.added) + len(added.replaced) == 1 else "movies"
        out.print(f"{what} {noun}; the movie table now holds {added.movies:,} "
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
    if summary.readded:
        noun = "movie" if summary.readded == 1 else "movies"
        reused += (f"; {summary.readded:,} {noun} added earlier with --add-movies added "
                   "again")
    out.print(shown(f"wrote {summary.users:,} user and {summary.movies:,} movie embeddings "
                    f"(dim {summary.dim}) to {summary.out_dir} in {summary.seconds:.1f} s"
                    f"{reused}"), highlight=False)
    if summary.superseded:  # the user's row for them is gone from the tables: say so
        ids = ", ".join(str(m) for m in summary.superseded[:10])
        more = f" and {len(summary.superseded) - 10} more" if len(summary.superseded) > 10 else ""
        err.print(shown(f"note: the ingest data now has movies you added with --add-movies "
                        f"({ids}{more}); its rows are used. Your CSVs are kept in "
                        f"{summary.out_dir / 'added'}: add one again with --replace to use "
                        "yours"), highlight=False, soft_wrap=True)
