"""One tower of a saved tagrec model, run in numpy: for encoding a single query document fast.

`recommend --tags` encodes one short document. Importing torch and transformers' BERT takes
about 5 s on a small CPU, while the forward pass itself takes milliseconds, so the query path
reads the same model.safetensors with numpy and runs the standard BERT encoder here:

    tokens (T,) -> embeddings (T, H) -> L x [self-attention, feed-forward] -> pool (H,)
                -> head (dim,) -> unit vector

It covers the plain BERT architecture (absolute positions, GELU/ReLU feed-forward), which is
what `--model` accepts; `load_tower` returns None for anything else and the caller falls back
to torch. tests/test_recommend.py checks it against transformers on the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import safe_open

from tagrec_cli import artifacts
from tagrec_cli.config import ModelConfig
from tagrec_cli.errors import ArtifactError
from tagrec_cli.store.embeddings import map_tensors
from tagrec_cli.topk import rows_of


def erf(x: np.ndarray) -> np.ndarray:
    """The error function to within 1.2e-7 (Numerical Recipes' erfc, a Chebyshev fit),
    computed in float64; written here because importing scipy.special costs a query more
    time than the whole forward pass."""
    z = np.abs(x).astype(np.float64)
    t = 1.0 / (1.0 + 0.5 * z)
    # Horner's rule, c0 + t * (c1 + t * (... + t * c9)), in place: the same operations in the
    # same order as the nested expression (so the same bits), without a temporary per step.
    poly = t * ERF_COEFFICIENTS[-1]
    for c in ERF_COEFFICIENTS[-2:0:-1]:
        poly += c
        poly *= t
    poly += ERF_COEFFICIENTS[0]
    erfc = np.negative(z)  # t * exp(-z * z + poly)
    erfc *= z
    erfc += poly
    np.exp(erfc, out=erfc)
    erfc *= t
    np.subtract(1.0, erfc, out=erfc)
    erfc *= np.sign(x)
    return erfc.astype(x.dtype)  # odd, and 0 at 0


ERF_COEFFICIENTS = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807,
                    -1.13520398, 1.48851587, -0.82215223, 0.17087277)


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(0.7978845608 * (x + 0.044715 * x**3)))


ACTIVATIONS = {
    "gelu": lambda x: 0.5 * x * (1.0 + erf(x / np.sqrt(2.0))),
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,  # the same function under transformers' other name
    "relu": lambda x: np.maximum(x, 0.0),
}


BLOCK_ROWS = 4  # rows of a (T, 1536) activation per block: 48 KB of float64, in cache


def in_blocks(fn, x: np.ndarray) -> np.ndarray:
    """fn(x) for an elementwise fn, BLOCK_ROWS rows at a time, so that its temporaries stay
    in cache (GELU over 128 tokens: 8 -> 4 ms); the same values, element by element."""
    if len(x) <= BLOCK_ROWS:
        return fn(x)
    return np.concatenate([fn(x[i:i + BLOCK_ROWS]) for i in range(0, len(x), BLOCK_ROWS)])


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


@dataclass
class NumpyTower:
    w: dict[str, np.ndarray]  # the encoder's weights by BertModel name, and the head's
    heads: int
    layers: int
    eps: float
    act: str
    pooling: str
    tokenizer: object  # tokenizers.Tokenizer, truncating to the model's max_length
    # The collaborative part (towers/collab.py), user side only: (R, dim) per-movie vectors
    # and the movieId of each row; None for a model without it.
    id_vectors: np.ndarray | None = None
    id_movies: np.ndarray | None = None
    cast: dict[tuple[str, np.dtype], np.ndarray] = field(default_factory=dict, repr=False)

    def weight(self, name: str, dtype: np.dtype) -> np.ndarray:
        """w[name] as `dtype`, cast once and kept (for MiniLM, 80 MB of float64 copies).
        The activations turn float64 in the first layer (the attention scale and GELU's
        constant are numpy float64 scalars), so most products are float64 activations times
        float32 weights, for which numpy casts the whole matrix again each time. The cast is
        exact, so the products are the same."""
        if self.w[name].dtype == dtype:
            return self.w[name]
        key = (name, np.dtype(dtype))
        if key not in self.cast:
            self.cast[key] = self.w[name].astype(dtype)
        return self.cast[key]

    def pool(self, liked: np.ndarray) -> np.ndarray:
        """(n,) movieIds a user liked -> (dim,) sum of their vectors / sqrt(n), over the
        movies with a vector (collab.liked_matrix's weights); zero without the part."""
        if self.id_vectors is None:
            return np.zeros(self.w["head.bias"].shape, np.float32)
        ids = np.sort(np.asarray(liked, np.int64))
        ids = ids[np.r_[True, ids[1:] != ids[:-1]]] if len(ids) else ids  # once each
        rows = rows_of(self.id_movies, ids)  # (np.unique would import numpy.ma: 17 ms)
        rows = rows[rows >= 0]
        return self.id_vectors[rows].sum(0) / np.sqrt(max(len(rows), 1))

    def encode_ids(self, ids: np.ndarray, features: np.ndarray | None = None,
                   liked: np.ndarray | None = None) -> np.ndarray:
        """(T,) token ids of one document [+ (F,) side features] [+ the pool of the (n,)
        liked movieIds] -> (dim,) unit vector."""
        w, t = self.w, len(ids)
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:t]
             + w["embeddings.token_type_embeddings.weight"][0])  # (T, H)
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"],
                       self.eps)
        h = x.shape[1]
        d = h // self.heads
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def dense(v: np.ndarray, name: str, p: str = p) -> np.ndarray:
                return v @ self.weight(p + name + ".weight", v.dtype).T + w[p + name + ".bias"]

            # (T, H) -> (heads, T, d): one document, so no padding mask is needed.
            q, k, v = (dense(x, f"attention.self.{n}").reshape(t, self.heads, d).transpose(1, 0, 2)
                       for n in ("query", "key", "value"))
            scores = q @ k.transpose(0, 2, 1) / np.sqrt(d)  # (heads, T, T)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            ctx = (scores / scores.sum(-1, keepdims=True)) @ v  # (heads, T, d)
            attn = dense(ctx.transpose(1, 0, 2).reshape(t, h), "attention.output.dense")
            x = layer_norm(attn + x, w[p + "attention.output.LayerNorm.weight"],
                           w[p + "attention.output.LayerNorm.bias"], self.eps)
            ff = dense(in_blocks(ACTIVATIONS[self.act], dense(x, "intermediate.dense")),
                       "output.dense")
            x = layer_norm(ff + x, w[p + "output.LayerNorm.weight"],
                           w[p + "output.LayerNorm.bias"], self.eps)
        pooled = x[0] if self.pooling == "cls" else x.mean(0)  # (H,)
        if features is not None:
            pooled = np.concatenate([pooled, np.asarray(features, pooled.dtype)])  # (H + F,)
        out = pooled @ self.weight("head.weight", pooled.dtype).T + w["head.bias"]  # (dim,)
        if liked is not None:
            out = out + self.pool(liked)
        return (out / max(float(np.linalg.norm(out)), 1e-12)).astype(np.float32)

    def token_ids(self, document: str) -> np.ndarray:
        return np.asarray(self.tokenizer.encode(document).ids, dtype=np.int64)

    def encode(self, documents: list[str], features: np.ndarray | None = None,
               liked: list[np.ndarray | None] | None = None) -> np.ndarray:
        """Documents [+ (N, F) side features] [+ per document the movieIds the user liked,
        or None: no history] -> (N, dim) float32 unit rows."""
        return np.stack([self.encode_ids(self.token_ids(doc),
                                         None if features is None else features[i],
                                         None if liked is None else liked[i])
                         for i, doc in enumerate(documents)])


_TOWERS: dict[tuple, NumpyTower | None] = {}  # (folder, side, files' stats) -> tower


def expected_shapes(enc: dict, model: ModelConfig, side: str,
                    ) -> dict[str, tuple[int | None, ...]]:
    """The weights encode_ids reads, with their shapes (None: any length), for a BERT of
    `enc` (its config) under `model`'s tower on `side`."""
    h, inner = int(enc["hidden_size"]), int(enc["intermediate_size"])
    features = model.n_features(side)
    out: dict[str, tuple[int | None, ...]] = {
        f"embeddings.{n}_embeddings.weight": (None, h) for n in ("word", "position",
                                                                   "token_type")}
    out |= {"embeddings.LayerNorm.weight": (h,), "embeddings.LayerNorm.bias": (h,),
            "head.weight": (model.dim, h + features), "head.bias": (model.dim,)}
    dense = {"attention.self.query": (h, h), "attention.self.key": (h, h),
             "attention.self.value": (h, h), "attention.output.dense": (h, h),
             "intermediate.dense": (inner, h), "output.dense": (h, inner)}
    for i in range(int(enc["num_hidden_layers"])):
        p = f"encoder.layer.{i}."
        for name, (rows, cols) in dense.items():
            out |= {f"{p}{name}.weight": (rows, cols), f"{p}{name}.bias": (rows,)}
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            out |= {f"{p}{norm}.weight": (h,), f"{p}{norm}.bias": (h,)}
    return out


def _shape_problem(weights: dict[str, np.ndarray], enc: dict, model: ModelConfig, side: str,
                   ) -> str | None:
    for name, shape in expected_shapes(enc, model, side).items():
        if name not in weights:
            return f"no {name}"
        got = weights[name].shape
        if len(got) != len(shape) or any(s is not None and g != s
                                         for g, s in zip(got, shape, strict=True)):
            return f"{name} has shape {got}"
    return None


def load_tower(folder: Path, side: str) -> NumpyTower | None:
    """The `side` tower of the model in `folder`, or None when its encoder is not plain BERT.

    Kept for the process while the model's files are unchanged (a server encodes many
    queries; reading the weights and the tokenizer takes ~50 ms each time).
    """
    folder = Path(folder).resolve()
    try:
        stats = tuple((st.st_ino, st.st_mtime_ns, st.st_size) for st in (
            (folder / name).stat() for name in (artifacts.MODEL_CONFIG, artifacts.MODEL_WEIGHTS,
                                                artifacts.TOKENIZER_FILE)))
    except OSError:
        return read_tower(folder, side)  # its own message for what is missing
    key = (folder, side, stats)
    if key not in _TOWERS:
        for old in [k for k in _TOWERS if k[:2] == key[:2]]:  # a retrained model replaces it
            del _TOWERS[old]
        _TOWERS[key] = read_tower(folder, side)
    return _TOWERS[key]


def read_tower(folder: Path, side: str) -> NumpyTower | None:
    """load_tower without the cache."""
    from tokenizers import Tokenizer

    folder = Path(folder)
    config = artifacts.read_model_config(folder)
    try:
        enc = config["encoder_config"]
        model = config["model"]
    except KeyError as exc:
        raise ArtifactError(f"{folder}/{artifacts.MODEL_CONFIG} is missing or damaged "
                            f"({exc.__class__.__name__}) — re-run `tagrec train`") from None
    model_cfg = ModelConfig.from_saved(model, str(folder / artifacts.MODEL_CONFIG))
    supported = (enc.get("model_type") == "bert" and enc.get("hidden_act") in ACTIVATIONS
                 and enc.get("position_embedding_type") in (None, "absolute")
                 and not enc.get("is_decoder"))
    if not supported:
        return None
    artifacts.check_tokenizer(folder, {}, [])  # the file first: its own message
    names = {}  # our name -> the file's
    path = folder / artifacts.MODEL_WEIGHTS
    try:
        with safe_open(str(path), framework="numpy") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                if key.startswith("encoder.") and not key.startswith("encoder.pooler."):
                    names[key.removeprefix("encoder.")] = key
                elif key.startswith(f"heads.{side}."):
                    names["head." + key.rsplit(".", 1)[1]] = key
                elif key in ("id_vectors.weight", "id_movies") and side == "user":
                    names[key] = key
        # Mapped, not read: a query uses a few rows of the 47 MB word embeddings. train
        # replaces the file by rename, never in place, so a mapping sees one whole file.
        weights = {name: np.asarray(a) for name, a in
                   zip(names, map_tensors(path, tuple(names.values())), strict=True)}
        tokenizer = Tokenizer.from_file(str(folder / artifacts.TOKENIZER_FILE))
    except Exception as exc:  # noqa: BLE001 - safetensors and tokenizers raise plain errors
        raise ArtifactError(f"model in {folder} is incomplete or corrupt "
                            f"({exc.__class__.__name__}) — re-run `tagrec train`") from None
    try:
        problem = _shape_problem(weights, enc, model_cfg, side)
    except (KeyError, TypeError, ValueError) as exc:  # config.json's own numbers are damaged
        problem = exc.__class__.__name__
    if problem:
        raise ArtifactError(f"model in {folder} is incomplete or corrupt ({problem}) — re-run "
                            "`tagrec train`")
    tokenizer.no_padding()
    artifacts.check_tokenizer(folder, config, tokenizer.encode(artifacts.TOKENIZER_PROBE).ids)
    tokenizer.enable_truncation(max_length=model_cfg.max_length)
    id_vectors, id_movies = weights.pop("id_vectors.weight", None), weights.pop("id_movies", None)
    if (side == "user" and model_cfg.collaborative and model_cfg.id_rows
            and (id_vectors is None or id_movies is None)):
        # without them a user's liked movies would silently count for nothing
        raise ArtifactError(f"model in {folder} lacks the vectors of its collaborative part "
                            "— re-run `tagrec train`")
    return NumpyTower(weights, int(enc["num_attention_heads"]), int(enc["num_hidden_layers"]),
                      float(enc.get("layer_norm_eps", 1e-12)), enc["hidden_act"],
                      model_cfg.pooling, tokenizer, id_vectors,
                      None if id_movies is None else id_movies.astype(np.int64))
