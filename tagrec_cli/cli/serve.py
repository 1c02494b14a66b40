"""`tagrec serve`: recommendations over HTTP, and a page to explore them."""

from __future__ import annotations

from typing import Annotated

import typer

from tagrec_cli.cli.app import DEFAULT_WORKDIR, WorkdirOpt, command, err, fail, shown
from tagrec_cli.cli.query import AllowStaleOpt
from tagrec_cli.config import SERVE_HOST, SERVE_PORT


@command()
def serve(
    host: Annotated[str, typer.Option(
        help="Address to bind; 0.0.0.0 makes the server reachable from other machines.")
    ] = SERVE_HOST,
    port: Annotated[int, typer.Option(help="TCP port.", min=0, max=65535)] = SERVE_PORT,
    workers: Annotated[int, typer.Option(
        help="Processes answering requests (each holds the tables in memory).", min=1)] = 1,
    allow_stale: AllowStaleOpt = False,
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
) -> None:
    """Answer recommend, similar and title searches over HTTP; a page to explore them at /.

    GET /recommend?user=42 or ?tags=pixar,animation, /similar?movie=1, /movies?title=matrix.

    GET /health: the tables and model served. OpenAPI docs at /docs.

    The tables are read once; when `tagrec embed` replaces them, the next request uses them.

    Example: tagrec serve --port 8000   (then open http://127.0.0.1:8000/)
    """
    from tagrec_cli.serve import check_port, check_workspace, run_server

    if not host:
        fail("--host is empty")
    check_workspace(workdir, allow_stale)  # one line now, rather than a traceback per worker
    check_port(host, port)  # before the note below: a taken port is the only line printed
    if host != SERVE_HOST:
        err.print(shown(f"note: listening on {host}: anyone who can reach it can query it"),
                  highlight=False)
    run_server(workdir, host, port, workers, allow_stale)
