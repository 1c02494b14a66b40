"""towers/model.py: pooling the encoder's hidden states."""

from __future__ import annotations

import torch

from tagrec_cli.towers.model import pool


def test_mean_pool_ignores_padding_and_cls_takes_first():
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 5.0], [100.0, 100.0]]])  # (1, 3, 2)
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 3.0]]
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 1.0]]
