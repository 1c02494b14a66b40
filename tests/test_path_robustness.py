"""Input robustness, as a user meets it on the command line: folder and file names with glob
characters ("[1]") are plain paths, and Windows line ends (CRLF, and the CR CR LF of a file
converted twice) in ratings.csv and tags.csv ingest like LF.

The data is conftest's hand-made dataset (ml_tiny_files); the embed test uses conftest's tiny
trained workspace (tiny random BERT, no download).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from helpers import invoke
from polars.testing import assert_frame_equal
from safetensors.numpy import load_file

TABLES = ("movies", "users", "ratings", "pairs")


def ingest_tables(data: Path, workdir: Path) -> dict[str, pl.DataFrame]:
    """`tagrec ingest --data DATA -w WORKDIR`, then its four tables (read as literal paths)."""
    r = invoke(["ingest", "--data", str(data), "-w", str(workdir)])
    assert r.exit_code == 0, r.output
    out = workdir / "ingest"
    return {t: pl.read_parquet(out / f"{t}.parquet", glob=False) for t in TABLES}


def assert_same_tables(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> None:
    for name in TABLES:
        assert_frame_equal(a[name], b[name])


# ---------------------------------------------------------------- glob characters in paths


@pytest.mark.parametrize("data_name, work_name", [("d[1]", "w[x]"), ("x[ab]", "y[!a] z")])
def test_ingest_from_and_into_folders_named_like_globs(
        tmp_path: Path, ml_tiny_files: dict[str, bytes], ml_write: Callable[..., Path],
        data_name: str, work_name: str) -> None:
    plain = ingest_tables(ml_write(tmp_path / "plain", ml_tiny_files), tmp_path / "w_plain")
    odd = ingest_tables(ml_write(tmp_path / data_name, ml_tiny_files), tmp_path / work_name)
    assert_same_tables(plain, odd)
    assert plain["movies"]["document"].str.len_chars().sum() > 0  # real documents compared


def test_embed_and_add_movies_with_glob_characters_in_paths(
        tmp_path: Path, embedded_sample_refit_300pairs_dim16: Path, copy_workspace) -> None:
    ws = copy_workspace(embedded_sample_refit_300pairs_dim16, "w[1]s")
    # A full embed reads ingest/*.parquet from the workspace.
    r = invoke(["embed", "-w", str(ws), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    before = load_file(str(ws / "embeddings" / "movies.safetensors"))
    folder = tmp_path / "in[1]"
    folder.mkdir()
    csv = folder / "a[1].csv"
    csv.write_text("movieId,title,genres,tags\n"
                   "900001,Heist (2031),Crime|Thriller,safe cracking|twist ending\n",
                   encoding="utf-8")
    r = invoke(["embed", "-w", str(ws), "--add-movies", str(csv)])
    assert r.exit_code == 0, r.output
    assert "added 1 movie" in r.stdout
    after = load_file(str(ws / "embeddings" / "movies.safetensors"))
    assert len(after["ids"]) == len(before["ids"]) + 1 and after["ids"][-1] == 900001


# ---------------------------------------------------------------- Windows line ends


def with_line_end(data: bytes, end: bytes, bom: bool = False) -> bytes:
    """`data` (LF line ends) with every line ending in `end`, optionally behind a UTF-8 BOM."""
    return (b"\xef\xbb\xbf" if bom else b"") + data.replace(b"\n", end)


@pytest.mark.parametrize("end, bom", [(b"\r\n", False), (b"\r\r\n", False), (b"\r\r\n", True),
                                      (b"\r\n", True)],
                         ids=["crlf", "cr-cr-lf", "bom-cr-cr-lf", "bom-crlf"])
def test_windows_line_ends_in_ratings_and_tags_ingest_like_lf(
        tmp_path: Path, ml_tiny_files: dict[str, bytes], ml_write: Callable[..., Path],
        end: bytes, bom: bool) -> None:
    lf = ingest_tables(ml_write(tmp_path / "lf", ml_tiny_files), tmp_path / "w_lf")
    files = {name: with_line_end(data, end, bom) if name != "movies.csv" else data
             for name, data in ml_tiny_files.items()}
    crlf = ingest_tables(ml_write(tmp_path / "crlf", files), tmp_path / "w_crlf")
    assert_same_tables(lf, crlf)


def test_windows_line_ends_in_movies_leave_no_carriage_return(
        tmp_path: Path, ml_tiny_files: dict[str, bytes], ml_write: Callable[..., Path]) -> None:
    lf = ingest_tables(ml_write(tmp_path / "lf", ml_tiny_files), tmp_path / "w_lf")
    files = {name: with_line_end(data, b"\r\r\n") for name, data in ml_tiny_files.items()}
    crlf = ingest_tables(ml_write(tmp_path / "crlf", files), tmp_path / "w_crlf")
    assert_same_tables(lf, crlf)
    genres = crlf["movies"]["genres"]
    genres = genres.list.join("|") if genres.dtype != pl.String else genres
    assert not genres.str.contains("\r").any()


def test_bad_value_behind_windows_line_ends_is_still_named(
        tmp_path: Path, ml_tiny_files: dict[str, bytes], ml_write: Callable[..., Path]) -> None:
    files = dict(ml_tiny_files)
    files["ratings.csv"] = with_line_end(
        ml_tiny_files["ratings.csv"].replace(b"2,2,4.0,6\n", b"2,2,4.0,six\n"), b"\r\r\n")
    r = invoke(["ingest", "--data", str(ml_write(tmp_path / "d", files)),
                "-w", str(tmp_path / "w")])
    assert r.exit_code == 1
    assert "ratings.csv, line 8: timestamp" in r.output and "six" in r.output
    assert "is not an integer" in r.output
