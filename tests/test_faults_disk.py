"""A real full disk at every write: each writing command on a small tmpfs, with the free space
filled to leave only a fraction of what the command writes, so that the failure lands at a
different write each time (polars and safetensors write from Rust: only a real file system
reaches those writes). Each run must end in one line and exit 1 and leave every byte of the
workspace as it was.

Needs root (to mount a tmpfs); skipped, with the reason, elsewhere."""

from __future__ import annotations

import gc
import hashlib
import itertools
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import invoke

FRACTIONS = (0.0, 0.1, 0.3, 0.6, 0.9)  # of the disk the command's new files take with room
TMPFS_MB = 96
PAGE = 4096  # tmpfs allocates in pages


@pytest.fixture(scope="module")
def tmpfs(tmp_path_factory) -> Path:
    """A fresh TMPFS_MB tmpfs, unmounted at the end of the module."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    folder = tmp_path_factory.mktemp("tmpfs")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m", "tmpfs", str(folder)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip() or r.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)
        if os.path.ismount(folder):
            subprocess.run(["umount", "-l", str(folder)], check=False)


def free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def written_bytes() -> int:
    """Bytes this process (all its threads, Rust's included) has passed to write() so far."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file's SHA-256 and every folder (an empty leftover folder counts too)."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest()
                                         if p.is_file() else "folder")
            for p in sorted(folder.rglob("*"))}


def fill(folder: Path, leave: int) -> Path:
    """A file taking all the free space of folder's file system but `leave` bytes."""
    # A deleted file's pages stay taken while a finished command's objects still map it (a
    # safetensors table); freed by a garbage collection during the next run, they would give
    # that run more room than `leave` (seen once: 301,103 bytes written where 28,839 fit).
    gc.collect()
    filler = folder / "filler"
    size = free_bytes(folder) - leave
    if size > 0:
        fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
    return filler


@pytest.fixture(scope="module")
def new_movies(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("new_movies") / "new.csv"
    path.write_text("movieId,title,genres,tags\n"
                    "900001,Heist Again (2031),Crime,safe cracking|twist ending\n"
                    "900002,Quiet Drama (2032),Drama,slow|family\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("command", ["ingest", "train", "embed", "embed --add-movies"])
def test_a_full_disk_at_any_write_is_one_line_and_changes_nothing(
        tmpfs: Path, embedded_sample_refit_300pairs_dim16: Path, sample_dir: Path,
        tiny_bert: Path, new_movies: Path, command: str):
    args = {"ingest": ["ingest", "--data", str(sample_dir), "--holdout-fraction", "0"],
            "train": ["train", "--model", str(tiny_bert), "--epochs", "1", "--dim", "16",
                      "--device", "cpu"],
            "embed": ["embed", "--device", "cpu"],
            "embed --add-movies": ["embed", "--add-movies", str(new_movies)]}[command]
    good = embedded_sample_refit_300pairs_dim16
    # with room: how much the command writes
    roomy = tmpfs / "roomy"
    shutil.copytree(good, roomy)
    old = {p.stat().st_ino for p in roomy.rglob("*")}
    start = written_bytes()
    r = invoke(args, roomy)
    written = written_bytes() - start
    assert r.exit_code == 0, r.output
    # What the new files take on the disk (hard links to old ones take nothing): a command
    # writes more than that (a file rewritten, a lock), so wchar would overstate the need.
    needed = sum(p.stat().st_blocks * 512 for p in roomy.rglob("*")
                 if p.is_file() and p.stat().st_ino not in old)
    shutil.rmtree(roomy)
    assert needed > 0 and written > 0

    ws = tmpfs / "ws"
    shutil.copytree(good, ws)
    before = fingerprint(ws)
    reached = []  # bytes each failed run wrote before the disk was full
    try:
        for fraction in FRACTIONS:
            filler = fill(tmpfs, int(fraction * needed))
            start = written_bytes()
            try:
                r = invoke(args, ws)
                reached.append(written_bytes() - start)
            finally:
                filler.unlink(missing_ok=True)
            where = f"{command} with {fraction:.0%} of {needed:,} bytes free"
            if r.exit_code == 0 and fraction > FRACTIONS[1]:
                # It fitted after all. Seen once in CI for --add-movies at 30% (not yet
                # explained). Then it must have finished cleanly, and the next fraction
                # starts from the workspace as it was.
                assert not [p for p in ws.rglob("*") if ".tmp-" in p.name], where
                assert invoke(["recommend", "--user", "1", "--allow-stale"], ws).exit_code == 0
                reached.pop()
                shutil.rmtree(ws)
                shutil.copytree(good, ws)
                continue
            assert r.exit_code == 1, (where, r.output)
            assert "Traceback" not in r.output, where
            lines = r.stderr.strip().splitlines()
            assert lines and lines[-1].startswith("Error: the disk is full"), (where, r.stderr)
            assert "free some space" in lines[-1], where
            assert not [x for x in lines[:-1] if x.startswith("Error")], (where, r.stderr)
            assert fingerprint(ws) == before, where
        print(f"{command}: new files take {needed:,} bytes ({written:,} written); failed "
              f"after writing {reached}")
        # the failures landed at different writes: later ones further into the command.
        # Two fractions can end inside the same large write, a few bytes apart either way
        # (seen in CI: 321,583 then 321,575), so the order is checked to within a page.
        assert len(reached) >= 3, reached
        assert all(b >= a - PAGE for a, b in itertools.pairwise(reached)), reached
        assert reached[-1] > reached[0] + PAGE, reached
    finally:
        shutil.rmtree(ws, ignore_errors=True)
