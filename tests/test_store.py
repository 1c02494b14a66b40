"""store/: the embedding tables' id -> row lookup."""

from __future__ import annotations

import numpy as np

from tagrec_cli.store.embeddings import EmbeddingTable


def test_embedding_table_rows_of_marks_unknown():
    table = EmbeddingTable(ids=np.array([5, 1, 9]), vectors=np.zeros((3, 2), np.float32))
    assert table.rows_of(np.array([9, 5, 4, 100])).tolist() == [2, 0, -1, -1]
