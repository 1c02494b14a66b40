"""`tagrec evaluate`'s protocol: fit the workspace's own settings on a temporal split of its
own data, choose on validation, report test once; never touch what `recommend` serves.

    WORKDIR/ingest, model/        the served refit: read for its data folder and settings only
    WORKDIR/evaluate/valid/       ingest (history | valid | test, new users left out), train
                                  (best epoch by validation AUC), embed; baselines' grids
    WORKDIR/evaluate/test/        ingest (history + valid | test), train for the chosen number
                                  of epochs, embed; every method scored once on test
    WORKDIR/evaluate/report.json  both reports and the grids

Per user by time: the latest TEST_FRACTION of the ratings are test and the VALID_FRACTION
before them validation (config.py). NEW_USER_SHARE of the users (seeded) are in neither
fit: each is known by their first NEW_USER_KNOWN ratings and scored on the next
NEW_USER_SCORED. The validation stage leaves out a second such share too and scores those
(IngestConfig.valid_new_users), so the new users test reports on pick nothing. Test ratings
reach no document, feature or pair in either stage (ingest.py), so the only thing test
decides is the reported number.

A stage whose inputs are unchanged (same ingest key, same model and training settings) is
reused, so a second `tagrec evaluate` re-scores without training again.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tagrec_cli import artifacts
from tagrec_cli.config import (
    BASELINES,
    NEW_USER_SHARE,
    RELEVANT_RATING,
    TEST_FRACTION,
    TOP_K,
    VALID_FRACTION,
    IngestConfig,
    ModelConfig,
    TrainConfig,
)
from tagrec_cli.errors import ArtifactError, DataError, SettingError
from tagrec_cli.evaluate import (
    EncodeUsers,
    EvalReport,
    Tuning,
    check_names,
    check_query,
    run_evaluate,
    tune_baselines,
)
from tagrec_cli.store import Store, ingested

Say = Callable[[str], None]


@dataclass
class ProtocolReport:
    valid: EvalReport  # every method on the validation part (epochs, grids chosen here)
    tuning: Tuning
    best_epoch: int | None  # tagrec's, by validation ROC-AUC; None without tagrec
    test: EvalReport | None  # None with validation_only
    folder: Path
    split: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"valid": self.valid.to_dict(), "tuning": asdict(self.tuning),
                "best_epoch": self.best_epoch,
                "test": self.test.to_dict() if self.test else None,
                "folder": str(self.folder), "split": self.split, "seconds": self.seconds}


def workspace_settings(workdir: Path, include_tagrec: bool,
                       ) -> tuple[Path, IngestConfig, ModelConfig | None, TrainConfig | None]:
    """The served workspace's data folder, ingest settings and (with tagrec) the model and
    training settings its model was trained with."""
    manifest = ingested.ingest_manifest(workdir)
    data_dir = Path(manifest.get("data_dir", ""))
    files = [data_dir / f for f in ("ratings.csv", "tags.csv", "movies.csv")]
    if not all(f.is_file() for f in files):
        raise DataError(f"the data {data_dir} that {Path(workdir) / artifacts.INGEST_DIR} was "
                        "made from is gone — run `tagrec ingest --data DIR` again")
    if manifest.get("data_hash") and artifacts.file_digest(*files) != manifest["data_hash"]:
        raise DataError(f"{data_dir} changed after `tagrec ingest` — run it again")
    cfg = IngestConfig.from_settings(manifest.get("settings"))
    if not include_tagrec:
        return data_dir, cfg, None, None
    config = artifacts.read_model_config(Path(workdir) / artifacts.MODEL_DIR)
    # train sets the features' constants and the movie table's size per stage
    model = replace(ModelConfig.from_saved(config.get("model"), str(
        Path(workdir) / artifacts.MODEL_DIR / artifacts.MODEL_CONFIG)), features=None, id_rows=0)
    training = TrainConfig.from_saved(config.get("training", {}), str(
        Path(workdir) / artifacts.MODEL_DIR / artifacts.MODEL_CONFIG))
    return data_dir, cfg, model, training


def stage_ingest(data_dir: Path, folder: Path, cfg: IngestConfig, say: Say) -> None:
    """Ingest into a stage's folder unless it already holds this very ingest."""
    from tagrec_cli.ingest import run_ingest

    data_hash = artifacts.file_digest(*(data_dir / f for f in
                                        ("ratings.csv", "tags.csv", "movies.csv")))
    try:
        current = ingested.ingest_manifest(folder).get("ingest_key")
    except ArtifactError:
        current = None
    if current is not None and ingested.tables_problem(folder):
        current = None  # a damaged table: the stage is evaluate's own, so it is made again
    if current != artifacts.ingest_key(data_hash, asdict(cfg)):
        say(f"{folder.name}: ingest")
        run_ingest(data_dir, folder, cfg)


def stage_model(folder: Path, model: ModelConfig, training: TrainConfig, say: Say) -> int:
    """Train into the stage's folder unless its model came from this ingest with these
    settings; embed unless the tables are of this model. Returns the saved epoch."""
    from tagrec_cli.embed import run_embed
    from tagrec_cli.train import run_train

    ingest_key = ingested.ingest_manifest(folder).get("ingest_key")
    config = None
    with contextlib.suppress(ArtifactError):
        config = artifacts.read_model_config(folder / artifacts.MODEL_DIR)
    same = (config is not None and config.get("data", {}).get("ingest_key") == ingest_key
            and not config.get("interrupted", False)  # a cut-short stage is trained again
            and config.get("training") == asdict(training)
            and {**config.get("model", {}), "features": None, "id_rows": 0}
            == asdict(replace(model, features=None, id_rows=0)))
    if not same:
        say(f"{folder.name}: train ({training.epochs} epochs)")
        result = run_train(folder, model, training)
        if result.interrupted:  # Ctrl-C inside training: stop evaluate as Ctrl-C stops it
            raise KeyboardInterrupt
        if result.best_epoch is None:
            raise DataError(f"training in {folder} saved no epoch")
        config = artifacts.read_model_config(folder / artifacts.MODEL_DIR)
    try:
        fresh = Store(folder).stale() is None
    except ArtifactError:
        fresh = False
    if not (same and fresh):
        say(f"{folder.name}: embed")
        run_embed(folder, device=training.device)
    return int(config["best_epoch"])


def user_encoder(folder: Path, device: str, like_threshold: float) -> EncodeUsers:
    """The stage's trained user tower as a function of (documents, side features, user ids,
    their known ratings): evaluate.EncodeUsers."""

    def encode(docs: list[str], feats: np.ndarray | None, users: np.ndarray,
               ratings: pl.DataFrame) -> np.ndarray:
        from tagrec_cli.towers.collab import encode_rated_users
        from tagrec_cli.towers.model import load_model, resolve_device

        dev = resolve_device(device)
        model, tokenizer, _ = load_model(folder / artifacts.MODEL_DIR, dev)
        return encode_rated_users(model, tokenizer, docs, feats, ratings, users,
                                  like_threshold, dev)

    return encode


def run_protocol(workdir: Path, k: int = TOP_K, baselines: Sequence[str] = BASELINES,
                 relevant_rating: float = RELEVANT_RATING, include_tagrec: bool = True,
                 validation_only: bool = False, device: str | None = None,
                 progress: Say | None = None) -> ProtocolReport:
    """Fit and score the workspace's settings on evaluate's split (module docstring)."""
    say = progress or (lambda _msg: None)
    start = time.perf_counter()
    check_query(k, relevant_rating)  # before any stage is fitted; the catalogue's cap later
    names = check_names(baselines)
    if not names and not include_tagrec:
        raise SettingError("nothing to evaluate: baselines names none and baselines_only "
                           "skips tagrec", ("baselines", "baselines_only"))
    workdir = Path(workdir)
    data_dir, served, model, training = workspace_settings(workdir, include_tagrec)
    if training is not None and device is not None:
        training = replace(training, device=device)
    root = workdir / artifacts.EVALUATE_DIR
    valid_dir, test_dir = (root / artifacts.EVALUATE_STAGE[s] for s in ("valid", "test"))
    split = {"valid_fraction": VALID_FRACTION, "test_fraction": TEST_FRACTION,
             "new_users": NEW_USER_SHARE}
    # Validation leaves out a second share of new users as well, and scores those: the test
    # stage's new users are in no fit and pick nothing.
    valid_cfg = replace(served, holdout_fraction=VALID_FRACTION, test_fraction=TEST_FRACTION,
                        new_users=NEW_USER_SHARE, valid_new_users=NEW_USER_SHARE)
    stage_ingest(data_dir, valid_dir, valid_cfg, say)
    # the catalogue's cap on k now, before hours of training rather than after
    check_query(k, relevant_rating, ingested.documents(valid_dir, "movie").height)
    best_epoch = encode = None
    if model is not None and training is not None:
        best_epoch = stage_model(valid_dir, model, training, say)
        encode = user_encoder(valid_dir, training.device, served.like_threshold)
    tuning = tune_baselines(valid_dir, names, k, relevant_rating, progress=say)
    say("valid: scoring")
    valid = run_evaluate(valid_dir, k, names, relevant_rating, include_tagrec, target="valid",
                         params=tuning.chosen, encode_users=encode)
    test = None
    if not validation_only:
        stage_ingest(data_dir, test_dir, replace(valid_cfg, holdout_fraction=0.0,
                                                 valid_new_users=0.0), say)
        encode = None
        if model is not None and training is not None and best_epoch is not None:
            stage_model(test_dir, model, replace(training, epochs=best_epoch), say)
            encode = user_encoder(test_dir, training.device, served.like_threshold)
        say("test: scoring")
        test = run_evaluate(test_dir, k, names, relevant_rating, include_tagrec,
                            target="test", params=tuning.chosen, encode_users=encode)
    report = ProtocolReport(valid, tuning, best_epoch, test, root, split,
                            round(time.perf_counter() - start, 3))
    artifacts.write_json(root / artifacts.EVALUATE_REPORT, report.to_dict())
    return report
