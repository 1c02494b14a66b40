"""Embeddings of random unit vectors beside a real ingest, to time the query path at a size
this CPU cannot train at (MovieLens-25M: 162k users, 62k movies).

The query commands' work does not depend on the vectors' values: a matrix-vector product over
the whole movie table, a top-k, and the reasons (the catalogue's terms, the user's history).
The seen index, catalogue and users' tags are the real ones `tagrec embed` writes
(store.catalogue.write_lookups); only the two tables are random, so their answers mean
nothing. `recommend --tags` and `--ratings` need a trained model and are not covered.

`tagrec serve` opens only a workspace whose tables name a model it can check; --model copies
a trained model folder (any workspace's model/, e.g. ml-latest-small's) to WORKDIR/model and
records it, so the server's load test runs at this size too (known users never run the
model; tags queries run it, for timing only).

    python benchmarks/random_tables.py WORKDIR [--dim 512] [--model OTHER/model]
    python benchmarks/recommend.py --workdir WORKDIR --skip-tags
    python benchmarks/serve.py --workdir WORKDIR --scenarios "known users"   # with --model
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import polars as pl

from tagrec_cli import artifacts
from tagrec_cli.config import ModelConfig
from tagrec_cli.store.catalogue import write_lookups
from tagrec_cli.store.embeddings import write_table

MODEL = ModelConfig()  # the ranking settings (prior.py) the tables are recorded with


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", type=Path, help="a trained model folder to record (for serve)")
    args = ap.parse_args(argv)
    ws = args.workdir
    config_hash = None
    if args.model is not None:
        shutil.copytree(args.model, ws / artifacts.MODEL_DIR, dirs_exist_ok=True)
        config_hash = artifacts.file_digest(ws / artifacts.MODEL_DIR / artifacts.MODEL_CONFIG)
    manifest = artifacts.ingest_manifest(ws)
    rng = np.random.default_rng(args.seed)
    counts = {}
    with artifacts.atomic_dir(ws / artifacts.EMBEDDINGS_DIR) as tmp:
        for side, id_column in (("user", "userId"), ("movie", "movieId")):
            ids = pl.read_parquet(ws / artifacts.INGEST_DIR / artifacts.INGEST_TABLE[side],
                                  columns=[id_column])[id_column].to_numpy()
            vecs = rng.standard_normal((len(ids), args.dim), dtype=np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            write_table(tmp, side, ids, vecs, artifacts.MODEL_DIR, args.dim)
            counts[side + "s"] = len(ids)
        write_lookups(ws, tmp)
        artifacts.write_manifest(tmp, artifacts.EMBEDDINGS_DIR, artifacts.EMBEDDINGS_FORMAT,
                                 model_dir=artifacts.MODEL_DIR, dim=args.dim,
                                 ingest_key=manifest.get("ingest_key"),
                                 model_config_hash=config_hash, added_movies=0,
                                 ingest_settings=manifest["settings"],
                                 popularity_prior={"strength": MODEL.popularity_prior,
                                                   "shrink": MODEL.prior_shrink,
                                                   "cold": MODEL.cold_prior},
                                 random_tables=True, **counts)
    print(f"wrote random tables ({counts}) and the real lookups to {ws / 'embeddings'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
