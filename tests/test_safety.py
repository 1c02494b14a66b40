"""Faults a user or the environment causes: control characters in the data, full disks,
dead writers' leftovers, two writers at once, moved workspaces, damaged model folders, odd
CSV files and odd options. Each ends in one line and exit 1 (or works), never a traceback,
and leaves the workspace as it was."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tagrec_cli import artifacts
from tagrec_cli.cli import app
from tagrec_cli.cli.app import plain
from tagrec_cli.config import IngestConfig, ModelConfig, TrainConfig
from tagrec_cli.embed import run_embed
from tagrec_cli.errors import quoted
from tagrec_cli.ingest import run_ingest
from tagrec_cli.train import run_train

runner = CliRunner()
EVIL = "Clear\x1b[2J\x1b[HScreen \x1b]0;pwned\x07 \u202eright"


def invoke(args: list[str], workdir: Path | None = None):
    env = {"TAGREC_WORKDIR": str(workdir)} if workdir else None
    return runner.invoke(app, args, env=env)


def one_line_error(result, *, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    # progress lines (train's phases) may come first; the error is one whole line, the last
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), result.stderr
    assert not any(line.startswith("Error: ") for line in lines[:-1]), result.stderr
    return lines[-1]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def edit_json(path: Path, edit: Callable[[dict], object]) -> None:
    """Rewrite a workspace's JSON file as a hand edit would: `edit` changes it in place."""
    value = json.loads(path.read_text())
    edit(value)
    path.write_text(json.dumps(value))


@pytest.fixture(scope="module")
def evil_data(tmp_path_factory, sample_dir: Path) -> Path:
    """The sample data with movie 1 retitled to a string of terminal escape sequences."""
    folder = tmp_path_factory.mktemp("evil_data")
    for name in ("ratings.csv", "tags.csv"):
        shutil.copy(sample_dir / name, folder / name)
    lines = (sample_dir / "movies.csv").read_text(encoding="utf-8").splitlines()
    first = lines[1].split(",")
    assert first[0] == "1"
    lines[1] = f'1,"{EVIL} (1995)",{first[-1]}'
    (folder / "movies.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def trained_evil(tmp_path_factory, evil_data: Path, tiny_bert: Path) -> Path:
    work = tmp_path_factory.mktemp("trained_evil")
    run_ingest(evil_data, work, IngestConfig(holdout_fraction=0.0, pairs_per_class=300))
    run_train(work, ModelConfig(base_model=str(tiny_bert), dim=16),
              TrainConfig(epochs=1, device="cpu"))
    run_embed(work, device="cpu")
    return work


@pytest.fixture
def ws(trained_evil: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "ws"
    shutil.copytree(trained_evil, dst)
    return dst


# ---------------------------------------------------------------- text from the data


def test_plain_replaces_every_control_character():
    assert plain("Clear\x1b[2JScreen") == "Clear\ufffd[2JScreen"
    assert plain("a\tb\nc\x7fd\x9be\u202ef") == "a\ufffdb\ufffdc\ufffdd\ufffde\ufffdf"
    assert plain("émigré, 日本 [REC]") == "émigré, 日本 [REC]"


def test_control_characters_never_reach_the_terminal(trained_evil: Path):
    for args in (["similar", "--movie", "1"], ["similar", "--title", "clear"],
                 ["recommend", "--user", "1", "-k", "50", "--include-seen"],
                 ["recommend", "--tags", "x", "-k", "2000"]):
        r = invoke(args, trained_evil)
        assert r.exit_code == 0, r.output
        for ch in ("\x1b", "\x07", "\u202e"):
            assert ch not in r.output, (args, r.output)
    r = invoke(["similar", "--movie", "1", "--json"], trained_evil)
    assert json.loads(r.stdout)["query"]["title"] == f"{EVIL} (1995)"  # JSON keeps the data
    # an error that quotes the data is clean too
    r = invoke(["similar", "--title", EVIL + "zzz"], trained_evil)
    assert "\x1b" not in one_line_error(r)


# ---------------------------------------------------------------- options and user input


def test_odd_options_are_one_line_errors(trained_evil: Path):
    r = invoke(["recommend", "--user", "99999999999999999999"], trained_evil)
    assert "unknown user 99999999999999999999" in one_line_error(r)
    assert "unknown movie" in one_line_error(
        invoke(["similar", "--movie", "99999999999999999999"], trained_evil))


def test_a_huge_k_is_every_movie_not_an_out_of_memory(trained_evil: Path):
    from tagrec_cli.store import Store

    n = len(Store(trained_evil).table("movie").ids)
    for args in (["recommend", "--user", "1"], ["recommend", "--tags", "x"],
                 ["similar", "--movie", "1"]):
        whole = invoke([*args, "-k", str(n), "--json"], trained_evil)
        huge = invoke([*args, "-k", str(10 ** 11), "--json"], trained_evil)
        assert huge.exit_code == 0, huge.output
        assert json.loads(huge.stdout) == json.loads(whole.stdout)
        assert len(json.loads(huge.stdout)["recommendations"]) > n // 2
    r = invoke(["evaluate", "--baselines-only", "--baselines", "popular", "--validation-only",
                "-k", str(10 ** 11)], trained_evil)
    assert f"-k must be at most the catalogue's {n:,} movies" in one_line_error(r)


@pytest.mark.parametrize("args, message", [
    (["similar", "--movie", "abc"],
     "Error: Invalid value for '--movie' / '-m': 'abc' is not a valid int. "
     "(see `tagrec similar --help`)"),
    (["recommend", "--ratings", "."],  # a folder
     "Error: Invalid value for '--ratings': File '.' is a directory. "
     "(see `tagrec recommend --help`)"),
    (["ingest", "--bogus"], "Error: No such option: --bogus (see `tagrec ingest --help`)"),
    (["bogus"], "Error: No such command 'bogus'. (see `tagrec --help`)"),
])
def test_a_bad_option_is_one_line_with_status_2(args, message):
    r = invoke(args)  # click and rich would draw a five-line box
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.strip() == message


def test_evaluate_refuses_a_huge_k_before_it_trains(ws: Path):
    from tagrec_cli import artifacts

    r = invoke(["evaluate", "--baselines", "popular", "--validation-only", "-k",
                str(10 ** 11)], ws)
    assert "-k must be at most the catalogue's" in one_line_error(r)
    valid = ws / artifacts.EVALUATE_DIR / artifacts.EVALUATE_STAGE["valid"]
    assert not (valid / artifacts.MODEL_DIR).exists()  # no stage model was fitted


@pytest.mark.parametrize("args, name", [
    (["ingest", "--like-threshold", "nan"], "--like-threshold"),
    (["ingest", "--liked-rating", "inf"], "--liked-rating"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--temperature", "inf"], "--temperature"),
    (["train", "--margin", "nan"], "--margin"),
    (["train", "--positive-rating", "nan"], "--positive-rating"),
    (["train", "--bce-weight", "inf"], "--bce-weight"),
    (["evaluate", "--relevant-rating", "nan", "--baselines-only", "--validation-only"],
     "--relevant-rating"),
])
def test_non_finite_settings_are_one_line_errors(ws: Path, evil_data: Path, args, name):
    before = snapshot(ws)
    extra = ["--data", str(evil_data)] if args[0] == "ingest" else []
    r = invoke([*args, *extra], ws)
    assert one_line_error(r) == f"Error: {name}: must be a finite number"
    assert snapshot(ws) == before


def test_a_diverged_training_keeps_the_previous_model(ws: Path, tiny_bert: Path):
    model = ws / artifacts.MODEL_DIR
    before = snapshot(model)
    r = invoke(["train", "--model", str(tiny_bert), "--dim", "16", "--epochs", "1",
                "--device", "cpu", "--head-lr", "1e30"], ws)
    assert "training diverged in epoch 1" in one_line_error(r)
    assert f"{model} keeps its model from before" in r.stderr
    assert snapshot(model) == before
    assert invoke(["recommend", "--user", "1"], ws).exit_code == 0


def test_a_training_that_diverges_after_saving_an_epoch_keeps_the_previous_model(
        ws: Path, tiny_bert: Path, monkeypatch):
    # Epoch 1 is fine and saved; epoch 2 diverges. The finished model from before stays:
    # this run's epoch 1 used to have replaced it already.
    from tagrec_cli.train import loop

    real = loop.stop_if_diverged
    monkeypatch.setattr(loop, "stop_if_diverged", lambda run, epoch, loss: real(
        run, epoch, float("nan") if epoch == 2 else loss))
    model = ws / artifacts.MODEL_DIR
    before = snapshot(model)
    r = invoke(["train", "--model", str(tiny_bert), "--dim", "16", "--epochs", "3",
                "--device", "cpu"], ws)
    assert "training diverged in epoch 2" in one_line_error(r)
    assert f"{model} keeps its model from before" in r.stderr
    assert snapshot(model) == before
    assert not [p for p in ws.iterdir() if p.name.startswith(".model")]  # no staging left


def test_paths_are_printed_as_text(tmp_path: Path):
    out = tmp_path / "d[/]x[bold]y\x1b[31m"
    r = invoke(["sample-data", "--out", str(out), "--users", "20", "--movies", "30"])
    assert r.exit_code == 0, r.output
    assert plain(str(out)) in " ".join(r.stdout.split()) and "\x1b" not in r.stdout
    assert (out / "ratings.csv").is_file()


def test_sample_data_never_overwrites_a_dataset_unasked(sample_dir: Path, tmp_path: Path):
    data = copy_data(sample_dir, tmp_path / "data")
    before = snapshot(data)
    r = invoke(["sample-data", "--out", str(data), "--users", "20", "--movies", "30"])
    assert "already has ratings.csv, tags.csv, movies.csv; use --force" in one_line_error(r)
    assert snapshot(data) == before
    r = invoke(["sample-data", "--out", str(data), "--users", "20", "--movies", "30",
                "--force"])
    assert r.exit_code == 0 and snapshot(data) != before


def test_a_workspace_where_nobody_tagged_anything_recommends(tmp_path: Path, tiny_bert: Path):
    data, ws = tmp_path / "data", tmp_path / "ws"
    assert invoke(["sample-data", "--out", str(data), "--users", "1", "--movies", "2"]
                  ).exit_code == 0
    (data / "tags.csv").write_text("userId,movieId,tag,timestamp\n")  # nobody tagged
    for args in (["ingest", "--data", str(data)],
                 ["train", "--model", str(tiny_bert), "--dim", "16", "--epochs", "1",
                  "--device", "cpu"],
                 ["embed", "--device", "cpu"],
                 ["recommend", "--user", "1"], ["recommend", "--user", "1", "--json"]):
        r = invoke(args, ws)
        assert r.exit_code == 0, (args, r.output)


def test_a_huge_quoted_input_gives_a_short_error(trained_evil: Path, tmp_path: Path):
    assert quoted("x" * 100, 10) == "'xxxxxxxxxx'… (100 characters)"
    tags = tmp_path / "tags.txt"
    tags.write_text('"' + "a" * 1_000_000, encoding="utf-8")  # an unclosed quote
    r = invoke(["recommend", "--tags-file", str(tags)], trained_evil)
    if r.exit_code:  # a parse error quotes the input: at most ~80 characters of it
        assert len(one_line_error(r)) < 300
    r = invoke(["similar", "--title", "q" * 1_000_000], trained_evil)
    assert len(one_line_error(r)) < 300


def test_a_title_search_picks_the_exact_or_most_rated_match(trained_evil: Path):
    from tagrec_cli.store import Store

    catalogue = Store(trained_evil).catalogue
    many = catalogue.find("the")
    assert len(many) > 1
    counts = dict(zip(catalogue.ids.tolist(), catalogue.n_ratings, strict=True))
    best, matches = catalogue.pick("the")
    assert matches == many and best == min(many, key=lambda m: (-counts[m], m))
    r = invoke(["similar", "--title", "the", "--json", "-k", "2"], trained_evil)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["query"]["movieId"] == best
    others = [m for m in many if m != best]
    assert "pick one with --movie ID" in r.stderr and f"{others[0]} " in r.stderr
    # a title equal to the whole name wins over more-rated titles that contain it
    title = catalogue.titles[int(catalogue.rows([many[0]])[0])]
    assert catalogue.pick(title)[0] == many[0]


# ---------------------------------------------------------------- files and folders


def test_workspace_moves_and_copies(ws: Path, tmp_path: Path):
    before = invoke(["recommend", "--tags", "heist", "--json"], ws).stdout
    manifest = json.loads((ws / "embeddings" / "manifest.json").read_text())
    assert manifest["model_dir"] == "model"  # relative: the model beside the tables
    moved = tmp_path / "moved"
    shutil.move(ws, moved)
    assert invoke(["recommend", "--tags", "heist", "--json"], moved).stdout == before
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(moved), str(copy)], check=True)
    shutil.rmtree(moved / "model")  # the copy must use its own model, not this one
    assert invoke(["recommend", "--tags", "heist", "--json"], copy).stdout == before
    assert "re-run `tagrec train`" in one_line_error(
        invoke(["recommend", "--tags", "heist"], moved))


def test_saved_files_are_readable_by_others(ws: Path):
    mask = os.umask(0)
    os.umask(mask)
    for path in (ws / "model" / "model.safetensors", ws / "embeddings" / "users.safetensors",
                 ws / "ingest" / "pairs.parquet"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path


def test_writes_never_set_the_umask(tmp_path: Path, monkeypatch):
    # _readable set the umask to 0 and back at every write: a file another thread (the
    # training planner, polars') created meanwhile was world-writable. It is read once.
    mask = os.umask(0)
    os.umask(mask)
    artifacts._umask.cache_clear()

    def refused(_mask: int) -> int:
        raise AssertionError("os.umask called during a write")

    monkeypatch.setattr(os, "umask", refused)
    if Path("/proc/self/status").is_file():  # elsewhere it is set once, on the first write
        with artifacts.atomic_file(tmp_path / "a.json") as tmp:
            tmp.write_text("{}")
        assert artifacts._umask() == mask
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_model_folder_without_its_tokenizer_is_an_error(ws: Path):
    (ws / "model" / "tokenizer.json").unlink()
    for args in (["recommend", "--tags", "heist"], ["embed"]):
        assert "tokenizer.json" in one_line_error(invoke(args, ws))


def test_a_different_tokenizer_is_an_error(ws: Path):
    # not what this tokenizer gives
    edit_json(ws / "model" / "config.json", lambda c: c.update(tokenizer_check=[101, 7, 102]))
    from tagrec_cli.towers.model import load_model
    from tagrec_cli.towers.npbert import load_tower

    with pytest.raises(artifacts.ArtifactError, match="not the one the model was trained"):
        load_model(ws / "model")
    with pytest.raises(artifacts.ArtifactError, match="not the one the model was trained"):
        load_tower(ws / "model", "user")


def test_dead_writers_leftovers_are_cleaned_and_a_moved_aside_artifact_restored(
        ws: Path, sample_dir: Path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    tmp = ws / f".ingest.tmp-{dead}"
    tmp.mkdir()
    (tmp / "half.parquet").write_bytes(b"half")
    # killed between moving embeddings/ aside and moving the new one in
    os.replace(ws / "embeddings", ws / f".embeddings.old-{dead}")
    artifacts.recover(ws)
    assert (ws / "embeddings" / "manifest.json").is_file()
    r = invoke(["ingest", "--data", str(sample_dir), "--holdout-fraction", "0"], ws)
    assert r.exit_code == 0, r.output
    assert not tmp.exists()
    assert not [p.name for p in ws.iterdir() if p.name.startswith(".") and "tmp-" in p.name]


def test_a_second_writer_waits_for_none_and_fails_in_one_line(ws: Path, sample_dir: Path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (ws / artifacts.LOCK_FILE).write_text(f"{holder.pid}\n")
        before = snapshot(ws)
        for args in (["ingest", "--data", str(sample_dir)], ["train"], ["embed"]):
            text = one_line_error(invoke(args, ws))
            assert f"process {holder.pid}" in text
        assert snapshot(ws) == before
    finally:
        holder.kill()
        holder.wait()
    # its holder is dead now: the next writer breaks the lock and releases its own
    r = invoke(["ingest", "--data", str(sample_dir)], ws)
    assert r.exit_code == 0, r.output
    assert not (ws / artifacts.LOCK_FILE).exists()


@pytest.mark.parametrize("holder", ["-1", "0", "99999999999999999999", "garbage", ""])
def test_a_lock_holding_no_process_id_is_broken(ws: Path, holder: str):
    # -1 read as "every process" and 0 as "this group" were always alive: the workspace
    # stayed locked by "process -1"; a 20-digit id was an OverflowError traceback
    if holder.lstrip("-").isdigit():
        assert not artifacts.pid_alive(int(holder))
    (ws / artifacts.LOCK_FILE).write_text(f"{holder}\n")
    r = invoke(["clean"], ws)
    assert r.exit_code == 0, r.output
    assert not (ws / artifacts.LOCK_FILE).exists()


def test_two_real_trains_at_once_one_fails_cleanly(ws: Path, tiny_bert: Path):
    cmd = [sys.executable, "-m", "tagrec_cli", "train", "--workdir", str(ws), "--model",
           str(tiny_bert), "--device", "cpu", "--epochs", "1", "--dim", "16"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    if codes == [0, 0]:  # the first finished before the second started: also fine
        return
    assert codes == [0, 1], outs
    err = next(o[1] for o, p in zip(outs, procs, strict=True) if p.returncode == 1)
    assert "another tagrec command" in err and "Traceback" not in err
    config = json.loads((ws / "model" / "config.json").read_text())
    lines = (ws / "model" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [m["epoch"] for m in config["history"]]


@pytest.mark.parametrize("where", ["ingest", "train", "embed"])
def test_a_full_disk_is_one_line_and_leaves_the_workspace_as_it_was(
        ws: Path, sample_dir: Path, tiny_bert: Path, monkeypatch, where: str):
    before = snapshot(ws)
    real = os.replace

    def full(src, dst, *a, **kw):  # the last step of every artifact write fails
        if ".tmp-" in Path(str(src)).name:
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", full)
    args = {"ingest": ["ingest", "--data", str(sample_dir), "--holdout-fraction", "0"],
            "train": ["train", "--model", str(tiny_bert), "--epochs", "1", "--dim", "16",
                      "--device", "cpu"],
            "embed": ["embed", "--device", "cpu"]}[where]
    assert "the disk is full" in one_line_error(invoke(args, ws))
    monkeypatch.setattr(os, "replace", real)
    after = snapshot(ws)
    assert after == before


def test_a_polars_worded_full_disk_is_recognised():
    from tagrec_cli.errors import disk_full

    assert disk_full(RuntimeError("failed to write: No space left on device (os error 28)"))
    inner = OSError(errno.ENOSPC, "No space left on device")
    outer = ValueError("while saving")
    outer.__cause__ = inner
    assert disk_full(outer) and not disk_full(ValueError("other"))


# ---------------------------------------------------------------- CSV files


def copy_data(sample_dir: Path, folder: Path) -> Path:
    folder.mkdir()
    for name in ("ratings.csv", "tags.csv", "movies.csv"):
        shutil.copy(sample_dir / name, folder / name)
    return folder


def test_trailing_commas_are_an_empty_extra_column(sample_dir: Path, tmp_path: Path):
    data = copy_data(sample_dir, tmp_path / "data")
    for name, ending in (("ratings.csv", ",\n"), ("movies.csv", ",\r\n")):
        text = (data / name).read_text(encoding="utf-8").splitlines()
        (data / name).write_text("".join(line + ending for line in text), encoding="utf-8")
    assert invoke(["ingest", "--data", str(data), "--workdir", str(tmp_path / "a")]
                  ).exit_code == 0
    plain_run = invoke(["ingest", "--data", str(sample_dir), "--workdir", str(tmp_path / "b")])
    assert plain_run.exit_code == 0
    for table in ("movies", "users", "pairs"):
        a = (tmp_path / "a" / "ingest" / f"{table}.parquet").read_bytes()
        b = (tmp_path / "b" / "ingest" / f"{table}.parquet").read_bytes()
        assert a == b, table


def test_a_repeated_header_names_its_line(sample_dir: Path, tmp_path: Path):
    data = copy_data(sample_dir, tmp_path / "data")
    lines = (data / "ratings.csv").read_text(encoding="utf-8").splitlines()
    (data / "ratings.csv").write_text("\n".join(lines[:10] + lines[:1] + lines[10:]) + "\n")
    r = invoke(["ingest", "--data", str(data), "--workdir", str(tmp_path / "w")])
    assert "line 11 repeats the header line" in one_line_error(r)
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r\r\n"], ids=["lf", "crlf", "crcrlf"])
@pytest.mark.parametrize("name, row", [("ratings.csv", "1,2,3.5,1000,oops"),
                                       ("movies.csv", "999999,Dogs, Cats (2001),Comedy")])
def test_a_row_wider_than_the_header_names_its_line(sample_dir: Path, tmp_path: Path, name,
                                                    row, end):
    data = copy_data(sample_dir, tmp_path / "data")
    lines = (data / name).read_text(encoding="utf-8").splitlines()
    (data / name).write_bytes(end.join(lines[:7] + [row] + lines[7:]).encode() + end.encode())
    r = invoke(["ingest", "--data", str(data), "--workdir", str(tmp_path / "w")])
    width = len(lines[0].split(","))
    assert one_line_error(r) == (f"Error: {data / name}, line 8: {width + 1} fields, but the "
                                 f"header has {width} (a comma in a value that is not quoted?)")
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("row, message", [
    ("1,2", "line 8: empty 'rating' (expected a number)"),  # polars reads the row short
    ('1,"2,3.5,1000', 'line 8: a quote (") that is not closed on its line (the value runs to '
                     "line 10)"),
])
def test_a_short_row_or_an_open_quote_names_its_line(sample_dir: Path, tmp_path: Path, row,
                                                     message):
    data = copy_data(sample_dir, tmp_path / "data")
    lines = (data / "ratings.csv").read_text(encoding="utf-8").splitlines()
    # the open quote runs on through the two lines after it, to the end of the file
    (data / "ratings.csv").write_text("\n".join(lines[:7] + [row] + lines[7:9]) + "\n")
    r = invoke(["ingest", "--data", str(data), "--workdir", str(tmp_path / "w")])
    assert one_line_error(r) == f"Error: {data / 'ratings.csv'}, {message}"
    assert not (tmp_path / "w").exists()


def test_a_header_without_a_final_newline(sample_dir: Path, tmp_path: Path):
    data = copy_data(sample_dir, tmp_path / "data")
    (data / "tags.csv").write_text("userId,movieId,tag,timestamp")  # no tags, no newline
    assert invoke(["ingest", "--data", str(data), "--workdir", str(tmp_path / "w")]
                  ).exit_code == 0
    (data / "ratings.csv").write_text("userId,movieId,rating,timestamp")
    assert "has no ratings" in one_line_error(
        invoke(["ingest", "--data", str(data), "--workdir", str(tmp_path / "x")]))


def test_repeated_movie_ids_warn_and_count_once(sample_dir: Path, tmp_path: Path):
    data = copy_data(sample_dir, tmp_path / "data")
    lines = (data / "movies.csv").read_text(encoding="utf-8").splitlines()
    movie = lines[1].split(",")[0]
    (data / "movies.csv").write_text("\n".join(lines + [f"{movie},Again (2001),Horror"]) + "\n")
    r = invoke(["ingest", "--data", str(data), "--workdir", str(tmp_path / "a")])
    assert r.exit_code == 0 and f"more than once (first: {movie})" in r.stderr
    assert invoke(["ingest", "--data", str(sample_dir), "--workdir", str(tmp_path / "b")]
                  ).exit_code == 0
    for table in ("movies", "users"):  # the repeat changes nothing: its genres count once
        assert ((tmp_path / "a" / "ingest" / f"{table}.parquet").read_bytes()
                == (tmp_path / "b" / "ingest" / f"{table}.parquet").read_bytes())


def writing(ws: Path) -> bool:
    """Whether an artifact's temporary copy (not the lock's) is in the workspace or its cache."""
    return any(".tmp-" in p.name and not p.name.startswith(f".{artifacts.LOCK_FILE}")
               for folder in (ws, ws / "cache") if folder.is_dir() for p in folder.iterdir())


def leftovers(ws: Path) -> list[str]:
    return [str(p.relative_to(ws)) for p in (*ws.glob(".*"), *(ws / "cache").glob(".*"))
            if ".tmp-" in p.name or ".old-" in p.name or p.name == artifacts.LOCK_FILE]


@pytest.mark.parametrize("command", ["ingest", "train", "embed"])
def test_a_killed_command_leaves_nothing_a_rerun_cannot_fix(ws: Path, tiny_bert: Path,
                                                            evil_data: Path, command: str):
    import signal
    import time

    args = {"ingest": ["ingest", "--data", str(evil_data), "--holdout-fraction", "0",
                       "--pairs-per-class", "300"],
            "train": ["train", "--model", str(tiny_bert), "--device", "cpu", "--epochs", "3",
                      "--dim", "16"],
            "embed": ["embed", "--device", "cpu", "--batch-size", "8"]}[command]
    cmd = [sys.executable, "-m", "tagrec_cli", *args, "--workdir", str(ws)]
    # --allow-stale: a train killed after it saved an epoch leaves a newer model, and the
    # tables are then (rightly) stale; what is checked here is that they are intact
    query = ["recommend", "--user", "1", "--json", "--allow-stale"]
    before = invoke(query, ws).stdout
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and not writing(ws):
        time.sleep(0.005)  # kill it while it writes, or as close to that as we can see
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # it was killed, not already finished
    # what it was replacing is intact: recommend still answers as before
    assert invoke(query, ws).stdout == before
    r = invoke(args, ws)
    assert r.exit_code == 0, r.output
    assert leftovers(ws) == []


def without_cache(folder: Path) -> dict[str, bytes]:
    return {k: v for k, v in snapshot(folder).items() if not k.startswith("cache")}


@pytest.mark.parametrize("when", ["train while encoding", "embed while writing"])
def test_ctrl_c_is_one_line_exit_130_and_leaves_the_workspace_as_it_was(
        ws: Path, tiny_bert: Path, when: str):
    import signal
    import threading
    import time

    from tagrec_cli.cli.app import INTERRUPTED

    args = {"train while encoding": ["train", "--model", str(tiny_bert), "--device", "cpu",
                                     "--epochs", "1", "--dim", "16"],
            "embed while writing": ["embed", "--device", "cpu", "--batch-size", "8"]}[when]
    for cached in (ws / "cache").glob("pooled-*"):
        cached.unlink()  # both commands must encode every document: the pass Ctrl-C stops
    before = without_cache(ws)
    cmd = [sys.executable, "-m", "tagrec_cli", *args, "--workdir", str(ws)]
    # A test run started in the background by a shell without job control inherits SIGINT
    # ignored, and so would the command: with a handler here, the command starts with the
    # default, as a terminal's Ctrl-C finds it (exec resets a handled signal, not an ignored one)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    finally:
        signal.signal(signal.SIGINT, previous)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not (
            any("encoding documents" in line for line in lines) if when.startswith("train")
            else writing(ws)):
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    reader.join(timeout=10)
    stderr = "".join(lines)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == f"Error: {INTERRUPTED}", stderr
    assert leftovers(ws) == []
    assert without_cache(ws) == before  # the cache may keep what was finished, nothing else
    r = invoke(args, ws)
    assert r.exit_code == 0, r.output


# ---------------------------------------------------------------- the workspace's history


def test_tables_from_an_older_ingest_are_refused_unless_allowed(ws: Path, evil_data: Path):
    same = invoke(["ingest", "--data", str(evil_data), "--holdout-fraction", "0",
                   "--pairs-per-class", "300"], ws)
    assert same.exit_code == 0, same.output  # the same data and settings: nothing is stale
    assert invoke(["recommend", "--user", "1"], ws).exit_code == 0
    other = invoke(["ingest", "--data", str(evil_data), "--holdout-fraction", "0.2"], ws)
    assert other.exit_code == 0, other.output
    for args in (["recommend", "--user", "1"], ["recommend", "--tags", "x"],
                 ["similar", "--movie", "4"]):
        assert "older ingest" in one_line_error(invoke(args, ws)), args
        assert invoke([*args, "--allow-stale"], ws).exit_code == 0, args
    assert "re-run `tagrec train`" in one_line_error(invoke(["embed"], ws))
    # evaluate reads no served table: it fits its own models in evaluate/ (test_evaluate.py).


def test_tables_from_an_older_model_are_refused_unless_allowed(ws: Path, tiny_bert: Path):
    r = invoke(["train", "--model", str(tiny_bert), "--device", "cpu", "--epochs", "1",
                "--dim", "16", "--seed", "7"], ws)
    assert r.exit_code == 0, r.output
    assert "re-run `tagrec embed`" in one_line_error(invoke(["recommend", "--user", "1"], ws))
    assert invoke(["recommend", "--user", "1", "--allow-stale"], ws).exit_code == 0
    assert invoke(["embed", "--device", "cpu"], ws).exit_code == 0
    assert invoke(["recommend", "--user", "1"], ws).exit_code == 0


def test_added_movies_survive_a_full_embed(ws: Path, tmp_path: Path):
    new = tmp_path / "new.csv"
    new.write_text("movieId,title,genres,tags\n"
                   "900001,Heist Again (2031),Crime,safe cracking|twist ending\n"
                   "4,Replaced Title (1999),Drama,x\n")  # 4 is in the ingest data already
    r = invoke(["embed", "--add-movies", str(new), "--replace"], ws)
    assert r.exit_code == 0, r.output
    added = json.loads(invoke(["similar", "--movie", "900001", "--json", "-k", "3"], ws).stdout)
    r = invoke(["embed", "--device", "cpu"], ws)
    assert r.exit_code == 0, r.output
    assert "1 movie added earlier with --add-movies added again" in " ".join(r.stdout.split())
    assert "note:" not in r.stderr  # --replace: the user's row won, nothing to say
    again = json.loads(invoke(["similar", "--movie", "900001", "--json", "-k", "3"], ws).stdout)
    # the same model, the same document: the same vector (to float noise: the full embed
    # encodes the added movie in another batch)
    def without_scores(answer: dict) -> dict:
        return {**answer, "recommendations": [{k: v for k, v in m.items() if k != "score"}
                                              for m in answer["recommendations"]]}

    assert without_scores(again) == without_scores(added)
    assert [m["score"] for m in again["recommendations"]] == pytest.approx(
        [m["score"] for m in added["recommendations"]], abs=1e-5)
    assert (ws / "embeddings" / "added").is_dir()
    title = json.loads(invoke(["similar", "--movie", "4", "--json", "-k", "1"], ws).stdout)
    # --replace asked for the user's row to win over the ingest's: a full embed keeps it
    assert title["query"]["title"] == "Replaced Title (1999)"
    assert [p.name for p in (ws / "embeddings" / "added").iterdir()] == ["0001r-new.csv"]
    manifest = json.loads((ws / "embeddings" / "manifest.json").read_text())
    assert manifest["added_movies"] == 1
    from tagrec_cli.store import Store

    assert manifest["movies"] == len(Store(ws).table("movie").ids)


def test_an_added_movie_the_ingest_now_has_keeps_the_ingest_row(ws: Path, tmp_path: Path):
    new = tmp_path / "new.csv"
    new.write_text("movieId,title,genres,tags\n900001,Heist Again (2031),Crime,x\n")
    assert invoke(["embed", "--add-movies", str(new)], ws).exit_code == 0
    kept = ws / "embeddings" / "added" / "0001-new.csv"
    assert kept.is_file()
    # as if the user's data gained movie 4 under the added CSV: without --replace, the
    # ingest's row wins at the next full embed
    kept.write_text("movieId,title,genres,tags\n900001,Heist Again (2031),Crime,x\n"
                    "4,Not The Ingest Title (1999),Drama,x\n")
    r = invoke(["embed", "--device", "cpu"], ws)
    assert r.exit_code == 0, r.output
    title = json.loads(invoke(["similar", "--movie", "4", "--json", "-k", "1"], ws).stdout)
    assert title["query"]["title"] != "Not The Ingest Title (1999)"
    # ... and says so, naming the movie and the way to keep the user's row
    note = " ".join(r.stderr.split())
    assert "note: the ingest data now has movies you added with --add-movies (4)" in note
    assert "--replace" in note and "900001" not in note
    # following the note (adding it again with --replace) makes the user's row win, and
    # the note goes away
    mine = tmp_path / "mine.csv"
    mine.write_text("movieId,title,genres,tags\n4,Not The Ingest Title (1999),Drama,x\n")
    assert invoke(["embed", "--add-movies", str(mine), "--replace"], ws).exit_code == 0
    r = invoke(["embed", "--device", "cpu"], ws)
    assert r.exit_code == 0 and "note:" not in r.stderr, r.output
    title = json.loads(invoke(["similar", "--movie", "4", "--json", "-k", "1"], ws).stdout)
    assert title["query"]["title"] == "Not The Ingest Title (1999)"


def test_clean_removes_only_what_no_artifact_needs(ws: Path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (ws / f".model.tmp-{dead}").mkdir()
    (ws / f".model.tmp-{dead}" / "model.safetensors").write_bytes(b"x" * 1000)
    (ws / "cache" / f".tokens-abc.safetensors.tmp-{dead}").write_bytes(b"y" * 10)
    (ws / artifacts.LOCK_FILE).write_text(f"{dead}\n")
    # deeper: an evaluate stage's (clean looked only at the workspace and cache/), and in
    # embeddings/added/, the user's own folder, a file that only looks like a leftover
    stage = ws / "evaluate" / "valid"
    stage.mkdir(parents=True, exist_ok=True)
    (stage / f".model.tmp-{dead}").mkdir()
    (stage / f".model.tmp-{dead}" / f".config.json.tmp-{dead}").write_text("{}")
    added = ws / "embeddings" / "added"
    added.mkdir(exist_ok=True)
    (added / f".mine.tmp-{dead}").write_text("the user's")
    caches = sorted(p.name for p in (ws / "cache").iterdir())
    assert any(c.startswith("tokens-") for c in caches)
    r = invoke(["clean", "--dry-run"], ws)
    assert r.exit_code == 0, r.output
    assert f".model.tmp-{dead}" in r.stdout and (ws / f".model.tmp-{dead}").exists()
    before = invoke(["recommend", "--user", "1", "--json"], ws).stdout
    r = invoke(["clean"], ws)
    assert r.exit_code == 0, r.output
    assert not (ws / f".model.tmp-{dead}").exists() and not (ws / artifacts.LOCK_FILE).exists()
    assert not (stage / f".model.tmp-{dead}").exists()
    assert (added / f".mine.tmp-{dead}").read_text() == "the user's"
    assert sorted(p.name for p in (ws / "cache").iterdir()) == [
        c for c in caches if not c.startswith(".")]  # caches kept without --caches
    assert invoke(["clean", "--caches"], ws).exit_code == 0
    assert list((ws / "cache").iterdir()) == []
    assert invoke(["recommend", "--user", "1", "--json"], ws).stdout == before
    assert invoke(["embed", "--device", "cpu"], ws).exit_code == 0  # caches rebuilt


def test_old_caches_are_pruned(ws: Path):
    stale = ws / "cache" / "tokens-0000000000000000.safetensors"
    stale.write_bytes(b"old")
    (ws / "cache" / "pooled-0000000000000000.safetensors").write_bytes(b"old")
    for p in (ws / "cache").glob("tokens-*"):
        if p != stale:
            p.unlink()  # the next command must write the token cache again, and prune
    assert invoke(["embed", "--device", "cpu"], ws).exit_code == 0
    names = [p.name for p in (ws / "cache").iterdir()]
    assert stale.name not in names and len([n for n in names if n.startswith("tokens-")]) == 1


# ---------------------------------------------------------------- values a command cannot take


@pytest.mark.parametrize("args, option", [
    (["ingest", "--seed", "-1"], "--seed"),
    (["ingest", "--seed", "99999999999999999999"], "--seed"),
    (["ingest", "--max-tags", "99999999999999999999"], "--max-tags"),
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--dim", "100000000"], "--dim"),
    (["train", "--epochs", "2000000"], "--epochs"),
    (["sample-data", "--out", "x", "--seed", "-1"], "--seed"),
    (["sample-data", "--out", "x", "--users", "1000000000"], "--users"),
    (["evaluate", "--device", "tpu"], "--device"),
])
def test_values_out_of_range_are_one_line_before_any_work(ws: Path, args, option):
    # each used to end in a traceback (an OverflowError from polars, a ValueError from torch,
    # a MemoryError), some after minutes of work
    before = snapshot(ws)
    r = invoke(args, ws)
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    line = r.stderr.strip()
    assert line.startswith("Error: Invalid value for") and option in line, line
    assert snapshot(ws) == before


EMBED = ["embed", "--device", "cpu"]
EVALUATE = ["evaluate", "--baselines", "popular", "--validation-only"]  # reads the settings


NOT_OURS = "was not written by this tagrec, or is damaged"


@pytest.mark.parametrize("edit, why, commands", [
    (lambda c: c["model"].update(newthing=1), f"{NOT_OURS} (an unknown setting 'newthing')",
     [EMBED, EVALUATE]),
    (lambda c: c["model"].update(dim="8"), f"{NOT_OURS} (dim is '8')", [EMBED, EVALUATE]),
    (lambda c: c.pop("encoder_config"), "has no usable encoder_config (KeyError)", [EMBED]),
    # damaged by hand: each was a traceback inside embed
    (lambda c: c.update(data=None), "is damaged (data is 'None')", [EMBED]),
    (lambda c: c.update(tokenizer_check=-5), "is damaged (tokenizer_check is '-5')", [EMBED]),
    (lambda c: c["model"].update(id_rows=-5), f"{NOT_OURS} (id_rows must be >= 0)", [EMBED]),
    (lambda c: c["model"]["features"].update(log_max_movie=0),
     f"{NOT_OURS} (features has log_max_movie '0': not the side features' constants as ingest "
     "records them)", [EMBED]),
    (lambda c: c.update(best_epoch=0), "is damaged (best_epoch 0 is not >= 1)", [EMBED]),
    (lambda c: c.update(model="x"), "is damaged (model is 'x')", [EMBED]),
    # transformers' and torch's own errors, each a traceback before
    (lambda c: c["encoder_config"].update(hidden_size=-5),
     "has no usable encoder_config (RuntimeError)", [EMBED]),
])
def test_a_model_config_from_another_version_is_one_line(ws: Path, edit, why, commands):
    path = ws / artifacts.MODEL_DIR / artifacts.MODEL_CONFIG
    edit_json(path, edit)
    before = snapshot(ws)
    for args in commands:
        line = one_line_error(invoke(args, ws))
        assert line == f"Error: {path} {why} — re-run `tagrec train`", line
        assert snapshot(ws) == before


def test_max_length_beyond_what_the_encoder_reads_is_one_line(ws: Path, tiny_bert: Path,
                                                              tmp_path: Path):
    from transformers import BertConfig, BertModel

    short = tmp_path / "short_bert"  # tiny_bert, but reading 16 positions
    shutil.copytree(tiny_bert, short)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=16)).save_pretrained(short)
    r = invoke(["train", "--model", str(short), "--device", "cpu", "--max-length", "64"], ws)
    assert "reads (at most 16 tokens)" in one_line_error(r)


def test_a_pairs_table_without_its_labels_is_one_line(ws: Path, tiny_bert: Path):
    import polars as pl

    path = ws / artifacts.INGEST_DIR / artifacts.PAIRS_FILE
    pl.read_parquet(path).drop("label").write_parquet(path)
    r = invoke(["train", "--model", str(tiny_bert), "--device", "cpu", "--dim", "16"], ws)
    assert f"{path} is missing or damaged" in one_line_error(r)


def test_evaluate_checks_its_json_path_before_it_runs(ws: Path, tmp_path: Path):
    config = ws / artifacts.MODEL_DIR / artifacts.MODEL_CONFIG
    before = snapshot(ws)
    for path, message in [
            (tmp_path / "nowhere" / "r.json", "the folder"),
            (config, "is inside the workspace's model/"),
    ]:
        r = invoke(["evaluate", "--baselines", "popular", "--validation-only", "--json",
                    str(path)], ws)
        assert message in one_line_error(r)
    assert snapshot(ws) == before  # nothing was evaluated, nothing overwritten


def test_a_relative_model_folder_is_recorded_absolute(ws: Path, tiny_bert: Path, tmp_path: Path,
                                                      monkeypatch):
    # evaluate trains its stages from the recorded --model: "tinybert" would name whatever
    # folder of that name is where evaluate runs, or a Hugging Face id
    shutil.copytree(tiny_bert, tmp_path / "tinybert")
    monkeypatch.chdir(tmp_path)
    r = invoke(["train", "--model", "tinybert", "--device", "cpu", "--dim", "16", "--epochs",
                "1"], ws)
    assert r.exit_code == 0, r.output
    config = json.loads((ws / artifacts.MODEL_DIR / artifacts.MODEL_CONFIG).read_text())
    assert config["model"]["base_model"] == str(tmp_path / "tinybert")


@pytest.mark.parametrize("args", [
    ["ingest", "--like-threshold", "100"],
    ["ingest", "--liked-rating", "0.1"],
    ["train", "--positive-rating", "100"],
    ["evaluate", "--relevant-rating", "9", "--baselines-only", "--validation-only"],
])
def test_a_rating_threshold_off_the_scale_is_one_line(ws: Path, evil_data: Path, args):
    # each used to run to the end and learn or score nothing: every pair a dislike, a
    # softmax without positives, "0 users evaluated", exit 0
    before = snapshot(ws)
    extra = ["--data", str(evil_data)] if args[0] == "ingest" else []
    assert "on the rating scale (0.5-5)" in one_line_error(invoke([*args, *extra], ws))
    assert snapshot(ws) == before


def test_a_setting_error_names_the_options_a_user_types(ws: Path, evil_data: Path):
    # the message names each setting by the command's option, not by its config field
    r = invoke(["ingest", "--liked-rating", "7", "--data", str(evil_data)], ws)
    assert one_line_error(r).startswith("Error: --liked-rating and --like-threshold must be "
                                        "on the rating scale")


def test_evaluate_with_nothing_to_evaluate_is_an_error(ws: Path):
    # used to run the protocol's ingest and exit 0 with empty tables
    before = snapshot(ws)
    r = invoke(["evaluate", "--baselines", " , ", "--baselines-only"], ws)
    assert one_line_error(r) == ("Error: nothing to evaluate: --baselines names none and "
                                 "--baselines-only skips tagrec")
    assert snapshot(ws) == before


def test_in_cli_terms_spells_only_the_options_a_command_has():
    from tagrec_cli.cli.app import in_cli_terms
    from tagrec_cli.errors import QueryError, SettingError

    exc = SettingError("epochs and batch_size must be >= 1; dim too", ("epochs", "batch_size",
                                                                        "dim"))
    options = {"epochs": "--epochs", "batch_size": "--batch-size"}
    assert in_cli_terms(exc, options) == "--epochs and --batch-size must be >= 1; dim too"
    # whole words only: "lr" in "head_lr" is another setting
    assert in_cli_terms(SettingError("head_lr and lr: must be finite", ("head_lr", "lr")),
                        {"lr": "--lr"}) == "head_lr and --lr: must be finite"
    # an unknown movie says how to find one; a word that is not among the names stays
    assert in_cli_terms(QueryError("unknown movie 5: title", "movie", unknown=True),
                        {"title": "--title"}) == ("unknown movie 5: title; look a movie up by "
                                                  "title with --title, e.g. tagrec similar "
                                                  "--title \"toy story\"")


def test_messages_that_used_to_mislead(ws: Path, tmp_path: Path, evil_data: Path):
    # a tags.csv that is a folder was "missing"; a tab-separated file got no hint; a file
    # given as --model was "not in the Hugging Face cache"; a --base-url without a scheme
    # was "unknown url type ... check the connection"
    data = tmp_path / "data"
    shutil.copytree(evil_data, data)
    (data / "tags.csv").unlink()
    (data / "tags.csv").mkdir()
    line = one_line_error(invoke(["ingest", "--data", str(data)], ws))
    assert line.endswith("tags.csv is not a regular file (expected a CSV file)")
    shutil.rmtree(data / "tags.csv")
    (data / "tags.csv").write_text("userId\tmovieId\ttag\ttimestamp\n1\t1\tx\t5\n")
    line = one_line_error(invoke(["ingest", "--data", str(data)], ws))
    assert "it seems separated by tabs, and MovieLens files are separated by commas" in line
    line = one_line_error(invoke(["train", "--model", str(data / "movies.csv")], ws))
    assert "is a file: give a model folder" in line
    line = one_line_error(invoke(["download", "ml-latest-small", "--dest", str(tmp_path / "d"),
                                  "--base-url", "127.0.0.1:8765"]))
    assert "--base-url '127.0.0.1:8765' must start with http://, https:// or file://" in line


def test_an_evaluation_that_scores_nobody_is_an_error(tmp_path: Path):
    # 3 users: evaluate's split leaves none with a validation rating; the report used to be
    # an empty table and exit 0
    data, work = tmp_path / "data", tmp_path / "w"
    assert invoke(["sample-data", "--out", str(data), "--users", "3", "--movies", "5"]
                  ).exit_code == 0
    assert invoke(["ingest", "--data", str(data)], work).exit_code == 0
    r = invoke(["evaluate", "--baselines", "popular", "--baselines-only", "-k", "2"], work)
    assert "no user has a validation rating >= 4, so nothing was scored" in one_line_error(r)


BAD_INGEST_SETTINGS = ("Error: the ingest settings recorded in the workspace are not ones this "
                       "tagrec can use (")


@pytest.mark.parametrize("change", [{"like_threshold": 7}, {"max_tags": "abc"},
                                    {"with_title": "no"}, {"seed": -5}])
def test_ingest_settings_a_workspace_recorded_badly_are_one_line(
        embedded_sample_refit_300pairs_dim16, copy_workspace, change):
    # an older tagrec's out-of-range setting, or a damaged manifest: one line that says
    # what to re-run, not a range message about an option this command lacks or a TypeError
    ws = copy_workspace(embedded_sample_refit_300pairs_dim16)
    edit_json(ws / "embeddings" / "manifest.json", lambda m: m["ingest_settings"].update(change))
    for args in (["recommend", "--tags", "heist"], ["similar", "--movie", "1"]):
        message = one_line_error(invoke(args, ws))
        assert message.startswith(BAD_INGEST_SETTINGS), message
        assert message.endswith("— re-run `tagrec ingest`")


@pytest.mark.parametrize("training, why", [
    ({"epochs": 0}, "epochs and batch_size must be >= 1"), ({"lr": "fast"}, "lr is 'fast'"),
    # accepted before: the first two trained without a word, the others were torch's
    # tracebacks minutes into the run
    ({"lr": -1e-3}, "lr, head_lr and weight_decay must be >= 0"),
    ({"temperature": 0.0}, "temperature and bce_temperature must be > 0"),
    ({"device": "x"}, "device must be one of auto, cpu, cuda, not 'x'"),
    ({"seed": -5}, "seed must be in [0, 4294967295]"),
    ({"weight_decay": -1.0}, "lr, head_lr and weight_decay must be >= 0"),
    # a JSON integer where a float belongs skipped the finite check (it looked at the value)
    ({"lr": 10**400}, "lr: must be a finite number")])
def test_training_settings_a_model_recorded_badly_are_one_line(
        embedded_sample_refit_300pairs_dim16, copy_workspace, training, why):
    ws = copy_workspace(embedded_sample_refit_300pairs_dim16)
    path = ws / "model" / "config.json"
    edit_json(path, lambda c: c.update(training={**c["training"], **training}))
    before = snapshot(ws)
    message = one_line_error(invoke(["evaluate", "--validation-only"], ws))
    assert message == f"Error: {path} {NOT_OURS} ({why}) — re-run `tagrec train`", message
    assert snapshot(ws) == before


def test_training_settings_that_are_no_object_are_one_line(
        embedded_sample_refit_300pairs_dim16, copy_workspace):
    ws = copy_workspace(embedded_sample_refit_300pairs_dim16)
    path = ws / "model" / "config.json"
    edit_json(path, lambda c: c.update(training="damaged"))
    message = one_line_error(invoke(["evaluate", "--validation-only"], ws))
    assert message == (f"Error: {path} is damaged (training is 'damaged') — re-run "
                       "`tagrec train`"), message


@pytest.mark.parametrize("change", [{"like_threshold": "abc"}, {"side_features": "no"}, None])
def test_train_and_embed_check_the_ingest_settings_before_any_work(
        embedded_sample_refit_300pairs_dim16, copy_workspace, tiny_bert, change):
    # embed used to read like_threshold raw (a string: a polars traceback after encoding),
    # train read side_features raw (the string "no" counted as true)
    ws = copy_workspace(embedded_sample_refit_300pairs_dim16)
    edit_json(ws / "ingest" / "manifest.json", lambda m: m.update(
        settings=None if change is None else {**m["settings"], **change}))
    before = snapshot(ws)
    for args in (["embed", "--device", "cpu"],
                 ["train", "--model", str(tiny_bert), "--device", "cpu", "--epochs", "1"]):
        message = one_line_error(invoke(args, ws))
        assert message.startswith(BAD_INGEST_SETTINGS), (args, message)
        assert message.endswith("— re-run `tagrec ingest`")
        assert snapshot(ws) == before


@pytest.mark.parametrize("file, key, value, args", [
    ("embeddings", "model_dir", None, ["recommend", "--user", "1"]),
    ("embeddings", "added_movies", "x", ["similar", "--movie", "1"]),
    ("embeddings", "ingest_settings", "deleted", ["recommend", "--tags", "heist"]),
    ("ingest", "data_dir", None, ["evaluate", "--baselines", "popular", "--baselines-only"]),
    ("ingest", "feature_stats", "x", ["embed", "--device", "cpu"]),
    ("embeddings", "popularity_prior", {"strength": "x", "shrink": 10}, ["similar", "--movie",
                                                                          "1"]),
    ("embeddings", "popularity_prior", {"strength": 0.05}, ["recommend", "--user", "1"]),
    ("embeddings", "popularity_prior", {"strength": 10**400, "shrink": 10},  # OverflowError
     ["recommend", "--user", "1"]),
    # of the right type, but a value no reader can use
    ("ingest", "feature_stats", {"mean_rating": 3.5}, ["embed", "--device", "cpu"]),
    ("ingest", "feature_stats", None, ["embed", "--device", "cpu"]),  # side features are on
    ("embeddings", "precision", "x", ["recommend", "--user", "1"]),
])
def test_a_manifest_field_of_another_type_is_one_line(
        embedded_sample_refit_300pairs_dim16, copy_workspace, file, key, value, args):
    # each of these was a TypeError/KeyError traceback deep inside the command
    ws = copy_workspace(embedded_sample_refit_300pairs_dim16)
    path = ws / file / "manifest.json"
    edit_json(path, lambda m: m.pop(key) if value == "deleted" else m.update({key: value}))
    before = snapshot(ws)
    message = one_line_error(invoke(args, ws))
    assert message.startswith(f"Error: {path} is damaged ({key} ") or message == (
        f"Error: {path} is damaged (no {key}) — re-run `tagrec ingest`"), message
    assert message.endswith(f"— re-run `tagrec {file.replace('embeddings', 'embed')}`")
    assert snapshot(ws) == before


@pytest.mark.parametrize("name, damage", [
    ("tokenizer_config.json", lambda p: p.write_text("[]")),
    ("tokenizer.json", lambda p: p.write_text("{}")),
    # read without complaint, a TypeError when the tokenizer is first called
    ("tokenizer_config.json", lambda p: edit_json(p, lambda c: c.update(model_max_length="x"))),
])
def test_a_damaged_tokenizer_file_is_one_line(embedded_sample_refit_300pairs_dim16,
                                              copy_workspace, name, damage):
    # transformers read them into an AttributeError / KeyError / TypeError traceback
    ws = copy_workspace(embedded_sample_refit_300pairs_dim16)
    damage(ws / "model" / name)
    before = snapshot(ws)
    message = one_line_error(invoke(["embed", "--device", "cpu"], ws))
    assert message.startswith(f"Error: model in {ws / 'model'} is incomplete or corrupt ("), \
        message
    assert snapshot(ws) == before


@pytest.mark.parametrize("damage", [lambda d: d.drop("part"),
                                    lambda d: d.with_columns(d["userId"].cast(str))])
def test_a_validation_stage_with_a_damaged_table_is_ingested_again(
        embedded_sample_refit_300pairs_dim16, copy_workspace, damage):
    # the stage is evaluate's own: "re-run `tagrec ingest`" would not have remade it
    import polars as pl

    ws = copy_workspace(embedded_sample_refit_300pairs_dim16)
    args = ["evaluate", "--baselines", "popular", "--baselines-only", "--validation-only"]
    first = invoke(args, ws)
    assert first.exit_code == 0, first.output
    path = (ws / artifacts.EVALUATE_DIR / artifacts.EVALUATE_STAGE["valid"]
            / artifacts.INGEST_DIR / artifacts.RATINGS_FILE)
    whole = pl.read_parquet(path)
    damage(whole).write_parquet(path)
    r = invoke(args, ws)
    assert r.exit_code == 0, r.output
    assert pl.read_parquet(path).equals(whole)

    def untimed(text: str) -> str:
        return re.sub(r"\d+(\.\d+)? s\b", "", text)

    assert untimed(r.stdout) == untimed(first.stdout)  # the same report as before


def test_a_validation_stage_without_its_scored_new_users_is_ingested_again(
        embedded_sample_refit_300pairs_dim16, copy_workspace):
    # Without the list, evaluate's validation stage scored every left-out user: the test
    # stage's new users among them, on which nothing may be chosen.
    from tagrec_cli.errors import ArtifactError

    ws = copy_workspace(embedded_sample_refit_300pairs_dim16)
    args = ["evaluate", "--baselines", "popular", "--baselines-only", "--validation-only"]
    assert invoke(args, ws).exit_code == 0
    stage = ws / artifacts.EVALUATE_DIR / artifacts.EVALUATE_STAGE["valid"]
    path = stage / artifacts.INGEST_DIR / artifacts.MANIFEST
    scored = json.loads(path.read_text())["scored_new_users"]
    assert scored
    edit_json(path, lambda m: m.pop("scored_new_users"))
    with pytest.raises(ArtifactError, match=r"is damaged \(no scored_new_users\)"):
        artifacts.ingest_manifest(stage)
    r = invoke(args, ws)
    assert r.exit_code == 0, r.output
    assert json.loads(path.read_text())["scored_new_users"] == scored  # ingested again


@pytest.mark.parametrize("table, damage, why", [
    ("ratings.parquet", lambda d: d.drop("userId"), "no column userId"),
    ("movies.parquet", lambda d: d.drop("title"), "no column title"),
    ("users.parquet", lambda d: d.drop("tags"), "no column tags"),
    ("ratings.parquet", lambda d: d.with_columns(d["movieId"].cast(str)),
     "column movieId holds str, not int"),
    ("ratings.parquet", lambda d: d.with_columns(
        rating=d["rating"].scatter([0, 1], None)), "column rating has 2 nulls"),
    # a side-feature column: said "lacks the side-feature columns" for any damage to it
    ("users.parquet", lambda d: d.with_columns(d["n_ratings"].cast(str)),
     "column n_ratings holds str, not int"),
    # embed wrote tables without these movies or users (exit 0); {n}: the rows ingest wrote
    ("movies.parquet", lambda d: d.head(0), "0 rows where ingest wrote {n:,}"),
    ("users.parquet", lambda d: d.slice(1), "{m:,} rows where ingest wrote {n:,}"),
])
def test_a_damaged_ingest_table_is_one_line(embedded_sample_refit_300pairs_dim16,
                                            copy_workspace, table, damage, why):
    # each was a polars ColumnNotFoundError, a KeyError or an InvalidOperationError deep
    # inside embed (a binary-file fuzz), or a silently different result
    import polars as pl

    ws = copy_workspace(embedded_sample_refit_300pairs_dim16)
    path = ws / artifacts.INGEST_DIR / table
    whole = pl.read_parquet(path)
    why = why.format(n=whole.height, m=whole.height - 1)
    damage(whole).write_parquet(path)
    before = snapshot(ws)
    message = one_line_error(invoke(["embed", "--device", "cpu"], ws))
    assert message == f"Error: {path} is damaged ({why}) — re-run `tagrec ingest`", message
    assert snapshot(ws) == before


def _edit_tensors(path: Path, edit: Callable[[dict], None]) -> None:
    """Rewrite a safetensors file with `edit` applied to its arrays (metadata kept)."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    with safe_open(str(path), framework="numpy") as f:
        metadata = f.metadata()
    arrays = load_file(str(path))
    edit(arrays)
    save_file(arrays, str(path), metadata=metadata)


@pytest.mark.parametrize("cache, edit", [
    ("pooled", lambda t: t["movie"].__setitem__(np.flatnonzero(t["movie_done"])[0], np.nan)),
    ("pooled", lambda t: t.update(movie=t["movie"].astype(np.float16))),
    ("pooled", lambda t: t.update(movie=t["movie"][:, :-1].copy())),  # not the encoder's H
    ("tokens", lambda t: t.update(movie_offsets=t["movie_offsets"][:-1].copy())),
    ("tokens", lambda t: t.update(user_ids=t["user_ids"][:-1].copy())),
])
def test_a_damaged_cache_is_rebuilt_not_trusted(embedded_sample_refit_300pairs_dim16,
                                                copy_workspace, cache, edit):
    # a NaN row went into the tables; a lost row dropped a user from them or was an
    # IndexError; another dtype a RuntimeError (a binary-file fuzz)
    from safetensors.numpy import load_file

    ws = copy_workspace(embedded_sample_refit_300pairs_dim16)
    (path,) = (ws / "cache").glob(f"{cache}-*.safetensors")
    _edit_tensors(path, edit)
    before = {side: load_file(str(ws / "embeddings" / f"{side}s.safetensors"))
              for side in ("user", "movie")}
    r = invoke(["embed", "--device", "cpu"], ws)
    assert r.exit_code == 0, r.output
    for side, old in before.items():
        new = load_file(str(ws / "embeddings" / f"{side}s.safetensors"))
        assert np.array_equal(new["ids"], old["ids"])
        assert np.allclose(new["embeddings"], old["embeddings"], atol=1e-5)


def test_a_model_that_gives_nan_vectors_writes_no_table(embedded_sample_refit_300pairs_dim16,
                                                        copy_workspace):
    ws = copy_workspace(embedded_sample_refit_300pairs_dim16)
    _edit_tensors(ws / "model" / "model.safetensors",
                  lambda t: t["heads.movie.weight"].__setitem__((0, 0), np.nan))
    before = snapshot(ws)
    message = one_line_error(invoke(["embed", "--device", "cpu"], ws))
    assert message.startswith("Error: 1,500 movie vectors to write are not finite numbers"), \
        message
    assert snapshot(ws) == before


def test_a_full_embed_keeps_what_else_a_user_put_in_added(embedded_sample_refit_300pairs_dim16,
                                                          copy_workspace):
    # embed rewrites embeddings/ and used to carry over only the CSVs of added/: a user's
    # notes there were deleted without a word
    ws = copy_workspace(embedded_sample_refit_300pairs_dim16)
    added = ws / "embeddings" / "added"
    added.mkdir()
    (added / "notes.txt").write_text("where these movies came from\n")
    (added / "old").mkdir()
    (added / "old" / "batch.csv").write_text("movieId,title,genres,tags\n")
    r = invoke(["embed", "--device", "cpu"], ws)
    assert r.exit_code == 0, r.output
    assert (added / "notes.txt").read_text() == "where these movies came from\n"
    assert (added / "old" / "batch.csv").is_file()


def test_adding_after_a_kept_csv_was_deleted_overwrites_none(
        embedded_sample_refit_300pairs_dim16, copy_workspace, tmp_path):
    # The next number was the count of kept CSVs plus one: with 0002 deleted by hand, a
    # third add was numbered 0003 again, and a CSV of the same name overwrote the kept
    # 0003 (through its hard link, in the live folder too) without a word.
    ws = copy_workspace(embedded_sample_refit_300pairs_dim16)
    for n, name in ((1, "a"), (2, "b"), (3, "c")):
        csv = tmp_path / str(n) / f"{name}.csv"
        csv.parent.mkdir()
        csv.write_text(f"movieId,title,genres,tags\n90000{n},Film {n} (2031),Crime,x\n")
        assert invoke(["embed", "--add-movies", str(csv)], ws).exit_code == 0
    added = ws / "embeddings" / "added"
    (added / "0002-b.csv").unlink()
    again = tmp_path / "4" / "c.csv"
    again.parent.mkdir()
    again.write_text("movieId,title,genres,tags\n900004,Film 4 (2031),Crime,x\n")
    assert invoke(["embed", "--add-movies", str(again)], ws).exit_code == 0
    assert sorted(p.name for p in added.iterdir()) == ["0001-a.csv", "0003-c.csv", "0004-c.csv"]
    assert "900003" in (added / "0003-c.csv").read_text()
    r = invoke(["embed", "--device", "cpu"], ws)  # both added again
    assert r.exit_code == 0, r.output
    for movie in ("900001", "900003", "900004"):
        assert invoke(["similar", "--movie", movie, "-k", "1"], ws).exit_code == 0


def test_kept_csvs_sort_by_number_then_hand_put_ones():
    from tagrec_cli.embed import kept_order, replaces

    names = ["mine.csv", "10000-x.csv", "9999r-y.csv", "0002-z.csv"]
    assert sorted(names, key=lambda n: kept_order(Path(n))) == [
        "0002-z.csv", "9999r-y.csv", "10000-x.csv", "mine.csv"]
    assert [replaces(Path(n)) for n in names] == [False, False, True, False]
    assert not replaces(Path("rr-notes.csv"))


@pytest.mark.parametrize("file, edit, args, why", [
    ("embeddings/user_tags.safetensors", lambda t: t.pop("terms.text"),
     ["recommend", "--user", "1"], None),
    ("embeddings/user_tags.safetensors", lambda t: t.pop("tags.ids"),
     ["recommend", "--user", "1"], None),
    ("embeddings/user_tags.safetensors",
     lambda t: t.update({"terms.valid": t["terms.valid"][:-1].copy()}),
     ["recommend", "--user", "1"], None),
    ("embeddings/seen.safetensors", lambda t: t.pop("movies"), ["recommend", "--user", "1"],
     None),
    # an IndexError or a broadcast ValueError in the document grammar's numpy twins; the
    # message names what is wrong (MovieTerms.problem), not only an exception's class
    ("embeddings/catalogue.safetensors",
     lambda t: t.update({"terms.tag_ids": t["terms.tag_ids"][:-1].copy()}),
     ["recommend", "--tags", "heist"], "(tag_indptr does not end at "),
    ("embeddings/catalogue.safetensors",
     lambda t: t.update({"terms.genre_indptr": t["terms.genre_indptr"][:-1].copy()}),
     ["recommend", "--tags", "heist"], "(tag_indptr and genre_indptr cover different movies)"),
])
def test_a_damaged_embeddings_file_is_one_line(embedded_sample_refit_300pairs_dim16,
                                               copy_workspace, file, edit, args, why):
    # each was a SafetensorError or ValueError traceback once a query read that part
    ws = copy_workspace(embedded_sample_refit_300pairs_dim16)
    _edit_tensors(ws / file, edit)
    before = snapshot(ws)
    message = one_line_error(invoke(args, ws))
    assert message.startswith(f"Error: {ws / file} is missing or damaged ("), message
    assert message.endswith("— re-run `tagrec embed`")
    assert why is None or why in message, message
    assert snapshot(ws) == before


def _nan_row(name: str, row: int = 0) -> Callable[[dict], None]:
    def edit(tensors: dict) -> None:
        tensors[name] = tensors[name].copy()
        tensors[name][row] = np.nan
    return edit


@pytest.mark.parametrize("file, tensor, args", [
    ("embeddings/movies.safetensors", "embeddings", ["recommend", "--user", "1"]),
    ("embeddings/movies.safetensors", "embeddings", ["recommend", "--tags", "heist"]),
    ("embeddings/movies.safetensors", "embeddings", ["similar", "--movie", "4"]),
    ("embeddings/users.safetensors", "embeddings", ["recommend", "--user", "1"]),
    ("model/model.safetensors", "heads.user.weight", ["recommend", "--tags", "heist"]),
])
def test_vectors_that_are_not_numbers_are_one_line(embedded_sample_refit_300pairs_dim16,
                                                   copy_workspace, file, tensor, args):
    # Nothing tagrec writes holds NaN (write_table refuses it), but a hand-edited file's NaN
    # rows used to leave every answer short ("only 0 movies left") with exit 0.
    ws = copy_workspace(embedded_sample_refit_300pairs_dim16)
    row = 0  # any movie row spoils every query; a user's own row only their own
    if file == "embeddings/users.safetensors":
        from safetensors.numpy import load_file
        row = int(np.flatnonzero(load_file(str(ws / file))["ids"] == 1)[0])
    _edit_tensors(ws / file, _nan_row(tensor, row))
    message = one_line_error(invoke(args, ws))
    if file.startswith("model/"):
        assert message == (f"Error: model in {ws / 'model'} gives vectors that are not "
                           "numbers — re-run `tagrec train`")
    else:
        assert message == (f"Error: {ws / file} is missing or damaged (vectors that are not "
                           "numbers) — re-run `tagrec embed`")


def test_a_model_that_lost_its_movie_vectors_is_one_line(embedded_sample_refit_300pairs_dim16,
                                                         copy_workspace, tmp_path):
    # recommend --ratings used to answer without the collaborative part, exit 0
    ws = copy_workspace(embedded_sample_refit_300pairs_dim16)
    _edit_tensors(ws / "model" / "model.safetensors", lambda t: t.pop("id_vectors.weight"))
    ratings = tmp_path / "mine.csv"
    ratings.write_text("movieId,rating\n4,5\n5,4.5\n6,2\n")
    message = one_line_error(invoke(["recommend", "--ratings", str(ratings)], ws))
    assert message == (f"Error: model in {ws / 'model'} lacks the vectors of its "
                       "collaborative part — re-run `tagrec train`"), message


@pytest.mark.parametrize("edit, why", [
    (lambda t: t.pop("heads.user.bias"), "no head.bias"),
    (lambda t: t.pop("encoder.encoder.layer.0.attention.self.query.weight"),
     "no encoder.layer.0.attention.self.query.weight"),
    (lambda t: t.update({"heads.user.weight": t["heads.user.weight"][:, :-1].copy()}),
     "head.weight has shape (16, "),
])
def test_a_model_missing_weights_the_numpy_tower_reads_is_one_line(
        embedded_sample_refit_300pairs_dim16, copy_workspace, edit, why):
    # a KeyError or a matmul ValueError once a tags query was encoded
    ws = copy_workspace(embedded_sample_refit_300pairs_dim16)
    _edit_tensors(ws / "model" / "model.safetensors", edit)
    message = one_line_error(invoke(["recommend", "--tags", "heist"], ws))
    assert message.startswith(f"Error: model in {ws / 'model'} is incomplete or corrupt "
                              f"({why}"), message


def test_user_tags_naming_no_term_are_one_line(embedded_sample_refit_300pairs_dim16,
                                               copy_workspace):
    # a negative id picked a term from the vocabulary's end without a word
    ws = copy_workspace(embedded_sample_refit_300pairs_dim16)
    path = ws / "embeddings" / "user_tags.safetensors"
    _edit_tensors(path, lambda t: t["tags.ids"].__setitem__(slice(None), -1))
    message = one_line_error(invoke(["recommend", "--user", "1"], ws))
    assert message == f"Error: {path} is missing or damaged (ValueError) — re-run `tagrec embed`"
