"""towers/hub.py and how `--model` uses it: a typo or an unreachable hub fails at once, in one
line; a model in the HF cache loads offline; a hub that has no such model is one line too.

The elapsed-time bounds below are behaviour checks, not speed goals: transformers alone
retries an unreachable hub for about a minute, and the bounds are loose enough to catch only
that hang on a loaded machine."""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import invoke

from tagrec_cli.errors import TagrecError
from tagrec_cli.towers import hub
from tagrec_cli.towers.model import load_pretrained

HANG = 15.0  # seconds: far under the ~50 s transformers waits on an unreachable hub


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def error_line(r) -> str:
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, r.stderr
    return errors[0]


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    def refuse(*a, **kw):
        raise AssertionError("tried the network")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_plausible_hub_ids():
    for name in ("bert-base-uncased", "sentence-transformers/all-MiniLM-L6-v2", "a", "x_1.v2",
                 "o" * 96):
        assert hub.plausible_hub_id(name), name
    for name in ("", "some typo", "./model", "/abs/path", "a/b/c", ".hidden", "-x", "a/.b",
                 "a/", "/a", "o" * 97, "caf\u00e9", "a\\b", "x\n"):
        assert not hub.plausible_hub_id(name), name


def test_offline_by_choice_reads_the_environment(monkeypatch):
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    for value, offline in (("1", True), ("true", True), ("0", False), ("", False)):
        monkeypatch.setenv("HF_HUB_OFFLINE", value)
        assert hub.offline_by_choice() is offline, value


def test_reachable_is_false_for_a_closed_port_and_true_for_a_listener():
    assert not hub.reachable(f"http://127.0.0.1:{closed_port()}", timeout=2)
    assert not hub.reachable("not a url")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert hub.reachable(f"http://127.0.0.1:{s.getsockname()[1]}", timeout=2)


@pytest.mark.parametrize(("name", "message"), [
    ("some typo", "neither a model folder nor a Hugging Face id"),
    ("a/b/c", "model folder a/b/c does not exist"),
    ("./no-such-folder", "model folder ./no-such-folder does not exist"),
])
def test_an_impossible_model_name_fails_at_once_without_the_network(
        no_network, ingested_sample_300pairs: Path, copy_workspace, name: str, message: str):
    ws = copy_workspace(ingested_sample_300pairs)
    start = time.monotonic()
    line = error_line(invoke(["train", "--model", name, "--device", "cpu"], ws))
    assert time.monotonic() - start < HANG
    assert message in line


def test_a_hub_id_with_the_hub_offline_fails_without_probing(no_network, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TagrecError, match="HF_HUB_OFFLINE is set.*--model"):
        load_pretrained("tagrec-tests/no-such-model")


def test_an_unreachable_hub_fails_fast_in_one_line(ingested_sample_300pairs: Path,
                                                   copy_workspace, monkeypatch):
    ws = copy_workspace(ingested_sample_300pairs)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    endpoint = f"http://127.0.0.1:{closed_port()}"
    start = time.monotonic()
    r = invoke(["train", "--model", "tagrec-tests/no-such-model", "--device", "cpu"], ws,
               env={"HF_ENDPOINT": endpoint})
    assert time.monotonic() - start < HANG
    line = error_line(r)
    assert f"{endpoint} cannot be reached" in line and "--model" in line
    assert not (ws / "model").exists()


def hub_process(argv: list[str], hf_home: Path, endpoint: str) -> subprocess.CompletedProcess:
    """`python ARGV` in a fresh process: huggingface_hub reads HF_HOME and HF_ENDPOINT at
    import."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE")}
    env.update(HF_HOME=str(hf_home), HF_ENDPOINT=endpoint)
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True,
                          env=env, timeout=300)


def test_a_hub_id_in_the_hf_cache_loads_with_the_hub_unreachable(tiny_bert: Path,
                                                                 tmp_path: Path):
    # the cache's layout: hub/models--OWNER--NAME/{refs/main, snapshots/REVISION/files}
    repo = tmp_path / "hf" / "hub" / "models--tagrec-tests--tiny"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_bert, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    r = hub_process(["-c", "from tagrec_cli.towers.model import load_pretrained\n"
                     "encoder, tokenizer = load_pretrained('tagrec-tests/tiny')\n"
                     "print(encoder.config.hidden_size, tokenizer.is_fast)"],
                    tmp_path / "hf", f"http://127.0.0.1:{closed_port()}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["32", "True"]


class NotFound(http.server.BaseHTTPRequestHandler):
    """A hub that has nothing: 404 for every request."""

    def answer(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_POST = answer

    def log_message(self, *args) -> None:
        pass


def test_a_hub_without_the_model_is_one_line(ingested_sample_300pairs: Path, copy_workspace,
                                             tmp_path: Path):
    ws = copy_workspace(ingested_sample_300pairs)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        r = hub_process(["-m", "tagrec_cli", "train", "--model", "tagrec-tests/no-such-model",
                         "--device", "cpu", "--workdir", str(ws)], tmp_path / "hf",
                        f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "cannot load model 'tagrec-tests/no-such-model'" in errors[0]
    assert not (ws / "model").exists()
