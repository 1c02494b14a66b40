"""`tagrec evaluate`: the report of ranking quality."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tagrec_cli.cli.app import (
    DEFAULT_WORKDIR,
    Device,
    WorkdirOpt,
    command,
    err,
    fail,
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
        "--baselines-only", help="Skip tagrec (no `tagrec train` output needed).")] = False,
    validation_only: Annotated[bool, typer.Option(
        "--validation-only", help="Stop after the validation part (for choosing settings; "
        "test is not scored).")] = False,
    device: Annotated[Device | None, typer.Option(
        help="Device for evaluate's own training runs (default: the model's).")] = None,
    json_path: Annotated[Path | None, typer.Option(
        "--json", dir_okay=False, help="Also write the numbers and settings to this file.")
    ] = None,
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
) -> None:
    """Fit the workspace's settings on a temporal split of its data and score them.

    Per user, the latest 10% of ratings are test, the 10% before them validation.

    10% of users are left out as new users, each known by their first 5 ratings.

    It all runs in WORKDIR/evaluate/; the served model and tables are never touched.

    Epochs and the baselines' settings are chosen on validation; test is scored once.

    Example: tagrec evaluate -k 10 --baselines popular,als,ease --json eval.json
    """
    from tagrec_cli import artifacts
    from tagrec_cli.protocol import run_protocol

    names = [b.strip() for b in baselines.split(",") if b.strip()]
    if json_path is not None:  # now, not after an hour of evaluating
        check_json_path(json_path, workdir)
    with err.status("evaluating") as status:
        def say(msg: str) -> None:  # a spinner on a terminal; a log gets each phase as a line
            if err.is_terminal:
                status.update(f"evaluate: {msg}")
            else:
                err.print(shown(f"evaluate: {msg}"), highlight=False, soft_wrap=True)

        report = run_protocol(workdir, k=k, baselines=names, relevant_rating=relevant_rating,
                              include_tagrec=not baselines_only,
                              validation_only=validation_only,
                              device=device.value if device is not None else None,
                              progress=say)
    tuning = report.tuning
    for name, rows in tuning.tried.items():
        by = tuning.by.get(name, "ndcg")
        tried = "; ".join(f"{_params(r['params'])} {_fmt(r[by])}" for r in rows)
        measure = "pairs ROC-AUC" if by == "auc" else f"NDCG@{k}"
        out.print(shown(f"{name} on validation, {measure}: {tried} -> chose "
                        f"{_params(tuning.chosen[name])}"), highlight=False, soft_wrap=True)
    if report.best_epoch is not None:
        out.print(f"tagrec: best epoch {report.best_epoch} by validation ROC-AUC",
                  highlight=False)
    print_report(report.valid, k, relevant_rating, "validation")
    if report.test is not None:
        print_report(report.test, k, relevant_rating, "test")
    out.print(shown(f"sub-workspaces and report.json in {report.folder}; "
                    f"{report.seconds:.1f} s"), highlight=False, soft_wrap=True)
    if json_path is not None:
        artifacts.write_json(json_path, report.to_dict())
        out.print(shown(f"wrote {json_path}"), highlight=False)
    if report.valid.users_evaluated == 0:  # an empty table must not pass for a result
        fail(f"no user has a validation rating >= {relevant_rating:g}, so nothing was scored "
             "(too little data for evaluate's split: it holds out each user's latest 10%)")


def check_json_path(path: Path, workdir: Path) -> None:
    """fail() unless `path` can take the report: its folder exists and is writable, and it
    is not a file of the workspace's artifacts (a typo must not overwrite model/config.json)."""
    import os

    from tagrec_cli import artifacts

    folder = path.parent
    if not folder.is_dir():
        fail(f"--json {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        fail(f"--json {path}: the folder {folder} is not writable")
    inside = path.resolve()
    for name in (artifacts.INGEST_DIR, artifacts.MODEL_DIR, artifacts.EMBEDDINGS_DIR,
                 artifacts.EVALUATE_DIR, artifacts.CACHE_DIR):
        if inside.is_relative_to((Path(workdir) / name).resolve()):
            fail(f"--json {path} is inside the workspace's {name}/: write the report elsewhere")


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None or value != value else format(value, spec)


def _params(params: dict) -> str:
    return ",".join(f"{key}={value:g}" for key, value in params.items()) or "-"


def print_report(report, k: int, relevant_rating: float, part: str) -> None:
    from rich import box
    from rich.table import Table  # here: a query command should not import it

    from tagrec_cli.evaluate import SLICES

    columns = [("ndcg", f"NDCG@{k}"), ("recall", f"Recall@{k}"), ("hit_rate", f"Hit@{k}"),
               ("mrr", f"MRR@{k}"), ("coverage", f"Cover@{k}"),
               ("popularity_percentile", "Pop.pct"), ("auc", "PairAUC"),
               ("user_auc", "UserAUC")]
    rows = {name: {**m.slices["all"], "auc": (m.pairs or {}).get("auc"),
                   "user_auc": (m.pairs or {}).get("user_auc")}
            for name, m in report.methods.items()}

    def best(key: str, slice_rows: dict[str, dict]) -> float | None:
        values = [r.get(key) for r in slice_rows.values()]
        values = [v for v in values if v is not None and v == v]
        return max(values) if values else None

    once = " (reported once)" if part == "test" else ""  # nothing of test chose anything
    table = Table(title=f"{part}{once}: all users ({report.users_evaluated:,} with a rating >= "
                        f"{relevant_rating:g}); best in bold, Pop.pct not ranked",
                  box=box.SIMPLE_HEAD)
    table.add_column("method")
    for _, title in columns:
        table.add_column(title, justify="right", min_width=len(title))
    top = {key: best(key, rows) for key, _ in columns if key != "popularity_percentile"}
    for name, r in rows.items():
        cells = []
        for key, _ in columns:
            text = _fmt(r.get(key), ".1f" if key == "popularity_percentile" else ".4f")
            cells.append(f"[bold]{text}[/]" if r.get(key) is not None
                         and r.get(key) == top.get(key) else text)
        table.add_row(name, *cells)
    for name in report.skipped:
        table.add_row(name, *["-"] * len(columns), style="dim")
    out.print(table)

    slice_table = Table(title=f"{part} slices, @{k}: low history = <= "
                              f"{report.low_history_max:g} history ratings; cold movies = "
                              f"{report.cold_relevant_movies:,} relevant, never rated in "
                              "history (cold ranked: ranked among the cold movies only)",
                        box=box.SIMPLE_HEAD, pad_edge=False)
    slice_table.add_column("method")
    for s in SLICES:
        n = report.slice_users[s]
        label = s.replace("_", " ")
        slice_table.add_column(f"{label}\n{n:,} users\nNDCG", justify="right", min_width=6)
        slice_table.add_column("\n\nRecall", justify="right", min_width=6)
    slice_best = {(s, key): best(key, {n: m.slices[s] for n, m in report.methods.items()})
                  for s in SLICES for key in ("ndcg", "recall")}
    for name, m in report.methods.items():
        cells = []
        for s in SLICES:
            for key in ("ndcg", "recall"):
                value = m.slices[s][key]
                text = _fmt(value)
                cells.append(f"[bold]{text}[/]" if value == slice_best[(s, key)] else text)
        slice_table.add_row(name, *cells)
    out.print(slice_table)
    if report.new_users:
        users = next(iter(report.new_users.values()))["users"]
        new = Table(title=f"{part}: new users ({users:,}, left out of training; known by "
                          "their first 5 ratings, scored on the next 20)",
                    box=box.SIMPLE_HEAD)
        new.add_column("method")
        for _, title in columns[:4]:
            new.add_column(title, justify="right")
        new_best = {key: best(key, report.new_users) for key, _ in columns[:4]}
        for name, m in report.new_users.items():
            new.add_row(name, *[f"[bold]{_fmt(m[key])}[/]" if m[key] == new_best[key]
                                else _fmt(m[key]) for key, _ in columns[:4]])
        out.print(new)

    if any(report.comparisons.values()):
        out.print(comparison_table(report, k, part))
    if "tagrec" in report.methods and report.methods["tagrec"].pairs:
        pairs = report.methods["tagrec"].pairs
        out.print(f"tagrec on {report.valid_pairs:,} {part} pairs: ROC-AUC "
                  f"{_fmt(pairs['auc'])} (within users {_fmt(pairs.get('user_auc'))}), sign "
                  f"accuracy {_fmt(pairs.get('sign_accuracy'))}", highlight=False)
    for name, reason in report.skipped.items():
        err.print(f"[yellow]{name} skipped:[/] {shown(reason)}", highlight=False)
    out.print(f"{report.users_evaluated:,} users evaluated, {report.users_skipped:,} skipped "
              f"(no {part} rating >= {relevant_rating:g}); catalogue "
              f"{report.catalogue_size:,} movies; {report.seconds:.1f} s", highlight=False)


def comparison_table(report, k: int, part: str):
    """Per slice, tagrec against the baseline with the best NDCG@k there (the tables above
    give both): the relative difference and its 95% paired bootstrap interval over the
    slice's users (the absolute difference where the ratio is undefined: a baseline scoring
    0 on some draw). The baseline is picked on the same users it is compared on, which
    favours it a little: tagrec's margin is, if anything, understated."""
    from rich import box
    from rich.table import Table

    def ndcg(name: str, s: str) -> float | None:
        if s == "new_users":
            return report.new_users.get(name, {}).get("ndcg")
        return report.methods[name].slices[s]["ndcg"] if name in report.methods else None

    table = Table(title=f"{part}: tagrec's NDCG@{k} against each slice's best baseline, "
                        "with a 95% paired bootstrap interval over the slice's users",
                  box=box.SIMPLE_HEAD)
    for title in ("slice", "best baseline", "users", "tagrec vs it", "95% interval"):
        table.add_column(title, justify="left" if title in ("slice", "best baseline")
                         else "right", no_wrap=True)
    for s, against in report.comparisons.items():
        scored = {name: v for name in against if (v := ndcg(name, s)) is not None and v == v}
        if not scored:
            continue
        name = max(scored, key=lambda n: (scored[n], -list(scored).index(n)))
        c = against[name]
        finite = c["ratio_low"] is not None and c["ratio_low"] == c["ratio_low"]
        key, spec = ("ratio", "+.1%") if finite else ("diff", "+.4f")
        table.add_row(s.replace("_", " "), name, f"{c['users']:,}", _fmt(c[key], spec),
                      f"{_fmt(c[f'{key}_low'], spec)}, {_fmt(c[f'{key}_high'], spec)}")
    return table
