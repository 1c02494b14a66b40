"""The workspace's files, read and written in one place.

    ingested.py    ingest/ tables (documents, ratings, pairs, side features)
    embeddings.py  embeddings/ tables and the seen index
    catalogue.py   embeddings/ catalogue and user tags (titles, genres, tags)

`Store` is the handle a query command opens once: it reads the embeddings manifest once and
serves the tables, the seen index, the catalogue and the checked model folder from it.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from tagrec_cli.config import IngestConfig
from tagrec_cli.store import catalogue, embeddings
from tagrec_cli.store.catalogue import Catalogue
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
        self.manifest  # noqa: B018 - checked before any table is read
        return embeddings.load_table(self.workdir, side)

    def rows(self, side: str, ids: np.ndarray) -> np.ndarray:
        """(n, dim) vectors of these ids, without reading the rest of the table."""
        return embeddings.load_rows(self.workdir, side, ids)

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

    def user_tags(self, user: int) -> list[str]:
        return catalogue.user_tags(self.workdir, user)

    def user_feature_rows(self, users: list[int | None]) -> dict[str, np.ndarray]:
        return catalogue.user_feature_rows(self.workdir, users)
