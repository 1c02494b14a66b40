"""`tagrec embed`: every user and movie document -> L2-normalised embedding tables.

Writes embeddings/users.safetensors and embeddings/movies.safetensors, each holding
`ids` (N,) int64 MovieLens ids and `embeddings` (N, dim) float32 unit rows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file

from tagrec_cli import artifacts
from tagrec_cli.model import TwoTower, load_model, resolve_device
from tagrec_cli.recommend import MOVIE_INFO_FILE, SEEN_FILE, TABLE_FILE
from tagrec_cli.tokens import SIDES, TokenTable, token_tables


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA, plain float32 on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def encode_rows(model: TwoTower, table: TokenTable, rows: np.ndarray, device: torch.device,
                batch_size: int = 256, side: str | None = None,
                on_batch: Callable[[int], None] | None = None) -> torch.Tensor:
    """Encode table rows in length-sorted batches (little padding), returned in `rows` order.

    side None: pooled encoder output (len(rows), H); 'user'/'movie': projected (len(rows), dim).
    Runs under inference_mode; the result is float32 on the CPU.
    """
    order = np.argsort(table.lengths[rows], kind="stable")
    out: list[torch.Tensor] = []
    with torch.inference_mode(), autocast(device):
        for lo in range(0, len(rows), batch_size):
            ids, mask = table.batch(rows[order[lo:lo + batch_size]])
            pooled = model.encode(ids.to(device), mask.to(device))
            vecs = pooled if side is None else model.project(side, pooled)
            out.append(vecs.float().cpu())
            if on_batch:
                on_batch(len(ids))
    width = model.encoder.config.hidden_size if side is None else model.cfg.dim
    result = torch.empty((len(rows), width), dtype=torch.float32)
    if out:
        result[torch.from_numpy(order)] = torch.cat(out)
    return result


def write_lookups(workdir: Path, folder: Path) -> None:
    """What `recommend` needs besides the tables, in formats it reads without polars."""
    import json

    import polars as pl

    ingest = Path(workdir) / artifacts.INGEST_DIR
    seen = (pl.read_parquet(ingest / "ratings.parquet", columns=["userId", "movieId"])
            .sort("userId", "movieId"))
    users, counts = np.unique(seen["userId"].to_numpy(), return_counts=True)
    indptr = np.zeros(len(users) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(counts)
    save_file({"users": users.astype(np.int64), "indptr": indptr,
               "movies": seen["movieId"].to_numpy().astype(np.int64)}, str(folder / SEEN_FILE))
    info = pl.read_parquet(ingest / "movies.parquet", columns=["movieId", "title", "year",
                                                                "genres"])
    (folder / MOVIE_INFO_FILE).write_text(json.dumps(info.to_dict(as_series=False),
                                                     ensure_ascii=False), encoding="utf-8")


@dataclass
class EmbedSummary:
    out_dir: Path
    users: int
    movies: int
    dim: int
    seconds: float


def run_embed(workdir: Path, model_dir: Path | None = None, device: str = "auto",
              batch_size: int = 256,
              on_batch: Callable[[str, int, int], None] | None = None) -> EmbedSummary:
    """Encode every document of the workspace with the trained model; write both tables."""
    import time

    start = time.perf_counter()
    workdir = Path(workdir)
    model_dir = Path(model_dir) if model_dir else workdir / artifacts.MODEL_DIR
    dev = resolve_device(device)
    model, tokenizer, config = load_model(model_dir, dev)
    tables = token_tables(workdir, tokenizer, model.cfg.max_length)
    out = workdir / artifacts.EMBEDDINGS_DIR
    meta = {"format": "tagrec-embeddings", "format_version": str(artifacts.EMBEDDINGS_FORMAT),
            "model_dir": str(model_dir.resolve()), "dim": str(model.cfg.dim)}
    with artifacts.atomic_dir(out) as tmp:
        for side in SIDES:
            table = tables[side]
            rows = np.arange(len(table))
            callback = (lambda n, s=side, total=len(table): on_batch(s, n, total)) \
                if on_batch else None
            vecs = encode_rows(model, table, rows, dev, batch_size, side, callback)
            vecs = torch.nn.functional.normalize(vecs, dim=1).numpy()
            save_file({"ids": table.ids.astype(np.int64), "embeddings": vecs.astype(np.float32)},
                      str(tmp / TABLE_FILE[side]), metadata={**meta, "side": side})
        write_lookups(workdir, tmp)
        artifacts.write_manifest(tmp, artifacts.EMBEDDINGS_DIR, artifacts.EMBEDDINGS_FORMAT,
                                 model_dir=meta["model_dir"], dim=model.cfg.dim,
                                 model_config_hash=artifacts.file_digest(model_dir / "config.json"),
                                 users=len(tables["user"]), movies=len(tables["movie"]))
    return EmbedSummary(out, len(tables["user"]), len(tables["movie"]), model.cfg.dim,
                        round(time.perf_counter() - start, 3))
