"""Fuzz: whatever bytes a MovieLens file holds, `tagrec ingest` exits 0 with a complete
workspace, or 1 with one line and no workspace at all: never a traceback."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tagrec_cli.cli import app

HEADERS = {"ratings.csv": "userId,movieId,rating,timestamp",
           "tags.csv": "userId,movieId,tag,timestamp",
           "movies.csv": "movieId,title,genres"}
CELLS = st.sampled_from(["1", "2", "3", "4", "5", "0", "-1", "4.5", "0.5", "5.0", "6", "nan",
                         "inf", "", " ", '"', '""', '"a,b"', "x", "Drama|Comedy",
                         "(no genres listed)", "99999999999999999999", "1e3", "日本", "\x1b[2J",
                         "\r", "userId", "movieId", "Toy Story (1995)"])


@st.composite
def csv_like(draw, header: str) -> bytes:
    """Text shaped like the file: its header (or a damaged one), then rows of odd cells."""
    head = draw(st.sampled_from([header, header + ",", header.upper(), header.replace(",", ";"),
                                 "", header.split(",", 1)[1]]))
    width = len(header.split(","))
    rows = draw(st.lists(st.lists(CELLS, min_size=max(width - 1, 1), max_size=width + 1),
                         max_size=6))
    end = draw(st.sampled_from(["\n", "\r\n", ""]))
    text = "\n".join([head, *(",".join(r) for r in rows)]) + end
    return text.encode("utf-8")


def contents(name: str):
    return st.one_of(st.binary(max_size=200), csv_like(HEADERS[name]))


def check(base: Path, name: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "data"
        shutil.copytree(base, folder)
        (folder / name).write_bytes(data)
        work = Path(tmp) / "w"
        result = CliRunner().invoke(app, ["ingest", "--data", str(folder), "--workdir",
                                          str(work)])
        assert result.exit_code in (0, 1), (result.output, result.exception)
        assert "Traceback" not in result.output
        if result.exit_code == 0:
            assert (work / "ingest" / "manifest.json").is_file()
            return
        assert isinstance(result.exception, SystemExit), repr(result.exception)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        assert not work.exists() or list(work.iterdir()) == []  # nothing half-written


FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@FUZZ
@given(data=contents("ratings.csv"))
def test_fuzz_ratings(ml_tiny_dir: Path, data: bytes):
    check(ml_tiny_dir, "ratings.csv", data)


@FUZZ
@given(data=contents("tags.csv"))
def test_fuzz_tags(ml_tiny_dir: Path, data: bytes):
    check(ml_tiny_dir, "tags.csv", data)


@FUZZ
@given(data=contents("movies.csv"))
def test_fuzz_movies(ml_tiny_dir: Path, data: bytes):
    check(ml_tiny_dir, "movies.csv", data)
