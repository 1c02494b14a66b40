"""towers/losses.py: the training losses, worked by hand."""

from __future__ import annotations

import pytest
import torch

from tagrec_cli.towers.losses import cosine_embedding_loss


def test_cosine_embedding_loss_by_hand():
    users = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    movies = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    # pair 0: like, cos 1 -> 1 - 1 = 0
    # pair 1: dislike, cos = 1/sqrt(2) = 0.70711 -> max(0, 0.70711 - 0.0) = 0.70711
    # mean = 0.35355; with margin 0.5: (0 + 0.20711) / 2 = 0.10355
    labels = torch.tensor([1, -1])
    assert cosine_embedding_loss(users, movies, labels).item() == pytest.approx(0.353553, 1e-5)
    assert cosine_embedding_loss(users, movies, labels, 0.5).item() == pytest.approx(
        0.103553, 1e-5)
    # matches torch's module exactly
    module = torch.nn.CosineEmbeddingLoss(margin=0.5)
    assert cosine_embedding_loss(users, movies, labels, 0.5).item() == pytest.approx(
        module(users, movies, labels.float()).item())


def test_in_batch_softmax_loss_by_hand():
    from tagrec_cli.towers.losses import in_batch_softmax_loss

    # Two liked pairs, three batch movies on the unit axes; temperature 1.
    users = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    movies = torch.eye(3)
    target = torch.tensor([0, 1])
    none = torch.zeros(2, 3, dtype=torch.bool)
    # pair 0 logits [1, 0, 0]: -log(e / (e + 2)) = log(1 + 2/e) = 0.551445; pair 1 the same.
    loss = in_batch_softmax_loss(users, movies, target, none, temperature=1.0)
    assert loss.item() == pytest.approx(0.551445, 1e-5)
    # Masking movie 2 as another positive of both users: -log(e / (e + 1)) = 0.313262.
    mask = torch.tensor([[False, False, True], [False, False, True]])
    assert in_batch_softmax_loss(users, movies, target, mask, 1.0).item() == pytest.approx(
        0.313262, 1e-5)
    # The log-q correction subtracts log q from every logit, so an equal log q everywhere
    # changes nothing.
    same = torch.full((3,), -2.0)
    assert in_batch_softmax_loss(users, movies, target, none, 1.0, same).item() == \
        pytest.approx(0.551445, 1e-5)


def test_balanced_logistic_loss_by_hand():
    from tagrec_cli.towers.losses import balanced_logistic_loss

    users = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    movies = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # cosines 1 and 0
    labels = torch.tensor([1.0, -1.0])
    # logits 1 / 0.5 + 0 = 2 and 0; like weight 0.5 / 0.75, dislike 0.5 / 0.25:
    # mean(2/3 * log(1 + e^-2), 2 * log(1 + e^0)) = (0.084619 + 1.386294) / 2 = 0.735457
    got = balanced_logistic_loss(users, movies, labels, torch.tensor(0.0), 0.5, 0.75)
    assert got.item() == pytest.approx(0.735457, abs=1e-5)
