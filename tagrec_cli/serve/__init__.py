"""`tagrec serve`: the query commands over HTTP (FastAPI), and a page to explore them.

    GET /recommend?user=42&k=10[&include_seen=true]   = recommend --user 42 -k 10 --json
    GET /recommend?tags=pixar,animation[&user=42]     = recommend --tags "pixar, animation" --json
    POST /recommend {"ratings": [...]}                 = recommend --ratings FILE --json
                       [?include_seen=true&unrated=true&k=5]
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

    errors.py       ApiError: an answer that is an error, and a query's error as one
    generations.py  the workspace's tables, reopened when `embed` replaces them
    answers.py      each route's JSON, from one generation
    middleware.py   the body limit and the strict query check (ASGI)
    app.py          the FastAPI app, and running it with uvicorn

fastapi is imported only in app.py and middleware.py (and only by `tagrec serve`).
"""

from tagrec_cli.serve.app import app_from_env, check_port, check_workspace, create_app, run_server

__all__ = ["app_from_env", "check_port", "check_workspace", "create_app", "run_server"]
