"""Documents tokenized once, stored ragged, padded per batch to the longest member.

A TokenTable holds one side's documents (users or movies) as a flat token array plus offsets:

    tokens[offsets[i]:offsets[i + 1]]  are the token ids of document i (special tokens included)

It is cached in the workspace as safetensors, keyed by the tokenizer, the max length and the
documents' own text, so `train` and `embed` tokenize each document once, and a re-ingest
that changes any document never reuses stale tokens.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from tagrec_cli import artifacts
from tagrec_cli.errors import ArtifactError
from tagrec_cli.store import ingested
from tagrec_cli.topk import rows_of

SIDES = ("user", "movie")


@dataclass
class TokenTable:
    ids: np.ndarray  # (N,) int64 MovieLens ids, in table order
    offsets: np.ndarray  # (N + 1,) int64
    tokens: np.ndarray  # (offsets[-1],) int32
    pad_id: int = 0

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def head(self, n: int) -> TokenTable:
        """The first n rows."""
        return TokenTable(self.ids[:n], self.offsets[:n + 1],
                          self.tokens[:int(self.offsets[n])], self.pad_id)

    def extended(self, ids: np.ndarray, offsets: np.ndarray, tokens: np.ndarray) -> TokenTable:
        """These rows (ids, tokenize's offsets and tokens) appended after this table's."""
        return TokenTable(np.concatenate([self.ids, np.asarray(ids, np.int64)]),
                          np.concatenate([self.offsets, self.offsets[-1] + offsets[1:]]),
                          np.concatenate([self.tokens, tokens.astype(self.tokens.dtype)]),
                          self.pad_id)

    def row_of(self, ids: np.ndarray) -> np.ndarray:
        """MovieLens ids -> row numbers; an id missing from the table is an ArtifactError."""
        rows = rows_of(self.ids, ids)
        missing = rows < 0
        if missing.any():
            raise ArtifactError(f"id {int(np.asarray(ids)[missing][0])} has no document in the "
                                "ingest output — re-run `tagrec ingest`")
        return rows

    def batch(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows -> (input_ids, attention_mask), both (B, T) with T the longest row's length."""
        lengths = self.lengths[rows]
        width = int(lengths.max()) if len(rows) else 1
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.arange(width)[None, :] < lengths[:, None]  # (B, T)
        starts = self.offsets[rows]
        ids[mask] = self.tokens[(starts[:, None] + np.arange(width)[None, :])[mask]]
        return torch.from_numpy(ids), torch.from_numpy(mask.astype(np.int64))


def tokenize(tokenizer: Any, documents: list[str],
             max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Documents -> (offsets (N+1,), tokens) with truncation to max_length, no padding."""
    offsets = [0]
    chunks = []
    for lo in range(0, len(documents), 4096):
        enc = tokenizer(documents[lo:lo + 4096], truncation=True, max_length=max_length,
                        add_special_tokens=True)["input_ids"]
        chunks.extend(np.asarray(e, dtype=np.int32) for e in enc)
    offsets = np.zeros(len(chunks) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(c) for c in chunks])
    tokens = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)
    return offsets, tokens


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hash of the tokenizer's vocabulary and rules, not of its call-time state.

    Calling a fast tokenizer with truncation stores that setting in the backend, so the raw
    serialisation changes after the first call; those keys are left out.
    """
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    state.pop("truncation", None)
    state.pop("padding", None)
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]


def _matches(table: TokenTable, ids: np.ndarray, vocabulary: int) -> bool:
    """Whether a cached table is whole: the documents' ids in order, offsets that cut its
    tokens (int32) from 0 to the end without going back, and token ids the encoder has."""
    offsets, tokens = table.offsets, table.tokens
    return (table.ids.dtype == np.int64 and np.array_equal(table.ids, ids)
            and (not len(tokens) or (tokens.min() >= 0 and tokens.max() < vocabulary))
            and offsets.dtype == np.int64 and offsets.shape == (len(ids) + 1,)
            and tokens.dtype == np.int32 and tokens.ndim == 1
            and offsets[0] == 0 and offsets[-1] == len(tokens)
            and bool((np.diff(offsets) >= 0).all()))


def token_tables(workdir: Path, tokenizer: Any, max_length: int) -> dict[str, TokenTable]:
    """Both sides' TokenTables, from the workspace cache when it matches, else tokenized now."""
    workdir = Path(workdir)
    docs = {side: ingested.documents(workdir, side) for side in SIDES}
    # Keyed by the documents themselves, so a re-ingest that changes any text (other data,
    # other settings, another tagrec version) never reuses stale tokens.
    digest = hashlib.sha256(f"{tokenizer_fingerprint(tokenizer)}|{max_length}".encode())
    for side in SIDES:
        digest.update(docs[side][ingested.ID_COLUMN[side]].to_numpy().astype(np.int64).tobytes())
        digest.update("\x1f".join(docs[side]["document"].to_list()).encode())
    key = digest.hexdigest()[:16]
    path = artifacts.cache_path(workdir, "tokens", key)
    pad_id = tokenizer.pad_token_id or 0
    if path.is_file():
        try:
            arrays = load_file(str(path))
            cached = {s: TokenTable(arrays[f"{s}_ids"], arrays[f"{s}_offsets"],
                                    arrays[f"{s}_tokens"], pad_id) for s in SIDES}
            if all(_matches(cached[s], docs[s][ingested.ID_COLUMN[s]].to_numpy(),
                            len(tokenizer)) for s in SIDES):
                return cached
        except (OSError, KeyError, ValueError, SafetensorError):
            pass  # a damaged cache is rebuilt below
    tables, arrays = {}, {}
    for side in SIDES:
        offsets, tokens = tokenize(tokenizer, docs[side]["document"].to_list(), max_length)
        ids = docs[side][ingested.ID_COLUMN[side]].to_numpy().astype(np.int64)
        tables[side] = TokenTable(ids, offsets, tokens, pad_id)
        arrays |= {f"{side}_ids": ids, f"{side}_offsets": offsets, f"{side}_tokens": tokens}
    with artifacts.atomic_file(path) as tmp:
        save_file(arrays, str(tmp))
    artifacts.prune_cache(workdir, "tokens", key)
    return tables
