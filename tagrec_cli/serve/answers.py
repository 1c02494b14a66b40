"""Each route's JSON: the CLI's `--json` for the same question, from one generation."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from tagrec_cli import __version__, artifacts
from tagrec_cli.config import LOVED_RATING
from tagrec_cli.errors import ArtifactError, TagrecError, quoted
from tagrec_cli.serve.errors import ApiError
from tagrec_cli.serve.generations import ServeStore

MAX_K = 1000  # movies per answer at most: a bigger k is a 400, not a megabyte of JSON
BODY_SHAPE = '{"ratings": [{"movieId": ID, "rating": R}, ...]}'
SEARCH_LIMIT = 20  # /movies: matches listed by default
NEW_USER_QUERY = ("k", "unrated", "include_seen")  # POST /recommend's query parameters

UNRATED_HELP = ("Only the movies nobody has rated yet, by similarity to the movies the user "
                f"rated {LOVED_RATING:g} or more (`recommend --unrated`).")


def ranked(store: ServeStore, queries: list, k: int, unrated: bool) -> list:
    """recommend.rank, or rank_unrated (`--unrated`)."""
    from tagrec_cli.recommend import rank, rank_unrated

    return (rank_unrated if unrated else rank)(store, queries, k)


def recommendation(store: ServeStore, user: int | None, tags: list[str] | None, k: int,
                   include_seen: bool, unrated: bool = False) -> dict:
    """recommend --user / --tags [--unrated] --json for one query."""
    from tagrec_cli.recommend import build_queries, results

    queries = build_queries(store, [] if user is None else [user], tags, include_seen)
    return results(store, ranked(store, queries, k, unrated),
                   "user" if user is not None else "query")[0]


def similar(store: ServeStore, movie: int | None, title: str | None, k: int) -> dict:
    """similar --movie / --title --json."""
    from tagrec_cli.recommend import results, similar_movies

    catalogue = store.catalogue
    if title is not None:
        movie = catalogue.lookup(title)[0]
    rec = similar_movies(store, movie, k)
    res = results(store, [rec], "query")[0]
    res["query"] = {"movieId": movie, "title": catalogue.label(movie)}
    return res


def search(store: ServeStore, title: str, limit: int) -> dict:
    """Movies whose title contains `title`: the one `similar --title` picks first, then by id."""
    if limit < 1:
        raise ApiError(400, f"limit must be at least 1 (got {limit})", "limit")
    catalogue = store.catalogue
    best, matches = catalogue.pick(title)
    ordered = ([best] + [m for m in matches if m != best]) if matches else []
    return {"query": title, "count": len(matches),
            "movies": catalogue.info(np.array(ordered[:limit], dtype=np.int64)),
            "did_you_mean": [] if matches else catalogue.close_titles(title)}


def health(store: ServeStore) -> dict:
    """Which tables and model are being answered from."""
    m = store.manifest
    model = artifacts.read_model_config(store.model_dir)
    return {
        "status": "ok", "tagrec_version": __version__, "workdir": str(store.workdir.resolve()),
        "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(store.opened_at)),
        "stale": store.stale(),
        "tables": {"format": m["format"], "format_version": m["format_version"],
                   "hash": store.hashes["tables"], "users": len(store.table("user").ids),
                   "movies": len(store.table("movie").ids), "dim": m.get("dim"),
                   "added_movies": m.get("added_movies", 0), "precision": m.get("precision"),
                   "ingest_key": m.get("ingest_key")},
        "model": {"dir": m["model_dir"], "format_version": model.get("format_version"),
                  "config_hash": m.get("model_config_hash"),
                  "weights_hash": store.hashes["model_weights"]},
    }


def json_text(value: Any) -> str:
    """A JSON value as the CSV reader's text: a string as itself, null as empty, anything
    else as JSON writes it (true, not Python's True).

    Example: "4.5" -> 4.5, 4.5 -> 4.5, True -> true, None -> ""
    """
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def new_user(store: ServeStore, body: Any, k: int, unrated: bool = False,
             include_seen: bool = False) -> dict:
    """recommend --ratings [--unrated] [--include-seen] --json, from a JSON body
    {"ratings": [{"movieId": 1, "rating": 4.5, "timestamp": 964982703}, ...]} (timestamp
    optional), checked by the CSV file's rules."""
    from tagrec_cli.datasets.user_ratings import user_ratings
    from tagrec_cli.recommend import ratings_query, results

    items = body.get("ratings") if isinstance(body, dict) else None
    if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
        raise ApiError(400, f"the body must be {BODY_SHAPE}", "ratings")
    extra = sorted(set(body) - {"ratings"})
    if extra:  # {"ratings": [...], "k": 5} must not answer with the default k silently
        names = f"{', '.join(NEW_USER_QUERY[:-1])} and {NEW_USER_QUERY[-1]}"
        where = (f" ({names} go in the query: POST /recommend?k=5)"
                 if set(extra) & set(NEW_USER_QUERY) else "")
        raise ApiError(400, f"the body has a key it does not take: {quoted(extra[0])}; it "
                            f"must be {BODY_SHAPE}{where}", "body")
    rows = [(f"ratings[{i}]", f"ratings[{i}]",
             {c: json_text(x.get(c)) for c in ("movieId", "rating", "timestamp")})
            for i, x in enumerate(items)]
    try:
        query, unknown = ratings_query(store, user_ratings(rows, "ratings holds no ratings"),
                                       include_seen)
    except ArtifactError:
        raise
    except TagrecError as exc:
        raise ApiError(400, str(exc), "ratings") from None
    out = results(store, ranked(store, [query], k, unrated), "query")[0]
    out["unknown_movies"] = unknown  # rated movies the catalogue lacks, left out
    return out
