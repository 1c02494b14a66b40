"""The FastAPI app over a workspace (create_app), and serving it with uvicorn (run_server)."""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
from pathlib import Path
from typing import Any

from tagrec_cli import __version__
from tagrec_cli.config import QUERY_FILE_LIMIT, SERVE_HOST, SERVE_PORT, TOP_K
from tagrec_cli.errors import QueryError, TagrecError, quoted
from tagrec_cli.serve import answers
from tagrec_cli.serve.answers import BODY_SHAPE, MAX_K, SEARCH_LIMIT, UNRATED_HELP
from tagrec_cli.serve.errors import ApiError
from tagrec_cli.serve.generations import ServeStore, Workspace
from tagrec_cli.serve.middleware import BodyLimit, StrictQuery
from tagrec_cli.topk import check_k

# A POST body is at most what a --ratings file may be (config.QUERY_FILE_LIMIT): a bigger
# one is a 413 before it is read, not memory spent on whatever a client sends.
MAX_BODY = QUERY_FILE_LIMIT
HTML_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})
PAGE = Path(__file__).resolve().parent.parent / "web" / "index.html"


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
                                                 "with user, that user's rated movies are "
                                                 "left out."),
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
        answer = functools.partial(ws.answer, lambda s: answers.recommendation(
            s, user, tag_list, k, include_seen, unrated))
        # A known user's answer is about a millisecond of numpy: computed here, on the event
        # loop, it saves a hop to a thread and back (0.4 ms). Tags go through the encoder
        # (tens of ms), in a thread, so that the quick answers behind them are not held up.
        return Json(answer() if tag_list is None else await run_in_threadpool(answer))

    @app.post("/recommend")
    def recommend_new_user(body: Any = Body(..., examples=[{"ratings": [
                               {"movieId": 1, "rating": 4.5}, {"movieId": 2, "rating": 2}]}]),
                           k: int = Query(TOP_K, description=f"Movies, 1 to {MAX_K}."),
                           include_seen: bool = Query(False, description="Also the movies "
                                                      "the body rated."),
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
        return Json(ws.answer(lambda s: answers.new_user(s, body, k, unrated, include_seen)))

    @app.get("/similar")
    async def similar_endpoint(movie: int | None = Query(None, description="A movie id."),
                               title: str | None = Query(None, description="Part of a title."),
                               k: int = Query(TOP_K, description=f"Movies, 1 to {MAX_K}.")):
        """The movies most like one movie, with the tags they share (`similar --json`)."""
        if (movie is None) == (title is None):
            raise ApiError(400, "give movie=ID or title=TEXT", "movie")
        check_k(k, MAX_K)
        answer = functools.partial(ws.answer, lambda s: answers.similar(s, movie, title, k))
        # As /recommend: an id on the loop; a title search (every title, and difflib's
        # suggestions when none matches) in a thread.
        return Json(answer() if title is None else await run_in_threadpool(answer))

    @app.get("/movies")
    def movies(title: str = Query(..., description="Part of a title (case-insensitive)."),
               limit: int = Query(SEARCH_LIMIT, description="Matches to list.")):
        """Movies whose title contains `title`, the best match first."""
        return Json(ws.answer(lambda s: answers.search(s, title, limit)))

    @app.get("/health")
    def health_endpoint():
        """Which tables and model are being served: hashes, counts, format versions."""
        return Json(ws.answer(answers.health))

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
