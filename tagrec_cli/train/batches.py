"""What one training step is fed: the pairs as token-table rows, an epoch's batches, the
softmax's positives, the length groups a batch is encoded in, and the learning-rate factor.
Pure numpy over the ingest pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from tagrec_cli import artifacts
from tagrec_cli.config import TrainConfig
from tagrec_cli.store import ingested
from tagrec_cli.towers.tokens import TokenTable


@dataclass
class Pairs:
    user_rows: np.ndarray  # (P,) rows into the user TokenTable
    movie_rows: np.ndarray  # (P,) rows into the movie TokenTable
    labels: np.ndarray  # (P,) +1 / -1
    ratings: np.ndarray  # (P,) the rating behind the label


def load_pairs(workdir: Path, tables: dict[str, TokenTable]) -> dict[str, Pairs]:
    """The ingest pairs of each split ("train", "valid") as rows of the token tables."""
    df = ingested.read_table(workdir, artifacts.PAIRS_FILE,
                             ["userId", "movieId", "rating", "label", "split"])
    out = {}
    for split in ("train", "valid"):
        part = df.filter(pl.col("split") == split)
        out[split] = Pairs(tables["user"].row_of(part["userId"].to_numpy()),
                           tables["movie"].row_of(part["movieId"].to_numpy()),
                           part["label"].to_numpy().astype(np.float32),
                           part["rating"].to_numpy().astype(np.float32))
    return out


def softmax_positives(cfg: TrainConfig, labels: np.ndarray, ratings: np.ndarray) -> np.ndarray:
    """(P,) bool: the pairs the softmax pulls together: likes, rated >= positive_rating for
    the hybrid loss."""
    threshold = cfg.positive_rating if cfg.loss == "hybrid" else 0.0
    return (labels > 0) & (ratings >= threshold)


class Schedule:
    """Each epoch's batches, `epochs` of them or fewer: with a budget of max_steps batches
    (0 = none) the epoch that reaches it is cut short there and no later one is run. An
    epoch is drawn whole from the stream, so the batches of a run the budget does not touch
    are those of a run without one.

    draw(rng) gives one epoch's batches; keep(batches) this process's share (distributed.shard).
    Every epoch is drawn once here, to count its batches (the learning-rate schedule needs the
    total, and a grouped epoch's count depends on its draw), and kept only as the stream's
    state before it; epoch(e) draws it again from that state. So a run holds the epochs being
    trained and planned (the planner works one ahead), not all of them: 10 epochs of
    MovieLens-25M's 28M pairs are 2.3 GB of indices.
    Example: 3 batches an epoch, 10 epochs, max_steps 7 -> epochs of 3, 3 and 1 batches
    """

    def __init__(self, epochs: int, max_steps: int, rng: np.random.Generator,
                 draw: Callable[[np.random.Generator], list[np.ndarray]],
                 keep: Callable[[list], list] = lambda batches: batches) -> None:
        self.draw, self.keep = draw, keep
        self.bit_generator = type(rng.bit_generator)
        self.states: list[dict] = []  # the bit generator's state before each epoch's draw
        self.cut: list[int] = []  # batches of each epoch's draw that run, before keep
        left = max_steps or None
        for _ in range(epochs):
            self.states.append(rng.bit_generator.state)  # a fresh dict: a copy
            n = len(draw(rng))
            if left is not None:
                n = min(n, left)
                left -= n
            self.cut.append(n)
            if left == 0:
                break
        # this process's steps per epoch (keep may refuse: too few batches to share)
        self.steps = [len(keep(list(range(n)))) for n in self.cut]

    def __len__(self) -> int:
        return len(self.cut)

    def epoch(self, index: int) -> list[np.ndarray]:
        """This process's batches of epoch `index` (0-based), as the first draw gave them."""
        rng = np.random.Generator(self.bit_generator())
        rng.bit_generator.state = self.states[index]
        return self.keep(self.draw(rng)[:self.cut[index]])


def epoch_batches(user_rows: np.ndarray, batch_size: int, rng: np.random.Generator,
                  group_by_user: bool) -> list[np.ndarray]:
    """Pair indices for one epoch, cut into batches of at most batch_size pairs.

    group_by_user: users in random order, each user's pairs kept together and whole users
    packed into a batch, so each user document is encoded once per epoch (a user with more
    than batch_size pairs is split). Otherwise a plain shuffle.
    Example: users [7, 7, 9], batch 2, grouped -> [[0, 1], [2]] or [[2], [0, 1]]
    """
    perm = rng.permutation(len(user_rows))
    if not group_by_user:
        return [perm[lo:lo + batch_size] for lo in range(0, len(perm), batch_size)]
    user_rank = rng.permutation(int(user_rows.max()) + 1 if len(user_rows) else 0)
    perm = perm[np.argsort(user_rank[user_rows[perm]], kind="stable")]
    # Runs of one user in perm order: starts[i]..starts[i + 1]
    users = user_rows[perm]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]).tolist() + [len(perm)]
    batches, lo = [], 0
    for start, end in zip(starts[:-1], starts[1:], strict=True):
        if end - lo > batch_size and start > lo:  # this user would overflow: cut before it
            batches.append(perm[lo:start])
            lo = start
        while end - lo > batch_size:  # a user with more pairs than a batch
            batches.append(perm[lo:lo + batch_size])
            lo += batch_size
    if lo < len(perm):
        batches.append(perm[lo:])
    return batches


def length_groups(lengths: np.ndarray, max_groups: int = 4) -> list[np.ndarray]:
    """Split items into at most max_groups groups of similar length, minimising padding.

    Cost of a group = its size x its longest length (what padding makes us encode); the
    optimal split of the length-sorted items into contiguous groups is a small DP.
    Example: lengths [6, 40, 6, 7], 2 groups -> [[0, 2, 3], [1]] (cost 3*7 + 40 = 61, not 160)
    """
    order = np.argsort(lengths, kind="stable")
    sorted_len = lengths[order].astype(np.int64)
    n = len(order)
    if n <= 1 or max_groups <= 1:
        return [order] if n else []
    idx = np.arange(n)
    # cost[i, j] = (j - i + 1) * sorted_len[j] for a group i..j (inf when i > j)
    never = np.iinfo(np.int64).max // 4
    cost = np.where(idx[:, None] <= idx[None, :],
                    (idx[None, :] - idx[:, None] + 1) * sorted_len[None, :], never)
    best = cost[0].copy()  # best[j]: cheapest split of 0..j into g groups
    cuts = [np.zeros(n, dtype=np.int64)]
    for _ in range(1, max_groups):
        # new[j] = min(best[j], min over i >= 1 of best[i - 1] + cost[i, j])
        candidate = best[:-1, None] + cost[1:, :]  # (n - 1, n): rows i = 1..n-1
        i_best = candidate.argmin(axis=0)
        new = np.minimum(best, candidate[i_best, idx])
        cuts.append(np.where(candidate[i_best, idx] < best, i_best + 1, -1))
        best = new
    # Walk back the cuts from the end.
    groups, j, g = [], n - 1, max_groups - 1
    while j >= 0:
        while g > 0 and cuts[g][j] == -1:
            g -= 1
        i = int(cuts[g][j]) if g > 0 else 0
        groups.append(order[i:j + 1])
        j, g = i - 1, g - 1
    return groups[::-1]


def lr_factor(step: int, total: int, warmup: float) -> float:
    """Linear warm-up over the first `warmup` share of steps, then linear decay to 0."""
    warm = max(1, int(total * warmup))
    if step < warm:
        return (step + 1) / warm
    return max(0.0, (total - step) / max(1, total - warm))
