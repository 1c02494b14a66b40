"""The document grammar, once: tag cleaning, genres, movie documents and user documents.

`tagrec ingest` writes every document with these rules, and every query that needs a
document later (`recommend --tags`, `embed --add-movies`) follows the same ones, so what the
towers were trained on and what they are asked about cannot drift apart.

    movie document: [title, year, genres,] [rating X.Y,] its tags, most users first
    user document:  [its liked genres,] its own tags, the tags of the movies it liked

A document is its terms joined by SEPARATOR, capped at `max_tags` terms. Tags are compared
cleaned (trimmed, lower case).

    __init__.py  the rules on Python strings (no polars: the query path imports this)
    frames.py    the same rules as polars expressions, and whole documents from tables
                 (ingest, millions of rows)
    terms.py     a `--tags` query's user document from the catalogue's term arrays (numpy)

Tests check that each rule and its twin agree.
"""

from __future__ import annotations

import csv
import io

from tagrec_cli.errors import TagrecError, quoted

SEPARATOR = ", "
NO_GENRES = "(no genres listed)"  # MovieLens' genres for a movie without any
USER_PART = {"genres": -1, "own": 0, "liked": 1}  # the order of a user document's parts


def clean_tags(tags: list[str]) -> list[str]:
    """Trim, lower-case, drop empty ones and repeats (first kept).

    Example: [" Heist", "heist", "", "Noir "] -> ["heist", "noir"]
    """
    seen: dict[str, None] = {}
    for tag in tags:
        tag = tag.strip().lower()
        if tag:
            seen.setdefault(tag, None)
    return list(seen)


def parse_tags(text: str) -> list[str]:
    """Comma- or newline-separated tags; a tag holding a comma is written in double quotes.

    Example: 'Dark comedy, "rock, paper", heist' -> ['dark comedy', 'rock, paper', 'heist']
    """
    # newline=None: "\r" and "\r\n" end a line as "\n" does (csv would refuse a bare "\r").
    # strict: a quote left open is an error, not one tag running to the end of the text.
    rows = csv.reader(io.StringIO(text, newline=None), skipinitialspace=True, strict=True)
    try:
        return clean_tags([tag for row in rows for tag in row])
    except csv.Error as exc:
        raise TagrecError(f"cannot read the tags {quoted(text)}: {exc} (is a double quote "
                          "left open?)") from None


def genre_terms(genres: str | None) -> list[str]:
    """'Adventure|Animation' -> ['adventure', 'animation'], as they read in a document."""
    if not genres or genres == NO_GENRES:
        return []
    return [g.strip().lower() for g in genres.split("|") if g.strip()]



def document_text(terms: list[str]) -> str:
    """A document from its terms, exactly as ingest joins them."""
    return SEPARATOR.join(terms)


def query_tags(extra: list[str], base: list[str], max_tags: int) -> list[str]:
    """A user document's tags with `extra` tags put first (before even its liked genres)."""
    return clean_tags(extra + base)[:max_tags]
