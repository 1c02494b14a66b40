"""Query documents -> user-tower vectors at query time, with the model that made the tables.

The numpy tower (npbert.py) answers in milliseconds without importing torch; a model whose
encoder is not plain BERT goes through torch instead (seconds to start).
"""

from __future__ import annotations

import numpy as np

from tagrec_cli import artifacts
from tagrec_cli.errors import ArtifactError
from tagrec_cli.features import RAW_COLUMNS, user_features
from tagrec_cli.store import Store
from tagrec_cli.towers.npbert import load_tower


def encode_user_documents(store: Store, documents: list[str],
                          users: list[int | None] | None = None,
                          raw: dict[str, np.ndarray] | None = None,
                          liked: list[np.ndarray | None] | None = None) -> np.ndarray:
    """User documents -> (N, dim) unit rows.

    For a model with side features: users, whose history gives each document's features
    (None: a tags query, no history); or raw, features.RAW_COLUMNS["user"] as (N,) arrays
    (a new user's ratings). For a collaborative model: liked, per document the movieIds
    the user liked (pooled into the vector, towers/collab.py), None for no history.
    """
    vectors = _encode(store, documents, users, raw, liked)
    if not np.isfinite(vectors).all():  # NaN weights: a model file edited or half-trained
        raise ArtifactError(f"model in {store.model_dir} gives vectors that are not numbers "
                            "— re-run `tagrec train`")
    return vectors


def _encode(store: Store, documents: list[str], users: list[int | None] | None,
            raw: dict[str, np.ndarray] | None, liked: list[np.ndarray | None] | None,
            ) -> np.ndarray:
    stats = artifacts.read_model_config(store.model_dir)["model"].get("features")
    extra = None
    if stats is not None:
        if raw is None:
            raw = store.user_feature_rows(users or [None] * len(documents))
        extra = user_features(*(raw[c] for c in RAW_COLUMNS["user"]), stats)  # (N, F)
    tower = load_tower(store.model_dir, "user")
    if tower is not None:
        return tower.encode(documents, extra, liked)
    # Not plain BERT: the same tower through torch (slower to start).
    import torch

    from tagrec_cli.towers import collab
    from tagrec_cli.towers.encode import encode_documents
    from tagrec_cli.towers.model import load_model

    model, tokenizer, _ = load_model(store.model_dir, "cpu")
    if not model.cfg.collaborative:
        return encode_documents(model, tokenizer, documents, torch.device("cpu"), "user",
                                features=extra)
    return collab.encode_liked_users(model, tokenizer, documents, extra,
                                     [np.zeros(0, np.int64) if x is None else x
                                      for x in (liked or [None] * len(documents))])
