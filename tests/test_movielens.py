"""Reading MovieLens CSV files: what is accepted, and the exact DataError for bad input."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tagrec_cli.datasets.movielens import read_movielens, read_table
from tagrec_cli.errors import DataError, TagrecError


def test_data_error_is_a_tagrec_error() -> None:
    assert issubclass(DataError, TagrecError)


def test_reads_tiny_dataset_typed_and_verbatim(ml_tiny_dir: Path) -> None:
    ratings, tags, movies = read_movielens(ml_tiny_dir)
    assert ratings.schema == {"userId": pl.Int64, "movieId": pl.Int64, "rating": pl.Float64,
                              "timestamp": pl.Int64}
    assert tags.schema == {"userId": pl.Int64, "movieId": pl.Int64, "tag": pl.String,
                           "timestamp": pl.Int64}
    assert movies.schema == {"movieId": pl.Int64, "title": pl.String, "genres": pl.String}
    # 15 data lines in ratings.csv (the reader keeps the duplicate; ingest dedupes it).
    assert ratings.height == 15
    assert ratings.row(0) == (1, 1, 5.0, 10)
    assert tags.height == 19
    # The reader does not normalise tags; quoted commas and unicode arrive intact.
    assert tags["tag"].to_list()[:6] == ["Cyberpunk", " cyberpunk ", "funny", "funny",
                                         "dark, gritty", "アニメ"]
    assert tags["tag"][6] in ("", None)  # the quoted empty tag
    assert movies["title"].to_list()[0] == "Matrix, The (1999)"
    assert movies["title"].to_list()[2] == "Cheap, Fast, Good (2005)"
    assert movies["genres"].to_list()[2] == "(no genres listed)"


def test_crlf_and_missing_final_newline_read_like_lf(
        tmp_path: Path, ml_tiny_files: dict[str, bytes], ml_write) -> None:
    lf = read_movielens(ml_write(tmp_path / "lf", ml_tiny_files))
    crlf_files = {k: v.rstrip(b"\n") for k, v in ml_tiny_files.items()}  # no final newline
    crlf_dir = ml_write(tmp_path / "crlf", crlf_files, crlf=True)
    assert b"\r\n" in (crlf_dir / "movies.csv").read_bytes()
    crlf = read_movielens(crlf_dir)
    for a, b in zip(lf, crlf, strict=True):
        assert_frame_equal(a, b)
    # The last column keeps no stray carriage return.
    assert not any("\r" in g for g in crlf[2]["genres"].to_list())


def test_utf8_bom_extra_and_reordered_columns(tmp_path: Path, ml_tiny_files, ml_write) -> None:
    files = dict(ml_tiny_files)
    files["ratings.csv"] = (b"\xef\xbb\xbftimestamp,rating,extra,movieId,userId\n"
                            b"10,5.0,x,1,1\n20,2.0,y,2,1\n")
    files["movies.csv"] = b"\xef\xbb\xbf" + files["movies.csv"]
    ratings, _, movies = read_movielens(ml_write(tmp_path / "d", files))
    # Columns come back in MovieLens order, the extra one dropped.
    assert ratings.columns == ["userId", "movieId", "rating", "timestamp"]
    assert ratings.rows() == [(1, 1, 5.0, 10), (1, 2, 2.0, 20)]
    assert movies.columns == ["movieId", "title", "genres"]
    assert movies.height == 6


def test_header_only_tags_file_is_fine(tmp_path: Path, ml_tiny_files, ml_write) -> None:
    files = dict(ml_tiny_files, **{"tags.csv": b"userId,movieId,tag,timestamp\n"})
    _, tags, _ = read_movielens(ml_write(tmp_path / "d", files))
    assert tags.height == 0
    assert tags.columns == ["userId", "movieId", "tag", "timestamp"]


# (file, replace this, with this, expected message fragment). Line numbers count the header as
# line 1: the first rating "1,1,5.0,10" is line 2, "1,2,2.0,20" line 3.
BAD_INPUTS = [
    ("ratings.csv", b"1,2,2.0,20", b"1,2,abc,20",
     "ratings.csv, line 3: rating 'abc' is not a number"),
    ("ratings.csv", b"1,2,2.0,20", b"1,2,5.5,20",
     "ratings.csv, line 3: rating 5.5 is outside 0.5–5.0"),
    ("ratings.csv", b"1,2,2.0,20", b"1,2,0,20",
     "ratings.csv, line 3: rating 0.0 is outside 0.5–5.0"),
    ("ratings.csv", b"1,2,2.0,20", b"1,2,-1,20",
     "ratings.csv, line 3: rating -1.0 is outside 0.5–5.0"),
    ("ratings.csv", b"1,2,2.0,20", b"1,2,nan,20",
     "ratings.csv, line 3: rating nan is outside 0.5–5.0"),
    ("ratings.csv", b"1,2,2.0,20", b"1,2,,20",
     "ratings.csv, line 3: empty 'rating' (expected a number)"),
    ("ratings.csv", b"1,2,2.0,20", b"1.5,2,2.0,20",
     "ratings.csv, line 3: userId '1.5' is not an integer"),
    ("ratings.csv", b"rating,", b"score,",
     "ratings.csv: missing column 'rating' (expected columns userId,movieId,rating,timestamp;"
     " found userId,movieId,score,timestamp)"),
    ("tags.csv", b"tag,", b"label,", "tags.csv: missing column 'tag'"),
    ("movies.csv", b",genres", b",kind", "movies.csv: missing column 'genres'"),
    # Line 3 of tags.csv is '1,1," cyberpunk ",11'.
    ("tags.csv", b"1,1,\" cyberpunk \",11", b"1,1,cyber\xffpunk,11",
     "tags.csv, line 3: byte 0xff is not UTF-8"),
    # Line 3 of movies.csv is "2,Toy Story (1995),...".
    ("movies.csv", b"Toy Story", b"Toy St\xe9ry", "movies.csv, line 3: byte 0xe9 is not UTF-8"),
    ("movies.csv", b"movieId,title,genres", b"movieId,t\xeftle,genres",
     "movies.csv, line 1: byte 0xef is not UTF-8"),
    ("tags.csv", b"2,1,classic,5", b"2,1,classic,", "tags.csv, line 13: empty 'timestamp'"),
    ("movies.csv", b"4,Untitled", b"four,Untitled", "movies.csv, line 5: movieId 'four' is not"
     " an integer"),
    # a needed column named twice: which one is meant? (an unneeded one is read and ignored)
    ("movies.csv", b"movieId,title,genres", b"movieId,title,genres,title",
     "movies.csv, line 1: the column title appears 2 times (give it once)"),
]


@pytest.mark.parametrize(("name", "old", "new", "expected"), BAD_INPUTS,
                         ids=[f"{b[0]}:{b[3][:40]}" for b in BAD_INPUTS])
def test_bad_input_raises_one_line_data_error(tmp_path: Path, ml_tiny_files, ml_write,
                                              name: str, old: bytes, new: bytes,
                                              expected: str) -> None:
    assert ml_tiny_files[name].count(old) == 1, "the test's edit must hit exactly one place"
    files = dict(ml_tiny_files, **{name: ml_tiny_files[name].replace(old, new)})
    folder = ml_write(tmp_path / "d", files)
    with pytest.raises(DataError) as info:
        read_movielens(folder)
    message = str(info.value)
    assert expected in message
    assert str(folder / name) in message  # names the file by its full path
    assert "\n" not in message


@pytest.mark.parametrize(("content", "expected"), [
    (b"", "ratings.csv is empty"),
    (b"\n", "ratings.csv is empty"),
    (b"userId,movieId,rating,timestamp\n", "ratings.csv has no ratings"),
    (b"userId,movieId,rating,timestamp\r\n", "ratings.csv has no ratings"),
])
def test_empty_ratings_file(tmp_path: Path, ml_tiny_files, ml_write, content: bytes,
                            expected: str) -> None:
    folder = ml_write(tmp_path / "d", dict(ml_tiny_files, **{"ratings.csv": content}))
    with pytest.raises(DataError, match=expected):
        read_movielens(folder)


@pytest.mark.parametrize("missing", ["ratings.csv", "tags.csv", "movies.csv"])
def test_missing_file(tmp_path: Path, ml_tiny_files, ml_write, missing: str) -> None:
    folder = ml_write(tmp_path / "d", dict(ml_tiny_files, **{missing: None}))
    with pytest.raises(DataError, match=f"missing {missing} in {folder}"):
        read_movielens(folder)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_movielens(tmp_path / "nope")


def test_read_table_reports_a_too_long_line(tmp_path: Path) -> None:
    path = tmp_path / "ratings.csv"
    path.write_bytes(b"userId,movieId,rating,timestamp\n1,1,4.0,5\n1,2,4.0,6,99\n")
    with pytest.raises(DataError, match=r"ratings.csv, line 3: 5 fields, but the header has 4 "
                                        r"\(a comma in a value that is not quoted\?\)$"):
        read_table(tmp_path, "ratings.csv")


def test_an_unclosed_quote_in_a_large_file_is_polars_one_line(tmp_path: Path) -> None:
    # the csv module gives up on the quoted "field" past its 128 KB limit: polars' message
    rows = "".join(f"1,{m},4.0,{m}\n" for m in range(3, 20_000))
    path = tmp_path / "ratings.csv"
    path.write_text(f'userId,movieId,rating,timestamp\n1,1,4.0,5\n1,"2,4.0,6\n{rows}')
    with pytest.raises(DataError, match="ratings.csv: cannot parse CSV") as info:
        read_table(tmp_path, "ratings.csv")
    assert "\n" not in str(info.value)
