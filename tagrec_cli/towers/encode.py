"""Encoding documents with a TwoTower: the one place that batches documents for the encoder
and the one bf16 rule, shared by train, embed, `embed --add-movies` and the torch fallback of
tags queries.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from tagrec_cli.config import PRECISIONS
from tagrec_cli.towers.model import TwoTower
from tagrec_cli.towers.tokens import TokenTable, tokenize


def uses_bf16(device: torch.device, precision: str = "auto") -> bool:
    """Whether `autocast(device, precision)` computes in bf16: on CUDA by default, or asked."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def autocast(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA and with precision 'bf16'; plain float32 on CPU by default.

    On a CPU with AVX-512 BF16, bf16 encodes MiniLM documents about 1.8x faster, and the
    vectors keep a cosine of 0.99996 or more to float32's (measured on 25M-sized documents).
    """
    if uses_bf16(device, precision):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def encode_rows(model: TwoTower, table: TokenTable, rows: np.ndarray, device: torch.device,
                batch_size: int = 256, side: str | None = None,
                on_batch: Callable[[int], None] | None = None,
                precision: str = "auto", features: torch.Tensor | None = None) -> torch.Tensor:
    """Encode table rows in length-sorted batches (little padding), returned in `rows` order.

    side None: pooled encoder output (len(rows), H); 'user'/'movie': projected (len(rows), dim).
    features: (len(rows), F) side features, for a model that has them.
    Runs under inference_mode; the result is float32 on the CPU.
    """
    order = np.argsort(table.lengths[rows], kind="stable")
    out: list[torch.Tensor] = []
    with torch.inference_mode(), autocast(device, precision):
        for lo in range(0, len(rows), batch_size):
            part = order[lo:lo + batch_size]
            ids, mask = table.batch(rows[part])
            pooled = model.encode(ids.to(device), mask.to(device))
            extra = None if features is None else features[torch.from_numpy(part)]
            vecs = pooled if side is None else model.project(side, pooled, extra)
            out.append(vecs.float().cpu())
            if on_batch:
                on_batch(len(ids))
    width = model.encoder.config.hidden_size if side is None else model.cfg.dim
    result = torch.empty((len(rows), width), dtype=torch.float32)
    if out:
        result[torch.from_numpy(order)] = torch.cat(out)
    return result


def encode_documents(model: TwoTower, tokenizer: Any, documents: list[str],
                     device: torch.device, side: str, batch_size: int = 256,
                     precision: str = "auto", features: np.ndarray | None = None) -> np.ndarray:
    """Document texts [+ (N, F) side features] -> (N, dim) unit rows of tower `side`.

    For documents not in a workspace: new movies, tags queries.
    """
    offsets, tokens = tokenize(tokenizer, documents, model.cfg.max_length)
    table = TokenTable(np.arange(len(documents)), offsets, tokens, tokenizer.pad_token_id or 0)
    extra = None if features is None else torch.from_numpy(np.asarray(features, np.float32))
    vecs = encode_rows(model, table, np.arange(len(documents)), device, batch_size, side,
                       precision=precision, features=extra)
    return torch.nn.functional.normalize(vecs, dim=1).numpy()
