"""`tagrec evaluate`: the report of ranking quality."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tagrec_cli.cli.app import (
    DEFAULT_WORKDIR,
    WorkdirOpt,
    command,
    err,
    out,
    shown,
)
from tagrec_cli.config import BASELINES, RELEVANT_RATING, TOP_K


@command()
def evaluate(
    k: Annotated[int, typer.Option("-k", "--top", min=1, help="Length of each ranked list.")
                 ] = TOP_K,
    baselines: Annotated[str, typer.Option(
        help=f"Comma-separated baselines ({', '.join(BASELINES)}); '' = none.")
    ] = ",".join(BASELINES),
    relevant_rating: Annotated[float, typer.Option(
        help="A held-out rating >= this makes the movie relevant.")
    ] = RELEVANT_RATING,
    baselines_only: Annotated[bool, typer.Option(
        "--baselines-only", help="Skip tagrec (no `tagrec embed` output needed).")] = False,
    json_path: Annotated[Path | None, typer.Option(
        "--json", dir_okay=False, help="Also write the numbers and settings to this file.")
    ] = None,
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
) -> None:
    """Rank the whole catalogue per user and score it against the held-out ratings.

    Example: tagrec evaluate -k 10 --baselines popular,als,ease --json eval.json
    """
    from rich import box

    from tagrec_cli import artifacts
    from tagrec_cli.evaluate import SLICES, run_evaluate

    names = [b.strip() for b in baselines.split(",") if b.strip()]
    with err.status("evaluating") as status:
        report = run_evaluate(workdir, k=k, baselines=names, relevant_rating=relevant_rating,
                              include_tagrec=not baselines_only,
                              progress=lambda msg: status.update(f"evaluate: {msg}"))

    def fmt(value: float | None, spec: str = ".4f") -> str:
        return "-" if value is None or value != value else format(value, spec)

    columns = [("ndcg", f"NDCG@{k}"), ("recall", f"Recall@{k}"), ("hit_rate", f"Hit@{k}"),
               ("mrr", f"MRR@{k}"), ("coverage", f"Cover@{k}"),
               ("popularity_percentile", "Pop.pct"), ("auc", "PairAUC")]
    rows = {name: {**m.slices["all"], "auc": (m.pairs or {}).get("auc")}
            for name, m in report.methods.items()}

    def best(key: str, slice_rows: dict[str, dict]) -> float | None:
        values = [r.get(key) for r in slice_rows.values()]
        values = [v for v in values if v is not None and v == v]
        return max(values) if values else None

    table = Table(title=f"all users ({report.users_evaluated:,} with a held-out rating >= "
                        f"{relevant_rating:g}); best in bold, Pop.pct not ranked",
                  box=box.SIMPLE_HEAD)
    table.add_column("method")
    for _, title in columns:
        table.add_column(title, justify="right", min_width=len(title))
    top = {key: best(key, rows) for key, _ in columns if key != "popularity_percentile"}
    for name, r in rows.items():
        cells = []
        for key, _ in columns:
            text = fmt(r.get(key), ".1f" if key == "popularity_percentile" else ".4f")
            cells.append(f"[bold]{text}[/]" if r.get(key) is not None
                         and r.get(key) == top.get(key) else text)
        table.add_row(name, *cells)
    for name in report.skipped:
        table.add_row(name, *["-"] * len(columns), style="dim")
    out.print(table)

    slice_table = Table(title=f"slices: low history = <= {report.low_history_max:g} history "
                              f"ratings; cold movies = {report.cold_relevant_movies:,} "
                              "relevant, never rated in history",
                        box=box.SIMPLE_HEAD, pad_edge=False)
    slice_table.add_column("method")
    for s in SLICES:
        n = report.slice_users[s]
        label = s.replace("_", " ")
        slice_table.add_column(f"{label}\n{n:,} users\nNDCG@{k}", justify="right")
        slice_table.add_column(f"\n\nRecall@{k}", justify="right")
    slice_best = {(s, key): best(key, {n: m.slices[s] for n, m in report.methods.items()})
                  for s in SLICES for key in ("ndcg", "recall")}
    for name, m in report.methods.items():
        cells = []
        for s in SLICES:
            for key in ("ndcg", "recall"):
                value = m.slices[s][key]
                text = fmt(value)
                cells.append(f"[bold]{text}[/]" if value == slice_best[(s, key)] else text)
        slice_table.add_row(name, *cells)
    out.print(slice_table)

    if "tagrec" in report.methods and report.methods["tagrec"].pairs:
        pairs = report.methods["tagrec"].pairs
        out.print(f"tagrec on {report.valid_pairs:,} valid pairs: ROC-AUC "
                  f"{fmt(pairs['auc'])}, sign accuracy {fmt(pairs.get('sign_accuracy'))}",
                  highlight=False)
    for name, reason in report.skipped.items():
        err.print(f"[yellow]{name} skipped:[/] {shown(reason)}", highlight=False)
    out.print(f"{report.users_evaluated:,} users evaluated, {report.users_skipped:,} skipped "
              f"(no held-out rating >= {relevant_rating:g}); catalogue "
              f"{report.catalogue_size:,} movies; {report.seconds:.1f} s", highlight=False)
    if json_path is not None:
        artifacts.write_json(json_path, report.to_dict())
        out.print(f"wrote {json_path}", highlight=False)
