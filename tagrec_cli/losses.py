"""Training objectives as maths on two embedding batches (user, movie), not on the model."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def cosine_embedding_loss(users: torch.Tensor, movies: torch.Tensor, labels: torch.Tensor,
                          margin: float = 0.0) -> torch.Tensor:
    """torch's CosineEmbeddingLoss, mean over pairs.

    users, movies: (B, dim); labels: (B,) +1 like / -1 dislike.
    Per pair: 1 - cos for a like, max(0, cos - margin) for a dislike.
    """
    return F.cosine_embedding_loss(users, movies, labels.to(users.dtype), margin=margin)
