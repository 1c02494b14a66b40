"""Commands that answer queries: `recommend` and `similar`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tagrec_cli.cli.app import (
    DEFAULT_WORKDIR,
    WorkdirOpt,
    command,
    err,
    fail,
    out,
)
from tagrec_cli.config import TOP_K


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


def _results(store, recs: list, k: int, key: str) -> list[dict]:
    """recommend.results, with a note for every query that got fewer than k movies."""
    from tagrec_cli.recommend import results

    rows = results(store, recs, key)
    for rec, res in zip(recs, rows, strict=True):
        if len(res["recommendations"]) < k:
            err.print(f"note: only {len(res['recommendations'])} movies left for "
                      f"{rec.query.label} (asked for {k})", highlight=False)
    return rows


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
    k: Annotated[int, typer.Option("-k", "--top", help="Movies per query.")] = TOP_K,
    include_seen: Annotated[bool, typer.Option(
        "--include-seen", help="Also recommend movies the user already rated.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")
                       ] = False,
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
) -> None:
    """Print the top-k movies for users, or for a taste given as tags, with reasons.

    Example: tagrec recommend --user 42 -k 10   (or: tagrec recommend --tags "heist, noir")
    """
    from tagrec_cli.documents import parse_tags
    from tagrec_cli.recommend import build_queries, rank
    from tagrec_cli.store import Store

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
    store = Store(workdir)
    store.catalogue  # noqa: B018 - read first: a missing or damaged catalogue is the error
    queries = build_queries(store, user or [], None if tags is None else parse_tags(tags),
                            include_seen)
    results = _results(store, rank(store, queries, k), k, "user" if user else "query")
    _print_recommendations(results, as_json, lambda res: f"top {len(res['recommendations'])} "
                           f"for {'user ' + str(res['user']) if user else 'your tags'}")


@command()
def similar(
    movie: Annotated[int | None, typer.Option("--movie", "-m", help="Movie id.")] = None,
    title: Annotated[str | None, typer.Option(
        "--title", help="Look the movie up by part of its title (case-insensitive).")] = None,
    k: Annotated[int, typer.Option("-k", "--top", min=1, help="Movies to list.")] = TOP_K,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")
                       ] = False,
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
) -> None:
    """Print the movies nearest to a movie in the movie table, with the tags they share.

    Example: tagrec similar --movie 1   (or: tagrec similar --title "toy story")
    """
    from tagrec_cli.recommend import similar_movies
    from tagrec_cli.store import Store

    if (movie is None) == (title is None):
        fail("give --movie ID or --title TEXT")
    store = Store(workdir)
    catalogue = store.catalogue
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
    rec = similar_movies(store, movie, k)
    results = _results(store, [rec], k, "query")
    name = catalogue.label(movie)
    results[0]["query"] = {"movieId": movie, "title": name}
    _print_recommendations(results, as_json,
                           lambda res: f"{len(res['recommendations'])} movies like {name}")
