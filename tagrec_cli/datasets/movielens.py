"""Reading MovieLens CSV files with polars, turning every kind of bad input into one DataError.

The fast path is a typed lazy scan. Only when that fails do we re-read the file slowly to find
the first offending line and say exactly what was expected there.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tagrec_cli.config import MAX_RATING, MIN_RATING
from tagrec_cli.datasets.user_ratings import check_once
from tagrec_cli.errors import DataError, quoted

# Column name -> polars type, in MovieLens order.
SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "ratings.csv": {"userId": pl.Int64, "movieId": pl.Int64, "rating": pl.Float64,
                    "timestamp": pl.Int64},
    "tags.csv": {"userId": pl.Int64, "movieId": pl.Int64, "tag": pl.String, "timestamp": pl.Int64},
    "movies.csv": {"movieId": pl.Int64, "title": pl.String, "genres": pl.String},
}


def read_table(data_dir: Path, name: str) -> pl.DataFrame:
    """Read one MovieLens file with the columns of SCHEMAS[name], in that order.

    Extra columns are ignored; a missing file, a missing column, a value that does not parse,
    or a non-UTF-8 byte raises DataError naming the file, line and column.
    """
    path = Path(data_dir) / name
    if path.exists() and not path.is_file():  # a folder, a pipe, a device: not "missing"
        raise DataError(f"{path} is not a regular file (expected a CSV file)")
    if not path.is_file():
        raise DataError(f"missing {name} in {data_dir} (expected MovieLens files "
                        "movies.csv, ratings.csv, tags.csv)")
    return read_csv(path, SCHEMAS[name])


def read_csv(path: Path, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Read the columns of `schema` from a CSV file with a header; errors as read_table's."""
    header = _read_header(path)
    missing = [c for c in schema if c not in header]
    if missing:
        line = ",".join(header)
        hint = next((f"; it seems separated by {what}, and MovieLens files are separated by "
                     "commas" for sep, what in (("\t", "tabs"), (";", "semicolons"))
                     if len(header) == 1 and sep in line), "")
        raise DataError(f"{path}: missing column {missing[0]!r} "
                        f"(expected columns {','.join(schema)}; found {line}{hint})")
    check_once(path, header, tuple(schema))
    names = column_names(header)
    # polars reads LF and CRLF line ends alike, but takes only one "\r" off the last field:
    # with "\r\r\n" (a CRLF file converted to CRLF again) an integer there keeps a "\r" and
    # does not parse, and text keeps it. Such a file's last column, if wanted, is read as
    # text and stripped; LF and CRLF files, the usual case, keep the plain typed read.
    last = names[-1] if names[-1] in schema and _has_cr_cr_lf(path) else None
    read_as = {c: pl.String if c == last else schema.get(c, pl.String) for c in names}
    columns = [_strip_cr(c, schema[c]) if c == last else pl.col(c) for c in schema]
    try:
        # Our own header names, not polars': a header line ending in "\r," or with a
        # trailing comma then reads as the same columns plus an empty extra one.
        # glob=False: a folder named "w[1]" is a path, not a pattern.
        df = (pl.scan_csv(path, has_header=False, skip_rows=1, encoding="utf8",
                          schema=read_as, glob=False)
              .select(columns).collect())
    except pl.exceptions.PolarsError as exc:
        raise _diagnose(path, names, schema, exc) from None
    for column in schema:
        if schema[column] != pl.String and df[column].null_count():
            row = df.with_row_index().filter(pl.col(column).is_null())["index"][0]
            raise DataError(f"{path}, line {row + 2}: empty {column!r} (expected a number)")
    return df


def column_names(header: list[str]) -> list[str]:
    """Header fields as column names; an empty field (a trailing comma) or a repeat gets a
    name of its own, so that the file's extra columns are read and ignored (a needed column
    named twice is an error before this: user_ratings.check_once).

    Example: ["userId", "rating", "", ""] -> ["userId", "rating", "column_3", "column_4"]
    """
    names: list[str] = []
    for i, name in enumerate(header):
        names.append(name if name and name not in names else f"column_{i + 1}")
    return names


def read_movielens(data_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Read and check (ratings, tags, movies) from a MovieLens folder."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data folder {data_dir} does not exist")
    ratings = read_table(data_dir, "ratings.csv")
    if ratings.height == 0:
        raise DataError(f"{data_dir / 'ratings.csv'} has no ratings")
    bad = ratings.with_row_index().filter(
        ~pl.col("rating").is_between(MIN_RATING, MAX_RATING) | pl.col("rating").is_nan())
    if bad.height:
        row = bad.row(0, named=True)
        raise DataError(f"{data_dir / 'ratings.csv'}, line {row['index'] + 2}: rating "
                        f"{row['rating']} is outside {MIN_RATING}–{MAX_RATING}")
    tags = read_table(data_dir, "tags.csv")
    movies = read_table(data_dir, "movies.csv")
    return ratings, tags, movies


#: How much of a file _has_cr_cr_lf looks at for line ends.
CR_PROBE_BYTES = 1 << 16


def _has_cr_cr_lf(path: Path) -> bool:
    """Whether the first CR_PROBE_BYTES of the file hold a "\r\r\n" line end."""
    with open(path, "rb") as f:
        return b"\r\r\n" in f.read(CR_PROBE_BYTES)


def _strip_cr(column: str, dtype: pl.DataType) -> pl.Expr:
    """Text column `column` without trailing carriage returns, empty as null, as `dtype`."""
    text = pl.col(column).str.strip_chars_end("\r")
    return pl.when(text != "").then(text).cast(dtype).alias(column)


def _read_header(path: Path) -> list[str]:
    with open(path, "rb") as f:
        first = f.readline()
    if not first.strip():
        raise DataError(f"{path} is empty (expected a header line and rows)")
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}, line 1: byte {first[exc.start]:#04x} is not UTF-8") from None
    return [c.strip().strip('"') for c in text.rstrip("\r\n").split(",")]


def _misshapen_row(path: Path, width: int) -> DataError | None:
    """The first row that is not `width` fields (an unquoted comma in a title or tag, a
    missing field) or whose quote never closes, which polars words in its own terms; None
    when there is none, or when the file is too broken for the csv module too (a quote
    open past its 128 KB field limit: polars' message then)."""
    import csv

    # newline="\n": a line ends at \n alone, so a \r\r\n file counts its lines as ingest does
    with open(path, encoding="utf-8-sig", newline="\n") as f:
        reader = csv.reader(f)
        try:
            next(reader, None)  # the header
            end = reader.line_num
            for row in reader:
                start, end = end + 1, reader.line_num
                if not row:  # a blank line
                    continue
                if any("\n" in cell for cell in row):
                    return DataError(f"{path}, line {start}: a quote (\") that is not closed on "
                                     f"its line (the value runs to line {end})")
                if len(row) != width:
                    why = " (a comma in a value that is not quoted?)" if len(row) > width else ""
                    return DataError(f"{path}, line {start}: {len(row)} fields, but the "
                                     f"header has {width}{why}")
        except csv.Error:
            return None
    return None


def _diagnose(path: Path, header: list[str], schema: dict[str, pl.DataType],
              exc: Exception) -> DataError:
    """Find the first offending line after the fast typed read failed."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                return DataError(f"{path}, line {lineno}: byte {raw[err.start]:#04x} is not "
                                 "UTF-8 (save the file as UTF-8)")
    try:
        text = pl.read_csv(path, has_header=False, skip_rows=1, new_columns=header,
                           infer_schema=False, encoding="utf8", glob=False)
    except Exception as err:  # noqa: BLE001 - any parse failure is reported the same way
        return _misshapen_row(path, len(header)) or DataError(
            f"{path}: cannot parse CSV ({str(err).strip().splitlines()[0]})")
    for column, dtype in schema.items():
        if dtype == pl.String:
            continue
        values = text[column].str.strip_chars()
        cast = values.cast(dtype, strict=False)
        bad = (values.is_not_null() & (values != "") & cast.is_null()).arg_true()
        if bad.len():
            row = int(bad[0])
            if values[row] == column:
                return DataError(f"{path}, line {row + 2} repeats the header line (files "
                                 "joined together?): remove it")
            kind = "an integer" if dtype == pl.Int64 else "a number"
            return DataError(f"{path}, line {row + 2}: {column} {quoted(str(values[row]))} "
                             f"is not {kind}")
    first = str(exc).strip().splitlines()[0]
    return DataError(f"{path}: cannot parse CSV ({first})")
