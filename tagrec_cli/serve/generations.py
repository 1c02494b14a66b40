"""The generation of the workspace's tables a server answers from.

`tagrec embed` replaces embeddings/ whole by rename, so the manifest file's (inode,
mtime_ns) names one generation of tables. A request compares it (one stat) with the
generation it holds and opens the new one, warmed, when it changed. A request that was
running across the swap is answered again on the new generation (it only reads), so none is
dropped and none mixes two generations.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from tagrec_cli import artifacts
from tagrec_cli.errors import QueryError, TagrecError
from tagrec_cli.serve.errors import ApiError
from tagrec_cli.store import Store
from tagrec_cli.store.embeddings import EmbeddingTable, Seen

USER_TAGS_CACHE = 65536  # users whose document tags a worker keeps in memory
SWAP_WAIT_S = 5.0  # how long a request waits for embeddings/ to reappear during a swap


class ServeStore(Store):
    """A Store whose parts are read once and kept: one generation of the tables, pinned.

    Store reads some parts again on every call (a table re-checks its file, a user's row
    and tags are read from disk); a server asks for them thousands of times a second, and a
    request must see one generation even while `embed` swaps the folder.
    """

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        self.opened_at = time.time()
        self._tables: dict[str, EmbeddingTable] = {}
        self._user_tags = lru_cache(maxsize=USER_TAGS_CACHE)(super().user_tags)

    def table(self, side: str) -> EmbeddingTable:
        if side not in self._tables:  # a copy: a mapping would not outlive a file's rewrite
            table = super().table(side)
            self._tables[side] = EmbeddingTable(table.ids, np.array(table.vectors))
        return self._tables[side]

    def rows(self, side: str, ids: np.ndarray) -> np.ndarray:
        table = self.table(side)
        rows = table.rows_of(np.asarray(ids, dtype=np.int64))
        if (rows >= 0).all():
            return table.vectors[rows]
        return super().rows(side, ids)  # raises the one "unknown user ..." error

    def user_tags(self, user: int) -> list[str]:
        return list(self._user_tags(user))

    @cached_property
    def seen(self) -> Seen:
        """The seen index, each user's entries kept once read (a query reads them twice:
        for its exclusions and for its reasons), as read-only arrays."""
        seen = Store.seen.func(self)
        read = seen.of

        def of(user: int) -> tuple[np.ndarray, np.ndarray]:
            movies, ratings = read(user)
            movies.flags.writeable = ratings.flags.writeable = False
            return movies, ratings

        seen.of = lru_cache(maxsize=USER_TAGS_CACHE)(of)
        return seen

    def warm(self, allow_stale: bool) -> None:
        """Read everything a query needs now, so no request pays for it (and the tables are
        this generation's even if the folder is swapped later)."""
        self.catalogue.movies_per_term  # noqa: B018 - counted now, once
        self.catalogue.terms.index(self.catalogue.with_genres)  # `similar`'s term cosine
        self.users  # noqa: B018 - opened now: the file of this generation
        self.check_fresh(allow_stale)
        for side in ("movie", "user"):
            self.table(side)
        self.seen  # noqa: B018 - opened now: the file of this generation
        self.model_dir  # noqa: B018 - checked now

    @cached_property
    def hashes(self) -> dict[str, str]:
        """Digests of the table files and the model weights, computed once (for /health)."""
        folder = self.workdir / artifacts.EMBEDDINGS_DIR
        tables = [folder / artifacts.TABLE_FILE["user"], folder / artifacts.TABLE_FILE["movie"],
                  folder / artifacts.SEEN_FILE]
        return {"tables": artifacts.file_digest(*tables),
                "model_weights": artifacts.file_digest(self.model_dir / artifacts.MODEL_WEIGHTS)}


def stamp(manifest: str) -> tuple[int, int] | None:
    """(inode, mtime_ns) of the embeddings manifest (its path, as a str: a request stats
    it twice, and making a Path costs more than the stat); None while it is absent."""
    try:
        st = os.stat(manifest)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


@dataclass
class Generation:
    stamp: tuple[int, int] | None  # of the manifest, read before the store was opened
    store: ServeStore | None = None
    error: str | None = None  # why this generation cannot answer (a 503)


class Workspace:
    """The generation of the tables a server answers from, reopened when `embed` replaces it."""

    def __init__(self, workdir: Path, allow_stale: bool = False):
        self.workdir = Path(workdir)
        self.allow_stale = allow_stale
        self.manifest = str(self.workdir / artifacts.EMBEDDINGS_DIR / artifacts.MANIFEST)
        self._lock = threading.Lock()
        self._gen = self._open()

    def _open(self) -> Generation:
        before = stamp(self.manifest)
        store = ServeStore(self.workdir)
        try:
            store.warm(self.allow_stale)
        except (TagrecError, OSError) as exc:
            return Generation(before, error=str(exc))
        return Generation(before, store)

    def current(self) -> Generation:
        """The generation on disk now, opened on first use; the one held while mid-swap."""
        now = stamp(self.manifest)
        if now is None or now == self._gen.stamp:
            return self._gen
        with self._lock:  # one thread opens it; the others wait, then use it
            if stamp(self.manifest) not in (None, self._gen.stamp):
                self._gen = self._open()
            return self._gen

    def answer(self, fn: Callable[[ServeStore], Any]) -> Any:
        """fn(store) on one generation: run again when the tables were swapped meanwhile."""
        deadline = time.monotonic() + SWAP_WAIT_S
        while True:
            gen = self.current()
            if gen.error is not None:
                outcome: Any = ApiError(503, gen.error)
            else:
                try:
                    outcome = fn(gen.store)
                except ApiError as exc:
                    outcome = exc
                except QueryError as exc:  # the query's fault: a 4xx, not the workspace's
                    outcome = ApiError.of(exc)
                except (TagrecError, OSError) as exc:  # a file `embed` made cannot be read
                    outcome = ApiError(503, str(exc))
            now = stamp(self.manifest)
            if now == gen.stamp or time.monotonic() > deadline:
                if isinstance(outcome, ApiError):
                    raise outcome
                return outcome
            if now is None:
                time.sleep(0.01)  # between embed's two renames: the new folder is coming
