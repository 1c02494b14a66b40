"""Pure pieces of the model side: loss, metrics, batching, learning rate, top-k, padding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tagrec_cli.metrics import roc_auc, sign_accuracy
from tagrec_cli.recommend import nearest as top_k
from tagrec_cli.store.embeddings import EmbeddingTable
from tagrec_cli.towers.losses import cosine_embedding_loss
from tagrec_cli.towers.model import pool
from tagrec_cli.towers.tokens import TokenTable
from tagrec_cli.train.batches import epoch_batches, lr_factor


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


def test_roc_auc_by_hand_with_ties():
    # positives 0.35, 0.8; negatives 0.1, 0.4: pairs (pos > neg): 0.35>0.1, 0.8>0.1, 0.8>0.4
    # = 3 of 4 -> 0.75
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([-1, -1, 1, 1])) == 0.75
    # a tie between a positive and a negative counts half: pos {0.5, 0.9}, neg {0.5, 0.1}
    # (0.5 vs 0.5) 0.5 + (0.5 > 0.1) 1 + (0.9 > both) 2 = 3.5 / 4 = 0.875
    assert roc_auc(np.array([0.5, 0.9, 0.5, 0.1]), np.array([1, 1, -1, -1])) == 0.875
    assert math.isnan(roc_auc(np.array([0.1, 0.2]), np.array([1, 1])))
    # matches the brute-force definition on random data with many ties
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 200).astype(float)
    y = rng.choice([-1, 1], 200)
    pos, neg = s[y > 0], s[y < 0]
    brute = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (
        len(pos) * len(neg))
    assert roc_auc(s, y) == pytest.approx(brute)


def test_sign_accuracy():
    # signs: +, -, 0 (-> -1), + vs labels +, +, -, - -> right, wrong, right, wrong
    assert sign_accuracy(np.array([0.3, -0.2, 0.0, 0.9]), np.array([1, 1, -1, -1])) == 0.5


def test_mean_pool_ignores_padding_and_cls_takes_first():
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 5.0], [100.0, 100.0]]])  # (1, 3, 2)
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 3.0]]
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 1.0]]


def test_token_table_pads_to_longest_in_batch():
    table = TokenTable(ids=np.array([10, 20, 30]), offsets=np.array([0, 3, 5, 9]),
                       tokens=np.array([101, 7, 102, 101, 102, 101, 8, 9, 102], np.int32),
                       pad_id=0)
    ids, mask = table.batch(np.array([1, 0]))
    assert ids.tolist() == [[101, 102, 0], [101, 7, 102]]  # width 3, not 4 or 128
    assert mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    assert table.row_of(np.array([30, 10])).tolist() == [2, 0]


def test_epoch_batches_cover_every_pair_once_and_group_users():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(20), 8)  # 20 users x 8 pairs
    batches = epoch_batches(users, 16, rng, group_by_user=True)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(160))
    # grouped: each batch of 16 holds exactly 2 users' 8 pairs
    assert all(len(np.unique(users[b])) == 2 for b in batches)
    # ungrouped: a plain shuffle mixes many users per batch
    plain = epoch_batches(users, 16, np.random.default_rng(0), group_by_user=False)
    assert sorted(np.concatenate(plain).tolist()) == list(range(160))
    assert np.mean([len(np.unique(users[b])) for b in plain]) > 5


def test_lr_factor_warms_up_then_decays():
    # 100 steps, 10% warm-up: step 0 -> 1/10, step 9 -> 1, then (100 - step) / 90
    assert lr_factor(0, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(55, 100, 0.1) == pytest.approx(0.5)
    assert lr_factor(100, 100, 0.1) == 0.0


def test_top_k_known_answer_and_exclusions():
    # items on the unit circle; the query points at item 1, item 2 is next (cos 0.6)
    items = np.array([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]], np.float32)
    queries = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    rows, scores = top_k(queries, items, 2)
    assert [r.tolist() for r in rows] == [[1, 2], [0, 2]]
    assert scores[0].tolist() == pytest.approx([1.0, 0.6])
    # excluding the best moves the next ones up; k larger than what is left is capped
    rows, _ = top_k(queries, items, 5, exclude=[np.array([1]), np.array([0, 2])])
    assert [r.tolist() for r in rows] == [[2, 0], [1]]
    with pytest.raises(ValueError):
        top_k(queries, items, 0)


def test_top_k_checkerboard_batch_equals_single():
    # implicit's checkerboard: item i is nearest to query i; ties broken by the lower row
    n = 12
    eye = np.eye(n, dtype=np.float32)
    rows, _ = top_k(eye, eye, 1)
    assert [int(r[0]) for r in rows] == list(range(n))
    rng = np.random.default_rng(1)
    q = rng.normal(size=(7, 4)).astype(np.float32)
    items = np.round(rng.normal(size=(50, 4)), 1).astype(np.float32)
    items[10] = items[3]  # an exact tie
    excl = [rng.choice(50, size=5, replace=False) for _ in range(7)]
    batch_rows, batch_scores = top_k(q, items, 10, excl)
    for i in range(7):
        single_rows, single_scores = top_k(q[i:i + 1], items, 10, [excl[i]])
        assert batch_rows[i].tolist() == single_rows[0].tolist()
        assert np.array_equal(batch_scores[i], single_scores[0])
        assert not set(batch_rows[i].tolist()) & set(excl[i].tolist())
        assert np.all(np.diff(batch_scores[i]) <= 0)


def test_embedding_table_rows_of_marks_unknown():
    table = EmbeddingTable(ids=np.array([5, 1, 9]), vectors=np.zeros((3, 2), np.float32))
    assert table.rows_of(np.array([9, 5, 4, 100])).tolist() == [2, 0, -1, -1]


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


class ToyModel(torch.nn.Module):  # stands in for TwoTower: pooled outputs are looked up
    def __init__(self, extra: int = 0):
        super().__init__()
        self.heads = torch.nn.ModuleDict({"user": torch.nn.Linear(4 + extra, 4),
                                          "movie": torch.nn.Linear(4 + extra, 4)})

    def project(self, side, pooled, features=None):
        if features is not None:
            pooled = torch.cat([pooled, features], dim=1)
        return self.heads[side](pooled)


def toy_pairs():
    """User i rates movie i 5.0 (like) and movie (i + 1) % 4 1.0 (dislike)."""
    from tagrec_cli.train.batches import Pairs

    return Pairs(np.repeat(np.arange(4), 2), np.array([0, 1, 1, 2, 2, 3, 3, 0]),
                 np.array([1, -1] * 4, dtype=np.float32),
                 np.array([5.0, 1.0] * 4, dtype=np.float32))


@pytest.mark.parametrize("loss", ["softmax", "hybrid"])
def test_training_step_runs_and_learns(loss):
    """On a toy problem each objective pulls each user to its liked movie."""
    from tagrec_cli.config import TrainConfig
    from tagrec_cli.train.step import BatchTowers, train_step

    torch.manual_seed(0)
    model = ToyModel()
    towers = BatchTowers(model, {}, torch.device("cpu"), 4,
                         pooled={"user": torch.eye(4), "movie": torch.eye(4)})
    cfg = TrainConfig(loss=loss, temperature=0.1, device="cpu")
    optimizer = torch.optim.Adam([*model.parameters(), towers.bce_bias], lr=0.05)
    losses = [train_step(model, optimizer, {}, toy_pairs(), np.arange(8), torch.device("cpu"),
                         cfg, towers)[0] for _ in range(60)]
    assert losses[-1] < 0.25 * losses[0]
    with torch.no_grad():
        u = torch.nn.functional.normalize(model.project("user", torch.eye(4)), dim=1)
        m = torch.nn.functional.normalize(model.project("movie", torch.eye(4)), dim=1)
    cos = u @ m.T
    assert cos.argmax(dim=1).tolist() == [0, 1, 2, 3]
    if loss == "hybrid":  # the logistic part puts every dislike below every like
        liked, disliked = cos.diagonal(), cos[np.arange(4), (np.arange(4) + 1) % 4]
        assert disliked.max() < liked.min()


def test_hybrid_softmax_positives_are_the_high_ratings():
    """positive_rating decides which likes the softmax pulls: a 3.0 is a like (label +1) but
    not a positive at 4.0, so with the logistic part off (weight 0) it gives no gradient."""
    from tagrec_cli.config import TrainConfig
    from tagrec_cli.train.batches import Pairs
    from tagrec_cli.train.step import BatchTowers, train_step

    model = ToyModel()
    towers = BatchTowers(model, {}, torch.device("cpu"), 4,
                         pooled={"user": torch.eye(4), "movie": torch.eye(4)})
    pairs = Pairs(np.arange(4), np.arange(4), np.ones(4, dtype=np.float32),
                  np.full(4, 3.0, dtype=np.float32))
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    cfg = TrainConfig(loss="hybrid", bce_weight=0.0, positive_rating=4.0, device="cpu")
    loss, _ = train_step(model, optimizer, {}, pairs, np.arange(4), torch.device("cpu"), cfg,
                         towers)
    assert loss == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    cfg = TrainConfig(loss="hybrid", bce_weight=0.0, positive_rating=3.0, device="cpu")
    loss, _ = train_step(model, optimizer, {}, pairs, np.arange(4), torch.device("cpu"), cfg,
                         towers)
    assert loss > 0 and not all(torch.equal(a, b) for a, b in
                                zip(before, model.parameters(), strict=True))


def test_batch_towers_show_chosen_movies_as_never_rated():
    """The unrated mask swaps in the never-rated side features for those movies only."""
    from tagrec_cli.train.step import BatchTowers

    model = ToyModel(extra=2)
    side = {"user": torch.zeros(4, 2), "movie": torch.ones(4, 2)}
    unrated = torch.full((4, 2), 7.0)
    towers = BatchTowers(model, {}, torch.device("cpu"), 4,
                         pooled={"user": torch.eye(4), "movie": torch.eye(4)}, side=side,
                         unrated=unrated)
    rows = np.array([0, 2, 3])
    _, plain, _ = towers(rows, rows, None)
    _, mixed, _ = towers(rows, rows, np.array([False, True, False]))
    with torch.no_grad():
        want = model.project("movie", torch.eye(4)[rows[1:2]], unrated[:1])
    assert torch.equal(mixed[[0, 2]], plain[[0, 2]])
    assert torch.allclose(mixed[1], want[0]) and not torch.allclose(mixed[1], plain[1])
    # and users shown without history get the `unknown` rows, the others keep theirs
    unknown = torch.full((4, 2), -5.0)
    towers = BatchTowers(model, {}, torch.device("cpu"), 4,
                         pooled={"user": torch.eye(4), "movie": torch.eye(4)}, side=side,
                         unrated=unrated, unknown=unknown)
    users, _, _ = towers(rows, rows, None, np.array([True, False, False]))
    plain_users, _, _ = towers(rows, rows, None, None)
    with torch.no_grad():
        want = model.project("user", torch.eye(4)[rows[:1]], unknown[:1])
    assert torch.allclose(users[0], want[0]) and torch.equal(users[1:], plain_users[1:])


def test_balanced_logistic_loss_by_hand():
    from tagrec_cli.towers.losses import balanced_logistic_loss

    users = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    movies = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # cosines 1 and 0
    labels = torch.tensor([1.0, -1.0])
    # logits 1 / 0.5 + 0 = 2 and 0; like weight 0.5 / 0.75, dislike 0.5 / 0.25:
    # mean(2/3 * log(1 + e^-2), 2 * log(1 + e^0)) = (0.084619 + 1.386294) / 2 = 0.735457
    got = balanced_logistic_loss(users, movies, labels, torch.tensor(0.0), 0.5, 0.75)
    assert got.item() == pytest.approx(0.735457, abs=1e-5)


@pytest.mark.parametrize("loss, candidates", [("hybrid", [0, 1]), ("softmax", [0, 1, 2])])
def test_softmax_candidates(loss, candidates):
    """hybrid ranks each positive against the batch's positive movies only; softmax against
    every movie of the batch, so the disliked movie 2 is a negative there too."""
    from tagrec_cli.config import TrainConfig
    from tagrec_cli.towers.losses import in_batch_softmax_loss
    from tagrec_cli.train.batches import Pairs
    from tagrec_cli.train.step import BatchTowers, train_step

    torch.manual_seed(1)
    model = ToyModel()
    pooled = torch.eye(4)
    towers = BatchTowers(model, {}, torch.device("cpu"), 4,
                         pooled={"user": pooled, "movie": pooled})
    # user 0 likes movie 0, user 1 likes movie 1, user 0 dislikes movie 2
    pairs = Pairs(np.array([0, 1, 0]), np.array([0, 1, 2]),
                  np.array([1, 1, -1], dtype=np.float32), np.array([5, 5, 1], dtype=np.float32))
    cfg = TrainConfig(loss=loss, bce_weight=0.0, temperature=0.5, device="cpu")
    with torch.no_grad():
        users = model.project("user", pooled[[0, 1]])
        movies = model.project("movie", pooled[candidates])
        want = in_batch_softmax_loss(users, movies, torch.tensor([0, 1]),
                                     torch.zeros(2, len(candidates), dtype=torch.bool), 0.5)
    got, _ = train_step(model, torch.optim.SGD(model.parameters(), lr=0.0), {}, pairs,
                        np.arange(3), torch.device("cpu"), cfg, towers)
    assert got == pytest.approx(want.item(), abs=1e-6)


def test_hybrid_masks_a_users_other_positives():
    """User 0 has two positives (movies 0 and 1) in the batch: in each of its rows the other
    one is masked, not counted as a negative; user 1's row keeps both as negatives."""
    from tagrec_cli.config import TrainConfig
    from tagrec_cli.towers.losses import in_batch_softmax_loss
    from tagrec_cli.train.batches import Pairs
    from tagrec_cli.train.step import BatchTowers, train_step

    torch.manual_seed(2)
    model = ToyModel()
    pooled = torch.eye(4)
    towers = BatchTowers(model, {}, torch.device("cpu"), 4,
                         pooled={"user": pooled, "movie": pooled})
    pairs = Pairs(np.array([0, 0, 1]), np.array([0, 1, 2]), np.ones(3, dtype=np.float32),
                  np.array([5, 4, 5], dtype=np.float32))
    cfg = TrainConfig(loss="hybrid", bce_weight=0.0, temperature=0.5, device="cpu")
    with torch.no_grad():
        users = model.project("user", pooled[[0, 0, 1]])
        movies = model.project("movie", pooled[[0, 1, 2]])
        mask = torch.tensor([[False, True, False], [True, False, False],
                             [False, False, False]])
        want = in_batch_softmax_loss(users, movies, torch.tensor([0, 1, 2]), mask, 0.5)
        unmasked = in_batch_softmax_loss(users, movies, torch.tensor([0, 1, 2]),
                                         torch.zeros(3, 3, dtype=torch.bool), 0.5)
    got, _ = train_step(model, torch.optim.SGD(model.parameters(), lr=0.0), {}, pairs,
                        np.arange(3), torch.device("cpu"), cfg, towers)
    assert got == pytest.approx(want.item(), abs=1e-6)
    assert abs(want.item() - unmasked.item()) > 1e-3  # the mask matters here
