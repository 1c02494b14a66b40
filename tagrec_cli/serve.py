"""`tagrec serve`: the query commands over HTTP (FastAPI), and a page to explore them.

    GET /recommend?user=42&k=10[&include_seen=true]   = recommend --user 42 -k 10 --json
    GET /recommend?tags=pixar,animation[&user=42]     = recommend --tags "pixar, animation" --json
    GET /similar?movie=1&k=10  or  ?title=matrix      = similar --movie 1 --json
    GET /movies?title=matrix[&limit=20]                title search: best match first
    GET /health                                         hashes, counts and format versions
    GET /                                               web/index.html (no external fetch)

Answers are the dicts recommend.results() builds, so the JSON is the CLI's `--json`. An error
is {"error": one line, "parameter": the query parameter ("body" for the POST body) or null}:
400 for a bad value (or a query parameter repeated, or one the route does not take), 404
for an unknown user or movie or page, 405 for a method a route does not take (with Allow),
413 for a body over MAX_BODY, 415 for a body that is not JSON, 503 while the workspace
cannot answer (no tables, stale or damaged ones); never a traceback.
fastapi is imported only here (and only by `tagrec serve`).

Generations. `tagrec embed` replaces embeddings/ whole by rename, so the manifest file's
(inode, mtime_ns) names one generation of tables. A request compares it (one stat) with the
generation it holds and opens the new one, warmed, when it changed. A request that was
running across the swap is answered again on the new generation (it only reads), so none is
dropped and none mixes two generations.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np

from tagrec_cli import __version__, artifacts
from tagrec_cli.config import LOVED_RATING, QUERY_FILE_LIMIT, SERVE_HOST, SERVE_PORT, TOP_K
from tagrec_cli.errors import ArtifactError, QueryError, TagrecError, quoted
from tagrec_cli.store import Store
from tagrec_cli.store.embeddings import EmbeddingTable, Seen
from tagrec_cli.topk import check_k

MAX_K = 1000  # movies per answer at most: a bigger k is a 400, not a megabyte of JSON
# A POST body is at most what a --ratings file may be (config.QUERY_FILE_LIMIT): a bigger
# one is a 413 before it is read, not memory spent on whatever a client sends.
MAX_BODY = QUERY_FILE_LIMIT
BODY_SHAPE = '{"ratings": [{"movieId": ID, "rating": R}, ...]}'

SEARCH_LIMIT = 20  # /movies: matches listed by default
USER_TAGS_CACHE = 65536  # users whose document tags a worker keeps in memory
SWAP_WAIT_S = 5.0  # how long a request waits for embeddings/ to reappear during a swap
HTML_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})
PAGE = Path(__file__).resolve().parent / "web" / "index.html"


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is refused before it is read (its
    Content-Length) or as soon as the bytes read pass it (a chunked body). The refusal is an
    HTTPException raised where the route reads the body, so it is answered as every error
    is (create_app's handlers), with status 413."""

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):  # no body read
            await self.app(scope, receive, send)
            return
        from starlette.exceptions import HTTPException

        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        declared = int(length) if length.isdigit() else 0
        read = 0

        async def limited() -> dict:
            nonlocal read
            if declared <= self.limit:
                message = await receive()
                if message["type"] == "http.request":
                    read += len(message.get("body", b""))
                if read <= self.limit:
                    return message
            raise HTTPException(413, f"the body is larger than {self.limit / 2**20:g} MiB "
                                     "(one person's ratings are kilobytes)")

        await self.app(scope, limited, send)


class StrictQuery:
    """ASGI middleware: an API route's query names only its own parameters, each once. A
    repeated one (user=1&user=2) or one the route does not take (POST /recommend?user=5)
    would otherwise be dropped silently, and the answer be for another question than the
    one asked: a 400 naming it instead. The routes outside the API's schema (the page, the
    docs) are not checked."""

    def __init__(self, app: Any, routes: list, respond: Callable[[str, str], Any]):
        from fastapi.routing import APIRoute

        self.app, self.respond = app, respond  # respond: (line, name) -> a response
        # (path, method) -> the query parameters it takes; the API's paths are fixed strings
        self.takes = {(r.path, m): {p.alias for p in r.dependant.query_params}
                      for r in routes if isinstance(r, APIRoute) and r.include_in_schema
                      for m in r.methods}

    def problem(self, scope: dict) -> tuple[str, str] | None:
        takes = self.takes.get((scope["path"], scope["method"]))
        if takes is None:  # the page, the docs, a 404 or a 405: not an API question
            return None
        given = [name for name, _ in parse_qsl(scope["query_string"].decode("latin-1"),
                                               keep_blank_values=True)]
        for name in dict.fromkeys(given):
            if name not in takes:
                return (f"{scope['path']} takes no parameter {quoted(name)} (it takes "
                        f"{', '.join(sorted(takes)) or 'none'})", name)
            if given.count(name) > 1:
                return f"{name} is given {given.count(name)} times: give it once", name
        return None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        found = self.problem(scope) if scope["type"] == "http" and scope.get(
            "query_string") else None
        if found is None:
            await self.app(scope, receive, send)
            return
        await self.respond(*found)(scope, receive, send)


class ApiError(Exception):
    """An answer that is an error: HTTP status, one line, and the parameter it is about."""

    def __init__(self, status: int, message: str, parameter: str | None = None):
        super().__init__(message)
        self.status, self.message, self.parameter = status, message, parameter

    @classmethod
    def of(cls, exc: QueryError) -> ApiError:
        """A query's error as the API answers it: 404 where the value names nothing the
        workspace has, else 400, and for an unknown movie how to find one."""
        if not exc.unknown:
            return cls(400, str(exc), exc.parameter)
        return cls(404, str(exc) + API_HINTS.get(exc.parameter, ""), exc.parameter)


# How to find what a query named that the workspace lacks, in the API's terms (the CLI has
# its own: cli.app.CLI_HINTS).
API_HINTS = {"movie": "; look a movie up by title with /movies?title=TEXT or "
                      "/similar?title=TEXT"}


class ServeStore(Store):
    """A Store whose parts are read once and kept: one generation of the tables, pinned.

    Store reads some parts again on every call (a table re-checks its file, a user's row
    and tags are read from disk); a server asks for them thousands of times a second, and a
    request must see one generation even while `embed` swaps the folder.
    """

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        self.opened_at = time.time()
        self._tables: dict[str, EmbeddingTable] = {}
        self._user_tags = lru_cache(maxsize=USER_TAGS_CACHE)(super().user_tags)

    def table(self, side: str) -> EmbeddingTable:
        if side not in self._tables:  # a copy: a mapping would not outlive a file's rewrite
            table = super().table(side)
            self._tables[side] = EmbeddingTable(table.ids, np.array(table.vectors))
        return self._tables[side]

    def rows(self, side: str, ids: np.ndarray) -> np.ndarray:
        table = self.table(side)
        rows = table.rows_of(np.asarray(ids, dtype=np.int64))
        if (rows >= 0).all():
            return table.vectors[rows]
        return super().rows(side, ids)  # raises the one "unknown user ..." error

    def user_tags(self, user: int) -> list[str]:
        return list(self._user_tags(user))

    @cached_property
    def seen(self) -> Seen:
        """The seen index, each user's entries kept once read (a query reads them twice:
        for its exclusions and for its reasons), as read-only arrays."""
        seen = Store.seen.func(self)
        read = seen.of

        def of(user: int) -> tuple[np.ndarray, np.ndarray]:
            movies, ratings = read(user)
            movies.flags.writeable = ratings.flags.writeable = False
            return movies, ratings

        seen.of = lru_cache(maxsize=USER_TAGS_CACHE)(of)
        return seen

    def warm(self, allow_stale: bool) -> None:
        """Read everything a query needs now, so no request pays for it (and the tables are
        this generation's even if the folder is swapped later)."""
        self.catalogue.movies_per_term  # noqa: B018 - counted now, once
        self.users  # noqa: B018 - opened now: the file of this generation
        self.check_fresh(allow_stale)
        for side in ("movie", "user"):
            self.table(side)
        self.seen  # noqa: B018 - opened now: the file of this generation
        self.model_dir  # noqa: B018 - checked now

    @cached_property
    def hashes(self) -> dict[str, str]:
        """Digests of the table files and the model weights, computed once (for /health)."""
        folder = self.workdir / artifacts.EMBEDDINGS_DIR
        tables = [folder / artifacts.TABLE_FILE["user"], folder / artifacts.TABLE_FILE["movie"],
                  folder / artifacts.SEEN_FILE]
        return {"tables": artifacts.file_digest(*tables),
                "model_weights": artifacts.file_digest(self.model_dir / artifacts.MODEL_WEIGHTS)}


def stamp(manifest: str) -> tuple[int, int] | None:
    """(inode, mtime_ns) of the embeddings manifest (its path, as a str: a request stats
    it twice, and making a Path costs more than the stat); None while it is absent."""
    try:
        st = os.stat(manifest)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


@dataclass
class Generation:
    stamp: tuple[int, int] | None  # of the manifest, read before the store was opened
    store: ServeStore | None = None
    error: str | None = None  # why this generation cannot answer (a 503)


class Workspace:
    """The generation of the tables a server answers from, reopened when `embed` replaces it."""

    def __init__(self, workdir: Path, allow_stale: bool = False):
        self.workdir = Path(workdir)
        self.allow_stale = allow_stale
        self.manifest = str(self.workdir / artifacts.EMBEDDINGS_DIR / artifacts.MANIFEST)
        self._lock = threading.Lock()
        self._gen = self._open()

    def _open(self) -> Generation:
        before = stamp(self.manifest)
        store = ServeStore(self.workdir)
        try:
            store.warm(self.allow_stale)
        except (TagrecError, OSError) as exc:
            return Generation(before, error=str(exc))
        return Generation(before, store)

    def current(self) -> Generation:
        """The generation on disk now, opened on first use; the one held while mid-swap."""
        now = stamp(self.manifest)
        if now is None or now == self._gen.stamp:
            return self._gen
        with self._lock:  # one thread opens it; the others wait, then use it
            if stamp(self.manifest) not in (None, self._gen.stamp):
                self._gen = self._open()
            return self._gen

    def answer(self, fn: Callable[[ServeStore], Any]) -> Any:
        """fn(store) on one generation: run again when the tables were swapped meanwhile."""
        deadline = time.monotonic() + SWAP_WAIT_S
        while True:
            gen = self.current()
            if gen.error is not None:
                outcome: Any = ApiError(503, gen.error)
            else:
                try:
                    outcome = fn(gen.store)
                except ApiError as exc:
                    outcome = exc
                except QueryError as exc:  # the query's fault: a 4xx, not the workspace's
                    outcome = ApiError.of(exc)
                except (TagrecError, OSError) as exc:  # a file `embed` made cannot be read
                    outcome = ApiError(503, str(exc))
            now = stamp(self.manifest)
            if now == gen.stamp or time.monotonic() > deadline:
                if isinstance(outcome, ApiError):
                    raise outcome
                return outcome
            if now is None:
                time.sleep(0.01)  # between embed's two renames: the new folder is coming


# ------------------------------------------------------------------ the answers


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


# ------------------------------------------------------------------ the app


def page() -> tuple[str, str]:
    """The page and its Content-Security-Policy: only its own inline script and style run,
    and it may fetch from this server only (so text from the data can never become code)."""
    html = PAGE.read_text(encoding="utf-8")

    def digest(tag: str) -> str:
        body = re.search(f"<{tag}>(.*?)</{tag}>", html, re.S).group(1)
        return f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"

    csp = (f"default-src 'none'; script-src {digest('script')}; style-src {digest('style')}; "
           "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
           "frame-ancestors 'none'")
    return html, csp


def validation_message(err: dict) -> tuple[str, str | None]:
    """One of FastAPI's validation errors as (one line, parameter name)."""
    if err.get("type") == "json_invalid":  # loc: ("body", character offset)
        where = err.get("loc", ("body", "?"))[-1]
        why = str((err.get("ctx") or {}).get("error", "JSON decode error"))
        return f"the body is not JSON: {why} at character {where}", "body"
    if tuple(err.get("loc", ())) == ("body",) and err.get("type") == "missing":
        return f"the body is empty: {BODY_SHAPE}", "body"
    loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "body")]
    name = loc[0] if loc else None
    got = err.get("input")
    shown = f" (got {quoted(str(got))})" if isinstance(got, str | int | float) else ""
    reason = str(err.get("msg", "invalid value")).split("\n")[0]
    return f"{name or 'request'}: {reason[:1].lower() + reason[1:]}{shown}", name


def json_text(value: Any) -> str:
    """A JSON value as the CSV reader's text: a string as itself, null as empty, anything
    else as JSON writes it (true, not Python's True).

    Example: "4.5" -> 4.5, 4.5 -> 4.5, True -> true, None -> ""
    """
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def new_user(store: ServeStore, body: Any, k: int, unrated: bool = False) -> dict:
    """recommend --ratings [--unrated] --json, from a JSON body {"ratings": [{"movieId": 1,
    "rating": 4.5, "timestamp": 964982703}, ...]} (timestamp optional), checked by the CSV
    file's rules."""
    from tagrec_cli.datasets.user_ratings import user_ratings
    from tagrec_cli.recommend import ratings_query, results

    items = body.get("ratings") if isinstance(body, dict) else None
    if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
        raise ApiError(400, f"the body must be {BODY_SHAPE}", "ratings")
    extra = sorted(set(body) - {"ratings"})
    if extra:  # {"ratings": [...], "k": 5} must not answer with the default k silently
        where = " (k and unrated go in the query: POST /recommend?k=5)" if set(extra) & {
            "k", "unrated"} else ""
        raise ApiError(400, f"the body has a key it does not take: {quoted(extra[0])}; it "
                            f"must be {BODY_SHAPE}{where}", "body")
    rows = [(f"ratings[{i}]", f"ratings[{i}]",
             {c: json_text(x.get(c)) for c in ("movieId", "rating", "timestamp")})
            for i, x in enumerate(items)]
    try:
        query, unknown = ratings_query(store, user_ratings(rows, "ratings holds no ratings"))
    except ArtifactError:
        raise
    except TagrecError as exc:
        raise ApiError(400, str(exc), "ratings") from None
    out = results(store, ranked(store, [query], k, unrated), "query")[0]
    out["unknown_movies"] = unknown  # rated movies the catalogue lacks, left out
    return out


def create_app(workdir: Path, allow_stale: bool = False):
    """The FastAPI app over the workspace `workdir` (opened now, reopened when replaced)."""
    import json

    from fastapi import Body, Header, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from fastapi_offline import FastAPIOffline
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    class Json(JSONResponse):
        """JSON with <, > and & written as \\u escapes: the values are the data exactly,
        and no byte of a title can read as markup to whatever shows the raw answer."""

        def __init__(self, content: Any, status_code: int = 200, **kw: Any):
            super().__init__(content, status_code, headers={"X-Content-Type-Options":
                                                            "nosniff"}, **kw)

        def render(self, content: Any) -> bytes:
            text = json.dumps(content, ensure_ascii=False, allow_nan=False,
                              separators=(",", ":"))
            return text.translate(HTML_SAFE).encode("utf-8")

    ws = Workspace(workdir, allow_stale)
    html, csp = page()
    # FastAPI's /docs and /redoc with Swagger UI's and ReDoc's scripts served from the
    # package, not fetched from a CDN: they work on a machine without internet too
    app = FastAPIOffline(title="tagrec", version=__version__, default_response_class=Json,
                         description="Movie recommendations from tags, users and titles.")
    app.state.workspace = ws
    app.add_middleware(BodyLimit, limit=MAX_BODY)
    # built at the first request, when `error` below exists: the same JSON as every error
    app.add_middleware(StrictQuery, routes=app.routes,
                       respond=lambda message, name: error(400, message, name))

    def error(status: int, message: str, parameter: str | None,
              headers: dict[str, str] | None = None):
        response = Json({"error": message, "parameter": parameter}, status)
        response.headers.update(headers or {})
        return response

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError):
        return error(exc.status, exc.message, exc.parameter)

    @app.exception_handler(QueryError)
    async def query_error(_: Request, exc: QueryError):  # one checked outside ws.answer
        answer = ApiError.of(exc)
        return error(answer.status, answer.message, answer.parameter)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError):
        return error(400, *validation_message(exc.errors()[0]))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        message, parameter, headers = str(exc.detail), None, exc.headers
        if exc.status_code == 404:
            message = "no such page: " + quoted(request.url.path)
        elif exc.status_code == 405:  # starlette's Allow names the first route's methods only
            allowed = ", ".join(sorted({m for r in app.routes
                                        if getattr(r, "path", None) == request.url.path
                                        for m in getattr(r, "methods", None) or ()}))
            headers = {**(exc.headers or {}), "Allow": allowed}
            message = f"{request.method} is not allowed here (allowed: {allowed})"
        elif exc.status_code == 400 and request.method == "POST":  # starlette: unreadable body
            message, parameter = f"the body is not JSON ({message})", "body"
        elif exc.status_code == 413:
            parameter = "body"
        return error(exc.status_code, message, parameter, headers)

    @app.exception_handler(Exception)
    async def bug(_: Request, exc: Exception):  # logged with its traceback by uvicorn
        return error(500, f"internal error ({exc.__class__.__name__}); see the server's log",
                     None)

    @app.get("/recommend")
    async def recommend(user: int | None = Query(None, description="A known user id."),
                        tags: str | None = Query(None, description="Comma-separated tags; "
                                                 "with user, added to that user's document."),
                        k: int = Query(TOP_K, description=f"Movies, 1 to {MAX_K}."),
                        include_seen: bool = Query(False, description="Also movies the user "
                                                   "rated."),
                        unrated: bool = Query(False, description=UNRATED_HELP)):
        """Top-k movies for a user or a taste given as tags, with reasons (`recommend --json`)."""
        from tagrec_cli.documents import parse_tags

        if user is None and tags is None:
            raise ApiError(400, 'give user=ID, or tags="tag, tag" for a taste without ratings',
                           "user")
        check_k(k, MAX_K)
        try:
            tag_list = None if tags is None else parse_tags(tags)
        except TagrecError as exc:
            raise ApiError(400, str(exc), "tags") from None
        answer = functools.partial(ws.answer, lambda s: recommendation(
            s, user, tag_list, k, include_seen, unrated))
        # A known user's answer is about a millisecond of numpy: computed here, on the event
        # loop, it saves a hop to a thread and back (0.4 ms). Tags go through the encoder
        # (tens of ms), in a thread, so that the quick answers behind them are not held up.
        return Json(answer() if tag_list is None else await run_in_threadpool(answer))

    @app.post("/recommend")
    def recommend_new_user(body: Any = Body(..., examples=[{"ratings": [
                               {"movieId": 1, "rating": 4.5}, {"movieId": 2, "rating": 2}]}]),
                           k: int = Query(TOP_K, description=f"Movies, 1 to {MAX_K}."),
                           unrated: bool = Query(False, description=UNRATED_HELP),
                           content_type: str = Header("", include_in_schema=False)):
        """Top-k movies for a new user given by their ratings, without retraining
        (`recommend --ratings FILE --json`, plus the rated movies the catalogue lacks)."""
        # FastAPI reads the body as JSON when it says so or says nothing; else it is bytes
        kind = content_type.split(";")[0].strip().lower()
        if kind and not (kind == "application/json" or kind.endswith("+json")):
            raise ApiError(415, f"send the body as JSON (Content-Type: application/json, not "
                                f"{quoted(kind)})", "body")
        check_k(k, MAX_K)
        return Json(ws.answer(lambda s: new_user(s, body, k, unrated)))

    @app.get("/similar")
    async def similar_endpoint(movie: int | None = Query(None, description="A movie id."),
                               title: str | None = Query(None, description="Part of a title."),
                               k: int = Query(TOP_K, description=f"Movies, 1 to {MAX_K}.")):
        """The movies nearest to one movie, with the tags they share (`similar --json`)."""
        if (movie is None) == (title is None):
            raise ApiError(400, "give movie=ID or title=TEXT", "movie")
        check_k(k, MAX_K)
        answer = functools.partial(ws.answer, lambda s: similar(s, movie, title, k))
        # As /recommend: an id on the loop; a title search (every title, and difflib's
        # suggestions when none matches) in a thread.
        return Json(answer() if title is None else await run_in_threadpool(answer))

    @app.get("/movies")
    def movies(title: str = Query(..., description="Part of a title (case-insensitive)."),
               limit: int = Query(SEARCH_LIMIT, description="Matches to list.")):
        """Movies whose title contains `title`, the best match first."""
        return Json(ws.answer(lambda s: search(s, title, limit)))

    @app.get("/health")
    def health_endpoint():
        """Which tables and model are being served: hashes, counts, format versions."""
        return Json(ws.answer(health))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(html, headers={"Content-Security-Policy": csp,
                                           "X-Content-Type-Options": "nosniff"})

    return app


def check_workspace(workdir: Path, allow_stale: bool = False) -> None:
    """TagrecError when the workspace cannot answer (so `tagrec serve` fails before binding)."""
    ServeStore(workdir).warm(allow_stale)


WORKDIR_VAR = "TAGREC_SERVE_WORKDIR"  # how uvicorn's worker processes learn the workspace
STALE_VAR = "TAGREC_SERVE_ALLOW_STALE"


def app_from_env():
    """The app factory uvicorn's workers call (they are new processes: no arguments)."""
    from tagrec_cli.recommend import one_blas_thread

    # One BLAS thread per worker: the workers already use a core each, and BLAS's own threads
    # only fight them (a tags query under load: 3.9 s with them, 0.27 s without).
    one_blas_thread()
    return create_app(Path(os.environ[WORKDIR_VAR]), os.environ.get(STALE_VAR) == "1")


def check_port(host: str, port: int) -> None:
    """One line, not uvicorn's log and exit 3, when the address is taken or cannot be bound
    (a port another server holds, a host this machine does not have). The socket is closed
    again at once, so a server that takes the port in between still gets uvicorn's error."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TagrecError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # as uvicorn binds: SO_REUSEADDR, so a port in TIME_WAIT is free, a listening one not
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            hint = (" (is another server running there? try --port)"
                    if exc.errno == errno.EADDRINUSE else "")
            raise TagrecError(f"cannot serve on {host}:{port}: {exc.strerror or exc}{hint}"
                              ) from None


def run_server(workdir: Path, host: str = SERVE_HOST, port: int = SERVE_PORT,
               workers: int = 1, allow_stale: bool = False, log_level: str = "info") -> None:
    """Serve until interrupted: `workers` processes, each with the workspace in memory."""
    import uvicorn

    check_port(host, port)
    os.environ[WORKDIR_VAR] = str(Path(workdir).resolve())
    os.environ[STALE_VAR] = "1" if allow_stale else "0"
    uvicorn.run("tagrec_cli.serve:app_from_env", factory=True, host=host, port=port,
                workers=workers, log_level=log_level, access_log=False)
