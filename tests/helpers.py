"""Plain helpers shared by the test files (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import Result
from typer.testing import CliRunner

from tagrec_cli.cli import app
from tagrec_cli.features import RAW_COLUMNS, rated_user_raw, user_features


def invoke(args: list[str], workdir: Path | None = None, **kw) -> Result:
    """Run `tagrec ARGS` in-process; with workdir, as TAGREC_WORKDIR=workdir would.

    Extra keyword arguments go to CliRunner.invoke (env=..., input=...).
    """
    if workdir is not None:
        kw["env"] = {**(kw.get("env") or {}), "TAGREC_WORKDIR": str(workdir)}
    return CliRunner().invoke(app, args, **kw)


def rated_user_features(ratings: np.ndarray, timestamps: np.ndarray, like_threshold: float,
                        stats: dict[str, float]) -> np.ndarray:
    """(F,) side features of a user known only by these ratings, composed as
    towers/query.py composes them for `recommend --ratings` (rated_user_raw, user_features).

    Example: ratings [5, 2], like_threshold 2.5 -> user_features(2, 3.5, 1, max(timestamps))
    """
    raw = rated_user_raw(ratings, timestamps, like_threshold)
    return user_features(*(raw[c] for c in RAW_COLUMNS["user"]), stats)[0]
