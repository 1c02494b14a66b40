"""`tagrec embed`: every user and movie document -> L2-normalised embedding tables.

Writes embeddings/users.safetensors and embeddings/movies.safetensors, each holding
`ids` (N,) int64 MovieLens ids and `embeddings` (N, dim) float32 unit rows.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from tagrec_cli import artifacts, documents, features
from tagrec_cli.config import EMBED_BATCH_SIZE
from tagrec_cli.datasets.movielens import read_csv
from tagrec_cli.errors import DataError
from tagrec_cli.store import Store, ingested
from tagrec_cli.store.catalogue import read_lookup, write_lookups
from tagrec_cli.store.embeddings import write_table
from tagrec_cli.towers import pooled as pooled_cache
from tagrec_cli.towers.encode import encode_documents, encode_rows, uses_bf16
from tagrec_cli.towers.model import load_model, resolve_device
from tagrec_cli.towers.tokens import SIDES, token_tables


@dataclass
class EmbedSummary:
    out_dir: Path
    users: int
    movies: int
    dim: int
    seconds: float
    reused: int = 0  # documents whose pooled output came from the training run's cache


def run_embed(workdir: Path, model_dir: Path | None = None, device: str = "auto",
              batch_size: int = EMBED_BATCH_SIZE,
              on_batch: Callable[[str, int, int], None] | None = None,
              precision: str = "auto") -> EmbedSummary:
    """Encode every document of the workspace with the trained model; write both tables."""
    start = time.perf_counter()
    workdir = Path(workdir)
    model_dir = Path(model_dir) if model_dir else workdir / artifacts.MODEL_DIR
    dev = resolve_device(device)
    model, tokenizer, config = load_model(model_dir, dev)
    tables = token_tables(workdir, tokenizer, model.cfg.max_length)
    out = workdir / artifacts.EMBEDDINGS_DIR
    meta = {"model_dir": str(model_dir.resolve())}
    key = pooled_cache.cache_key(model, tables, dev, uses_bf16(dev, precision))
    cached = pooled_cache.load(workdir, key, tables)  # {} unless a frozen train left them
    reused = 0
    with artifacts.atomic_dir(out) as tmp:
        for side in SIDES:
            table = tables[side]
            rows = np.arange(len(table))
            callback = (lambda n, s=side, total=len(table): on_batch(s, n, total)) \
                if on_batch else None
            extra = None
            if model.cfg.features is not None:
                extra = torch.from_numpy(ingested.side_features(workdir, side, table.ids,
                                                                model.cfg.features))
            if side in cached:
                pooled, done = cached[side]
                missing = np.flatnonzero(~done)
                if callback:
                    callback(int(done.sum()))
                if len(missing):
                    pooled = pooled.clone()
                    pooled[torch.from_numpy(missing)] = encode_rows(
                        model, table, missing, dev, batch_size, None, callback, precision)
                reused += int(done.sum())
                with torch.inference_mode():
                    vecs = torch.cat([model.project(side, pooled[lo:lo + 4096].to(dev),
                                                    None if extra is None else
                                                    extra[lo:lo + 4096].to(dev)).float().cpu()
                                      for lo in range(0, len(table), 4096)])
            else:
                vecs = encode_rows(model, table, rows, dev, batch_size, side, callback,
                                   precision, extra)
            vecs = torch.nn.functional.normalize(vecs, dim=1).numpy()
            write_table(tmp, side, table.ids, vecs, meta["model_dir"], model.cfg.dim)
        write_lookups(workdir, tmp)
        settings = ingested.ingest_manifest(workdir)["settings"]
        artifacts.write_manifest(tmp, artifacts.EMBEDDINGS_DIR, artifacts.EMBEDDINGS_FORMAT,
                                 model_dir=meta["model_dir"], dim=model.cfg.dim,
                                 model_config_hash=artifacts.file_digest(
                                     model_dir / artifacts.MODEL_CONFIG),
                                 users=len(tables["user"]), movies=len(tables["movie"]),
                                 added_movies=0, ingest_settings=settings,
                                 precision=precision)
    return EmbedSummary(out, len(tables["user"]), len(tables["movie"]), model.cfg.dim,
                        round(time.perf_counter() - start, 3), reused)


# ---------------------------------------------------------------- embed --add-movies

NEW_MOVIE_COLUMNS = ("movieId", "title", "genres", "tags")


def read_new_movies(path: Path, max_tags: int):
    """A CSV of movieId,title,genres,tags (tags separated by '|') -> polars DataFrame.

    Tags are cleaned as ingest cleans them and keep the file's order (there are no counts
    to rank them by), capped at max_tags.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist (expected a CSV with columns "
                        f"{','.join(NEW_MOVIE_COLUMNS)})")
    schema = {"movieId": pl.Int64, "title": pl.String, "genres": pl.String, "tags": pl.String}
    df = read_csv(path, schema)
    if df.height == 0:
        raise DataError(f"{path} has no movies")
    repeated = df.filter(pl.col("movieId").is_duplicated())
    if repeated.height:
        raise DataError(f"{path}: movieId {repeated['movieId'][0]} appears more than once")
    untitled = df.with_row_index().filter(pl.col("title").fill_null("").str.strip_chars() == "")
    if untitled.height:
        raise DataError(f"{path}, line {untitled['index'][0] + 2}: empty title")
    tags = [documents.clean_tags((t or "").split("|"))[:max_tags] for t in df["tags"].to_list()]
    return df.with_columns(pl.Series("tags", tags, dtype=pl.List(pl.String)),
                           pl.col("title").str.strip_chars())


@dataclass
class AddSummary:
    added: list[int]  # movie ids new to the table
    replaced: list[int]  # movie ids whose rows were overwritten (--replace)
    movies: int  # rows in the movie table now
    seconds: float


def add_movies(workdir: Path, csv_path: Path, replace: bool = False, device: str = "auto",
               batch_size: int = EMBED_BATCH_SIZE) -> AddSummary:
    """Encode movies from a CSV with the trained movie tower and add them to the tables.

    Documents are built as ingest builds them (same settings; no rating, as nobody rated
    them). The embeddings folder is rewritten atomically; unchanged files are hard links.
    """
    start = time.perf_counter()
    store = Store(workdir)
    folder = Path(workdir) / artifacts.EMBEDDINGS_DIR
    manifest = store.manifest
    cfg = store.ingest
    new = read_new_movies(csv_path, cfg.max_tags)
    catalogue = store.catalogue
    exists = catalogue.rows(new["movieId"].to_numpy()) >= 0
    if exists.any() and not replace:
        movie = int(new["movieId"][int(np.argmax(exists))])
        raise DataError(f"movie {movie} is already in the table ({catalogue.label(movie)}); "
                        "pass --replace to overwrite it")
    model_dir = store.model_dir

    docs = documents.movie_fields(new).with_columns(mean_rating=pl.lit(None, pl.Float64))
    docs = docs.with_columns(document=documents.movie_document_text(cfg))
    dev = resolve_device(device)
    model, tokenizer, _ = load_model(model_dir, dev)
    ids = docs["movieId"].to_numpy().astype(np.int64)
    extra = None
    if model.cfg.features is not None:  # never rated: no count, mean or dislikes yet
        n = np.zeros(docs.height)
        extra = features.movie_features(n, n, n, docs["year"].to_numpy(), model.cfg.features)
    vecs = encode_documents(model, tokenizer, docs["document"].to_list(), dev, "movie",
                            batch_size, manifest.get("precision", "auto"),  # as the table was
                            extra)

    old = store.table("movie")
    rows = old.rows_of(ids)
    table_ids = np.concatenate([old.ids, ids[rows < 0]])
    table_vecs = np.concatenate([old.vectors, vecs[rows < 0]])
    table_vecs[rows[rows >= 0]] = vecs[rows >= 0]  # --replace: overwrite in place
    info = docs.select("movieId", "title", "year", "genres", "tags")
    old_info = read_lookup(workdir, artifacts.CATALOGUE_FILE)
    # Added movies have no tag counts (the CSV lists tags, not who applied them): null.
    merged = pl.concat([old_info.filter(~pl.col("movieId").is_in(ids)), info],
                       how="diagonal_relaxed")
    with artifacts.atomic_dir(folder) as tmp:
        for item in folder.iterdir():  # unchanged files: hard links, no copy of big tables
            if item.name not in (artifacts.TABLE_FILE["movie"], artifacts.CATALOGUE_FILE,
                                 artifacts.MANIFEST):
                try:
                    os.link(item, tmp / item.name)
                except OSError:  # a file system without hard links
                    shutil.copy2(item, tmp / item.name)
        write_table(tmp, "movie", table_ids, table_vecs, manifest["model_dir"], manifest["dim"])
        merged.write_parquet(tmp / artifacts.CATALOGUE_FILE)
        fields = {k: v for k, v in manifest.items()
                  if k not in ("format", "format_version", "tagrec_version")}
        added = [int(m) for m in ids[rows < 0]]
        fields |= {"movies": len(table_ids),
                   "added_movies": int(manifest.get("added_movies", 0)) + len(added)}
        artifacts.write_manifest(tmp, artifacts.EMBEDDINGS_DIR, artifacts.EMBEDDINGS_FORMAT,
                                 **fields)
    return AddSummary(added, [int(m) for m in ids[rows >= 0]], len(table_ids),
                      round(time.perf_counter() - start, 3))
