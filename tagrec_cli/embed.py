"""`tagrec embed`: every user and movie document -> L2-normalised embedding tables.

Writes embeddings/users.safetensors and embeddings/movies.safetensors, each holding
`ids` (N,) int64 MovieLens ids and `embeddings` (N, dim) float32 unit rows.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from tagrec_cli import artifacts, features
from tagrec_cli.artifacts import ADDED_DIR
from tagrec_cli.config import EMBED_BATCH_SIZE, IngestConfig
from tagrec_cli.datasets.new_movies import read_new_movies
from tagrec_cli.documents import frames
from tagrec_cli.errors import ArtifactError, DataError
from tagrec_cli.store import Store, ingested
from tagrec_cli.store.catalogue import (
    Catalogue,
    merge_columns,
    write_catalogue,
    write_lookups,
)
from tagrec_cli.store.embeddings import read_table_file, write_table
from tagrec_cli.topk import rows_of
from tagrec_cli.towers import collab
from tagrec_cli.towers import pooled as pooled_cache
from tagrec_cli.towers.encode import encode_documents, encode_rows, uses_bf16
from tagrec_cli.towers.model import TwoTower, load_model, resolve_device
from tagrec_cli.towers.tokens import SIDES, TokenTable, token_tables


@dataclass
class EmbedSummary:
    out_dir: Path
    users: int
    movies: int
    dim: int
    seconds: float
    reused: int = 0  # documents whose pooled output came from the training run's cache
    readded: int = 0  # movies added earlier with --add-movies, added again
    # movies added earlier (not with --replace) that the ingest data now has: its rows won
    superseded: list[int] = field(default_factory=list)


def run_embed(workdir: Path, model_dir: Path | None = None, device: str = "auto",
              batch_size: int = EMBED_BATCH_SIZE,
              on_batch: Callable[[str, int, int], None] | None = None,
              precision: str = "auto") -> EmbedSummary:
    """Encode every document of the workspace with the trained model; write both tables."""
    with artifacts.workspace_lock(workdir):
        return _embed(Path(workdir), model_dir, device, batch_size, on_batch, precision)


def _embed(workdir: Path, model_dir: Path | None, device: str, batch_size: int,
           on_batch: Callable[[str, int, int], None] | None, precision: str) -> EmbedSummary:
    start = time.perf_counter()
    workdir = Path(workdir)
    model_dir = Path(model_dir) if model_dir else workdir / artifacts.MODEL_DIR
    dev = resolve_device(device)
    model, tokenizer, config = load_model(model_dir, dev)
    ingest = ingested.ingest_manifest(workdir)
    ingest_cfg = IngestConfig.from_settings(ingest.get("settings"))  # checked before any work
    trained_on = config.get("data", {}).get("ingest_key")
    if trained_on and ingest.get("ingest_key") and trained_on != ingest["ingest_key"]:
        raise ArtifactError(f"the model in {model_dir} was trained on another ingest than "
                            f"{workdir}'s (an older one, or another workspace's) — re-run "
                            "`tagrec train`, then `tagrec embed`")
    tables = token_tables(workdir, tokenizer, model.cfg.max_length)
    out = workdir / artifacts.EMBEDDINGS_DIR
    meta = {"model_dir": artifacts.sibling_path(workdir, model_dir)}
    key = pooled_cache.cache_key(model, tables, dev, uses_bf16(dev, precision))
    # {} unless a frozen train left them
    cached = pooled_cache.load(workdir, key, tables, model.encoder.config.hidden_size)
    reused = 0
    with artifacts.atomic_dir(out) as tmp:
        for side in SIDES:
            table = tables[side]
            callback = (lambda n, s=side, total=len(table): on_batch(s, n, total)) \
                if on_batch else None
            vecs, from_cache = text_vectors(workdir, model, table, side, dev, cached.get(side),
                                            batch_size, callback, precision)
            reused += from_cache
            liked = None
            if model.cfg.collaborative and side == "user":
                liked = collab.workspace_liked(workdir, table.ids, model.id_movies.cpu().numpy(),
                                               ingest_cfg.like_threshold)
            vecs = collab.with_collab(model, side, table.ids, vecs, liked)
            vecs = torch.nn.functional.normalize(vecs, dim=1).numpy()
            write_table(tmp, side, table.ids, vecs, meta["model_dir"], model.cfg.dim)
        write_lookups(workdir, tmp)
        readded, superseded = readd_movies(out, tmp, model, tokenizer, dev, ingest_cfg,
                                           batch_size, precision, meta["model_dir"])
        artifacts.write_manifest(tmp, artifacts.EMBEDDINGS_DIR, artifacts.EMBEDDINGS_FORMAT,
                                 model_dir=meta["model_dir"], dim=model.cfg.dim,
                                 ingest_key=ingest.get("ingest_key"),
                                 model_config_hash=artifacts.file_digest(
                                     model_dir / artifacts.MODEL_CONFIG),
                                 users=len(tables["user"]),
                                 movies=len(tables["movie"]) + readded, added_movies=readded,
                                 ingest_settings=ingest["settings"],
                                 precision=precision,
                                 popularity_prior={"strength": model.cfg.popularity_prior,
                                                   "shrink": model.cfg.prior_shrink,
                                                   "cold": model.cfg.cold_prior})
    return EmbedSummary(out, len(tables["user"]), len(tables["movie"]) + readded, model.cfg.dim,
                        round(time.perf_counter() - start, 3), reused, readded, superseded)


# ---------------------------------------------------------------- embed --add-movies

def text_vectors(workdir: Path, model: TwoTower, table: TokenTable, side: str, dev: torch.device,
                 cached: tuple[torch.Tensor, np.ndarray] | None = None,
                 batch_size: int = EMBED_BATCH_SIZE,
                 callback: Callable[[int], None] | None = None, precision: str = "auto",
                 ) -> tuple[torch.Tensor, int]:
    """(len(table), dim) float32 tower outputs of every row of one side's token table, before
    the collaborative part, and how many rows came from `cached` (pooled_cache.load's
    (pooled, done) for this side: the pooled outputs a frozen `train` left; the rest are
    encoded)."""
    extra = None
    if model.cfg.features is not None:
        extra = torch.from_numpy(ingested.side_features(workdir, side, table.ids,
                                                        model.cfg.features))
    if cached is None:
        return encode_rows(model, table, np.arange(len(table)), dev, batch_size, side,
                           callback, precision, extra), 0
    pooled, done = cached
    missing = np.flatnonzero(~done)
    if callback:
        callback(int(done.sum()))
    if len(missing):
        pooled = pooled.clone()
        pooled[torch.from_numpy(missing)] = encode_rows(
            model, table, missing, dev, batch_size, None, callback, precision)
    with torch.inference_mode():
        vecs = torch.cat([model.project(side, pooled[lo:lo + 4096].to(dev),
                                        None if extra is None else
                                        extra[lo:lo + 4096].to(dev)).float().cpu()
                          for lo in range(0, len(table), 4096)])
    return vecs, int(done.sum())


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
    with artifacts.workspace_lock(workdir):
        return _add_movies(Path(workdir), csv_path, replace, device, batch_size)


def encode_new_movies(model: TwoTower, tokenizer: Any, dev: torch.device, cfg: IngestConfig,
                      new: pl.DataFrame, batch_size: int, precision: str,
                      ) -> tuple[np.ndarray, np.ndarray, pl.DataFrame]:
    """Movies from a CSV (read_new_movies) -> (ids (n,), unit vectors (n, dim), catalogue rows).

    Documents are built as ingest builds them (same settings; no rating, as nobody rated
    them), and encoded with the movie tower and the never-rated side features.
    """
    docs = frames.movie_fields(new).with_columns(mean_rating=pl.lit(None, pl.Float64))
    docs = docs.with_columns(document=frames.movie_document_text(cfg))
    extra = None
    if model.cfg.features is not None:  # never rated: no count, mean or dislikes yet
        n = np.zeros(docs.height)
        extra = features.movie_features(n, n, n, docs["year"].to_numpy(), model.cfg.features)
    vecs = encode_documents(model, tokenizer, docs["document"].to_list(), dev, "movie",
                            batch_size, precision, extra)
    # Added movies have no tag counts (the CSV lists tags, not who applied them): null.
    return (docs["movieId"].to_numpy().astype(np.int64), vecs,
            docs.select("movieId", "title", "year", "genres", "tags"))


def merge_movies(table_ids: np.ndarray, table_vecs: np.ndarray, catalogue: dict[str, list],
                 ids: np.ndarray, vecs: np.ndarray, info: pl.DataFrame,
                 ) -> tuple[np.ndarray, np.ndarray, dict[str, list], np.ndarray]:
    """The movie table and catalogue with these movies added (new ids) or overwritten (ids
    already there): (ids, vectors, catalogue, rows of `ids` that were already there or -1)."""
    rows = rows_of(table_ids, ids)
    out_ids = np.concatenate([table_ids, ids[rows < 0]])
    out_vecs = np.concatenate([table_vecs, vecs[rows < 0]])
    out_vecs[rows[rows >= 0]] = vecs[rows >= 0]  # overwrite in place
    merged = merge_columns(catalogue, {c: info[c].to_list() for c in info.columns})
    return out_ids, out_vecs, merged, rows


def readd_movies(folder: Path, tmp: Path, model: TwoTower, tokenizer: Any, dev: torch.device,
                 cfg: IngestConfig, batch_size: int, precision: str, model_dir: str,
                 ) -> tuple[int, list[int]]:
    """Add the movies of every CSV kept in folder/added/ to the tables being written in tmp,
    in the order they were added. A movie the ingest data now has keeps the ingest's row,
    unless its CSV was added with --replace (kept_name): the user asked for theirs to win.
    Returns how many movies were added (not counting replaced ones), and the ids of those
    whose ingest row won (for a note: the CSV stays in added/)."""
    added_dir = Path(folder) / ADDED_DIR
    kept = sorted(added_dir.glob("*.csv"), key=kept_order)
    others = [p for p in added_dir.iterdir() if p not in kept] if added_dir.is_dir() else []
    if not kept and not others:
        return 0, []
    (tmp / ADDED_DIR).mkdir()
    for path in others:  # not a CSV: not read, but the user's, so not dropped either
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, tmp / ADDED_DIR / path.name)
    if not kept:
        return 0, []
    table = read_table_file(tmp / artifacts.TABLE_FILE["movie"])  # the one being written
    ids, vecs = table.ids, table.vectors
    in_ingest = set(ids.tolist())
    ingested_movie = pl.col("movieId").is_in(list(in_ingest))  # built once, for every CSV
    catalogue = Catalogue.read(tmp / artifacts.CATALOGUE_FILE).columns()
    added: set[int] = set()
    superseded: set[int] = set()  # ingest rows that won over the user's
    theirs: set[int] = set()  # ingest movies a --replace CSV overwrote: the user's row won
    for path in kept:
        shutil.copy2(path, tmp / ADDED_DIR / path.name)
        new = read_new_movies(path)
        if replaces(path):
            theirs |= set(new["movieId"].to_list()) & in_ingest
        else:
            superseded |= set(new.filter(ingested_movie)["movieId"].to_list())
            new = new.filter(~ingested_movie)
        if new.height == 0:
            continue
        new_ids, new_vecs, info = encode_new_movies(model, tokenizer, dev, cfg, new,
                                                    batch_size, precision)
        ids, vecs, catalogue, _ = merge_movies(ids, vecs, catalogue, new_ids, new_vecs, info)
        added |= set(new_ids.tolist()) - in_ingest
    write_table(tmp, "movie", ids, vecs, model_dir, vecs.shape[1])
    write_catalogue(tmp / artifacts.CATALOGUE_FILE, catalogue)
    return len(added), sorted(superseded - theirs)


KEPT_NAME = re.compile(r"(\d+)(r?)-")  # kept_name's prefix: the order, then "r" or nothing


def kept_name(n: int, csv_path: Path, replace: bool) -> str:
    """The name a CSV added with --add-movies is kept under in added/: its order, an "r"
    where --replace was given, and its own name. Example: (2, "new films.csv", True) ->
    "0002r-new films.csv"."""
    return f"{n:04d}{'r' if replace else ''}-{Path(csv_path).stem[:60]}.csv"


def kept_order(kept: Path) -> tuple[int, int, str]:
    """Sort key of a kept CSV: by its number (past 9999 too, where the names no longer
    sort), and a CSV the user put there by hand (no number) after every added one."""
    m = KEPT_NAME.match(kept.name)
    return (0, int(m.group(1)), kept.name) if m else (1, 0, kept.name)


def next_kept_number(added_dir: Path) -> int:
    """One past the highest number kept: not the count, which after a CSV was deleted by
    hand would give a number already in use (and the same stem would overwrite that CSV)."""
    return max((kept_order(p)[1] for p in added_dir.glob("*.csv")), default=0) + 1


def replaces(kept: Path) -> bool:
    """Whether a kept CSV (kept_name) was added with --replace."""
    m = KEPT_NAME.match(kept.name)
    return bool(m and m.group(2))


def _add_movies(workdir: Path, csv_path: Path, replace: bool, device: str,
                batch_size: int) -> AddSummary:
    start = time.perf_counter()
    store = Store(workdir)
    folder = Path(workdir) / artifacts.EMBEDDINGS_DIR
    manifest = store.manifest
    cfg = store.ingest
    new = read_new_movies(csv_path)
    catalogue = store.catalogue
    exists = catalogue.rows(new["movieId"].to_numpy()) >= 0
    if exists.any() and not replace:
        movie = int(new["movieId"][int(np.argmax(exists))])
        raise DataError(f"movie {movie} is already in the table ({catalogue.label(movie)}); "
                        "pass --replace to overwrite it")
    dev = resolve_device(device)
    model, tokenizer, _ = load_model(store.model_dir, dev)
    ids, vecs, info = encode_new_movies(model, tokenizer, dev, cfg, new, batch_size,
                                        manifest.get("precision", "auto"))  # as the table was
    old = store.table("movie")
    table_ids, table_vecs, merged, rows = merge_movies(
        old.ids, old.vectors, catalogue.columns(), ids, vecs, info)
    with artifacts.atomic_dir(folder) as tmp:
        for item in folder.iterdir():  # unchanged files: hard links, no copy of big tables
            if item.name not in (artifacts.TABLE_FILE["movie"], artifacts.CATALOGUE_FILE,
                                 artifacts.MANIFEST):
                link_or_copy(item, tmp / item.name)
        # The CSV is kept, so that every later `tagrec embed` adds these movies again.
        (tmp / ADDED_DIR).mkdir(exist_ok=True)
        # A new name: the other files here are hard links to the live folder's.
        kept = tmp / ADDED_DIR / kept_name(next_kept_number(tmp / ADDED_DIR), csv_path, replace)
        shutil.copy2(csv_path, kept)
        write_table(tmp, "movie", table_ids, table_vecs, manifest["model_dir"], manifest["dim"],
                    rerun="re-run `tagrec embed`, then add them again")
        write_catalogue(tmp / artifacts.CATALOGUE_FILE, merged)
        fields = {k: v for k, v in manifest.items()
                  if k not in ("format", "format_version", "tagrec_version")}
        added = [int(m) for m in ids[rows < 0]]
        fields |= {"movies": len(table_ids),
                   "added_movies": int(manifest.get("added_movies", 0)) + len(added)}
        artifacts.write_manifest(tmp, artifacts.EMBEDDINGS_DIR, artifacts.EMBEDDINGS_FORMAT,
                                 **fields)
    return AddSummary(added, [int(m) for m in ids[rows >= 0]], len(table_ids),
                      round(time.perf_counter() - start, 3))


def link_or_copy(src: Path | str, dst: Path | str) -> None:
    """dst as a hard link to src (a copy where links are not possible); folders recursively."""
    src, dst = Path(src), Path(dst)  # copytree passes its copy_function strings
    if src.is_dir():
        shutil.copytree(src, dst, copy_function=link_or_copy)
        return
    try:
        os.link(src, dst)
    except OSError:  # a file system without hard links
        shutil.copy2(src, dst)
