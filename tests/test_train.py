"""train/: batching, the learning-rate schedule and one training step on a toy model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tagrec_cli.train.batches import Schedule, epoch_batches, lr_factor


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


def test_schedule_cuts_the_epoch_that_reaches_the_budget():
    def draw(rng):  # an epoch of 3 batches, each a number drawn from the stream
        return [np.array([rng.integers(1 << 30)]) for _ in range(3)]

    plain = np.random.default_rng(5)  # what drawing every epoch in a row gives
    expected = [int(b[0]) for _ in range(3) for b in draw(plain)]
    # The example of the docstring: 3 batches an epoch, 10 epochs, budget 7.
    sched = Schedule(10, 7, np.random.default_rng(5), draw)
    assert [len(sched.epoch(e)) for e in range(len(sched))] == sched.steps == [3, 3, 1]
    assert [int(b[0]) for e in range(3) for b in sched.epoch(e)] == expected[:7]
    # A budget the epochs do not reach, exactly reached, or none: every epoch whole.
    for budget in (100, 6, 0):
        assert Schedule(2, budget, np.random.default_rng(5), draw).steps == [3, 3]


def test_schedule_draws_each_epoch_again_as_a_run_of_draws_would():
    # grouped epochs (their batch count depends on the draw), in any order, with a share
    users = np.repeat(np.arange(40), np.random.default_rng(1).integers(1, 9, 40))

    def draw(rng):
        return epoch_batches(users, 16, rng, group_by_user=True)

    plain = np.random.default_rng(3)
    epochs = [draw(plain)[::2] for _ in range(4)]  # keep: every other batch
    sched = Schedule(4, 0, np.random.default_rng(3), draw, keep=lambda b: b[::2])
    assert sched.steps == [len(e) for e in epochs]
    for e in (2, 0, 3, 1, 2):
        assert all(np.array_equal(a, b) for a, b in zip(sched.epoch(e), epochs[e], strict=True))


def test_lr_factor_warms_up_then_decays():
    # 100 steps, 10% warm-up: step 0 -> 1/10, step 9 -> 1, then (100 - step) / 90
    assert lr_factor(0, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(55, 100, 0.1) == pytest.approx(0.5)
    assert lr_factor(100, 100, 0.1) == 0.0


class ToyModel(torch.nn.Module):  # stands in for TwoTower: pooled outputs are looked up
    def __init__(self, extra: int = 0):
        super().__init__()
        self.heads = torch.nn.ModuleDict({"user": torch.nn.Linear(4 + extra, 4),
                                          "movie": torch.nn.Linear(4 + extra, 4)})

    def project(self, side, pooled, features=None):
        if features is not None:
            pooled = torch.cat([pooled, features], dim=1)
        return self.heads[side](pooled)


def toy_towers(model, **kwargs):
    """BatchTowers over the toy model, with the 4 x 4 identity as every pooled output."""
    from tagrec_cli.train.step import BatchTowers

    return BatchTowers(model, torch.device("cpu"),
                       pooled={"user": torch.eye(4), "movie": torch.eye(4)}, **kwargs)


def one_step(towers, optimizer, pairs, batch, cfg):
    """A one-batch epoch plan on the CPU, fed to train_step: (loss as a float, encoded)."""
    from tagrec_cli.train.plan import plan_epoch
    from tagrec_cli.train.step import Feed, train_step

    plan = plan_epoch(cfg, pairs, [batch])
    feed = Feed(plan, torch.device("cpu"), skip=np.zeros(1, dtype=bool))
    loss, encoded = train_step(towers, optimizer, feed.inputs(0), cfg)
    return float(loss), encoded


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

    torch.manual_seed(0)
    model = ToyModel()
    towers = toy_towers(model)
    cfg = TrainConfig(loss=loss, temperature=0.1, device="cpu")
    optimizer = torch.optim.Adam([*model.parameters(), towers.bce_bias], lr=0.05)
    losses = [one_step(towers, optimizer, toy_pairs(), np.arange(8), cfg)[0]
              for _ in range(60)]
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

    model = ToyModel()
    towers = toy_towers(model)
    pairs = Pairs(np.arange(4), np.arange(4), np.ones(4, dtype=np.float32),
                  np.full(4, 3.0, dtype=np.float32))
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    cfg = TrainConfig(loss="hybrid", bce_weight=0.0, positive_rating=4.0, device="cpu")
    loss, _ = one_step(towers, optimizer, pairs, np.arange(4), cfg)
    assert loss == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    cfg = TrainConfig(loss="hybrid", bce_weight=0.0, positive_rating=3.0, device="cpu")
    loss, _ = one_step(towers, optimizer, pairs, np.arange(4), cfg)
    assert loss > 0 and not all(torch.equal(a, b) for a, b in
                                zip(before, model.parameters(), strict=True))


def test_batch_towers_show_chosen_movies_as_never_rated():
    """The unrated mask swaps in the never-rated side features for those movies only."""

    model = ToyModel(extra=2)
    side = {"user": torch.zeros(4, 2), "movie": torch.ones(4, 2)}
    unrated = torch.full((4, 2), 7.0)
    towers = toy_towers(model, side=side, unrated=unrated)
    rows = torch.tensor([0, 2, 3])
    _, plain, _ = towers(rows, rows, None)
    _, mixed, _ = towers(rows, rows, torch.tensor([False, True, False]))
    with torch.no_grad():
        want = model.project("movie", torch.eye(4)[rows[1:2]], unrated[:1])
    assert torch.equal(mixed[[0, 2]], plain[[0, 2]])
    assert torch.allclose(mixed[1], want[0]) and not torch.allclose(mixed[1], plain[1])
    # and users shown without history get the `unknown` rows, the others keep theirs
    unknown = torch.full((4, 2), -5.0)
    towers = toy_towers(model, side=side, unrated=unrated, unknown=unknown)
    users, _, _ = towers(rows, rows, None, torch.tensor([True, False, False]))
    plain_users, _, _ = towers(rows, rows, None, None)
    with torch.no_grad():
        want = model.project("user", torch.eye(4)[rows[:1]], unknown[:1])
    assert torch.allclose(users[0], want[0]) and torch.equal(users[1:], plain_users[1:])


@pytest.mark.parametrize("loss, candidates", [("hybrid", [0, 1]), ("softmax", [0, 1, 2])])
def test_softmax_candidates(loss, candidates):
    """hybrid ranks each positive against the batch's positive movies only; softmax against
    every movie of the batch, so the disliked movie 2 is a negative there too."""
    from tagrec_cli.config import TrainConfig
    from tagrec_cli.towers.losses import in_batch_softmax_loss
    from tagrec_cli.train.batches import Pairs

    torch.manual_seed(1)
    model = ToyModel()
    pooled = torch.eye(4)
    towers = toy_towers(model)
    # user 0 likes movie 0, user 1 likes movie 1, user 0 dislikes movie 2
    pairs = Pairs(np.array([0, 1, 0]), np.array([0, 1, 2]),
                  np.array([1, 1, -1], dtype=np.float32), np.array([5, 5, 1], dtype=np.float32))
    cfg = TrainConfig(loss=loss, bce_weight=0.0, temperature=0.5, device="cpu")
    with torch.no_grad():
        users = model.project("user", pooled[[0, 1]])
        movies = model.project("movie", pooled[candidates])
        want = in_batch_softmax_loss(users, movies, torch.tensor([0, 1]),
                                     torch.zeros(2, len(candidates), dtype=torch.bool), 0.5)
    got, _ = one_step(towers, torch.optim.SGD(model.parameters(), lr=0.0), pairs,
                      np.arange(3), cfg)
    assert got == pytest.approx(want.item(), abs=1e-6)


def test_hybrid_masks_a_users_other_positives():
    """User 0 has two positives (movies 0 and 1) in the batch: in each of its rows the other
    one is masked, not counted as a negative; user 1's row keeps both as negatives."""
    from tagrec_cli.config import TrainConfig
    from tagrec_cli.towers.losses import in_batch_softmax_loss
    from tagrec_cli.train.batches import Pairs

    torch.manual_seed(2)
    model = ToyModel()
    pooled = torch.eye(4)
    towers = toy_towers(model)
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
    got, _ = one_step(towers, torch.optim.SGD(model.parameters(), lr=0.0), pairs,
                      np.arange(3), cfg)
    assert got == pytest.approx(want.item(), abs=1e-6)
    assert abs(want.item() - unmasked.item()) > 1e-3  # the mask matters here


@pytest.mark.parametrize("args, want", [([], False), (["--compile"], True)])
def test_train_compile_option_reaches_the_config(args, want, monkeypatch, tmp_path):
    """`train --compile` sets TrainConfig.compile (off by default)."""
    import tagrec_cli.train
    from tagrec_cli.errors import TagrecError
    from tests.helpers import invoke

    seen = []

    def fake_run_train(workdir, model_cfg, cfg, **kwargs):
        seen.append(cfg)
        raise TagrecError("stopped here")

    monkeypatch.setattr(tagrec_cli.train, "run_train", fake_run_train)
    r = invoke(["train", "--device", "cpu", *args], tmp_path)
    assert r.exit_code == 1 and "stopped here" in r.output
    assert [cfg.compile for cfg in seen] == [want]


def test_compile_compiles_the_encoder_and_heads_in_place(ingested_sample_300pairs,
                                                          copy_workspace, tiny_bert,
                                                          monkeypatch):
    """With compile on, run_train compiles the encoder and both heads (in place, with dynamic
    shapes). torch.compile itself takes minutes on this 2-core CPU, so Module.compile is
    recorded here instead of run."""
    from tagrec_cli.config import ModelConfig, TrainConfig
    from tagrec_cli.train import run_train

    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile",
                        lambda self, **kw: compiled.append((type(self).__name__, kw)))
    work = copy_workspace(ingested_sample_300pairs)
    run_train(work, ModelConfig(base_model=str(tiny_bert), dim=16),
              TrainConfig(epochs=1, device="cpu", compile=True))
    assert sorted(name for name, _ in compiled) == ["BertModel", "Linear", "Linear"]
    assert all(kw == {"dynamic": True} for _, kw in compiled)
    compiled.clear()
    run_train(work, ModelConfig(base_model=str(tiny_bert), dim=16),
              TrainConfig(epochs=1, device="cpu"))
    assert compiled == []
