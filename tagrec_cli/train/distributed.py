"""Multi-process training under torchrun: the process group and the few collectives we use.

`torchrun --nproc-per-node N -m tagrec_cli train ...` starts N copies of the command and sets
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in each; `process_group` reads them.
Without them (a plain `tagrec train`) every helper here is a no-op on a world of one, so the
training code calls them unconditionally. We never start processes ourselves.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist

from tagrec_cli.errors import TagrecError

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Dist:
    """Where this process stands: rank r of `world`, computing on `device`."""

    device: torch.device
    rank: int = 0
    world: int = 1
    backend: str | None = None  # "nccl" / "gloo" under torchrun; None: no process group

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes files and reports progress."""
        return self.rank == 0

    @property
    def comm_device(self) -> torch.device:
        """NCCL moves only CUDA tensors, gloo CPU ones."""
        return self.device if self.backend == "nccl" else torch.device("cpu")


def launched() -> bool:
    """True when started by torchrun (or anything else that sets the env:// variables)."""
    return all(name in os.environ for name in TORCHRUN_ENV)


def launch_rank() -> int:
    """This process's rank under torchrun, 0 otherwise; readable before any process group."""
    return int(os.environ.get("RANK", "0")) if launched() else 0


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[Dist]:
    """Join torchrun's process group for the duration of the block (left again on errors).

    CUDA: rank r computes on cuda:LOCAL_RANK and talks over NCCL; CPU: gloo. A torchrun of
    one process still makes a group (so one GPU can check the NCCL path); it trains exactly
    like a plain run. Outside torchrun: a world of one and no group.
    """
    if not launched():
        yield Dist(device)
        return
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= (count := torch.cuda.device_count()):
            raise TagrecError(f"this node has {count} CUDA device(s), too few for process "
                              f"{local_rank + 1}: start at most {count} (--nproc-per-node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)  # NCCL and barriers use the current device
        backend = "nccl"
    else:
        backend = "gloo"
    tdist.init_process_group(backend, rank=rank, world_size=world)
    try:
        yield Dist(device, rank, world, backend)
    finally:
        tdist.destroy_process_group()


def barrier(dist: Dist) -> None:
    if dist.backend == "nccl":
        tdist.barrier(device_ids=[dist.device.index])
    elif dist.enabled:
        tdist.barrier()


@contextlib.contextmanager
def main_first(dist: Dist) -> Iterator[None]:
    """Run the block on rank 0, then on the others: for work that fills a shared cache.

    If rank 0 fails inside the block the others wait at the barrier until torchrun, seeing a
    failed worker, stops them all.
    """
    if not dist.main:
        barrier(dist)
    yield
    if dist.main:
        barrier(dist)


def shard(dist: Dist, batches: list[np.ndarray]) -> list[np.ndarray]:
    """This rank's batches of an epoch: batches[rank::world], after dropping the remainder.

    Every rank must run the same number of steps (each step all-reduces gradients, so a rank
    with an extra step would wait forever), so the last len(batches) % world batches of the
    shuffled epoch are dropped rather than repeated: shards stay disjoint, and the next
    epoch's shuffle drops other pairs.
    Example: 5 batches, 2 ranks -> rank 0 [b0, b2], rank 1 [b1, b3]; b4 is dropped
    """
    if dist.world == 1:
        return batches
    if len(batches) < dist.world:
        raise TagrecError(f"{len(batches)} training batches cannot be shared by {dist.world} "
                          "processes: lower --batch-size or start fewer processes")
    kept = len(batches) - len(batches) % dist.world
    return batches[:kept][dist.rank::dist.world]


def all_reduce_sum(dist: Dist, values: list[float]) -> list[float]:
    """Element-wise sum of `values` over the ranks (float64)."""
    if not dist.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=dist.comm_device)
    tdist.all_reduce(t)
    return t.tolist()


def all_gather_int(dist: Dist, value: int) -> list[int]:
    """[value of rank 0, value of rank 1, ...]."""
    if not dist.enabled:
        return [value]
    t = torch.tensor([value], dtype=torch.int64, device=dist.comm_device)
    out = [torch.empty_like(t) for _ in range(dist.world)]
    tdist.all_gather(out, t)
    return [int(x.item()) for x in out]


def any_rank(dist: Dist, flags: np.ndarray) -> np.ndarray:
    """(S,) bool: True where flags is True on at least one rank (one collective for all S).

    Example: rank 0 [True, False, False], rank 1 [False, False, True] -> [True, False, True]
    """
    flags = np.asarray(flags, dtype=bool)
    if not dist.enabled:
        return flags
    t = torch.from_numpy(flags.astype(np.int32)).to(dist.comm_device)
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return t.cpu().numpy().astype(bool)


def coverage(dist: Dist, fed: list[np.ndarray], n: int) -> dict[str, Any]:
    """How the index batches the ranks processed cover 0..n-1, counted from the indices.

    pairs_per_rank: indices each rank processed; union: distinct indices over all ranks;
    overlap: indices processed more than once (by two ranks, or twice by one); dropped: never.
    Example: rank 0 fed [[0, 1]], rank 1 fed [[2]], n 4 -> pairs_per_rank [2, 1], union 3,
    overlap 0, dropped 1
    """
    indices = np.concatenate(fed) if fed else np.zeros(0, dtype=np.int64)
    counts = torch.from_numpy(np.bincount(indices, minlength=n).astype(np.int64))  # (n,)
    if dist.enabled:
        counts = counts.to(dist.comm_device)
        tdist.all_reduce(counts)
    counts = counts.cpu().numpy()
    return {"steps_per_rank": len(fed), "pairs_per_rank": all_gather_int(dist, len(indices)),
            "union": int((counts > 0).sum()), "overlap": int((counts > 1).sum()),
            "dropped": int((counts == 0).sum())}


def map_rows(dist: Dist, fn: Callable[[np.ndarray], torch.Tensor],
             rows: np.ndarray) -> torch.Tensor:
    """fn(rows) -> (len(rows), D) CPU tensor, with each rank computing rows[rank::world].

    The pieces are all-gathered, so every rank returns the whole result, in rows order.
    Example: rows [a, b, c], 2 ranks -> rank 0 computes fn([a, c]), rank 1 fn([b])
    """
    if dist.world == 1:
        return fn(rows)
    part = fn(rows[dist.rank::dist.world])  # (n_rank, D)
    size = -(-len(rows) // dist.world)  # the largest shard; all_gather needs equal shapes
    padded = torch.zeros((max(size, 1), part.shape[1]), dtype=part.dtype,
                         device=dist.comm_device)
    padded[:len(part)] = part.to(dist.comm_device)
    pieces = [torch.empty_like(padded) for _ in range(dist.world)]
    tdist.all_gather(pieces, padded)
    out = torch.empty((len(rows), part.shape[1]), dtype=part.dtype)
    for rank, piece in enumerate(pieces):
        n = len(range(rank, len(rows), dist.world))
        out[rank::dist.world] = piece[:n].cpu()
    return out
