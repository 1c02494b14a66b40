"""The workspace's files, read and written in one place.

    ingested.py    ingest/ tables (documents, ratings, pairs, side features)
    embeddings.py  embeddings/ tables and the seen index
    catalogue.py   embeddings/ catalogue and user tags (titles, genres, tags)

`Store` is the handle a query command opens once: it reads the embeddings manifest once and
serves the tables, the seen index, the catalogue and the checked model folder from it.
"""

from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path

import numpy as np

from tagrec_cli import artifacts, prior
from tagrec_cli.config import IngestConfig
from tagrec_cli.errors import ArtifactError
from tagrec_cli.store import embeddings
from tagrec_cli.store.catalogue import Catalogue, UserTags
from tagrec_cli.store.embeddings import EmbeddingTable, Seen


class Store:
    """embeddings/ of one workspace, opened once per command; every part is read on demand."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)

    @cached_property
    def manifest(self) -> dict:
        return embeddings.embeddings_manifest(self.workdir)

    @cached_property
    def ingest(self) -> IngestConfig:
        """The settings of the ingest the tables were made from."""
        return IngestConfig.from_settings(self.manifest["ingest_settings"])

    def table(self, side: str) -> EmbeddingTable:
        return embeddings.load_table(self.workdir, side, checked=self.manifest)

    def rows(self, side: str, ids: np.ndarray) -> np.ndarray:
        """(n, dim) vectors of these ids, without reading the rest of the table."""
        return embeddings.load_rows(self.workdir, side, ids, checked=self.manifest)

    def stale(self) -> str | None:
        """Why the tables no longer match the workspace (a newer ingest, a retrained model),
        or None. An older workspace that recorded neither is taken as it is."""
        made_from = self.manifest.get("ingest_key")
        if made_from:
            try:
                current = artifacts.ingest_manifest(self.workdir).get("ingest_key")
            except ArtifactError:  # ingest/ is gone: the tables still answer for themselves
                current = None
            if current and current != made_from:
                return ("the tables were made from an older ingest of this workspace — re-run "
                        "`tagrec train` and `tagrec embed`")
        config = artifacts.resolve_sibling(self.workdir, self.manifest["model_dir"]
                                           ) / artifacts.MODEL_CONFIG
        if config.is_file() and artifacts.file_digest(config) != self.manifest.get(
                "model_config_hash"):
            return "the model changed after the tables were made — re-run `tagrec embed`"
        return None

    def check_fresh(self, allow_stale: bool = False) -> None:
        """ArtifactError when the tables are stale (see stale), unless allow_stale."""
        why = self.stale()
        if why and not allow_stale:
            raise ArtifactError(f"{why} (or pass --allow-stale to use the tables as they are)")

    @cached_property
    def seen(self) -> Seen:
        return embeddings.load_seen(self.workdir)

    @cached_property
    def catalogue(self) -> Catalogue:
        return Catalogue.load(self.workdir, self.ingest.with_genres)

    @cached_property
    def model_dir(self) -> Path:
        """The model folder the tables were made with, checked to be that model still."""
        return embeddings.table_model_dir(self.workdir)

    @cached_property
    def users(self) -> UserTags:
        return UserTags(self.workdir)

    def user_tags(self, user: int) -> list[str]:
        return self.users.tags(user)

    @cached_property
    def catalogue_rows(self) -> np.ndarray:
        """(N,) the catalogue row of each movie-table row (-1: the catalogue lacks it)."""
        return self.catalogue.rows(self.table("movie").ids)

    def per_table_row(self, values: np.ndarray, missing: float = 0) -> np.ndarray:
        """(catalogue rows,) values -> (N,) the same over the movie table's rows (`missing`
        where the catalogue lacks the movie)."""
        at = self.catalogue_rows
        return np.where(at >= 0, values[np.maximum(at, 0)], missing).astype(values.dtype)

    @cached_property
    def rating_counts(self) -> np.ndarray:
        """(N,) history ratings of each movie-table row, from the catalogue (an added movie,
        or one the catalogue lacks: 0)."""
        return self.per_table_row(self.catalogue.rating_counts())

    @cached_property
    def movie_prior(self) -> np.ndarray:
        """(N,) the popularity prior of each movie-table row (prior.py), from the history
        rating counts the catalogue holds (an added movie has none: the cold prior)."""
        return prior.movie_prior(self.rating_counts, self.prior_setting["cold"])

    @cached_property
    def unrated_rows(self) -> np.ndarray:
        """(C,) ascending movie-table rows nobody rated in the history: added movies and
        catalogue movies without a rating (what `recommend --unrated` ranks, unrated.py)."""
        return np.flatnonzero(self.rating_counts == 0)

    def prior_weights(self, n_ratings: np.ndarray) -> np.ndarray:
        """(Q,) ratings each query's user is known by -> (Q,) weights of the prior, as the
        model the tables were made with sets them (tables made before it: 0, cosine only)."""
        setting = self.prior_setting
        return prior.weights(n_ratings, setting["strength"], setting["shrink"])

    @cached_property
    def prior_setting(self) -> dict[str, float]:
        """The popularity prior the tables were made with: strength, shrink and cold (tables
        made before it: none, the cosine only); a damaged entry is an ArtifactError."""
        recorded = self.manifest.get("popularity_prior")
        setting = {"strength": 0.0, "shrink": 0.0, "cold": 0.0}
        if recorded is None:
            return setting
        try:
            setting |= {k: float(recorded[k]) for k in ("strength", "shrink")}
            setting["cold"] = float(recorded.get("cold", 0.0))
            if not all(math.isfinite(v) for v in setting.values()) or min(
                    setting["strength"], setting["shrink"]) < 0:
                raise ValueError("out of range")
        except (TypeError, KeyError, ValueError, AttributeError, OverflowError):
            path = self.workdir / artifacts.EMBEDDINGS_DIR / artifacts.MANIFEST
            raise ArtifactError(f"{path} is damaged (popularity_prior is "
                                f"{str(recorded)[:60]!r}) — re-run `tagrec embed`") from None
        return setting

    def user_feature_rows(self, users: list[int | None]) -> dict[str, np.ndarray]:
        return self.users.feature_rows(users)
