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


def in_batch_softmax_loss(users: torch.Tensor, movies: torch.Tensor, target: torch.Tensor,
                          other_positives: torch.Tensor, temperature: float = 0.05,
                          log_q: torch.Tensor | None = None) -> torch.Tensor:
    """Sampled softmax over the batch's movies for each liked pair (in-batch negatives).

    users: (P, dim), one row per liked pair; movies: (M, dim), the batch's distinct movies
    (liked and disliked, so dislikes are hard negatives); target: (P,) the liked movie's row;
    other_positives: (P, M) True where the movie is another liked movie of the same user
    (masked out: it is not a negative); log_q: (M,) log sampling probability of each movie,
    subtracted so popular movies are not over-penalised for appearing often as negatives.
    Cosine similarities are divided by `temperature` before the softmax.
    """
    logits = F.normalize(users, dim=1) @ F.normalize(movies, dim=1).T / temperature  # (P, M)
    if log_q is not None:
        logits = logits - log_q[None, :]
    logits = logits.masked_fill(other_positives, float("-inf"))
    return F.cross_entropy(logits, target)


def balanced_logistic_loss(users: torch.Tensor, movies: torch.Tensor, labels: torch.Tensor,
                           bias: torch.Tensor, temperature: float = 0.2,
                           like_share: float = 0.5) -> torch.Tensor:
    """Logistic loss of like (+1) / dislike (-1) on cosine / temperature + bias.

    users, movies: (B, dim), one row per pair; labels: (B,). Likes are weighted
    0.5 / like_share and dislikes 0.5 / (1 - like_share), so both classes count equally
    however rare dislikes are (13% of MovieLens ratings are below 2.5).
    """
    cos = F.cosine_similarity(users, movies, dim=1)
    target = (labels > 0).to(cos.dtype)
    weight = torch.where(labels > 0, 0.5 / like_share, 0.5 / (1.0 - like_share)).to(cos.dtype)
    return F.binary_cross_entropy_with_logits(cos / temperature + bias, target, weight=weight)
