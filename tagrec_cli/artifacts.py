"""Every workspace file name and format in one place, with manifests and atomic writes.

Layout of a workspace (``--workdir``, default ``./tagrec-workspace``)::

    ingest/      manifest.json, movies.parquet, users.parquet, ratings.parquet, pairs.parquet
    model/       config.json, model.safetensors, tokenizer files, metrics.jsonl
    embeddings/  manifest.json, users.safetensors, movies.safetensors
    cache/       tokenized documents, keyed by tokenizer

Each folder is written under a temporary name and renamed into place when complete, so a
failed or interrupted command never leaves a half-written artifact behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tagrec_cli import __version__
from tagrec_cli.errors import ArtifactError

DEFAULT_WORKDIR = Path("tagrec-workspace")
WORKDIR_ENV = "TAGREC_WORKDIR"

INGEST_DIR = "ingest"
MODEL_DIR = "model"
EMBEDDINGS_DIR = "embeddings"
CACHE_DIR = "cache"
MANIFEST = "manifest.json"

# ingest/: one parquet table per kind of row (see ingest.py for their columns)
INGEST_TABLE = {"movie": "movies.parquet", "user": "users.parquet"}  # documents + stats
RATINGS_FILE = "ratings.parquet"  # userId, movieId, rating, timestamp, holdout
PAIRS_FILE = "pairs.parquet"  # userId, movieId, rating, label, split
# model/: the tokenizer's own files beside these
MODEL_CONFIG = "config.json"  # the model's manifest: our config with the encoder's inside
MODEL_WEIGHTS = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"  # a fast tokenizer's own file, written by save_pretrained
METRICS_FILE = "metrics.jsonl"  # one line of validation metrics per epoch
# embeddings/: what recommend, similar and evaluate read, so they never need ingest/
TABLE_FILE = {"user": "users.safetensors", "movie": "movies.safetensors"}  # ids, embeddings
SEEN_FILE = "seen.safetensors"  # every user's rated movies (history and held out), as CSR
CATALOGUE_FILE = "catalogue.parquet"  # movieId, title, year, genres, tags (list)
USER_TAGS_FILE = "user_tags.parquet"  # userId, tags (list) + the user side-feature columns

# Format versions: bump when a reader of the old version could misread the new files.
INGEST_FORMAT = 1
MODEL_FORMAT = 1
EMBEDDINGS_FORMAT = 2  # 2: catalogue.parquet, user_tags.parquet, ratings in seen

# Which command writes which artifact, for "run `tagrec X` first" messages.
MAKER = {INGEST_DIR: "tagrec ingest", MODEL_DIR: "tagrec train", EMBEDDINGS_DIR: "tagrec embed"}


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``target``; on success it replaces ``target``.

    On any exception (Ctrl-C included) the temporary folder is removed and ``target`` is
    left exactly as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is renamed onto ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)


def json_safe(obj: Any) -> Any:
    """NaN and infinities -> None (JSON has no NaN); paths -> strings; recursive."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: Path, obj: Any) -> None:
    text = json.dumps(json_safe(obj), indent=2, sort_keys=True, allow_nan=False)
    with atomic_file(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")


def write_manifest(folder: Path, kind: str, version: int, **fields: Any) -> dict[str, Any]:
    """Write ``folder/manifest.json`` tagged with its format name and version."""
    manifest = {"format": f"tagrec-{kind}", "format_version": version,
                "tagrec_version": __version__, **fields}
    write_json(Path(folder) / MANIFEST, manifest)
    return manifest


def read_manifest(workdir: Path, folder_name: str, version: int, name: str = MANIFEST,
                  kind: str | None = None, min_version: int = 1) -> dict[str, Any]:
    """Read and check the manifest of the artifact ``workdir/folder_name`` (of ``kind``).

    Raises ArtifactError naming the command that makes the artifact when it is missing,
    unreadable, of another kind, of a newer format than this tagrec understands, or older
    than ``min_version``.
    """
    kind = kind or folder_name
    folder = Path(workdir) / folder_name
    path = folder / name
    maker = MAKER.get(kind, "tagrec")
    if not path.is_file():
        raise ArtifactError(f"no {kind} output in {folder} — run `{maker}` first")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}) — re-run `{maker}`") from exc
    found = manifest.get("format_version") if isinstance(manifest, dict) else None
    if not isinstance(found, int) or manifest.get("format") != f"tagrec-{kind}":
        raise ArtifactError(f"{path} is not a tagrec {kind} manifest — re-run `{maker}`")
    if found > version:
        raise ArtifactError(
            f"{path} has format version {found}, newer than this tagrec reads ({version}): "
            f"upgrade tagrec or re-run `{maker}`")
    if found < min_version:
        raise ArtifactError(f"{folder} was made by an older tagrec (format {found}) — "
                            f"re-run `{maker}`")
    return manifest


def cache_path(workdir: Path, kind: str, key: str) -> Path:
    """cache/{kind}-{key}.safetensors: token tables ("tokens") and pooled outputs ("pooled")."""
    return Path(workdir) / CACHE_DIR / f"{kind}-{key}.safetensors"


def file_digest(*paths: Path) -> str:
    """Short sha256 over the bytes of files, used to tie artifacts to the data they came from."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def read_model_config(folder: Path) -> dict[str, Any]:
    """The checked config.json of a model folder (any folder, not only the workspace's).

    Here rather than in model.py so that `recommend`, which never imports torch, reads it
    the same way.
    """
    folder = Path(folder)
    return read_manifest(folder.parent, folder.name, MODEL_FORMAT, name=MODEL_CONFIG,
                         kind=MODEL_DIR)
