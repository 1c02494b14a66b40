"""Pooled encoder outputs, kept from a frozen-encoder training run for `embed` to reuse.

With the encoder frozen, the pooled output of a document is the same in `train` and in
`embed`, and computing it is nearly all of both commands' time. So `train` writes what it
computed to the workspace cache, and `embed` projects those rows instead of encoding them
again (it still encodes any row the cache lacks).

The cache file is keyed by everything the pooled outputs depend on: the token ids of every
document, the encoder's weights, the pooling, and the arithmetic (device type, float32 or
bf16). A fine-tuned model has other encoder weights, so it never matches.

    cache/pooled-KEY.safetensors: {side}: (N, H) float32, {side}_done: (N,) uint8
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tagrec_cli import artifacts
from tagrec_cli.towers.tokens import TokenTable


def cache_key(model: torch.nn.Module, tables: dict[str, TokenTable], device: torch.device,
              bf16: bool) -> str:
    """Hash of the documents' tokens, the encoder weights, the pooling and the arithmetic."""
    digest = hashlib.sha256(f"{model.cfg.pooling}|{device.type}|{bf16}".encode())
    for side in sorted(tables):
        table = tables[side]
        for array in (table.ids, table.offsets, table.tokens):
            digest.update(np.ascontiguousarray(array).tobytes())
    for name, tensor in sorted(model.encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def cache_path(workdir: Path, key: str) -> Path:
    return artifacts.cache_path(workdir, "pooled", key)


def save(workdir: Path, key: str, pooled: dict[str, torch.Tensor],
         done: dict[str, np.ndarray]) -> None:
    """Write the rows computed so far (done[side] True) atomically."""
    tensors = {}
    for side, values in pooled.items():
        tensors[side] = values.to(torch.float32).contiguous()
        tensors[f"{side}_done"] = torch.from_numpy(done[side].astype(np.uint8))
    path = cache_path(workdir, key)
    with artifacts.atomic_file(path) as tmp:
        save_file(tensors, str(tmp))
    artifacts.prune_cache(workdir, "pooled", key)


def _finite(rows: torch.Tensor, done: np.ndarray, block: int = 65536) -> bool:
    """Whether every computed row (done) holds finite numbers; a block at a time, so that
    162,000 x 384 floats are not copied whole to be checked."""
    return all(bool(torch.isfinite(rows[lo:lo + block][torch.from_numpy(done[lo:lo + block])])
                    .all()) for lo in range(0, len(rows), block))


def load(workdir: Path, key: str, tables: dict[str, TokenTable], width: int,
         ) -> dict[str, tuple[torch.Tensor, np.ndarray]]:
    """side -> ((N, H) pooled rows, (N,) bool done); {} when there is no usable cache.
    width: H, the encoder's hidden size."""
    path = cache_path(workdir, key)
    if not path.is_file():
        return {}
    try:
        tensors = load_file(str(path))
        out = {}
        for side, table in tables.items():
            done = tensors[f"{side}_done"].numpy().astype(bool)
            rows = tensors[side]
            # a damaged cache (rows lost, another dtype, NaN) would go into the tables
            if (len(done) != len(table) or rows.dtype != torch.float32
                    or rows.shape != (len(table), width) or not _finite(rows, done)):
                return {}
            out[side] = (rows, done)
        return out
    except (OSError, KeyError, ValueError, SafetensorError):
        return {}  # a damaged cache is ignored: embed encodes everything
