"""train -> embed -> recommend on a tiny randomly initialised BERT, as functions and as a CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from helpers import invoke
from safetensors.numpy import load_file, save_file

from tagrec_cli.config import IngestConfig, ModelConfig, TrainConfig
from tagrec_cli.errors import ArtifactError, TagrecError
from tagrec_cli.ingest import run_ingest
from tagrec_cli.recommend import recommend_for_users
from tagrec_cli.store import Store
from tagrec_cli.towers.encode import encode_rows
from tagrec_cli.towers.model import load_model
from tagrec_cli.towers.tokens import token_tables
from tagrec_cli.train import run_train


@pytest.fixture
def workspace(ingested_small_600pairs: Path) -> Path:
    """conftest's ingested_small_600pairs: small_data, 600 pairs per class (read-only)."""
    return ingested_small_600pairs


@pytest.fixture
def ws(workspace: Path, copy_workspace) -> Path:
    """A private copy of the ingested workspace."""
    return copy_workspace(workspace)


def tiny(tiny_bert: Path, **kw) -> ModelConfig:
    return ModelConfig(**{"base_model": str(tiny_bert), "dim": 32, **kw})


def test_train_saves_best_epoch_and_loads_back_identically(ws, tiny_bert):
    result = run_train(ws, tiny(tiny_bert), TrainConfig(epochs=2, device="cpu"))
    assert [m["epoch"] for m in result.epochs] == [0, 1, 2]
    best = max(result.epochs[1:], key=lambda m: m["auc"])
    assert result.best_epoch == best["epoch"]
    folder = ws / "model"
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "tagrec-model" and config["format_version"] == 1
    assert config["best_epoch"] == best["epoch"]
    assert config["model"]["dim"] == 32 and config["training"]["epochs"] == 2
    assert config["data"]["train_pairs"] == 960 and config["data"]["valid_pairs"] == 240
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1, 2]
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pt"))  # no pickles

    model, tokenizer, _ = load_model(folder)
    again, _, _ = load_model(folder)
    tables = token_tables(ws, tokenizer, 128)
    rows = np.arange(20)
    from tagrec_cli.train.batches import load_pairs
    from tagrec_cli.train.step import evaluate_pairs, side_features
    side = side_features(ws, model.cfg, tables)
    assert side["user"].shape == (len(tables["user"]), 4)  # the default: side features on
    assert side["movie"].shape == (len(tables["movie"]), 5)
    a = encode_rows(model, tables["user"], rows, torch.device("cpu"), side="user",
                    features=side["user"][rows])
    b = encode_rows(again, tables["user"], rows, torch.device("cpu"), side="user",
                    features=side["user"][rows])
    assert torch.equal(a, b)
    # The saved weights are exactly the trained ones: validation AUC recomputed from the
    # loaded model matches the best epoch's.
    pairs = load_pairs(ws, tables)["valid"]
    from tagrec_cli.towers import collab

    liked = collab.workspace_liked(ws, tables["user"].ids, tables["movie"].ids, 2.5)
    metrics = evaluate_pairs(model, tables, pairs, torch.device("cpu"), 0.0, 256, side=side,
                             liked=liked)
    assert metrics["auc"] == pytest.approx(best["auc"], abs=1e-6)


def test_same_seed_same_weights(tmp_path, ws, tiny_bert):
    weights = []
    for name in ("a", "b"):
        out = tmp_path / name
        run_train(ws, tiny(tiny_bert), TrainConfig(epochs=1, device="cpu", seed=3),
                  out_dir=out)
        weights.append(load_file(str(out / "model.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    # Equal to float summation order: on a CPU with several threads the backward of a
    # gather with repeated rows sums them in a varying order (1e-8 apart; torch's
    # deterministic kernels would make it exact at twice the step time).
    assert all(np.allclose(weights[0][k], weights[1][k], rtol=0, atol=1e-6) for k in weights[0])
    other = tmp_path / "c"
    run_train(ws, tiny(tiny_bert), TrainConfig(epochs=1, device="cpu", seed=4),
              out_dir=other)
    head = load_file(str(other / "model.safetensors"))["heads.user.weight"]
    assert not np.allclose(head, weights[0]["heads.user.weight"], atol=1e-3)


def test_a_second_frozen_train_reads_encoded_rows_from_the_cache(ws, tiny_bert, monkeypatch):
    import tagrec_cli.train.prepare as prepare

    encoded = []
    real_encode = prepare.encode_rows

    def counting(model, table, rows, **kw):
        encoded.append(len(rows))
        return real_encode(model, table, rows, **kw)

    monkeypatch.setattr(prepare, "encode_rows", counting)
    cfg = TrainConfig(epochs=1, device="cpu", short_history=0)
    run_train(ws, tiny(tiny_bert), cfg, out_dir=ws / "first")
    assert sum(encoded) > 0
    encoded.clear()
    run_train(ws, tiny(tiny_bert), cfg, out_dir=ws / "second")
    assert encoded == []  # every row came from the cache the first run wrote
    first = load_file(str(ws / "first" / "model.safetensors"))
    second = load_file(str(ws / "second" / "model.safetensors"))
    assert all(np.allclose(first[k], second[k], rtol=0, atol=1e-6) for k in first)
    # Short-history users are not in the cache: only they are encoded.
    run_train(ws, tiny(tiny_bert), TrainConfig(epochs=1, device="cpu"), out_dir=ws / "third")
    assert sum(encoded) > 0
    config = json.loads((ws / "third" / "config.json").read_text())
    assert sum(encoded) == config["data"]["short_history_users"]


def test_ctrl_c_keeps_best_model_so_far(ws, tiny_bert):
    calls = {"n": 0}

    def on_step(epoch, step, steps, loss, rate):
        if epoch == 2 and step == 3:
            raise KeyboardInterrupt

    result = run_train(ws, tiny(tiny_bert), TrainConfig(epochs=3, device="cpu", batch_size=64),
                       on_step=on_step, on_epoch=lambda m: calls.update(n=calls["n"] + 1))
    assert result.interrupted and result.best_epoch == 1
    assert calls["n"] == 2  # epochs 0 and 1 were evaluated, 2 was cut short
    model, _, config = load_model(ws / "model")
    assert config["best_epoch"] == 1 and config["interrupted"] is True
    assert not [p for p in ws.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_ctrl_c_keeps_a_finished_model_from_before(ws, tiny_bert):
    # A finished model is in model/; a new run is cut short after its epoch 1 was saved.
    # The finished one stays (a cut-short run used to replace it with its epoch 1).
    run_train(ws, tiny(tiny_bert), TrainConfig(epochs=1, device="cpu", batch_size=64))
    before = {p.name: p.read_bytes() for p in (ws / "model").iterdir()}

    def on_step(epoch, step, steps, loss, rate):
        if epoch == 2 and step == 3:
            raise KeyboardInterrupt

    result = run_train(ws, tiny(tiny_bert, dim=16), TrainConfig(epochs=3, device="cpu",
                                                                batch_size=64, seed=7),
                       on_step=on_step)
    assert result.interrupted and result.kept_previous and result.best_epoch == 1
    assert {p.name: p.read_bytes() for p in (ws / "model").iterdir()} == before
    assert not [p for p in ws.iterdir() if p.name.startswith(".")]  # no staging left
    # and the next run that finishes replaces it, as asked
    result = run_train(ws, tiny(tiny_bert, dim=16), TrainConfig(epochs=1, device="cpu",
                                                                batch_size=64))
    assert not result.interrupted and not result.kept_previous
    assert load_model(ws / "model")[0].cfg.dim == 16


def test_a_model_moved_aside_by_a_killed_run_is_put_back_first(ws, tiny_bert):
    # A run killed while swapping the model in leaves model/ moved aside (.model.old-PID) and
    # its own staging; the next run puts the old model back before it looks for one.
    import os
    import subprocess
    import sys

    run_train(ws, tiny(tiny_bert), TrainConfig(epochs=1, device="cpu", batch_size=64))
    before = {p.name: p.read_bytes() for p in (ws / "model").iterdir()}
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    os.replace(ws / "model", ws / f".model.old-{dead}")
    (ws / f".model.best.tmp-{dead}").mkdir()

    def on_step(epoch, step, steps, loss, rate):
        if epoch == 2 and step == 3:
            raise KeyboardInterrupt

    result = run_train(ws, tiny(tiny_bert), TrainConfig(epochs=3, device="cpu", batch_size=64,
                                                        seed=7), on_step=on_step)
    assert result.kept_previous  # it found the finished model it had moved aside
    assert {p.name: p.read_bytes() for p in (ws / "model").iterdir()} == before
    assert not [p for p in ws.iterdir() if p.name.startswith(".")]


def test_a_crash_after_a_save_keeps_the_best_epoch_and_no_staging(ws, tiny_bert, monkeypatch):
    # Only a divergence (TagrecError) used to move the saved epoch in: any other error (CUDA
    # out of memory, a full disk) left it in .model.best.tmp-PID, a whole model, until the
    # next train or clean, and the epochs trained were lost to the user.
    from tagrec_cli.train import loop

    real = loop.train_epoch

    def crash(run, epoch, step, on_step):
        if epoch == 2:
            raise RuntimeError("CUDA out of memory")
        return real(run, epoch, step, on_step)

    monkeypatch.setattr(loop, "train_epoch", crash)
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        run_train(ws, tiny(tiny_bert), TrainConfig(epochs=3, device="cpu", batch_size=64))
    config = json.loads((ws / "model" / "config.json").read_text())
    assert config["interrupted"] is True and config["best_epoch"] == 1
    assert [e["epoch"] for e in config["history"]] == [0, 1]
    assert not [p for p in ws.iterdir() if p.name.startswith(".")]  # nothing staged is left


def test_ctrl_c_inside_evaluates_training_stops_evaluate(ws, tiny_bert, monkeypatch):
    # evaluate trains its stages with run_train, which catches Ctrl-C to keep the best epoch
    # so far; evaluate must stop there (status 130), not report a cut-short model as chosen
    # on validation, and must train that stage again next time.
    from tagrec_cli.train import loop

    run_train(ws, tiny(tiny_bert), TrainConfig(epochs=2, device="cpu", batch_size=64))
    real = loop.train_epochs

    def cut_short(run, on_step, on_epoch, say):
        def stop(epoch, step, steps, loss, rate):
            if epoch == 2:
                raise KeyboardInterrupt
        real(run, stop, on_epoch, say)

    monkeypatch.setattr(loop, "train_epochs", cut_short)
    r = invoke(["evaluate", "--baselines", "popular", "--validation-only"], ws)
    assert r.exit_code == 130 and "interrupted" in r.stderr, r.output
    stage = ws / "evaluate" / "valid" / "model" / "config.json"
    assert json.loads(stage.read_text())["interrupted"] is True
    monkeypatch.setattr(loop, "train_epochs", real)
    r = invoke(["evaluate", "--baselines", "popular", "--validation-only"], ws)
    assert r.exit_code == 0, r.output
    assert json.loads(stage.read_text())["interrupted"] is False  # trained again, not reused


def test_ctrl_c_before_first_epoch_saves_nothing(ws, tiny_bert):
    def on_step(*_):
        raise KeyboardInterrupt

    result = run_train(ws, tiny(tiny_bert), TrainConfig(epochs=1, device="cpu"),
                       on_step=on_step)
    assert result.interrupted and result.model_dir is None
    assert not (ws / "model").exists()


def test_frozen_encoder_trains_only_heads(ws, tiny_bert):
    before = load_model_encoder_weights(tiny_bert)
    run_train(ws, tiny(tiny_bert), TrainConfig(epochs=1, device="cpu", freeze_encoder=True))
    after = load_file(str(ws / "model" / "model.safetensors"))
    key = "encoder.embeddings.word_embeddings.weight"
    assert np.array_equal(after[key], before["embeddings.word_embeddings.weight"])


def load_model_encoder_weights(folder: Path) -> dict[str, np.ndarray]:
    return load_file(str(folder / "model.safetensors"))


def test_training_beats_untrained_heads_on_sample_data(tmp_path, sample_dir, tiny_bert):
    """The bundled sample data carries learnable taste structure; training must find it."""
    run_ingest(sample_dir, tmp_path, IngestConfig(pairs_per_class=1500, holdout_fraction=0.2))
    result = run_train(tmp_path, tiny(tiny_bert, dim=64),
                       TrainConfig(epochs=3, device="cpu", batch_size=32, lr=1e-3))
    untrained = result.epochs[0]["auc"]
    trained = max(m["auc"] for m in result.epochs[1:])
    print(f"validation ROC-AUC: untrained heads {untrained:.3f}, trained {trained:.3f}")
    assert trained > 0.6
    assert trained > untrained + 0.05


def test_max_steps_ends_training_within_an_epoch(ws, tiny_bert):
    def trained_epochs(max_steps: int) -> tuple[list[int], int]:
        r = invoke(["train", "--model", str(tiny_bert), "--device", "cpu", "--epochs", "5",
                    "--batch-size", "64", "--max-steps", str(max_steps), "--dim", "16"], ws)
        assert r.exit_code == 0, r.output
        config = json.loads((ws / "model" / "config.json").read_text())
        assert config["training"]["max_steps"] == max_steps
        data = config["data"]
        steps = -(-(data["train_pairs"] + data["short_history_pairs"]) // 64)  # per epoch
        # epoch 0: the untrained heads
        return [m.get("steps", 0) for m in config["history"]], steps

    steps, per_epoch = trained_epochs(0)  # no budget: the five asked for
    assert steps == [0] + [per_epoch] * 5
    budget = per_epoch + per_epoch // 2  # one epoch and half of the next
    steps, _ = trained_epochs(budget)
    assert steps == [0, per_epoch, per_epoch // 2]


def test_device_cuda_without_cuda_is_a_clear_error(ws, tiny_bert):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(TagrecError, match="no CUDA device"):
        run_train(ws, tiny(tiny_bert), TrainConfig(device="cuda"))


def test_missing_artifacts_name_the_command_to_run(tmp_path, tiny_bert):
    with pytest.raises(ArtifactError, match="tagrec ingest"):
        run_train(tmp_path, tiny(tiny_bert), TrainConfig(device="cpu"))
    with pytest.raises(ArtifactError, match="tagrec train"):
        load_model(tmp_path / "model")
    with pytest.raises(ArtifactError, match="tagrec embed"):
        recommend_for_users(Store(tmp_path), [1])


def test_newer_model_format_is_refused(ws, tiny_bert):
    run_train(ws, tiny(tiny_bert), TrainConfig(epochs=1, device="cpu"))
    path = ws / "model" / "config.json"
    config = json.loads(path.read_text())
    config["format_version"] = 99
    path.write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="newer"):
        load_model(ws / "model")


# ---------------------------------------------------------------- the CLI, as a user calls it


def test_cli_chain_ingest_train_embed_recommend(tmp_path, small_data, tiny_bert):
    work = tmp_path / "work"
    r = invoke(["ingest", "--data", str(small_data), "--pairs-per-class", "300"], work)
    assert r.exit_code == 0, r.output
    assert "valid pairs: like" in r.output
    r = invoke(["train", "--model", str(tiny_bert), "--epochs", "1", "--dim", "16"], work)
    assert r.exit_code == 0, r.output
    # the default ingest is the refit: no validation pairs, so no NaN metrics either
    assert "epoch 1: train loss" in r.output and "nan" not in r.output.lower()
    assert "epoch 1 (no validation pairs" in r.output and "tagrec evaluate" in r.output
    r = invoke(["embed"], work)
    assert r.exit_code == 0, r.output
    users = load_file(str(work / "embeddings" / "users.safetensors"))
    movies = load_file(str(work / "embeddings" / "movies.safetensors"))
    assert users["embeddings"].shape[1] == 16 and users["ids"].dtype == np.int64
    assert np.allclose(np.linalg.norm(movies["embeddings"], axis=1), 1.0, atol=1e-5)

    r = invoke(["recommend", "--user", "42", "--json"], work)
    assert r.exit_code == 0, r.output
    single = json.loads(r.stdout)
    assert single["user"] == 42 and len(single["recommendations"]) == 10
    recs = single["recommendations"]
    assert [x["rank"] for x in recs] == list(range(1, 11))
    assert all(recs[i]["score"] >= recs[i + 1]["score"] for i in range(9))
    import polars as pl
    seen = set(pl.read_parquet(work / "ingest" / "ratings.parquet")
               .filter(pl.col("userId") == 42)["movieId"].to_list())
    assert not seen & {x["movieId"] for x in recs}  # history and held-out both excluded

    r = invoke(["recommend", "--user", "42", "--user", "7", "--json"], work)
    assert r.exit_code == 0, r.output
    both = json.loads(r.stdout)
    assert both[0] == single
    r7 = json.loads(invoke(["recommend", "--user", "7", "--json"], work).stdout)
    assert both[1] == r7

    r = invoke(["recommend", "--user", "42", "-k", "3"], work)
    assert r.exit_code == 0 and "top 3 for user 42" in r.output

    r = invoke(["recommend", "--user", "42", "--include-seen", "--json", "-k", "100000"], work)
    assert r.exit_code == 0
    assert len(json.loads(r.stdout)["recommendations"]) == len(movies["ids"])
    assert "only" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["recommend", "--user", "999999"], "unknown user 999999"),
    (["train", "--device", "cuda"], "no CUDA device"),
    (["embed"], "tagrec train"),
])
def test_cli_errors_are_one_line(copy_workspace, workspace, tiny_bert, args, message):
    if args[0] == "train" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    work = copy_workspace(workspace, "w")
    if args[0] == "recommend":
        run_train(work, tiny(tiny_bert), TrainConfig(epochs=1, device="cpu"))
        from tagrec_cli.embed import run_embed
        run_embed(work, device="cpu")
    r = invoke(args + ["--model", str(tiny_bert)] if args[0] == "train" else args, work)
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:")
    assert message in lines[0]


def test_cli_help_for_every_command_has_an_example():
    r = invoke(["--help"])
    assert r.exit_code == 0
    for command in ("sample-data", "ingest", "train", "embed", "recommend", "evaluate"):
        r = invoke([command, "--help"])
        assert r.exit_code == 0, command
        assert "Example: tagrec" in r.output, command


def test_cli_version():
    from tagrec_cli import __version__

    r = invoke(["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"tagrec {__version__}"


def test_cli_unreachable_hub_model_is_one_line_error(tmp_path, ws):
    # A hub id with no network. The hub reads HF_HUB_OFFLINE at import, so this runs the CLI
    # in a fresh process, as a user would; offline mode makes the failure immediate.
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TAGREC_WORKDIR": str(ws)}
    r = subprocess.run([sys.executable, "-m", "tagrec_cli", "train", "--model",
                        "bert-base-uncased", "--device", "cpu"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("Error")]
    assert len(lines) == 1 and "cannot load model 'bert-base-uncased'" in lines[0]
    assert "Traceback" not in r.stderr
    r2 = invoke(["train", "--model", str(tmp_path / "no" / "such" / "folder")], ws)
    assert r2.exit_code == 1 and "does not exist" in r2.stderr


def test_damaged_files_give_one_line_errors(ws, tiny_bert):
    run_train(ws, tiny(tiny_bert), TrainConfig(epochs=1, device="cpu"))
    from tagrec_cli.embed import run_embed

    run_embed(ws, device="cpu")
    # A damaged token cache is rebuilt, not fatal.
    for cache in (ws / "cache").iterdir():
        cache.write_bytes(b"not a safetensors file")
    assert invoke(["embed"], ws).exit_code == 0
    # A truncated embedding table or model: one line naming the command to re-run.
    table = ws / "embeddings" / "movies.safetensors"
    table.write_bytes(table.read_bytes()[:100])
    r = invoke(["recommend", "--user", "42"], ws)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.stderr.strip().startswith("Error:") and "tagrec embed" in r.stderr
    weights = ws / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    r = invoke(["embed"], ws)
    assert r.exit_code == 1 and "tagrec train" in r.stderr and "Traceback" not in r.output


def test_unwritable_workdir_is_one_line_error(tmp_path, small_data):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the workspace should be")
    r = invoke(["ingest", "--data", str(small_data)], blocker / "ws")
    assert r.exit_code == 1, r.output
    assert r.stderr.startswith("Error:") and "Traceback" not in r.output


def test_token_cache_follows_the_documents(tmp_path, small_data, tiny_bert):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    run_ingest(small_data, tmp_path, IngestConfig(pairs_per_class=50, with_title=False))
    plain = token_tables(tmp_path, tokenizer, 128)["movie"]
    again = token_tables(tmp_path, tokenizer, 128)["movie"]  # from the cache
    assert np.array_equal(plain.tokens, again.tokens)
    assert len(list((tmp_path / "cache").iterdir())) == 1
    # Same CSVs, other documents: the cache must not hand back the old tokens.
    run_ingest(small_data, tmp_path, IngestConfig(pairs_per_class=50, with_title=True))
    titled = token_tables(tmp_path, tokenizer, 128)["movie"]
    assert titled.lengths.sum() > plain.lengths.sum()


def test_embed_reuses_a_frozen_runs_encoder_outputs(ws, tiny_bert):
    from tagrec_cli.embed import run_embed

    run_train(ws, tiny(tiny_bert), TrainConfig(epochs=1, device="cpu"))
    [cache] = list((ws / "cache").glob("pooled-*.safetensors"))
    reused = run_embed(ws, device="cpu")
    tables = [load_file(str(ws / "embeddings" / f)) for f in ("users.safetensors",
                                                              "movies.safetensors")]
    total = sum(len(t["ids"]) for t in tables)
    assert 0 < reused.reused <= total  # every document some pair refers to
    cache.unlink()  # without the cache every document is encoded: the same vectors
    fresh = run_embed(ws, device="cpu")
    assert fresh.reused == 0
    again = [load_file(str(ws / "embeddings" / f)) for f in ("users.safetensors",
                                                             "movies.safetensors")]
    for a, b in zip(tables, again, strict=True):
        assert np.array_equal(a["ids"], b["ids"])
        assert np.abs(a["embeddings"] - b["embeddings"]).max() < 1e-5
    # A fine-tuned encoder has other weights: the frozen run's cache (written again here)
    # does not match it, so embed encodes everything.
    run_train(ws, tiny(tiny_bert), TrainConfig(epochs=1, device="cpu"))
    assert cache.is_file()
    run_train(ws, tiny(tiny_bert), TrainConfig(epochs=1, device="cpu", freeze_encoder=False,
                                               batch_size=64))
    assert run_embed(ws, device="cpu").reused == 0


def test_cli_chain_in_the_first_format_without_side_features(tmp_path, small_data, tiny_bert):
    """The seed's format still runs end to end: text-only documents, no side features."""
    work = tmp_path / "work"
    r = invoke(["ingest", "--data", str(small_data), "--pairs-per-class", "300",
                "--no-side-features", "--no-with-genres", "--no-with-year", "--no-with-title"],
               work)
    assert r.exit_code == 0, r.output
    docs = pl.read_parquet(work / "ingest" / "movies.parquet")["document"].to_list()
    assert any(d.startswith("rating ") for d in docs)
    r = invoke(["train", "--model", str(tiny_bert), "--epochs", "1", "--dim", "16"], work)
    assert r.exit_code == 0, r.output
    assert json.loads((work / "model" / "config.json").read_text())["model"]["features"] is None
    assert invoke(["embed"], work).exit_code == 0
    for args in (["--user", "42"], ["--tags", "heist, noir"], ["--user", "42", "--tags", "x"]):
        r = invoke(["recommend", *args, "--json"], work)
        assert r.exit_code == 0, r.output
        assert len(json.loads(r.stdout)["recommendations"]) == 10


def test_tags_query_on_embeddings_older_than_side_features_is_one_line(tmp_path, small_data,
                                                                         tiny_bert):
    work = tmp_path / "work"
    assert invoke(["ingest", "--data", str(small_data), "--pairs-per-class", "100"],
                  work).exit_code == 0
    assert invoke(["train", "--model", str(tiny_bert), "--epochs", "1", "--dim", "16"],
                  work).exit_code == 0
    assert invoke(["embed"], work).exit_code == 0
    path = work / "embeddings" / "user_tags.safetensors"
    arrays = load_file(str(path))  # as before side features: the users' tags alone
    save_file({k: v for k, v in arrays.items() if not k.startswith("feature.")}, str(path))
    # a tags query reads no user's side features (the tags choose: recommend.build_queries)
    r = invoke(["recommend", "--user", "42", "--tags", "heist"], work)
    assert r.exit_code == 0, r.output
    manifest = work / "embeddings" / "manifest.json"  # a format-2 folder (parquet lookups)
    manifest.write_text(manifest.read_text().replace('"format_version": 3',
                                                     '"format_version": 2'))
    r = invoke(["recommend", "--user", "42"], work)
    assert r.exit_code == 1 and "older tagrec" in r.stderr and "re-run `tagrec embed`" in r.stderr
