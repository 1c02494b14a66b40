"""One end-to-end run on the real packaged all-MiniLM-L6-v2 (slower: tens of seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tagrec_cli.cli import app

pytestmark = pytest.mark.slow


def test_default_model_end_to_end_offline(tmp_path: Path, small_data: Path, monkeypatch):
    # No network: the default model must come from the installed package.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    env = {"TAGREC_WORKDIR": str(tmp_path / "w")}
    runner = CliRunner()
    steps = [["ingest", "--data", str(small_data), "--pairs-per-class", "60"],
             ["train", "--epochs", "1", "--device", "cpu"],
             ["embed", "--device", "cpu"]]
    for args in steps:
        r = runner.invoke(app, args, env=env)
        assert r.exit_code == 0, (args, r.output)
    config = json.loads((tmp_path / "w" / "model" / "config.json").read_text())
    assert config["model"]["base_model"] == "all-MiniLM-L6-v2"
    assert config["encoder_config"]["hidden_size"] == 384
    assert config["model"]["dim"] == 512
    r = runner.invoke(app, ["recommend", "--user", "42", "--json"], env=env)
    assert r.exit_code == 0, r.output
    recs = json.loads(r.stdout)["recommendations"]
    assert len(recs) == 10
    scores = np.array([x["score"] for x in recs])
    assert np.all(np.diff(scores) <= 0) and np.all(np.abs(scores) <= 1.0 + 1e-6)
    # a movie added now is among the unrated ones, ranked by the user's content profile
    new = tmp_path / "new.csv"
    new.write_text("movieId,title,genres,tags\n990001,Night Heist (2031),Crime,heist|twist\n")
    assert runner.invoke(app, ["embed", "--add-movies", str(new)], env=env).exit_code == 0
    r = runner.invoke(app, ["recommend", "--user", "42", "--unrated", "--json", "-k", "1000"],
                      env=env)
    assert r.exit_code == 0, r.output
    unrated = [x["movieId"] for x in json.loads(r.stdout)["recommendations"]]
    rated = set(np.loadtxt(small_data / "ratings.csv", delimiter=",", skiprows=1,
                           usecols=1, dtype=np.int64).tolist())
    assert 990001 in unrated and not rated & set(unrated)
