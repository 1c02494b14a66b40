"""Commands that answer queries: `recommend` and `similar`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from tagrec_cli.cli.app import (
    DEFAULT_WORKDIR,
    WorkdirOpt,
    command,
    err,
    fail,
    out,
    shown,
)
from tagrec_cli.config import LOVED_RATING, TOP_K
from tagrec_cli.errors import QueryError, quoted

# Options both query commands take.
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
AllowStaleOpt = Annotated[bool, typer.Option(
    "--allow-stale", help="Answer from tables older than the workspace's ingest or model "
    "(otherwise an error says what to re-run).")]


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
    from rich.table import Table  # not imported for --json

    for res in results:
        table = Table(title=shown(title(res)))
        for name, justify in (("#", "right"), ("movieId", "right"), ("title", "left"),
                              ("genres", "left"), ("score", "right"), ("because", "left")):
            table.add_column(name, justify=justify)
        for r in res["recommendations"]:
            table.add_row(str(r["rank"]), str(r["movieId"]), shown(r["title"] or ""),
                          shown((r["genres"] or "").replace("|", ", ")), f"{r['score']:.3f}",
                          shown(_because(r["because"])))
        out.print(table)


def _results(store, recs: list, k: int, key: str) -> list[dict]:
    """recommend.results, with a note for every query that got fewer than k movies."""
    from tagrec_cli.recommend import results

    rows = results(store, recs, key)
    for rec, res in zip(recs, rows, strict=True):
        if len(res["recommendations"]) < k:
            err.print(shown(f"note: only {len(res['recommendations'])} movies left for "
                            f"{rec.query.label} (asked for {k})"), highlight=False,
                      soft_wrap=True)
    return rows


def one_blas_thread(fn: Callable[..., None]) -> Callable[..., None]:
    """Run the command with numpy's BLAS on one thread (recommend.one_blas_thread), restored
    afterwards (tests run commands in-process)."""

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> None:
        from tagrec_cli.recommend import one_blas_thread as limits

        with limits():
            fn(*args, **kwargs)

    return wrapper


@command()
@one_blas_thread
def recommend(
    user: Annotated[list[int] | None, typer.Option(
        "--user", "-u", help="User id (repeatable).")] = None,
    tags: Annotated[str | None, typer.Option(
        "--tags", "-t", help="Comma-separated tags describing a taste (quote a tag holding a "
        "comma: '\"rock, paper\", heist'); with --user, that user's rated movies are left out.")
    ] = None,
    tags_file: Annotated[Path | None, typer.Option(
        "--tags-file", dir_okay=False, help="Read the tags from a file (commas or lines).")
    ] = None,
    ratings: Annotated[Path | None, typer.Option(
        "--ratings", dir_okay=False, help="A new user's ratings: a CSV of "
        "movieId,rating[,timestamp]; recommends for them without retraining.")] = None,
    k: Annotated[int, typer.Option("-k", "--top", min=1, help="Movies per query.")] = TOP_K,
    include_seen: Annotated[bool, typer.Option(
        "--include-seen", help="Also recommend movies the user already rated (with --user "
        "or --ratings).")] = False,
    unrated: Annotated[bool, typer.Option(
        "--unrated", help="Rank only the movies nobody has rated yet (those added with "
        "`tagrec embed --add-movies`, and catalogue movies without a rating), by their "
        f"similarity to the movies the user rated {LOVED_RATING:g} or more.")] = False,
    as_json: JsonOpt = False,
    allow_stale: AllowStaleOpt = False,
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
) -> None:
    """Print the top-k movies for users, a taste given as tags, or new ratings, with reasons.

    Example: tagrec recommend --user 42   (or: --tags "heist, noir", --ratings my.csv, --unrated)
    """
    from tagrec_cli.documents import parse_tags
    from tagrec_cli.recommend import build_queries, rank, rank_unrated
    from tagrec_cli.store import Store
    from tagrec_cli.topk import check_k

    if tags is not None and tags_file is not None:
        fail("give --tags or --tags-file, not both")
    if ratings is not None and (user or tags is not None or tags_file is not None):
        fail("give --ratings alone (it describes a new user; --user and --tags describe "
             "others)")
    if tags_file is not None:
        from tagrec_cli.datasets.user_ratings import read_query_text

        tags = read_query_text(tags_file)
    if not user and tags is None and ratings is None:
        fail("give --user ID, --tags \"tag, tag\" for a taste, or --ratings FILE for a new "
             "user")
    check_k(k)  # before the workspace is read
    store = Store(workdir)
    store.catalogue  # noqa: B018 - read first: a missing or damaged catalogue is the error
    store.check_fresh(allow_stale)
    if ratings is not None:
        from tagrec_cli.datasets.user_ratings import read_user_ratings
        from tagrec_cli.recommend import ratings_query

        query, unknown = ratings_query(store, read_user_ratings(ratings), include_seen)
        if unknown:
            some = (f"{len(unknown)} rated movies are not in the catalogue and were"
                    if len(unknown) > 1 else "1 rated movie is not in the catalogue and was")
            err.print(shown(f"note: {some} left out (e.g. movie {unknown[0]})"),
                      highlight=False, soft_wrap=True)
        queries = [query]
    else:
        try:
            queries = build_queries(store, user or [],
                                    None if tags is None else parse_tags(tags), include_seen)
        except QueryError as exc:  # the tags came from a file: name the file, not --tags
            if tags_file is None or exc.parameter != "tags":
                raise
            fail(f"{tags_file} holds no tag (write them separated by commas or lines)")
    ranked = (rank_unrated if unrated else rank)(store, queries, k)
    results = _results(store, ranked, k, "user" if user else "query")
    if ratings is not None:  # as serve's POST /recommend answers
        results[0]["unknown_movies"] = unknown  # rated movies the catalogue lacks, left out
    what = "unrated movies " if unrated else ""
    _print_recommendations(results, as_json, lambda res: f"top {len(res['recommendations'])} "
                           f"{what}for {'user ' + str(res['user']) if user else res['query']}")


@command()
@one_blas_thread
def similar(
    movie: Annotated[int | None, typer.Option("--movie", "-m", help="Movie id.")] = None,
    title: Annotated[str | None, typer.Option(
        "--title", help="Look the movie up by part of its title, as typed: case, accents and "
        "MovieLens's trailing article aside ('the matrix' finds 'Matrix, The').")] = None,
    k: Annotated[int, typer.Option("-k", "--top", min=1, help="Movies to list.")] = TOP_K,
    as_json: JsonOpt = False,
    allow_stale: AllowStaleOpt = False,
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
) -> None:
    """Print the movies most like a movie (its vector, and for a rated movie its tags and
    genres too), with the tags they share.

    Example: tagrec similar --movie 1   (or: tagrec similar --title "toy story")
    """
    from tagrec_cli.recommend import similar_movies
    from tagrec_cli.store import Store
    from tagrec_cli.topk import check_k

    if (movie is None) == (title is None):
        fail("give --movie ID or --title TEXT")
    check_k(k)  # before the workspace is read
    store = Store(workdir)
    catalogue = store.catalogue
    store.check_fresh(allow_stale)
    if title is not None:
        movie, matches = catalogue.lookup(title)
        if len(matches) > 1:
            others = [m for m in matches if m != movie]
            listed = "; ".join(f"{m} {catalogue.label(m)}" for m in others[:5])
            more = f" and {len(others) - 5} more" if len(others) > 5 else ""
            err.print(shown(f"note: {len(matches)} movies match {quoted(title)}; showing "
                            f"{catalogue.label(movie)} (exact, or else most rated). Others: "
                            f"{listed}{more} — pick one with --movie ID"),
                      highlight=False, soft_wrap=True)
    rec = similar_movies(store, movie, k)
    results = _results(store, [rec], k, "query")
    name = catalogue.label(movie)
    results[0]["query"] = {"movieId": movie, "title": name}
    _print_recommendations(results, as_json,
                           lambda res: f"{len(res['recommendations'])} movies like {name}")
