"""`tagrec clean`: remove what no artifact of a workspace needs.

Writers that die (SIGKILL, the OOM killer, a power cut) leave their temporary copies under
artifacts.temp_name's names, and a lock naming a dead process; each writer recovers its own
artifact's, and this sweeps the rest. With --caches, cache/ goes too (rebuilt on demand).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tagrec_cli.artifacts import (
    ADDED_DIR,
    CACHE_DIR,
    EMBEDDINGS_DIR,
    TEMP_NAME,
    leftovers,
    pid_alive,
    recover,
    workspace_lock,
)
from tagrec_cli.errors import ArtifactError


def _swept_folders(workdir: Path) -> list[Path]:
    """The folders whose writers' leftovers `clean` sweeps: the workspace and every folder
    in it (evaluate's stages, the artifacts' insides), but not a leftover itself, nor
    embeddings/added/, which holds the user's own files."""
    mine = Path(workdir) / EMBEDDINGS_DIR / ADDED_DIR
    out = []
    for root, dirs, _files in os.walk(workdir):
        dirs[:] = sorted(d for d in dirs
                         if not TEMP_NAME.match(d) and Path(root, d) != mine)
        out.append(Path(root))
    return out


def run_clean(workdir: Path, caches: bool = False, dry_run: bool = False,
              ) -> list[tuple[Path, int]]:
    """What no current artifact needs, removed (or only listed with dry_run): (path, bytes).

    Always: what writers that died left (temporary copies; a dead process's lock is broken).
    With caches: the cache/ folder too (token tables and pooled outputs; rebuilt on demand).
    A moved-aside artifact whose new version never arrived is put back, not removed.
    """
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise ArtifactError(f"no workspace at {workdir}")
    with workspace_lock(workdir):  # no writer runs meanwhile (a dead one's lock is broken)
        found: list[Path] = []
        folders = _swept_folders(workdir)
        for folder in folders:
            for item, target, kind, pid in leftovers(folder):
                if pid_alive(pid) or (kind == "old" and not target.exists()):
                    continue  # a live writer's, or an artifact recover() puts back
                found.append(item)
        if caches and (workdir / CACHE_DIR).is_dir():
            found += [p for p in sorted((workdir / CACHE_DIR).iterdir())
                      if p not in found]
        sized = [(p, sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
                  if p.is_dir() else p.stat().st_size) for p in found]
        if not dry_run:
            for folder in folders:
                recover(folder)
            for path, _ in sized:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
    return sized
