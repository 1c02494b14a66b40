"""A seeded share of a MovieLens folder's users: their ratings and tags, and every movie.

For a quality run at a size this CPU cannot train at (QUALITY.md's 25M-sized rows): the
users kept have all their ratings and tags, and movies.csv is copied whole, so the catalogue
a method ranks is the full one.

    python benchmarks/sample_users.py D25 D25_1PCT --fraction 0.01 --seed 42
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import polars as pl


def sample_users(data: Path, out: Path, fraction: float, seed: int) -> dict[str, int]:
    """Write out/{ratings,tags,movies}.csv for round(fraction x users) users drawn with
    `seed` from ratings.csv's users; returns the counts written."""
    ratings = pl.read_csv(data / "ratings.csv")
    users = np.sort(ratings["userId"].unique().to_numpy())
    n = max(1, round(fraction * len(users)))
    keep = np.sort(np.random.default_rng(seed).choice(users, size=n, replace=False))
    out.mkdir(parents=True, exist_ok=True)
    ratings = ratings.filter(pl.col("userId").is_in(keep.tolist()))
    tags = pl.read_csv(data / "tags.csv").filter(pl.col("userId").is_in(keep.tolist()))
    ratings.write_csv(out / "ratings.csv")
    tags.write_csv(out / "tags.csv")
    shutil.copyfile(data / "movies.csv", out / "movies.csv")
    return {"users": n, "ratings": ratings.height, "tags": tags.height}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="a MovieLens folder (ratings, tags, movies .csv)")
    ap.add_argument("out", type=Path)
    ap.add_argument("--fraction", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)
    print(sample_users(args.data, args.out, args.fraction, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
