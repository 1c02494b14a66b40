"""What one training run holds: its settings, model, data and progress (Run), and what it
returns (TrainResult). Built by prepare.py, stepped by loop.py, saved by checkpoint.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tagrec_cli.config import TrainConfig
from tagrec_cli.towers.model import TwoTower
from tagrec_cli.towers.tokens import TokenTable
from tagrec_cli.train.batches import Pairs, Schedule
from tagrec_cli.train.distributed import Dist
from tagrec_cli.train.plan import Planner
from tagrec_cli.train.step import DeviceTokens

OnStep = Callable[[int, int, int, float, float], None]  # epoch, step, steps, loss, seqs/s


@dataclass
class TrainResult:
    model_dir: Path | None  # None when interrupted before the first epoch finished
    epochs: list[dict[str, Any]] = field(default_factory=list)  # epoch 0 = untrained heads
    best_epoch: int | None = None
    interrupted: bool = False  # stopped early: Ctrl-C, or diverged
    seconds: float = 0.0
    # Stopped early while model_dir held a finished model from before: that one is kept,
    # and this run's best epoch (best_epoch, epochs) was not saved; a finished run always
    # replaces it.
    kept_previous: bool = False


@dataclass
class Run:
    """Everything one training run holds, built by setup() and optimise()."""

    workdir: Path
    out_dir: Path
    cfg: TrainConfig
    dist: Dist
    model: TwoTower
    tokenizer: Any
    tables: dict[str, TokenTable]
    pairs: dict[str, Pairs]  # "train", "valid"
    side: dict[str, torch.Tensor] | None  # per tower (N, F) side features, or None
    unrated: torch.Tensor | None  # movies' features as if never rated (N, F)
    unknown: torch.Tensor | None  # users' features as if without history (U, F)
    settings: dict[str, Any]  # saved in the model's config.json
    result: TrainResult
    pooled: dict[str, torch.Tensor] | None = None  # frozen encoder: (N, H) per tower
    towers: nn.Module | None = None  # BatchTowers, DDP-wrapped under torchrun
    bce_bias: torch.Tensor | None = None
    optimizer: torch.optim.Optimizer | None = None
    schedule: Schedule | None = None  # per epoch, its batches (drawn when planned)
    planner: Planner | None = None  # the epochs' plans, made one epoch ahead
    tokens: dict[str, DeviceTokens] | None = None  # fine-tuning: the token tables on the device
    log_q: np.ndarray | None = None  # (n_movies,) softmax popularity correction
    like_share: float = 0.5
    unrated_rng: np.random.Generator | None = None
    base_lrs: list[float] = field(default_factory=list)
    liked: Any = None  # collaborative model: (users, movies) CSR, towers/collab.py
    device_liked: Any = None  # the same for the step (collab.DeviceLiked)
    real_users: int = 0  # the user table's rows before the short-history users (prefix.py)
    # The best epoch so far is saved here, beside out_dir, and moves into out_dir when the
    # run ends (finish); a run killed outright leaves out_dir as it was.
    staging: Path | None = None
    previous: bool = False  # out_dir held a finished model when the run began

    @property
    def device(self) -> torch.device:
        return self.dist.device  # cuda:LOCAL_RANK under torchrun
