"""`tagrec download`: stream, verify, unpack atomically; a failure leaves DEST as it was.

A real HTTP server on 127.0.0.1 serves zips built here. The real checksums cannot match them,
so each test records its own zip's size and sha256 in download.ARCHIVES (monkeypatch); the CLI
then runs the real verification code against that entry.
"""

from __future__ import annotations

import hashlib
import io
import shlex
import socket
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import invoke as run_cli

from tagrec_cli.cli.data import DatasetName
from tagrec_cli.datasets import download
from tagrec_cli.datasets.download import ARCHIVES, Archive, download_dataset, human_size
from tagrec_cli.errors import TagrecError

NAME = "ml-latest-small"
ROUTE = f"/movielens/{NAME}.zip"


@dataclass
class Route:
    body: bytes
    status: int = 200
    send: int | None = None  # bytes actually sent before closing (Content-Length stays full)
    stall_s: float = 0.0  # wait this long after sending, before closing


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.requests.append(self.path)
        route = self.server.routes.get(self.path)
        if route is None or route.status != 200:
            self.send_error(404 if route is None else route.status)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        self.wfile.write(route.body if route.send is None else route.body[:route.send])
        self.wfile.flush()
        time.sleep(route.stall_s)
        self.close_connection = True

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.block_on_close = False  # a stalled handler must not hold up the teardown
    httpd.routes, httpd.requests = {}, []
    # A short poll interval: shutdown() waits up to one interval.
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def base(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/movielens"


@pytest.fixture
def publish(server: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """publish(body, sha256=, md5=, size=, **Route fields): serve body and record its spec."""

    def publish(body: bytes, *, sha256: str | None = None, md5: str | None = None,
                size: int | None = None, **route: object) -> None:
        server.routes[ROUTE] = Route(body, **route)
        monkeypatch.setitem(ARCHIVES, NAME, Archive(
            size=len(body) if size is None else size,
            sha256=sha256 or hashlib.sha256(body).hexdigest(), md5=md5))

    return publish


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
def dataset(ml_tiny_files: dict[str, bytes]) -> dict[str, bytes]:
    """The files of a MovieLens folder, as GroupLens zips them (links.csv, README.txt too)."""
    return {**ml_tiny_files, "links.csv": b"movieId,imdbId,tmdbId\n1,133093,603\n",
            "README.txt": b"tiny test copy\n"}


@pytest.fixture
def archive(dataset: dict[str, bytes]) -> bytes:
    return make_zip({f"{NAME}/": b"", **{f"{NAME}/{n}": d for n, d in dataset.items()}})


def invoke(*args: str, env: dict[str, str] | None = None):
    return run_cli(["download", *args], env=env)


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def retry(dest: Path) -> str:
    return shlex.join(["tagrec", "download", NAME, "--dest", str(dest)])


# ---------------------------------------------------------------- success


def test_download_unpacks_prints_next_command_and_ingest_reads_it(
        publish, base, server, archive, dataset, tmp_path: Path) -> None:
    publish(archive)
    dest = tmp_path / "data"  # does not exist yet: created
    result = invoke(NAME, "--dest", str(dest), "--base-url", base)
    assert result.exit_code == 0, result.output
    folder = dest / NAME
    assert result.stdout == (
        f"downloaded {NAME}.zip ({len(archive):,} bytes, checksum verified) and unpacked it "
        f"into {folder}\nnext: {shlex.join(['tagrec', 'ingest', '--data', str(folder)])}\n")
    assert result.stderr == ""
    assert server.requests == [ROUTE]
    assert [p.name for p in dest.iterdir()] == [NAME]  # no partial archive, no temporary folder
    assert files(folder) == dataset

    ingested = run_cli(["ingest", "--data", str(folder), "--workdir",
                        str(tmp_path / "w"), "--pairs-per-class", "0"])
    assert ingested.exit_code == 0, ingested.output
    assert (tmp_path / "w" / "ingest" / "manifest.json").is_file()


def test_a_killed_downloads_partial_archive_is_removed_by_the_next(
        publish, base, archive, tmp_path: Path) -> None:
    import subprocess
    import sys

    # SIGKILL runs no `finally`: a killed download leaves its partial archive. Its writer's
    # PID is dead (a process that has exited), so the next download removes it.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    left = tmp_path / f".{NAME}.zip.tmp-{dead}"
    left.write_bytes(archive[:1000])
    publish(archive)
    result = invoke(NAME, "--dest", str(tmp_path), "--base-url", base)
    assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.iterdir()] == [NAME]


def test_keep_archive_and_base_url_from_the_environment(
        publish, base, archive, tmp_path: Path) -> None:
    publish(archive, md5=hashlib.md5(archive).hexdigest())  # both checksums checked and right
    result = invoke(NAME, "--dest", str(tmp_path), "--keep-archive",
                    env={"TAGREC_DOWNLOAD_URL": base})
    assert result.exit_code == 0, result.output
    assert f"kept the archive as {tmp_path / f'{NAME}.zip'}\n" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME, f"{NAME}.zip"]
    assert (tmp_path / f"{NAME}.zip").read_bytes() == archive


def test_an_archive_without_a_top_folder_is_unpacked_too(
        publish, base, dataset, tmp_path: Path) -> None:
    publish(make_zip(dataset))
    result = download_dataset(NAME, tmp_path, base_url=base)
    assert result.downloaded
    assert files(tmp_path / NAME) == dataset


def test_an_existing_download_is_kept_and_nothing_is_requested(
        publish, base, server, archive, tmp_path: Path) -> None:
    publish(archive)
    folder = tmp_path / NAME
    folder.mkdir()
    mine = {"ratings.csv": b"mine", "movies.csv": b"mine", "tags.csv": b"mine"}
    for file, data in mine.items():
        (folder / file).write_bytes(data)
    result = invoke(NAME, "--dest", str(tmp_path), "--base-url", base)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"{folder} already has the CSV files; nothing downloaded (use --force to download it "
        f"again)\nnext: {shlex.join(['tagrec', 'ingest', '--data', str(folder)])}\n")
    assert server.requests == []
    assert files(folder) == mine


def test_force_replaces_the_whole_folder(publish, base, archive, dataset, tmp_path) -> None:
    publish(archive)
    folder = tmp_path / NAME
    folder.mkdir()
    (folder / "ratings.csv").write_bytes(b"old")
    (folder / "stale.txt").write_bytes(b"old")
    result = invoke(NAME, "--dest", str(tmp_path), "--base-url", base, "--force")
    assert result.exit_code == 0, result.output
    assert files(folder) == dataset
    assert [p.name for p in tmp_path.iterdir()] == [NAME]


def test_a_folder_without_ratings_is_not_overwritten(publish, base, server, archive,
                                                     tmp_path: Path) -> None:
    publish(archive)
    (tmp_path / NAME).mkdir()
    (tmp_path / NAME / "notes.txt").write_bytes(b"keep me")
    result = invoke(NAME, "--dest", str(tmp_path), "--base-url", base)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {tmp_path / NAME} exists but has no ratings.csv, tags.csv, "
                             "movies.csv: move it away, or pass --force to replace it\n")
    assert server.requests == []
    assert files(tmp_path) == {f"{NAME}/notes.txt": b"keep me"}
    # a ratings.csv alone is no download either (ingest would fail on the missing files)
    (tmp_path / NAME / "ratings.csv").write_bytes(b"garbage")
    result = invoke(NAME, "--dest", str(tmp_path), "--base-url", base)
    assert result.exit_code == 1 and "has no tags.csv, movies.csv: move it" in result.stderr
    assert server.requests == []


# ---------------------------------------------------------------- failures leave nothing


@pytest.mark.parametrize("algorithm", ["sha256", "md5"])
def test_a_wrong_checksum_fails_and_leaves_nothing(publish, base, archive, tmp_path: Path,
                                                   algorithm: str) -> None:
    wrong = "0" * (64 if algorithm == "sha256" else 32)
    publish(archive, **{algorithm: wrong})
    got = hashlib.new(algorithm, archive).hexdigest()
    dest = tmp_path / "data"
    dest.mkdir()
    result = invoke(NAME, "--dest", str(dest), "--base-url", base)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {base}/{NAME}.zip failed its {algorithm} check (got {got}, expected {wrong}): "
        f"the download is corrupt — run `{retry(dest)}` again\n")
    assert list(dest.iterdir()) == []


def test_a_connection_cut_mid_transfer_is_reported_as_interrupted(
        publish, base, archive, tmp_path: Path) -> None:
    half = len(archive) // 2
    publish(archive, send=half)  # Content-Length says the full size, then the server hangs up
    dest = tmp_path / "data"
    dest.mkdir()
    result = invoke(NAME, "--dest", str(dest), "--base-url", base)
    assert result.exit_code == 1
    # Detected by the byte count, not by the checksum (which would fail too).
    assert result.stderr == (
        f"Error: download interrupted after {human_size(half)} of {human_size(len(archive))}: "
        f"connection closed early — run `{retry(dest)}` again\n")
    assert list(dest.iterdir()) == []


def test_a_stalled_transfer_times_out(publish, base, archive, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download, "TIMEOUT_S", 0.3)
    half = len(archive) // 2
    publish(archive, send=half, stall_s=2.0)
    result = invoke(NAME, "--dest", str(tmp_path), "--base-url", base)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: download interrupted after {human_size(half)} of {human_size(len(archive))}: "
        f"timed out — run `{retry(tmp_path)}` again\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("status", "reason"), [(404, "Not Found"),
                                                (500, "Internal Server Error")])
def test_http_errors_are_one_line(server, base, tmp_path: Path, status: int,
                                  reason: str) -> None:
    if status != 404:
        server.routes[ROUTE] = Route(b"", status=status)
    dest = tmp_path / "new" / "data"
    result = invoke(NAME, "--dest", str(dest), "--base-url", base)
    assert result.exit_code == 1
    assert result.stderr == f"Error: cannot download {base}/{NAME}.zip: HTTP {status} {reason}\n"
    assert not dest.exists()  # the DEST it created is removed again


def test_an_unreachable_server_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    result = invoke(NAME, "--dest", str(tmp_path), "--base-url", url)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot reach {url}/{NAME}.zip: ")
    assert "Connection refused" in result.stderr
    assert result.stderr.endswith(f"— check the connection, then run `{retry(tmp_path)}` again\n")
    assert result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_a_base_url_that_is_not_a_url_is_one_line(tmp_path: Path) -> None:
    result = invoke(NAME, "--dest", str(tmp_path), "--base-url", "mirror")
    assert result.exit_code == 1
    assert result.stderr == ("Error: --base-url 'mirror' must start with http://, https:// or "
                             "file://\n")
    assert list(tmp_path.iterdir()) == []


def test_a_size_other_than_the_recorded_one_is_refused_before_the_transfer(
        publish, base, archive, tmp_path: Path) -> None:
    publish(archive, size=len(archive) + 1)
    result = invoke(NAME, "--dest", str(tmp_path), "--base-url", base)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {base}/{NAME}.zip is {len(archive):,} bytes, not the {len(archive) + 1:,} "
        f"recorded for {NAME}.zip: the file on the server has changed\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("evil", [f"{NAME}/../../evil.txt", "EVIL_ABS"])
def test_zip_slip_members_are_rejected(publish, base, tmp_path: Path, evil: str) -> None:
    if evil == "EVIL_ABS":
        evil = str(tmp_path / "evil.txt")  # absolute
    publish(make_zip({f"{NAME}/ratings.csv": b"userId\n", evil: b"pwned"}))
    dest = tmp_path / "a" / "b"
    dest.mkdir(parents=True)
    result = invoke(NAME, "--dest", str(dest), "--base-url", base)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {NAME}.zip holds an unsafe path {evil!r}; refusing to "
                             "unpack it\n")
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "evil.txt").exists()


def test_a_file_that_is_not_a_zip_is_reported(publish, base, tmp_path: Path) -> None:
    publish(b"<html>not a zip</html>")
    result = invoke(NAME, "--dest", str(tmp_path), "--base-url", base)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {NAME}.zip is not a valid zip archive (File is not a zip "
                             "file)\n")
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_mid_transfer_leaves_nothing(publish, base, archive, tmp_path: Path) -> None:
    publish(archive)
    seen = []

    def interrupt(done: int, total: int | None) -> None:
        seen.append((done, total))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download_dataset(NAME, tmp_path, base_url=base, on_progress=interrupt)
    assert len(seen) == 1
    assert 0 < seen[0][0] <= len(archive) and seen[0][1] == len(archive)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_unpacking_leaves_nothing_and_says_how_to_retry(
        publish, base, archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    publish(archive)

    def interrupted_unpack(zip_path: Path, out: Path, name: str) -> None:
        (out / "ratings.csv").write_bytes(b"half")  # a partly unpacked folder
        raise KeyboardInterrupt

    monkeypatch.setattr(download, "_unpack", interrupted_unpack)
    result = invoke(NAME, "--dest", str(tmp_path), "--base-url", base)
    assert result.exit_code == 130
    size = human_size(len(archive))
    assert result.stderr == (f"download interrupted after {size} of {size}: nothing was kept "
                             f"— run `{retry(tmp_path)}` again\n")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- names, registry, sizes


def test_an_unknown_name_exits_2_listing_the_choices(tmp_path: Path) -> None:
    result = invoke("ml-1m", "--dest", str(tmp_path))
    assert result.exit_code == 2
    text = " ".join(result.output.replace("│", " ").split())  # as read, not as wrapped
    assert "is not one of 'ml-latest-small', 'ml-25m', 'ml-32m'" in text
    with pytest.raises(TagrecError, match="^unknown dataset 'ml-1m'; choose one of "
                                          "ml-latest-small, ml-25m, ml-32m$"):
        download_dataset("ml-1m", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_registry_matches_the_cli_and_every_entry_has_a_checksum() -> None:
    assert [d.value for d in DatasetName] == list(ARCHIVES)
    for spec in ARCHIVES.values():
        assert spec.size > 0
        assert spec.sha256 is None or len(spec.sha256) == 64
        assert spec.md5 is None or len(spec.md5) == 32
    with pytest.raises(ValueError, match="needs a sha256 or an md5"):
        Archive(size=1)


@pytest.mark.parametrize(("n", "text"), [(0, "0 bytes"), (999, "999 bytes"),
                                         (978_202, "978.2 kB"), (261_978_986, "262.0 MB"),
                                         (2_500_000_000, "2.50 GB")])
def test_human_size(n: int, text: str) -> None:
    assert human_size(n) == text


def test_help_has_an_example() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    assert "Example: tagrec download ml-latest-small --dest data" in result.output
