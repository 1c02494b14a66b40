"""Embeddings of random unit vectors beside a real ingest, to time the query path at a size
this CPU cannot train at (MovieLens-25M: 162k users, 62k movies).

The query commands' work does not depend on the vectors' values: a matrix-vector product over
the whole movie table, a top-k, and the reasons (the catalogue's terms, the user's history).
The seen index, catalogue and users' tags are the real ones `tagrec embed` writes
(store.catalogue.write_lookups); only the two tables are random, so their answers mean
nothing. `recommend --tags` and `--ratings` need a trained model and are not covered.

    python benchmarks/random_tables.py WORKDIR [--dim 512]   # WORKDIR holds ingest/
    python benchmarks/recommend.py --workdir WORKDIR --skip-tags
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl

from tagrec_cli import artifacts
from tagrec_cli.store.catalogue import write_lookups
from tagrec_cli.store.embeddings import write_table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    ws = args.workdir
    manifest = artifacts.ingest_manifest(ws)
    rng = np.random.default_rng(args.seed)
    counts = {}
    with artifacts.atomic_dir(ws / artifacts.EMBEDDINGS_DIR) as tmp:
        for side, id_column in (("user", "userId"), ("movie", "movieId")):
            ids = pl.read_parquet(ws / artifacts.INGEST_DIR / artifacts.INGEST_TABLE[side],
                                  columns=[id_column])[id_column].to_numpy()
            vecs = rng.standard_normal((len(ids), args.dim), dtype=np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            write_table(tmp, side, ids, vecs, "model", args.dim)
            counts[side + "s"] = len(ids)
        write_lookups(ws, tmp)
        artifacts.write_manifest(tmp, artifacts.EMBEDDINGS_DIR, artifacts.EMBEDDINGS_FORMAT,
                                 model_dir="model", dim=args.dim,
                                 ingest_key=manifest.get("ingest_key"),
                                 model_config_hash=None, added_movies=0,
                                 ingest_settings=manifest["settings"],
                                 random_tables=True, **counts)
    print(f"wrote random tables ({counts}) and the real lookups to {ws / 'embeddings'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
