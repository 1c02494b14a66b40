"""embeddings/: the user and movie tables and the seen index, read and written here only.

    users.safetensors, movies.safetensors   ids (N,) int64, embeddings (N, dim) float32 unit rows
    seen.safetensors                        users (U,) sorted, indptr (U+1,), movies, ratings

Readers check the manifest first and turn any unreadable file into one ArtifactError naming
`tagrec embed`. A query reads only the rows it needs: a MovieLens-25M user table is 330 MB,
its seen index 300 MB, and one query needs a row and a few hundred entries of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from tagrec_cli import artifacts
from tagrec_cli.errors import ArtifactError, QueryError
from tagrec_cli.topk import rows_of


def embeddings_manifest(workdir: Path) -> dict:
    """The checked manifest of embeddings/ (older formats lack what recommend reads)."""
    return artifacts.read_manifest(workdir, artifacts.EMBEDDINGS_DIR,
                                   artifacts.EMBEDDINGS_FORMAT, min_version=3)


NOT_NUMBERS = "vectors that are not numbers"


def damaged(path: Path, why: Exception | str) -> ArtifactError:
    """The error for an unreadable file that `tagrec embed` wrote.

    why: a library's exception (named by its class: its text can run to lines of bytes), or
    tagrec's own words for what is wrong, which are printed.
    """
    why = why if isinstance(why, str) else why.__class__.__name__
    return ArtifactError(f"{path} is missing or damaged ({why}) — re-run `tagrec embed`")


def table_path(workdir: Path, side: str) -> Path:
    return Path(workdir) / artifacts.EMBEDDINGS_DIR / artifacts.TABLE_FILE[side]


@dataclass
class EmbeddingTable:
    ids: np.ndarray  # (N,) int64 MovieLens ids
    vectors: np.ndarray  # (N, dim) float32, unit rows

    @cached_property
    def order(self) -> np.ndarray:
        """np.argsort(ids): sorted once per table, not once per lookup."""
        return np.argsort(self.ids, kind="stable")

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """ids -> row numbers; -1 where an id is not in the table."""
        return rows_of(self.ids, ids, self.order)


_TABLES: dict[Path, tuple[tuple[int, int], EmbeddingTable]] = {}  # path -> (stat, table)


def read_table_file(path: Path, mapped: bool = False) -> EmbeddingTable:
    """One {users,movies}.safetensors file: its ids and unit rows (damaged: ArtifactError).

    mapped: the vectors are memory-mapped, not read, for a short-lived query: its one pass
    over a 62,000-movie table (127 MB) then touches the page cache instead of copying it
    first. tagrec replaces these files by rename, never in place, so a mapping sees a whole
    file (load_table maps every table it serves, `serve`'s included); a writer that reads
    the file it is about to replace takes a copy (mapped=False).
    """
    try:
        ids, vectors = map_tensors(path, ("ids", "embeddings"))
    except (OSError, KeyError, ValueError, SafetensorError) as exc:
        raise damaged(path, exc) from None
    if ids.dtype != np.int64 or vectors.dtype != np.float32 or vectors.ndim != 2:
        raise damaged(path, f"dtypes {ids.dtype}, {vectors.dtype}")
    return EmbeddingTable(np.array(ids), vectors if mapped else np.array(vectors))


SAFETENSORS_DTYPES = {"I64": np.int64, "F32": np.float32}


def map_tensors(path: Path, names: tuple[str, ...]) -> list[np.ndarray]:
    """Tensors of a safetensors file as read-only memory maps: the format is an 8-byte
    little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, then
    the data. Raises ValueError (or KeyError) on anything else."""
    import json

    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        if not 2 <= size <= 100_000_000:
            raise ValueError("not a safetensors file")
        header = json.loads(f.read(size))
    try:
        return [_mapped(path, 8 + size, name, header[name]) for name in names]
    except (TypeError, OverflowError):  # JSON of another shape: a list, a string for a dict
        raise ValueError("a header of another shape") from None


def _mapped(path: Path, data_start: int, name: str, entry: dict) -> np.ndarray:
    dtype = np.dtype(SAFETENSORS_DTYPES[entry["dtype"]])
    start, end = (int(x) for x in entry["data_offsets"])
    shape = tuple(int(x) for x in entry["shape"])
    if start < 0 or min(shape, default=0) < 0 or end - start != dtype.itemsize * int(
            np.prod(shape)):
        raise ValueError(f"{name}: {end - start} bytes for shape {shape}")
    return (np.memmap(path, dtype, "r", offset=data_start + start, shape=shape)
            if end > start else np.zeros(shape, dtype))


def check_shape(path: Path, manifest: dict, side: str, ids: np.ndarray, order: np.ndarray,
                shape: tuple[int, ...]) -> None:
    """ArtifactError unless a table file holds the manifest's count of distinct ids and a
    (count, dim) matrix: a file replaced by another workspace's, or cut short, is damaged.
    order: np.argsort(ids)."""
    count = manifest.get(f"{side}s")
    expected = (len(ids), manifest.get("dim"))
    problem = (f"{len(ids)} ids, the manifest says {count}" if count is not None
               and len(ids) != count else
               f"embeddings of shape {tuple(shape)}, expected {expected}" if tuple(shape)
               != expected else "repeated ids" if (np.diff(ids[order]) == 0).any() else None)
    if problem:
        raise ArtifactError(f"{path} does not match its manifest ({problem}) — re-run "
                            "`tagrec embed`")


def load_table(workdir: Path, side: str, checked: dict | None = None) -> EmbeddingTable:
    """Read embeddings/{users,movies}.safetensors, checked against the manifest (`checked`:
    the manifest, when the caller already read and checked it).

    Kept in memory for the process while the file is unchanged (files are only ever
    replaced by rename, which changes their stat), so one command reads each table once.
    """
    manifest = checked or embeddings_manifest(workdir)
    path = table_path(workdir, side).resolve()
    try:
        st = path.stat()
    except OSError as exc:
        raise damaged(path, exc) from None
    stamp = (st.st_mtime_ns, st.st_ino)
    if path in _TABLES and _TABLES[path][0] == stamp:
        return _TABLES[path][1]
    table = read_table_file(path, mapped=True)
    check_shape(path, manifest, side, table.ids, table.order, table.vectors.shape)
    _TABLES[path] = (stamp, table)
    return table


def load_rows(workdir: Path, side: str, ids: np.ndarray,
              checked: dict | None = None) -> np.ndarray:
    """Vectors of `ids` (n, dim), read without the rest of the table.

    An id not in the table is a QueryError naming the table's id range. `checked`: the
    manifest, when the caller already read and checked it.
    """
    manifest = checked or embeddings_manifest(workdir)
    path = table_path(workdir, side)
    try:
        f = safe_open(str(path), framework="numpy")
        table_ids = f.get_tensor("ids").astype(np.int64)
        column = f.get_slice("embeddings")
    except (OSError, ValueError, SafetensorError) as exc:
        raise damaged(path, exc) from None
    order = np.argsort(table_ids, kind="stable")
    check_shape(path, manifest, side, table_ids, order, tuple(column.get_shape()))
    rows = rows_of(table_ids, ids, order)
    if (rows < 0).any():
        unknown = int(np.asarray(ids)[rows < 0][0])
        raise QueryError(f"unknown {side} {unknown}: no {side} document in the workspace "
                         f"({side}s {int(table_ids.min())}–{int(table_ids.max())})", side,
                         unknown=True)
    if len(rows) == 0:
        return np.zeros((0, column.get_shape()[1]), np.float32)
    out = np.concatenate([column[r:r + 1] for r in rows]).astype(np.float32)
    if not np.isfinite(out).all():  # write_table writes none: a hand-edited file
        raise damaged(path, NOT_NUMBERS)
    return out


def write_table(folder: Path, side: str, ids: np.ndarray, vectors: np.ndarray,
                model_dir: str, dim: int,
                rerun: str = "re-run `tagrec train`, then `tagrec embed`") -> None:
    """folder/{users,movies}.safetensors, tagged with the format and the model that made it.
    Vectors that are not finite numbers (a damaged model's, or a damaged table's that
    --add-movies copies) would rank nothing: an ArtifactError ending in `rerun`, and no
    table."""
    bad = ~np.isfinite(np.asarray(vectors)).all(axis=1)
    if bad.any():
        raise ArtifactError(f"{int(bad.sum()):,} {side} vectors to write are not finite "
                            f"numbers (the first: {side} {int(ids[bad][0])}): the model or a "
                            f"table they were made from is damaged — {rerun}")
    save_file({"ids": np.asarray(ids, np.int64), "embeddings": np.asarray(vectors, np.float32)},
              str(Path(folder) / artifacts.TABLE_FILE[side]),
              metadata={"format": "tagrec-embeddings",
                        "format_version": str(artifacts.EMBEDDINGS_FORMAT),
                        "model_dir": model_dir, "dim": str(dim), "side": side})


class Seen:
    """Every user's rated movies and ratings (history and held out), read per user on demand.

    The file holds CSR arrays: users (U,) sorted ids, indptr (U+1,), and movies and ratings,
    where user i's are at [indptr[i]:indptr[i+1]]. Only the entries a query needs are read.
    """

    def __init__(self, path: Path):
        self.path = path
        try:
            self.file = safe_open(str(path), framework="numpy")
            self.users = self.file.get_tensor("users")
            self.indptr = self.file.get_tensor("indptr")
            self.file.get_slice("movies")
            self.file.get_slice("ratings")  # a format-1 file lacks ratings
        except (OSError, ValueError, SafetensorError) as exc:
            raise damaged(path, exc) from None

    def of(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """(movie ids, ratings) that `user` rated; empty arrays for a user with none."""
        i = int(np.searchsorted(self.users, user))
        if i == len(self.users) or self.users[i] != user:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        lo, hi = int(self.indptr[i]), int(self.indptr[i + 1])
        return (self.file.get_slice("movies")[lo:hi].astype(np.int64),
                self.file.get_slice("ratings")[lo:hi].astype(np.float32))


def load_seen(workdir: Path) -> Seen:
    return Seen(Path(workdir) / artifacts.EMBEDDINGS_DIR / artifacts.SEEN_FILE)


def write_seen(folder: Path, users: np.ndarray, movies: np.ndarray,
               ratings: np.ndarray) -> None:
    """folder/seen.safetensors from (user, movie, rating) rows sorted by user, then movie."""
    ids, counts = np.unique(users, return_counts=True)
    indptr = np.zeros(len(ids) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(counts)
    save_file({"users": ids.astype(np.int64), "indptr": indptr,
               "movies": np.asarray(movies).astype(np.int64),
               "ratings": np.asarray(ratings).astype(np.float32)},
              str(Path(folder) / artifacts.SEEN_FILE))


def table_model_dir(workdir: Path) -> Path:
    """The model folder the embedding tables were made with, checked to be that model still."""
    manifest = embeddings_manifest(workdir)
    model_dir = artifacts.resolve_sibling(workdir, manifest["model_dir"])
    try:
        digest = artifacts.file_digest(model_dir / artifacts.MODEL_CONFIG)
    except OSError:
        raise ArtifactError(f"the model the tables were made with ({model_dir}) is gone — "
                            "re-run `tagrec train` and `tagrec embed`") from None
    if digest != manifest["model_config_hash"]:
        raise ArtifactError(f"the model in {model_dir} changed after the tables were made — "
                            "re-run `tagrec embed`")
    return model_dir
