"""The `tagrec` command line, one module per group of commands, all registered on one app:

    app.py     the Typer app, consoles, the error path, choices derived from config.py
    data.py    sample-data, download, ingest
    model.py   train, embed
    query.py   recommend, similar
    report.py  evaluate
    serve.py   serve (the HTTP server lives in tagrec_cli/serve.py)
"""

from tagrec_cli.cli import data, model, query, report, serve  # noqa: F401 - registers the commands
from tagrec_cli.cli.app import app, main

__all__ = ["app", "main"]
