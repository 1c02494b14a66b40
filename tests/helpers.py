"""Plain helpers shared by the test files (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

from click.testing import Result
from typer.testing import CliRunner

from tagrec_cli.cli import app


def invoke(args: list[str], workdir: Path | None = None, **kw) -> Result:
    """Run `tagrec ARGS` in-process; with workdir, as TAGREC_WORKDIR=workdir would.

    Extra keyword arguments go to CliRunner.invoke (env=..., input=...).
    """
    if workdir is not None:
        kw["env"] = {**(kw.get("env") or {}), "TAGREC_WORKDIR": str(workdir)}
    return CliRunner().invoke(app, args, **kw)
