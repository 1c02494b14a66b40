"""Fetch an official MovieLens archive from GroupLens, verify it, and unpack it.

Nothing half-written survives a failure or Ctrl-C: the archive streams into
``DEST/.NAME.zip.tmp-PID``, is checked against the size and checksums recorded below, and is
unpacked into a temporary folder that is renamed onto ``DEST/NAME`` only once complete. What a
killed download left (SIGKILL: no `finally` runs) is removed by the next one, or `tagrec
clean` in a workspace.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shlex
import shutil
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tagrec_cli import __version__
from tagrec_cli.artifacts import atomic_dir, recover, temp_name
from tagrec_cli.errors import TagrecError, quoted

BASE_URL = "https://files.grouplens.org/datasets/movielens"
URL_ENV = "TAGREC_DOWNLOAD_URL"
CHUNK = 1 << 16  # bytes per read: small enough for a smooth progress bar
TIMEOUT_S = 60.0  # per socket operation, not for the whole transfer


@dataclass(frozen=True)
class Archive:
    """What the published archive must look like; each checksum given is checked."""

    size: int  # bytes
    sha256: str | None = None
    md5: str | None = None

    def __post_init__(self) -> None:
        if self.sha256 is None and self.md5 is None:  # never accept an unverifiable archive
            raise ValueError("an Archive needs a sha256 or an md5")


ARCHIVES: dict[str, Archive] = {
    # 100,836 ratings, 3,683 tags (generated 2018-09-26). Size and sha256 from TensorFlow
    # Datasets, tensorflow_datasets/url_checksums/movielens.txt. No copy of GroupLens's
    # ml-latest-small.zip.md5 value was found, so only the sha256 is checked.
    "ml-latest-small": Archive(
        size=978_202,
        sha256="696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436"),
    # 25,000,095 ratings. md5: GroupLens's ml-25m.zip.md5, quoted by many public loaders (e.g.
    # eli-osherovich/papers_with_code datasets/movielens/dl_config.py); size and sha256 from
    # TensorFlow Datasets url_checksums/movielens.txt (the size also matches wget logs).
    "ml-25m": Archive(
        size=261_978_986,
        sha256="8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
        md5="6b51fb2759a8657d3bfcbfc42b592ada"),
    # 32,000,204 ratings. md5: GroupLens's ml-32m.zip.md5, as quoted by public loaders (e.g.
    # pooch `known_hash="md5:d472..."`). TensorFlow Datasets has no entry for ml-32m; the size
    # is from two independent public download manifests.
    "ml-32m": Archive(size=238_950_008, md5="d472be332d4daa821edc399621853b57"),
}


@dataclass(frozen=True)
class DownloadResult:
    folder: Path  # DEST/NAME, with ratings.csv, tags.csv, movies.csv, ...
    downloaded: bool  # False when the folder was already there
    size: int = 0  # archive bytes fetched
    archive: Path | None = None  # the kept archive (--keep-archive)


def human_size(n: float) -> str:
    """Decimal units, as GroupLens and rich's progress bar show them: 978202 -> '978.2 kB'."""
    for unit in ("bytes", "kB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.2f} GB"


def download_dataset(name: str, dest: Path = Path("."), *, base_url: str | None = None,
                     force: bool = False, keep_archive: bool = False,
                     on_progress: Callable[[int, int | None], None] | None = None,
                     ) -> DownloadResult:
    """Download ``NAME.zip`` into ``dest``, verify it, and unpack it as ``dest/NAME``.

    ``on_progress(bytes_so_far, total_or_None)`` is called after every chunk. Network and
    integrity problems raise TagrecError with a one-line message saying how to retry.
    """
    if name not in ARCHIVES:
        raise TagrecError(f"unknown dataset {name!r}; choose one of {', '.join(ARCHIVES)}")
    spec, dest = ARCHIVES[name], Path(dest)
    folder = dest / name
    from tagrec_cli.datasets.movielens import SCHEMAS  # the files ingest reads

    lacks = [f for f in SCHEMAS if not (folder / f).is_file()]
    if folder.exists() and not lacks and not force:
        return DownloadResult(folder, downloaded=False)
    if folder.exists() and not force:  # replacing it would delete files we did not write
        raise TagrecError(f"{folder} exists but has no {', '.join(lacks)}: move it away, or "
                          "pass --force to replace it")
    retry = shlex.join(["tagrec", "download", name]
                       + ([] if dest == Path(".") else ["--dest", str(dest)]))
    base = base_url or os.environ.get(URL_ENV) or BASE_URL
    if not base.startswith(("http://", "https://", "file://")):  # urllib: "unknown url type"
        raise TagrecError(f"--base-url {quoted(base)} must start with http://, https:// or "
                          "file://")
    url = f"{base.rstrip('/')}/{name}.zip"
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    recover(dest, f"{name}.zip")  # a killed download's archive (artifacts' temporary names)
    part = temp_name(dest / f"{name}.zip")
    kept = None
    try:
        size = _fetch(url, part, spec, retry, on_progress or (lambda done, total: None))
        with atomic_dir(folder) as tmp:
            _unpack(part, tmp, name)
        if keep_archive:
            kept = dest / f"{name}.zip"
            os.replace(part, kept)
    finally:  # also on Ctrl-C: no .part file, and no empty DEST we made, outlives a failure
        part.unlink(missing_ok=True)
        if created and not any(dest.iterdir()):
            dest.rmdir()
    return DownloadResult(folder, downloaded=True, size=size, archive=kept)


def _fetch(url: str, part: Path, spec: Archive, retry: str,
           on_progress: Callable[[int, int | None], None]) -> int:
    """Stream ``url`` into ``part`` and check size and checksums; return the byte count."""
    try:
        request = urllib.request.Request(url, headers={"User-Agent": f"tagrec/{__version__}"})
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except ValueError as exc:  # a base URL without http:// or https://
        raise TagrecError(f"cannot download {url}: {exc}") from None
    except urllib.error.HTTPError as exc:  # before URLError: it is a subclass
        exc.close()
        raise TagrecError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
        reason = getattr(exc, "reason", None) or exc
        raise TagrecError(f"cannot reach {url}: {reason} — check the connection, then run "
                          f"`{retry}` again") from None
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if total is not None and total != spec.size:  # fail now rather than after the transfer
            raise TagrecError(f"{url} is {total:,} bytes, not the {spec.size:,} recorded for "
                              f"{Path(url).name}: the file on the server has changed")
        digests = {"md5": hashlib.md5(usedforsecurity=False), "sha256": hashlib.sha256()}
        done = 0
        with open(part, "wb") as f:
            while True:
                try:  # read1: what has arrived, so a stall loses no bytes already received
                    chunk = response.read1(CHUNK)
                except (OSError, http.client.HTTPException) as exc:  # reset, timeout, ...
                    raise _interrupted(done, spec.size, str(exc) or type(exc).__name__,
                                       retry) from None
                if not chunk:
                    break
                f.write(chunk)
                for digest in digests.values():
                    digest.update(chunk)
                done += len(chunk)
                on_progress(done, total)
    # http.client returns b"" (no error) when the server closes before Content-Length bytes.
    if done < spec.size:
        raise _interrupted(done, spec.size, "connection closed early", retry)
    if done > spec.size:
        raise TagrecError(f"{url} sent {done:,} bytes, more than the {spec.size:,} recorded "
                          f"for {Path(url).name}: the file on the server has changed")
    for algorithm, digest in digests.items():
        expected = getattr(spec, algorithm)
        if expected is not None and digest.hexdigest() != expected:
            raise TagrecError(f"{url} failed its {algorithm} check (got {digest.hexdigest()}, "
                              f"expected {expected}): the download is corrupt — run `{retry}` "
                              "again")
    return done


def _interrupted(done: int, total: int, why: str, retry: str) -> TagrecError:
    return TagrecError(f"download interrupted after {human_size(done)} of {human_size(total)}: "
                       f"{why} — run `{retry}` again")


def _unpack(archive: Path, out: Path, name: str) -> None:
    """Extract into ``out``, dropping the archive's top-level ``NAME/`` folder.

    Member names are checked before anything is written: an absolute path or a ``..`` part
    (zip slip) would otherwise let a crafted archive write outside ``out``.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            names = [PurePosixPath(m.filename.replace("\\", "/")) for m in members]
            for path in names:
                # ":" catches Windows drive paths ("C:x"), which PurePosixPath calls relative
                if path.is_absolute() or ".." in path.parts or ":" in path.as_posix():
                    raise TagrecError(f"{name}.zip holds an unsafe path {str(path)!r}; "
                                      "refusing to unpack it")
            strip = all(p.parts and p.parts[0] == name for p in names)
            for member, path in zip(members, names, strict=True):
                parts = path.parts[1:] if strip else path.parts
                if not parts:
                    continue
                target = out.joinpath(*parts)
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
    except zipfile.BadZipFile as exc:  # also a CRC error inside a member
        raise TagrecError(f"{name}.zip is not a valid zip archive ({exc})") from None
    if not (out / "ratings.csv").is_file():
        raise TagrecError(f"{name}.zip has no {name}/ratings.csv; is it a MovieLens archive?")
