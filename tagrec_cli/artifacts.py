"""Every workspace file name and format in one place, with manifests and atomic writes.

Layout of a workspace (``--workdir``, default ``./tagrec-workspace``)::

    ingest/      manifest.json, movies.parquet, users.parquet, ratings.parquet, pairs.parquet
    model/       config.json, model.safetensors, tokenizer files, metrics.jsonl
    embeddings/  manifest.json, users.safetensors, movies.safetensors, seen.safetensors,
                 catalogue.safetensors, user_tags.safetensors, added/ (the user's CSVs)
    cache/       tokenized documents, keyed by tokenizer
    evaluate/    `tagrec evaluate`'s own split: valid/ and test/, each a workspace of its
                 own (ingest/, model/, embeddings/, cache/), and report.json

Each folder is written under a temporary name and renamed into place when complete, so a
failed or interrupted command never leaves a half-written artifact behind.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tagrec_cli import __version__, features
from tagrec_cli.config import PRECISIONS, of_types
from tagrec_cli.errors import ArtifactError, TagrecError

DEFAULT_WORKDIR = Path("tagrec-workspace")
WORKDIR_ENV = "TAGREC_WORKDIR"

INGEST_DIR = "ingest"
MODEL_DIR = "model"
EMBEDDINGS_DIR = "embeddings"
ADDED_DIR = "added"  # embeddings/added/: every CSV `--add-movies` took, re-added by `embed`
CACHE_DIR = "cache"
EVALUATE_DIR = "evaluate"  # never read by recommend: evaluate's sub-workspaces
EVALUATE_STAGE = {"valid": "valid", "test": "test"}  # evaluate/<stage>/: a whole workspace
EVALUATE_REPORT = "report.json"  # evaluate/: both stages' reports and the grids
MANIFEST = "manifest.json"

# ingest/: one parquet table per kind of row (see ingest.py for their columns)
INGEST_TABLE = {"movie": "movies.parquet", "user": "users.parquet"}  # documents + stats
RATINGS_FILE = "ratings.parquet"  # userId, movieId, rating, timestamp, holdout, part
PAIRS_FILE = "pairs.parquet"  # userId, movieId, rating, label, split
# model/: the tokenizer's own files beside these
MODEL_CONFIG = "config.json"  # the model's manifest: our config with the encoder's inside
MODEL_WEIGHTS = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"  # a fast tokenizer's own file, written by save_pretrained
METRICS_FILE = "metrics.jsonl"  # one line of validation metrics per epoch
# embeddings/: what recommend, similar and evaluate read, so they never need ingest/
TABLE_FILE = {"user": "users.safetensors", "movie": "movies.safetensors"}  # ids, embeddings
SEEN_FILE = "seen.safetensors"  # every user's rated movies (history and held out), as CSR
CATALOGUE_FILE = "catalogue.safetensors"  # ids, titles, years, genres, tags (store/catalogue.py)
USER_TAGS_FILE = "user_tags.safetensors"  # users, their tags, their side-feature columns

# Format versions: bump when a reader of the old version could misread the new files.
INGEST_FORMAT = 1
MODEL_FORMAT = 1
EMBEDDINGS_FORMAT = 3  # 2: ratings in seen; 3: catalogue and user tags as arrays

# Which command writes which artifact, for "run `tagrec X` first" messages.
MAKER = {INGEST_DIR: "tagrec ingest", MODEL_DIR: "tagrec train", EMBEDDINGS_DIR: "tagrec embed"}
# The manifest fields their readers rely on: key -> (JSON types, whether it must be there).
# A field of another type (a hand edit, another tool) is one line naming it, not a TypeError
# deep inside a command. (A model's settings are checked by config.ModelConfig/TrainConfig.)
NONE = type(None)
MANIFEST_FIELDS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    INGEST_DIR: {"data_dir": ((str,), False), "data_hash": ((str, NONE), False),
                 "ingest_key": ((str, NONE), False), "feature_stats": ((dict, NONE), False),
                 "scored_new_users": ((list,), False)},
    EMBEDDINGS_DIR: {"model_dir": ((str,), True), "model_config_hash": ((str,), True),
                     "dim": ((int,), True), "ingest_settings": ((dict,), True),
                     "added_movies": ((int,), False), "users": ((int,), False),
                     "movies": ((int,), False), "popularity_prior": ((dict, NONE), False),
                     "precision": ((str,), False), "ingest_key": ((str, NONE), False)},
    MODEL_DIR: {"data": ((dict,), False), "tokenizer_check": ((list,), False),
                "encoder_config": ((dict,), False), "model": ((dict,), False),
                "training": ((dict,), False), "best_epoch": ((int,), False),
                "interrupted": ((bool,), False)},
}
# Fields whose values, not only types, readers rely on: key -> what is wrong with a value
# of the right type, or None.
MANIFEST_VALUES: dict[str, dict[str, Callable[[Any], str | None]]] = {
    INGEST_DIR: {"feature_stats": lambda v: None if v is None else features.stats_problem(v)},
    EMBEDDINGS_DIR: {"precision": lambda v: None if v in PRECISIONS else
                     f"{str(v)[:40]!r} is none of {', '.join(PRECISIONS)}"},
    MODEL_DIR: {"best_epoch": lambda v: None if v >= 1 else f"{v} is not >= 1"},
}


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (signal 0 checks without sending anything).

    Only a positive id names one process: kill(0) and kill(-1) ask about a whole group or
    every process (so they always "succeed"), and an id past C's int is an OverflowError;
    read from a damaged file, such an id names no writer.
    """
    if not 0 < pid < 2**31:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


TEMP_NAME = re.compile(r"^\.(.+)\.(tmp|old)-(\d+)$")  # temp_name's: (target, kind, PID)


def temp_name(target: Path, kind: str = "tmp") -> Path:
    """Where this process writes `target` before renaming it in ("tmp"), or puts the old
    one aside meanwhile ("old"): a hidden name beside it that recover() and `tagrec clean`
    know, so that a dead writer's leftovers are found. Example: ws/model, "tmp" ->
    ws/.model.tmp-4242"""
    return Path(target).parent / f".{Path(target).name}.{kind}-{os.getpid()}"


def leftovers(folder: Path) -> Iterator[tuple[Path, Path, str, int]]:
    """(leftover, the artifact it belongs to, "tmp" | "old", writer's PID) in `folder`: the
    temporary names (temp_name) atomic_dir and atomic_file write under."""
    if not folder.is_dir():
        return
    for item in folder.iterdir():
        m = TEMP_NAME.match(item.name)
        if m:
            yield item, folder / m.group(1), m.group(2), int(m.group(3))


def recover(folder: Path, name: str | None = None) -> None:
    """Clean up after writers into `folder` (of the artifact `name` only, if given) that
    died: SIGKILL, the OOM killer, a power cut.

    A dead writer's temporary copy is removed; if it died between moving an old artifact
    aside and moving the new one in, the old one is put back, so nothing is lost. Writers
    recover only their own artifact's leftovers (a folder like --dest or a --json file's may
    be the user's); `tagrec clean` (clean.py) sweeps every folder of the workspace.
    """
    for item, target, kind, pid in sorted(leftovers(Path(folder)), key=lambda x: x[2] != "old"):
        # `name`'s own leftovers, and those of its temporary copies (a staging folder's)
        if name is not None and target.name != name and not target.name.startswith(
                f".{name}.tmp-"):
            continue
        if pid == os.getpid() or pid_alive(pid):
            continue
        if kind == "old" and not target.exists() and not target.name.startswith("."):
            os.replace(item, target)  # (a temporary copy's old one is not put back: removed)
        elif item.is_dir():
            shutil.rmtree(item, ignore_errors=True)
        else:
            item.unlink(missing_ok=True)


@functools.cache
def _umask() -> int:
    """The process's umask, asked once: Linux says it in /proc; elsewhere setting it is the
    only way to read it, and while it is 0 another thread's new files would be 0666, so
    that is done once, not at every write."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _readable(path: Path) -> None:
    """Give files the permissions the user's umask asks for (safetensors writes 0600), so
    that others sharing a workspace can read what everyone else can."""
    mask = _umask()
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~mask)


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``target``; on success it replaces ``target``.

    On any exception (Ctrl-C included) the temporary folder is removed and ``target`` is
    left exactly as it was. What dead writers left beside it is cleaned up first (recover).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target.parent, target.name)
    tmp = temp_name(target)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        _readable(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, target)


def replace_dir(source: Path, target: Path) -> None:
    """Move the complete folder `source` onto `target` (same file system): the old target
    goes aside under a name recover() knows, the new one is renamed in, the old one is
    removed. On any exception `source` is removed and `target` is as it was."""
    old = temp_name(target, "old")
    try:
        if target.exists():
            os.replace(target, old)
        try:
            os.replace(source, target)
        except BaseException:
            if old.exists() and not target.exists():
                os.replace(old, target)  # put the previous artifact back
            raise
    except BaseException:
        shutil.rmtree(source, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is renamed onto ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target.parent, target.name)
    tmp = temp_name(target)
    try:
        yield tmp
        _readable(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_with_pid(path: Path) -> None:
    """Create `path` holding this process's PID, or FileExistsError. The file appears with
    its PID already in it (written beside it, then hard-linked), so another process never
    reads an empty lock and takes it for a dead one's."""
    tmp = temp_name(path)
    try:
        tmp.write_text(f"{os.getpid()}\n", encoding="utf-8")  # a full disk fails here
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: exclusive create, then write
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(f"{os.getpid()}\n")
            except BaseException:
                path.unlink(missing_ok=True)  # no empty lock left behind
                raise
    finally:
        tmp.unlink(missing_ok=True)


LOCK_FILE = ".tagrec.lock"  # in the workspace, while a command writes it: the writer's PID


@contextlib.contextmanager
def workspace_lock(workdir: Path) -> Iterator[None]:
    """Hold the workspace's write lock: one writing command at a time (ingest, train, embed).

    The lock is a file holding the writer's PID, created exclusively. A lock whose PID is
    dead (a killed command) is broken; a live one is a TagrecError naming the process.
    """
    workdir = Path(workdir)
    created = not workdir.exists()  # a command that fails leaves no empty workspace behind
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / LOCK_FILE
    for _ in range(3):
        try:
            _create_with_pid(path)
        except FileExistsError:
            try:
                holder = int(path.read_text(encoding="utf-8").strip() or "0")
            except (OSError, ValueError):
                holder = 0
            if holder and holder != os.getpid() and pid_alive(holder):
                raise TagrecError(f"another tagrec command (process {holder}) is writing "
                                  f"{workdir}: wait for it to finish, then run this again"
                                  ) from None
            path.unlink(missing_ok=True)  # its writer is gone: break it
            continue
        break
    else:
        raise TagrecError(f"cannot take the lock {path}: remove it if no tagrec is running")
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            if int(path.read_text(encoding="utf-8")) == os.getpid():
                path.unlink()
        if created:
            with contextlib.suppress(OSError):
                workdir.rmdir()  # only when empty


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
    rules = MANIFEST_VALUES.get(kind, {})
    for key, (types, required) in MANIFEST_FIELDS.get(kind, {}).items():
        value = manifest.get(key)
        if not (key in manifest or required):
            continue
        problem = (f"is {str(value)[:40]!r}" if not of_types(value, types)
                   else (rules[key](value) if key in rules else None))
        if problem:
            raise ArtifactError(f"{path} is damaged ({key} {problem}) — re-run `{maker}`")
    return manifest


def ingest_manifest(workdir: Path) -> dict[str, Any]:
    """The checked manifest of ingest/. Two fields must be there when its settings call for
    them: the side features' constants, and, for an ingest that left out a second share of
    new users (evaluate's validation stage), which users are scored (without the list, the
    test stage's new users would be scored on validation)."""
    manifest = read_manifest(workdir, INGEST_DIR, INGEST_FORMAT)
    settings = manifest.get("settings")
    settings = settings if isinstance(settings, dict) else {}
    for key, needed in (("feature_stats", settings.get("side_features")),
                        ("scored_new_users", settings.get("valid_new_users"))):
        if needed and manifest.get(key) is None:
            raise ArtifactError(f"{Path(workdir) / INGEST_DIR / MANIFEST} is damaged (no "
                                f"{key}) — re-run `tagrec ingest`")
    return manifest


def sibling_path(workdir: Path, path: Path) -> str:
    """How a manifest refers to `path`: relative to the workspace when inside it (so that a
    moved or copied workspace refers to its own model), else absolute."""
    path, root = Path(path).resolve(), Path(workdir).resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def resolve_sibling(workdir: Path, recorded: str) -> Path:
    """The path a manifest recorded with sibling_path (old manifests: absolute paths)."""
    path = Path(recorded)
    return path if path.is_absolute() else Path(workdir) / path


def cache_path(workdir: Path, kind: str, key: str) -> Path:
    """cache/{kind}-{key}.safetensors: token tables ("tokens") and pooled outputs ("pooled")."""
    return Path(workdir) / CACHE_DIR / f"{kind}-{key}.safetensors"


def prune_cache(workdir: Path, kind: str, keep: str) -> None:
    """Remove cache/{kind}-*.safetensors but the one in use (`keep`): a re-ingest or a new
    model makes the others dead weight, and they can be hundreds of MB at 25M size."""
    for old in (Path(workdir) / CACHE_DIR).glob(f"{kind}-*.safetensors"):
        if old.name != cache_path(workdir, kind, keep).name:
            old.unlink(missing_ok=True)


def file_digest(*paths: Path) -> str:
    """Short sha256 over the bytes of files, used to tie artifacts to the data they came from."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def ingest_key(data_hash: str, settings: dict[str, Any]) -> str:
    """What an ingest's output is a function of: the data, the settings and this tagrec.

    Recorded by ingest, then by the model trained on it and the tables made from it, so a
    later command can tell that its input was replaced (a re-ingest of other data) and say
    what to re-run. The same data and settings give the same key, so re-running the same
    ingest makes nothing stale.
    """
    text = json.dumps({"data": data_hash, "settings": settings, "tagrec": __version__},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_model_config(folder: Path) -> dict[str, Any]:
    """The checked config.json of a model folder (any folder, not only the workspace's).

    Here rather than in model.py so that `recommend`, which never imports torch, reads it
    the same way.
    """
    folder = Path(folder)
    return read_manifest(folder.parent, folder.name, MODEL_FORMAT, name=MODEL_CONFIG,
                         kind=MODEL_DIR)


# A model folder's tokenizer must turn this text into the ids recorded at training time: a
# folder that lost tokenizer.json would otherwise be read with a fallback tokenizer that
# maps every word to [UNK], and every document to nearly the same vector.
TOKENIZER_PROBE = "Pixar, twist ending, émigré, 日本, sci-fi (1999)"


def check_tokenizer(folder: Path, config: dict[str, Any], ids: list[int]) -> None:
    """ArtifactError unless the model folder has its tokenizer file and `ids` (the folder's
    tokenizer on TOKENIZER_PROBE) are the ids config.json recorded when it was saved."""
    if not (Path(folder) / TOKENIZER_FILE).is_file():
        raise ArtifactError(f"model in {folder} lacks {TOKENIZER_FILE} — re-run `tagrec train`")
    recorded = config.get("tokenizer_check")
    if recorded is not None and list(recorded) != list(ids):
        raise ArtifactError(f"the tokenizer in {folder} is not the one the model was trained "
                            "with — re-run `tagrec train`")
