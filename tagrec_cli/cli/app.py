"""The app every command registers on, its consoles, and the one error path.

typer and rich live only in this package: the commands parse options, call a `run_*`
function of the library and format its result. Heavy modules (polars, torch, transformers)
are imported inside the commands that need them, so `tagrec --help` stays instant.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup
from typer.models import OptionInfo

from tagrec_cli import __version__
from tagrec_cli.artifacts import DEFAULT_WORKDIR, WORKDIR_ENV
from tagrec_cli.config import DEVICES, LOSSES, POOLINGS, PRECISIONS
from tagrec_cli.errors import QueryError, TagrecError, disk_full

# click's UsageError as the click that typer runs on defines it (typer 0.28 vendors its own
# copy, so `click.UsageError` would not catch it; older typers use click itself).
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


class OneLineUsageErrors(TyperGroup):
    """The commands' usage errors (a bad or missing option value, an unknown option or
    command) as one line and exit status 2, naming the option and where help is; click and
    rich would draw a five-line box. `tagrec` alone still prints the help."""

    def invoke(self, ctx: typer.Context) -> object:
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            err.print(f"[bold red]Error:[/] {shown(exc.format_message())} (see `{where} "
                      "--help`)", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    cls=OneLineUsageErrors,
    name="tagrec",
    help="Tag-driven movie recommender: learns user and movie embeddings from MovieLens tags.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# With no terminal at all (a job's log, a cron mail, CI) rich wraps every table at 80 columns;
# an evaluate report or a list of long titles is read later, whole, so it gets room to stay
# one row per line. A pipe from a terminal keeps the terminal's width (rich finds it on
# stdin or stderr), and a COLUMNS the user set still wins.
OFF_TERMINAL_WIDTH = 200


def no_terminal() -> bool:
    """Whether none of stdin, stdout and stderr is a terminal (rich's fallback to 80)."""
    return not any(os.isatty(fd) for fd in (0, 1, 2))


class LazyConsole:
    """A rich Console, made on first use: importing rich takes about 30 ms, and a `--json`
    answer prints nothing through one. Every attribute is the console's."""

    def __init__(self, **options: object):
        object.__setattr__(self, "_options", options)
        object.__setattr__(self, "_console", None)

    def _get(self):
        if self._console is None:
            from rich.console import Console

            console = Console(**self._options)
            if (not console.is_terminal and not console.is_jupyter and no_terminal()
                    and not os.environ.get("COLUMNS", "").isdigit()):
                console.width = OFF_TERMINAL_WIDTH
            object.__setattr__(self, "_console", console)
        return self._console

    def __getattr__(self, name: str):
        return getattr(self._get(), name)

    def __setattr__(self, name: str, value: object) -> None:
        setattr(self._get(), name, value)

    # Special methods are looked up on the type, not through __getattr__: Console's own.
    def __enter__(self):
        return self._get().__enter__()

    def __exit__(self, *exc: object) -> None:
        self._get().__exit__(*exc)

    def __repr__(self) -> str:
        return repr(self._get())


# emoji=False: a title or tag like ":fire:" is data, printed as written (rich would draw 🔥)
out = LazyConsole(emoji=False)
err = LazyConsole(stderr=True, emoji=False)

WorkdirOpt = Annotated[Path, typer.Option(
    "--workdir", "-w", envvar=WORKDIR_ENV, file_okay=False,
    help="Workspace folder shared by all commands.")]


def default_data_dir() -> Path:
    """The bundled sample data: beside the package in a checkout, inside it when installed."""
    here = Path(__file__).resolve().parent.parent  # the package folder
    for candidate in (here.parent / "sample_data", here / "sample_data"):
        if (candidate / "ratings.csv").is_file():
            return candidate
    return here.parent / "sample_data"


def _version(value: bool) -> None:
    if value:
        out.print(f"tagrec {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Tag-driven movie recommender.

    Example: tagrec ingest && tagrec train && tagrec embed && tagrec recommend --user 42
    """


# C0 and C1 control characters (ESC starts the terminal's escape sequences), DEL, and the
# Unicode controls that reorder or hide text (bidi overrides and isolates).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def plain(value: object) -> str:
    """Data as text a terminal shows literally: every control character becomes U+FFFD.

    Example: "Clear\x1b[2JScreen" -> "Clear\ufffd[2JScreen"
    """
    return _CONTROL.sub("\ufffd", str(value))


def shown(value: object) -> str:
    """plain(value), escaped for rich: titles like "[REC] (2007)" or "[/]" are data, not markup."""
    from rich.markup import escape

    return escape(plain(value))


def fail(message: str) -> None:
    """The one error path: one line on stderr, exit status 1."""
    err.print(f"[bold red]Error:[/] {shown(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


INTERRUPTED = "interrupted — nothing half-written was left; run the command again to finish"
INTERRUPTED_STATUS = 130  # 128 + SIGINT, what a shell reports for a command Ctrl-C stopped


def interrupted() -> None:
    """Ctrl-C: one line on stderr, exit status 130 (the writers have already cleaned up)."""
    err.print(f"[bold red]Error:[/] {INTERRUPTED}", highlight=False, soft_wrap=True)
    raise typer.Exit(INTERRUPTED_STATUS)


def option_names(fn: Callable[..., None]) -> dict[str, str]:
    """A command function's parameter name -> the option a user types for it: the first
    name its typer.Option declares ("-k" of "-k/--top"), else typer's own spelling
    ("max_steps" -> "--max-steps")."""
    import typing

    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # (typer's internals moved): messages keep the parameter names
        return {}
    names = {}
    for name, hint in hints.items():
        infos = [m for m in getattr(hint, "__metadata__", ()) if isinstance(m, OptionInfo)]
        if infos:
            # in Annotated, typer.Option("-k", "--top") keeps "-k" as its `default`
            decls = (infos[0].default, *(infos[0].param_decls or ()))
            declared = [d for d in decls if isinstance(d, str) and d.startswith("-")]
            names[name] = declared[0] if declared else "--" + name.replace("_", "-")
    return names


# How to find what a query named that the workspace lacks, in the CLI's terms (the API has
# its own: serve.errors.API_HINTS).
CLI_HINTS = {"movie": '; look a movie up by title with --title, e.g. tagrec similar --title '
                      '"toy story"'}


def in_cli_terms(exc: TagrecError, options: dict[str, str]) -> str:
    """An error's message with each option it names (TagrecError.names) spelled as the
    command's option (options: option_names), and for a query's unknown value how to
    find one; a name the command has no option for (a setting read from the workspace) is
    kept.

    Example: "epochs and batch_size must be >= 1" -> "--epochs and --batch-size must be >= 1"
    """
    message = str(exc)
    for name in exc.names:
        if name in options:
            message = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", options[name], message)
    if isinstance(exc, QueryError) and exc.unknown:
        message += CLI_HINTS.get(exc.parameter, "")
    return message


def command(name: str | None = None) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register a command whose TagrecErrors become a one-line message and exit status 1,
    and whose Ctrl-C is one line and exit status 130 (click would print only a blank line)."""

    def register(fn: Callable[..., None]) -> Callable[..., None]:
        options = option_names(fn)

        @functools.wraps(fn)
        def wrapper(*args: object, **kwargs: object) -> None:
            try:
                fn(*args, **kwargs)
            except KeyboardInterrupt:
                interrupted()
            except TagrecError as exc:
                fail(in_cli_terms(exc, options))
            except Exception as exc:  # the environment's faults; anything else is a bug
                if disk_full(exc):
                    where = kwargs.get("workdir") or getattr(exc, "filename", None) or "."
                    fail(f"the disk is full: free some space where {where} is and re-run "
                         "(the workspace is as it was before this command)")
                if isinstance(exc, OSError):  # unwritable workdir, a vanished file, ...
                    fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
                raise

        return app.command(name)(wrapper)

    return register


def choices(name: str, values: tuple[str, ...]) -> type[StrEnum]:
    """A str Enum of config.py's choice tuple, so typer validates and lists the choices."""
    return StrEnum(name, [(v, v) for v in values])


Device = choices("Device", DEVICES)
Pooling = choices("Pooling", POOLINGS)
Precision = choices("Precision", PRECISIONS)
Loss = choices("Loss", LOSSES)

__all__ = ["DEFAULT_WORKDIR", "Device", "Loss", "Pooling", "Precision", "WorkdirOpt", "app",
           "command", "default_data_dir", "err", "fail", "main", "out", "plain", "shown"]


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:  # outside a command (while parsing): the same line
        err.print(f"Error: {INTERRUPTED}", highlight=False)
        sys.exit(INTERRUPTED_STATUS)

