"""The `tagrec` command line, one module per group of commands, all registered on one app:

    app.py     the Typer app, consoles, the error path, choices derived from config.py
    data.py    sample-data, download, ingest, clean
    model.py   train, embed
    query.py   recommend, similar
    report.py  evaluate
    serve.py   serve (the HTTP server lives in tagrec_cli/serve/)

`main` (the `tagrec` command) imports only the module of the command its command line names,
so `tagrec recommend` neither imports the training commands' modules nor builds their
options (about 0.1 s of a 0.35 s query); any other command line (`tagrec --help`, a typo)
gets every command. `app`, imported from here, always has every command.
"""

from __future__ import annotations

import importlib
import sys

from tagrec_cli.cli import app as _app  # binds the name `app` to the module app.py...

del app  # noqa: F821 - ...which here means the Typer app with every command (__getattr__)

MODULES = ("data", "model", "query", "report", "serve")  # in the order of `tagrec --help`
COMMANDS = {"sample-data": "data", "download": "data", "ingest": "data", "clean": "data",
            "train": "model", "embed": "model", "recommend": "query", "similar": "query",
            "evaluate": "report", "serve": "serve"}  # command -> the module registering it


def load(command: str | None = None):
    """The Typer app with `command`'s module imported (its commands registered), or every
    module when `command` is None or names no command."""
    for module in [COMMANDS[command]] if command in COMMANDS else MODULES:
        importlib.import_module(f"tagrec_cli.cli.{module}")
    return _app.app


def main() -> None:
    """Console-script entry point."""
    load(sys.argv[1] if len(sys.argv) > 1 else None)
    _app.main()


def __getattr__(name: str):
    if name == "app":  # `from tagrec_cli.cli import app`: every command registered
        globals()["app"] = load()
        return globals()["app"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["COMMANDS", "MODULES", "app", "load", "main"]
