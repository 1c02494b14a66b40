"""Every step of an epoch prepared ahead, in vectorised numpy: what each step feeds the towers.

A step used to work out its own inputs while it ran (np.unique of its users and movies, the
softmax's candidates and masks, the cold-dropout draws, the length groups). `plan_epoch` does
that for a whole epoch at once, with one sort per side instead of one np.unique per step, so
the training loop only slices. The values are exactly those the per-step code gave (same
unique order, same draws from the same random stream, same groups; tests/test_plan.py checks
it against that code).

Flat arrays, cut per step: step s owns [off[s], off[s + 1]) of each array with that offset.

    per pair      (pair_off):  labels, user_inverse, movie_inverse (indices into the step's
                                users / movies)
    per document  (user_off, movie_off): users, movies (distinct rows, ascending, as np.unique)
    per positive  (pos_off):   pos_user (the step's user index), pos_pair (the step's pair
                               index), pos_col (its candidate column)
    per candidate (cand_off):  cand (the step's movie index), cand_log_q
    per masked entry (mask_off): mask_pos, mask_col: other_positives[pos, col] is True
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from tagrec_cli.config import TrainConfig
from tagrec_cli.train.batches import Pairs, length_groups, softmax_positives


@dataclass
class Groups:
    """One side's length groups for every step (fine-tuning only).

    order (D,): per step, the step's document indices concatenated group after group;
    sizes[s] / widths[s]: step s's groups, their document counts and longest token length;
    restore (D,): per step, argsort of its `order` (back from group order to the step's).
    """

    order: np.ndarray
    restore: np.ndarray
    sizes: list[list[int]]
    widths: list[list[int]]


@dataclass
class EpochPlan:
    batches: list[np.ndarray]  # the pair indices of each step (what was fed)
    pair_off: np.ndarray
    labels: np.ndarray
    user_inverse: np.ndarray
    movie_inverse: np.ndarray
    user_off: np.ndarray
    users: np.ndarray
    movie_off: np.ndarray
    movies: np.ndarray
    pos_off: np.ndarray
    pos_user: np.ndarray
    pos_col: np.ndarray
    pos_pair: np.ndarray
    cand_off: np.ndarray
    cand: np.ndarray
    cand_log_q: np.ndarray | None
    mask_off: np.ndarray
    mask_pos: np.ndarray
    mask_col: np.ndarray
    unrated: np.ndarray | None  # (movies,) bool: shown with never-rated side features
    unknown: np.ndarray | None  # (users,) bool: shown with a no-history user's features
    has_target: np.ndarray  # (steps,) bool: the step has a softmax positive
    groups: dict[str, Groups] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return len(self.batches)

    def encoded(self, step: int) -> int:
        """Documents step `step` encodes (its distinct users + movies)."""
        return int(self.user_off[step + 1] - self.user_off[step]
                   + self.movie_off[step + 1] - self.movie_off[step])


def offsets(counts: np.ndarray) -> np.ndarray:
    """(S,) counts -> (S + 1,) offsets. Example: [2, 0, 3] -> [0, 2, 2, 5]"""
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def unique_per_step(step: np.ndarray, values: np.ndarray, n_steps: int,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """np.unique(values[step == s], return_inverse=True) for every s at once.

    step (B,) non-decreasing step of each value, values (B,) >= 0.
    Returns (off (S + 1,), unique (D,) each step's distinct values ascending, inverse (B,)
    each value's index among its step's). Example: step [0, 0, 1], values [5, 3, 5] ->
    off [0, 2, 3], unique [3, 5, 5], inverse [1, 0, 0]
    """
    span = int(values.max()) + 1 if len(values) else 1
    keys, inverse = np.unique(step * span + values, return_inverse=True)
    off = offsets(np.bincount(keys // span, minlength=n_steps))
    return off, keys % span, inverse.reshape(-1) - off[step]


def plan_epoch(cfg: TrainConfig, pairs: Pairs, batches: list[np.ndarray],
               lengths: dict[str, np.ndarray] | None = None,
               log_q: np.ndarray | None = None,
               rng: np.random.Generator | None = None) -> EpochPlan:
    """The inputs of every step of `batches` (pair indices), in step order.

    lengths: per side the token length of each table row, for fine-tuning's length groups
    (None with a frozen encoder). log_q: (n_movies,) the softmax's popularity correction.
    rng: the cold-dropout stream; per step it draws the movies, then the users, as the
    per-step code did, so the stream continues identically into the next epoch.
    """
    n_steps = len(batches)
    idx = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
    pair_off = offsets(np.array([len(b) for b in batches], dtype=np.int64))
    step = np.repeat(np.arange(n_steps), np.diff(pair_off))  # (B,) step of each pair
    user_off, users, user_inverse = unique_per_step(step, pairs.user_rows[idx], n_steps)
    movie_off, movies, movie_inverse = unique_per_step(step, pairs.movie_rows[idx], n_steps)
    labels = pairs.labels[idx]

    # The softmax's positives, in pair order within each step.
    positive = np.flatnonzero(softmax_positives(cfg, labels, pairs.ratings[idx]))  # (P,)
    pos_step = step[positive]
    pos_off = offsets(np.bincount(pos_step, minlength=n_steps))
    pos_user = user_inverse[positive]
    movie_global = movie_off[pos_step] + movie_inverse[positive]  # index into `movies`
    if cfg.loss == "softmax":  # every movie of the step is a candidate
        cand_off, cand_global = movie_off, np.arange(len(movies))
        pos_col = movie_inverse[positive]
    else:  # the movies of the step's positives
        cand_global, col_global = np.unique(movie_global, return_inverse=True)
        cand_off = offsets(np.bincount(np.searchsorted(movie_off, cand_global, "right") - 1,
                                       minlength=n_steps))
        pos_col = col_global.reshape(-1) - cand_off[pos_step]
    cand_step = np.repeat(np.arange(n_steps), np.diff(cand_off))
    cand = cand_global - movie_off[cand_step]
    cand_log_q = None if log_q is None else log_q[movies[cand_global]].astype(np.float32)

    mask_off, mask_pos, mask_col = other_positives(pos_step, pos_off, pos_user, pos_col,
                                                   n_steps)
    unrated = unknown = None
    if rng is not None and cfg.cold_dropout > 0:
        unrated, unknown = cold_draws(rng, cfg.cold_dropout, movie_off, user_off)
    plan = EpochPlan(list(batches), pair_off, labels, user_inverse, movie_inverse, user_off,
                     users, movie_off, movies, pos_off, pos_user, pos_col,
                     positive - pair_off[pos_step], cand_off, cand,
                     cand_log_q, mask_off, mask_pos, mask_col, unrated, unknown,
                     np.diff(pos_off) > 0)
    if lengths is not None:
        plan.groups = {side: plan_groups(lengths[side][rows], off, cfg.length_groups)
                       for side, rows, off in (("user", users, user_off),
                                               ("movie", movies, movie_off))}
    return plan


def other_positives(pos_step: np.ndarray, pos_off: np.ndarray, pos_user: np.ndarray,
                    pos_col: np.ndarray, n_steps: int,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The True entries of each step's (P, C) other_positives mask, as (off, pos, col).

    Entry (p, c): candidate c is the target of another positive q of p's user in the same
    step (not a negative for p), c != p's own target. Example: one step, positives' users
    [0, 0, 1], columns [0, 1, 2] -> entries (0, 1), (1, 0)
    """
    # Positives sorted by (step, user): each run is one user's positives in one step.
    key = pos_step * (int(pos_user.max()) + 1 if len(pos_user) else 1) + pos_user
    order = np.argsort(key, kind="stable")
    run_start = np.flatnonzero(np.r_[True, key[order][1:] != key[order][:-1]])
    run_len = np.diff(np.r_[run_start, len(order)])
    # Every ordered pair (p, q) within a run: p repeated run_len times, q running over it.
    per = np.repeat(run_len, run_len)  # (P,) length of each sorted positive's run
    first = np.repeat(run_start, run_len)  # (P,) where its run starts
    p = np.repeat(order, per)
    q = order[np.repeat(first, per) + (np.arange(per.sum()) - np.repeat(offsets(per)[:-1],
                                                                         per))]
    col = pos_col[q]
    keep = col != pos_col[p]
    p, col = p[keep], col[keep]  # in step order, as the runs are
    off = offsets(np.bincount(pos_step[p], minlength=n_steps))
    step = np.repeat(np.arange(n_steps), np.diff(off))
    return off, p - pos_off[step], col


def cold_draws(rng: np.random.Generator, share: float, movie_off: np.ndarray,
               user_off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per step rng.random(movies) then rng.random(users), < share, drawn as one array.

    Generator.random(a) followed by .random(b) gives the values of .random(a + b).
    """
    n_movies, n_users = np.diff(movie_off), np.diff(user_off)
    start = offsets(n_movies + n_users)[:-1]  # (S,) where each step's draws begin
    draws = rng.random(int(n_movies.sum() + n_users.sum())) < share
    movie_step = np.repeat(np.arange(len(n_movies)), n_movies)
    user_step = np.repeat(np.arange(len(n_users)), n_users)
    unrated = draws[start[movie_step] + np.arange(len(movie_step)) - movie_off[movie_step]]
    unknown = draws[start[user_step] + n_movies[user_step]
                    + np.arange(len(user_step)) - user_off[user_step]]
    return unrated, unknown


def plan_groups(lengths: np.ndarray, off: np.ndarray, max_groups: int) -> Groups:
    """Per step, batches.length_groups of its documents' lengths (the same DP, per step)."""
    order, restore = np.empty(len(lengths), np.int64), np.empty(len(lengths), np.int64)
    sizes, widths = [], []
    for lo, hi in zip(off[:-1].tolist(), off[1:].tolist(), strict=True):
        step_len = lengths[lo:hi]
        groups = length_groups(step_len, max_groups)
        joined = np.concatenate(groups) if groups else np.zeros(0, np.int64)
        order[lo:hi] = joined
        restore[lo:hi] = np.argsort(joined)
        sizes.append([len(g) for g in groups])
        widths.append([int(step_len[g].max()) for g in groups])
    return Groups(order, restore, sizes, widths)


class Planner:
    """Each epoch's plan (plan_epoch), made in a background thread while the epoch before it
    trains (and the first while the untrained heads are evaluated). One worker makes the
    plans in epoch order, so the cold-dropout stream is drawn as a plain loop would."""

    def __init__(self, make: Callable[[int], EpochPlan], epochs: int):
        self.make, self.epochs = make, epochs
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="tagrec-plan")
        self.epoch, self.next = 1, self.pool.submit(make, 1)

    def take(self, epoch: int) -> EpochPlan:
        """Epoch `epoch`'s plan (epochs are taken in order 1, 2, ...); starts the next one."""
        if epoch != self.epoch:
            raise ValueError(f"plans are taken in order: epoch {self.epoch}, not {epoch}")
        plan = self.next.result()
        self.epoch += 1
        if self.epoch <= self.epochs:
            self.next = self.pool.submit(self.make, self.epoch)
        return plan

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
