"""`torchrun -m tagrec_cli train`: DDP on CPU processes (gloo), and the sharding helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as tdist
from safetensors.numpy import load_file

from tagrec_cli.errors import TagrecError
from tagrec_cli.train.distributed import Dist, coverage, map_rows, shard

needs_gloo = pytest.mark.skipif(not (tdist.is_available() and tdist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available here")

CPU = Dist(torch.device("cpu"))


@pytest.fixture
def workspace(ingested_sample_300pairs: Path) -> Path:
    """conftest's ingested_sample_300pairs: the bundled sample data, ingested small: 480
    training and 120 validation pairs (read-only)."""
    return ingested_sample_300pairs


@pytest.fixture
def ws(workspace: Path, copy_workspace) -> Path:
    return copy_workspace(workspace)


def tagrec_train(workdir: Path, tiny_bert: Path, *args: str,
                 nproc: int | None = None) -> subprocess.CompletedProcess:
    """`tagrec train` in a fresh process, under torchrun when nproc is given."""
    launcher = [] if nproc is None else ["-m", "torch.distributed.run", "--standalone",
                                         "--nproc-per-node", str(nproc)]
    cmd = [sys.executable, *launcher, "-m", "tagrec_cli", "train", "--workdir", str(workdir),
           "--model", str(tiny_bert), "--device", "cpu", "--epochs", "1", "--dim", "16", *args]
    # One thread per process: 2 processes on a small CPU, and the same arithmetic in the
    # plain and torchrun runs that are compared bit for bit.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@needs_gloo
def test_two_processes_train_disjoint_shards_and_save_one_model(ws, tiny_bert):
    # Batches of 8 pairs: 67 of them, so one is dropped to give both ranks 33 steps; one
    # batch has no liked pair, so at that step a rank joins the all-reduce with zeros.
    # Without short-history users, so that the pairs below are the ingest's (train/prefix.py)
    r = tagrec_train(ws, tiny_bert, "--loss", "softmax", "--batch-size", "8",
                     "--no-freeze-encoder", "--group-by-user", "--short-history", "0", nproc=2)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("best epoch 1") == 1  # rank 0 reports, rank 1 is silent
    assert r.stderr.count("epoch 1: valid loss") == 1

    from tagrec_cli.towers.model import load_model
    from tagrec_cli.towers.tokens import token_tables
    from tagrec_cli.train.batches import epoch_batches, load_pairs
    from tagrec_cli.train.step import evaluate_pairs, side_features

    model, tokenizer, config = load_model(ws / "model")
    assert config["format"] == "tagrec-model" and config["model"]["dim"] == 16
    block = config["distributed"]
    assert block["world_size"] == 2 and block["backend"] == "gloo"
    assert block["global_batch_size"] == 2 * config["training"]["batch_size"]
    [epoch] = block["epochs"]
    # Counted from the pair indices each rank fed to train_step: no pair trained twice...
    assert epoch["overlap"] == 0 and min(epoch["pairs_per_rank"]) > 0
    assert sum(epoch["pairs_per_rank"]) == epoch["union"]
    # ...and every pair trained except those of the batches dropped to equalise the steps.
    tables = token_tables(ws, tokenizer, 128)
    pairs = load_pairs(ws, tables)
    batches = epoch_batches(pairs["train"].user_rows, 8, np.random.default_rng(42), True)
    kept = len(batches) - len(batches) % 2
    assert epoch["steps_per_rank"] == kept // 2 == 33
    assert epoch["union"] == sum(len(b) for b in batches[:kept])
    assert epoch["union"] + epoch["dropped"] == config["data"]["train_pairs"] == 480

    # The recorded validation metrics (each rank encoded half the documents with its own
    # copy of the model) equal a one-process evaluation of the saved weights: the gathered
    # vectors are put back in place and the ranks' weights stayed in sync.
    from tagrec_cli.towers import collab

    liked = collab.workspace_liked(ws, tables["user"].ids, tables["movie"].ids, 2.5)
    again = evaluate_pairs(model, tables, pairs["valid"], torch.device("cpu"), 0.0, 256,
                           side=side_features(ws, model.cfg, tables), liked=liked)
    assert again["auc"] == pytest.approx(config["metrics"]["auc"], abs=1e-6)
    assert again["loss"] == pytest.approx(config["metrics"]["loss"], abs=1e-6)

    assert sorted(p.name for p in ws.iterdir()) == ["cache", "ingest", "model"]  # no temp dirs
    assert len(list((ws / "cache").iterdir())) == 1  # one token cache, written once
    lines = (ws / "model" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1]


@needs_gloo
@pytest.mark.parametrize("args", [
    # Fine-tuning with the softmax loss: batches of 8 meet one batch without a liked pair,
    # which both runs must skip alike.
    ("--loss", "softmax", "--batch-size", "8", "--no-freeze-encoder", "--group-by-user"),
    # The defaults (frozen encoder, hybrid loss, side features, movies shown as unrated).
    ("--batch-size", "64"),
])
def test_one_process_torchrun_trains_exactly_like_a_plain_run(copy_workspace, workspace,
                                                              tiny_bert, args):
    runs = {}
    for name, nproc in (("plain", None), ("torchrun", 1)):
        work = copy_workspace(workspace, name)
        r = tagrec_train(work, tiny_bert, *args, nproc=nproc)
        assert r.returncode == 0, r.stdout + r.stderr
        runs[name] = (load_file(str(work / "model" / "model.safetensors")),
                      json.loads((work / "model" / "config.json").read_text()))
    (plain, plain_cfg), (ddp, ddp_cfg) = runs["plain"], runs["torchrun"]
    assert plain.keys() == ddp.keys()
    assert all(np.array_equal(plain[k], ddp[k]) for k in plain)

    def untimed(history):
        return [{k: v for k, v in m.items() if k not in ("seqs_per_s", "epoch_seconds")}
                for m in history]

    assert untimed(plain_cfg["history"]) == untimed(ddp_cfg["history"])
    assert "distributed" not in plain_cfg and ddp_cfg["distributed"]["world_size"] == 1


def test_shard_gives_each_rank_its_own_batches_and_drops_the_remainder():
    batches = [np.array([i]) for i in range(5)]
    mine = [shard(Dist(torch.device("cpu"), rank, 2, "gloo"), batches) for rank in (0, 1)]
    assert [[int(b[0]) for b in m] for m in mine] == [[0, 2], [1, 3]]  # batch 4 dropped
    assert shard(CPU, batches) is batches  # one process: everything, untouched
    with pytest.raises(TagrecError, match="batch-size"):
        shard(Dist(torch.device("cpu"), 0, 8, "gloo"), batches)


def test_coverage_counts_what_was_fed():
    assert coverage(CPU, [np.array([0, 1]), np.array([2])], 4) == {
        "steps_per_rank": 2, "pairs_per_rank": [3], "union": 3, "overlap": 0, "dropped": 1}
    assert coverage(CPU, [np.array([0, 1]), np.array([1])], 2)["overlap"] == 1


def test_map_rows_on_one_process_is_the_plain_call():
    rows = np.array([3, 1, 2])
    out = map_rows(CPU, lambda r: torch.from_numpy(r).float()[:, None], rows)
    assert out.tolist() == [[3.0], [1.0], [2.0]]
