"""Benchmark `tagrec ingest` (tagrec_cli.ingest.run_ingest) against a plain pandas ingest.

    python benchmarks/ingest.py [--scales sample,small,25m] [--data-25m DIR] [--keep]
                                [--repeats 3] [--json benchmarks/results/ingest.json]

Scales: `sample` = the bundled sample_data/; `small` = MovieLens ml-latest-small, read in place
from ../shared/datasets/ml-latest-small (or --data-small / $TAGREC_ML_SMALL); `25m` = a
synthetic MovieLens-25M-sized dataset (162,000 users, 62,000 movies, ~25M ratings, 1.1M tag
applications) written by tagrec_cli.datasets.synth.generate_movielens into a temporary folder
that is deleted afterwards unless --keep (--data-25m DIR reuses, or creates and keeps, a folder).
The optional scale `2.5m` is a tenth of that (16,200 users, 6,200 movies), where pandas still
fits in memory, so the two can be compared on data with the long tail of the 25M set.

Every measurement runs in a fresh Python process. Wall time is that of the ingest call alone
(including writing its parquet output; interpreter start and imports excluded); peak memory is
the process's maximum resident set size, from os.wait4's rusage for that one child. tagrec
also reports when each stage (its progress messages) started. Each run is killed if its
resident memory passes --mem-limit-gb or the machine gets close to running out of memory, and
a pandas run on synthetic data also after --pandas-timeout seconds; a killed run is recorded as not
finished, with its peak memory until then. On each scale where both finish, the tag lists of
every user and movie document are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "results" / "ingest.json"
DEFAULT_SMALL = Path(os.environ.get("TAGREC_ML_SMALL",
                                    ROOT.parent / "shared" / "datasets" / "ml-latest-small"))
SIZE_25M = {"n_users": 162_000, "n_movies": 62_000, "ratings_per_user": 25_000_000 / 162_000,
            "tag_applications": 1_100_000, "seed": 42}
# Optional, not in the default scales: a tenth of it, where the pandas run still fits in memory.
SYNTHETIC = {"25m": SIZE_25M, "2.5m": {**SIZE_25M, "n_users": 16_200, "n_movies": 6_200,
                                       "tag_applications": 110_000}}
GIB = 1024**3
# Both implementations build the first tagrec's documents (the pandas one implements only
# those): tags and "rating X.Y", no title/year/genres, 6,000 pairs per class.
SEED_FORMAT = {"with_genres": False, "with_year": False, "with_title": False,
               "side_features": False, "pairs_per_class": 6000}
MIN_AVAILABLE = 1.0 * GIB  # a run is also stopped before the machine runs out of memory


# ---------------------------------------------------------------- worker side (child process)


def _worker(impl: str, data_dir: Path, out_dir: Path) -> None:
    """Run one ingest in this (fresh) process and print one JSON line with the timings."""
    import resource

    stages: list[tuple[str, float]] = []
    start = time.perf_counter()

    def stage(name: str) -> None:  # printed as it happens, so a killed run still tells
        stages.append((name, time.perf_counter() - start))
        print(json.dumps({"stage": name, "t": stages[-1][1]}), flush=True)

    if impl == "tagrec":
        from tagrec_cli.config import IngestConfig
        from tagrec_cli.ingest import run_ingest

        start = time.perf_counter()
        run_ingest(data_dir, out_dir, IngestConfig(**SEED_FORMAT), progress=stage)
    else:
        sys.path.insert(0, str(HERE))
        import pandas_ingest

        start = time.perf_counter()
        from tagrec_cli.config import IngestConfig

        tables = pandas_ingest.ingest(data_dir, IngestConfig(**SEED_FORMAT), progress=stage)
        stage("writing parquet tables")
        pandas_ingest.write(tables, out_dir / "ingest")
    seconds = time.perf_counter() - start
    stages.append(("done", seconds))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": seconds, "stages": stages,
                      "self_maxrss_bytes": usage.ru_maxrss * 1024}))


def _data_stats(data_dir: Path) -> None:
    """Print JSON stats of what ingest's top-tags step faces on this data (child process)."""
    import polars as pl

    from tagrec_cli.config import IngestConfig
    from tagrec_cli.datasets.movielens import read_movielens
    from tagrec_cli.documents.frames import clean_tag_column as normalize_tags
    from tagrec_cli.ingest import clean_ratings, history_tags, split_by_time, user_cutoffs

    cfg = IngestConfig()
    ratings, raw_tags, movies = read_movielens(data_dir)
    ratings, _ = clean_ratings(ratings, movies)
    split = split_by_time(ratings, cfg.holdout_fraction)
    history = split.filter(~pl.col("holdout"))
    all_tags = normalize_tags(raw_tags.join(movies.select("movieId"), on="movieId", how="semi"))
    tags = history_tags(all_tags, user_cutoffs(split), split)
    per_movie = tags.select("movieId", "tag").unique().group_by("movieId").agg(n=pl.len())
    liked = history.filter(pl.col("rating") >= cfg.liked_rating).select("userId", "movieId")
    increments = liked.join(per_movie, on="movieId", how="left")["n"].fill_null(0).sum()
    top = per_movie.sort("n", descending=True)["n"]
    # The same over all ratings and tags, ignoring the split (how the issue counts it).
    per_movie_all = all_tags.select("movieId", "tag").unique().group_by("movieId").agg(n=pl.len())
    liked_all = ratings.filter(pl.col("rating") >= cfg.liked_rating).select("movieId")
    increments_all = liked_all.join(per_movie_all, on="movieId", how="left")["n"].fill_null(0)
    print(json.dumps({
        "users": ratings["userId"].n_unique(), "movies": movies.height,
        "ratings": ratings.height, "history_ratings": history.height,
        "liked_ratings_all": int((ratings["rating"] >= cfg.liked_rating).sum()),
        "liked_history_ratings": liked.height,
        "tag_applications": raw_tags.height, "history_tag_applications": tags.height,
        "distinct_tags": all_tags["tag"].n_unique(),
        "distinct_history_tags": tags["tag"].n_unique(),
        "movies_with_history_tags": per_movie.height,
        "max_distinct_tags_on_a_movie": int(top.max() or 0),
        "distinct_tags_10th_movie": int(top[9]) if top.len() >= 10 else None,
        "distinct_tags_100th_movie": int(top[99]) if top.len() >= 100 else None,
        "top_tags_increments": int(increments),
        "max_distinct_tags_on_a_movie_all": int(per_movie_all["n"].max() or 0),
        "top_tags_increments_all": int(increments_all.sum()),
    }))


# ---------------------------------------------------------------- parent side


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _available_memory() -> float:
    """MemAvailable of the machine in bytes (inf where /proc/meminfo is missing)."""
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f
                        if line.startswith("MemAvailable"))
    except (OSError, StopIteration):
        return float("inf")


def _run_child(args: list[str], timeout_s: float | None = None,
               mem_limit_bytes: float | None = None) -> dict[str, Any]:
    """Run `python benchmarks/ingest.py ARGS` in a fresh process, watching time and memory.

    Returns its JSON output plus the child's own peak RSS (from wait4), wall time, CPU time,
    and, if killed, why.
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    load_before = _load()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, start_new_session=True)
    killed = None
    rss_seen = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        elapsed = time.perf_counter() - start
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))
            rss_seen = max(rss_seen, rss)
        except (OSError, StopIteration):
            rss = 0
        if killed is None and timeout_s is not None and elapsed > timeout_s:
            killed = f"did not finish within {timeout_s:.0f} s"
        if killed is None and mem_limit_bytes is not None and rss > mem_limit_bytes:
            killed = (f"killed after {elapsed:.0f} s: resident memory passed "
                      f"{mem_limit_bytes / GIB:.0f} GiB")
        if killed is None and rss > GIB and _available_memory() < MIN_AVAILABLE:
            killed = (f"killed after {elapsed:.0f} s at {rss / GIB:.1f} GiB resident: the "
                      f"machine had under {MIN_AVAILABLE / GIB:.1f} GiB left")
        if killed:
            os.killpg(proc.pid, signal.SIGKILL)
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4, not by Popen
    out, err = proc.communicate()
    result: dict[str, Any] = {
        "process_wall_s": round(wall, 3),
        "peak_rss_bytes": max(usage.ru_maxrss * 1024, rss_seen),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "load_before": load_before, "load_after": _load(),
    }
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    result["stages"] = [(x["stage"], x["t"]) for x in lines if "stage" in x]
    if killed:
        result["status"] = killed
        if result["stages"]:
            result["status"] += f" (in stage '{result['stages'][-1][0]}')"
    elif proc.returncode != 0:
        result["status"] = f"failed (exit {proc.returncode}): {err.strip()[-2000:]}"
    else:
        result["status"] = "ok"
        result.update(lines[-1])
    return result


def _compare(tagrec_dir: Path, pandas_dir: Path) -> dict[str, Any]:
    """Compare the tag lists of every user and movie document of the two outputs."""
    import polars as pl

    report: dict[str, Any] = {}
    for table, key in (("users", "userId"), ("movies", "movieId")):
        a = pl.read_parquet(tagrec_dir / f"{table}.parquet", columns=[key, "tags", "document"])
        b = pl.read_parquet(pandas_dir / f"{table}.parquet", columns=[key, "tags", "document"])
        j = a.join(b, on=key, how="full", suffix="_pandas", coalesce=True)
        missing = j.filter(pl.col("tags").is_null() | pl.col("tags_pandas").is_null())
        diff = j.filter(pl.col("tags").is_not_null() & pl.col("tags_pandas").is_not_null()
                        & (pl.col("tags") != pl.col("tags_pandas")))
        doc_diff = j.filter(pl.col("document") != pl.col("document_pandas"))
        report[table] = {
            "tagrec": a.height, "pandas": b.height, "only_in_one": missing.height,
            "tag_list_mismatches": diff.height, "document_mismatches": doc_diff.height,
            "examples": [{key: r[key], "tagrec": r["tags"][:12], "pandas": r["tags_pandas"][:12]}
                         for r in diff.head(3).iter_rows(named=True)],
            "document_examples": [{key: r[key], "tagrec": r["document"][-60:],
                                   "pandas": r["document_pandas"][-60:]}
                                  for r in doc_diff.head(3).iter_rows(named=True)],
        }
    report["agree"] = all(report[t]["only_in_one"] == report[t]["tag_list_mismatches"] == 0
                          for t in ("users", "movies"))
    return report


def _measure(impl: str, data_dir: Path, keep_output: Path | None, **limits: Any,
             ) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"tagrec-bench-{impl}-") as tmp:
        res = _run_child(["_worker", impl, str(data_dir), tmp], **limits)
        if keep_output is not None and res["status"] == "ok":
            shutil.copytree(Path(tmp) / "ingest", keep_output, dirs_exist_ok=True)
    return res


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if r["status"] == "ok"]
    if not ok:
        return {"status": runs[-1]["status"], "seconds": None,
                "peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs)}
    return {"status": "ok", "seconds": statistics.median(r["seconds"] for r in ok),
            "peak_rss_bytes": statistics.median(r["peak_rss_bytes"] for r in ok),
            "runs": len(ok)}


def _generate(folder: Path, size: dict[str, Any]) -> dict[str, Any]:
    code = ("import json, sys, time\n"
            "from tagrec_cli.datasets.synth import generate_movielens\n"
            "t = time.perf_counter()\n"
            f"s = generate_movielens(sys.argv[1], **{size!r})\n"
            "print(json.dumps({'ratings': s.n_ratings, 'tags': s.n_tags,"
            " 'seconds': round(time.perf_counter() - t, 1)}))\n")
    done = subprocess.run([sys.executable, "-c", code, str(folder)], cwd=ROOT, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} s" if x < 100 else f"{x:.0f} s"


def _fmt_mem(x: float | None) -> str:
    return "-" if x is None else f"{x / GIB:.2f} GiB" if x >= GIB / 4 else f"{x / 2**20:.0f} MiB"


def _ratios(t: dict[str, Any], p: dict[str, Any]) -> tuple[str, str]:
    """pandas / tagrec for time and peak memory; a lower bound when pandas was stopped."""
    if t["status"] != "ok" or not p["all_runs"]:
        return "-", "-"
    if p["status"] == "ok":
        return (f"{p['seconds'] / t['seconds']:.1f}x",
                f"{p['peak_rss_bytes'] / t['peak_rss_bytes']:.1f}x")
    stopped = p["all_runs"][-1]
    memory = f">{stopped['peak_rss_bytes'] / t['peak_rss_bytes']:.1f}x"
    if "within" in p["status"]:  # stopped by the time limit: both ratios are lower bounds
        return f">{stopped['process_wall_s'] / t['seconds']:.0f}x", memory
    if "killed" in p["status"]:  # stopped for memory: its time says nothing
        return "n/a (killed)", memory
    return "-", "-"


def _print_table(results: dict[str, Any]) -> None:
    rows = []
    for scale, r in results["scales"].items():
        t, p = r["tagrec"], r["pandas"]
        ratio_t, ratio_m = _ratios(t, p)
        cmp = r.get("comparison")
        agree = None if cmp is None else (
            "NO" if not cmp["agree"] else "yes" if not any(
                cmp[x]["document_mismatches"] for x in ("users", "movies"))
            else "tags yes; {} texts differ".format(
                sum(cmp[x]["document_mismatches"] for x in ("users", "movies"))))
        rows.append([scale, _fmt_s(t["seconds"]), _fmt_mem(t["peak_rss_bytes"]),
                     _fmt_s(p["seconds"]) if p["status"] == "ok" else p["status"],
                     _fmt_mem(p["peak_rss_bytes"]), ratio_t, ratio_m,
                     agree or "-"])
    header = ["scale", "tagrec time", "tagrec peak", "pandas time", "pandas peak",
              "time pandas/tagrec", "memory pandas/tagrec", "documents agree"]
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="ingest: tagrec (polars + sparse top-k) vs plain pandas")
        for h in header:
            table.add_column(h, overflow="fold")
        for row in rows:
            table.add_row(*row)
        Console(width=160).print(table)
    except ImportError:
        print(" | ".join(header))
        for row in rows:
            print(" | ".join(row))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_worker":
        _worker(argv[1], Path(argv[2]), Path(argv[3]))
        return
    if argv and argv[0] == "_stats":
        _data_stats(Path(argv[1]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", default="sample,small,25m",
                    help="comma-separated, from sample,small,25m and the optional 2.5m (a "
                    "tenth of 25m) [default: sample,small,25m]")
    ap.add_argument("--data-25m", type=Path, help="folder for the 25M-sized synthetic data: "
                    "reused if it holds the CSVs, else generated there and kept")
    ap.add_argument("--data-small", type=Path, default=DEFAULT_SMALL,
                    help=f"ml-latest-small folder [default: {DEFAULT_SMALL}]")
    ap.add_argument("--keep", action="store_true",
                    help="keep the generated 25M-sized data (its folder is printed)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="runs per implementation at the sample and small scales (median)")
    ap.add_argument("--pandas-timeout", type=float, default=900.0,
                    help="seconds before a pandas run on synthetic data is killed "
                    "[default: 900]")
    ap.add_argument("--mem-limit-gb", type=float, default=20.0,
                    help="GiB of resident memory at which a run is killed [default: 20]")
    ap.add_argument("--impls", default="tagrec,pandas",
                    help="implementations to run [default: tagrec,pandas]")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON,
                    help=f"where to write the results [default: {DEFAULT_JSON}]")
    args = ap.parse_args(argv)
    scales = [s.strip() for s in args.scales.split(",") if s.strip()]
    unknown = set(scales) - {"sample", "small", *SYNTHETIC}
    if unknown:
        ap.error(f"unknown scale(s): {', '.join(sorted(unknown))}")

    import numpy
    import pandas
    import polars

    results: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/ingest.py", *argv]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "polars": polars.__version__,
                    "pandas": pandas.__version__, "numpy": numpy.__version__,
                    "load_at_start": _load()},
        "scales": {},
    }
    mem_limit = args.mem_limit_gb * GIB
    cleanup: list[Path] = []  # generated data folders to delete at the end
    kept: list[Path] = []
    try:
        for scale in scales:
            print(f"== {scale}", flush=True)
            entry: dict[str, Any] = {}
            if scale == "sample":
                data_dir = ROOT / "sample_data"
            elif scale == "small":
                data_dir = args.data_small
                if not (data_dir / "ratings.csv").is_file():
                    print(f"   skipped: no ml-latest-small at {data_dir}")
                    continue
            else:
                if scale == "25m" and args.data_25m is not None:
                    data_dir = args.data_25m
                else:
                    data_dir = Path(tempfile.mkdtemp(prefix=f"tagrec-bench-{scale}-"))
                    if args.keep:
                        kept.append(data_dir)
                    else:
                        cleanup.append(data_dir)
                if not all((data_dir / f).is_file()
                           for f in ("ratings.csv", "tags.csv", "movies.csv")):
                    print(f"   generating the {scale.upper()}-sized data in {data_dir} ...",
                          flush=True)
                    entry["generated"] = {**_generate(data_dir, SYNTHETIC[scale]),
                                          "settings": SYNTHETIC[scale]}
                    print(f"   generated in {entry['generated']['seconds']} s", flush=True)
            entry["data_dir"] = str(data_dir)
            stats = subprocess.run([sys.executable, str(Path(__file__).resolve()), "_stats",
                                    str(data_dir)], cwd=ROOT, check=True, capture_output=True,
                                   text=True)
            entry["data"] = json.loads(stats.stdout.strip().splitlines()[-1])
            print("   data:", json.dumps(entry["data"]), flush=True)

            repeats = 1 if scale in SYNTHETIC else max(1, args.repeats)
            keep_dirs = {impl: Path(tempfile.mkdtemp(prefix=f"tagrec-bench-out-{impl}-"))
                         for impl in ("tagrec", "pandas")}
            try:
                for impl in ("tagrec", "pandas"):
                    if impl not in args.impls.split(","):
                        entry[impl] = {"status": "not run", "seconds": None,
                                       "peak_rss_bytes": None, "all_runs": []}
                        continue
                    limits: dict[str, Any] = {"mem_limit_bytes": mem_limit}
                    if scale in SYNTHETIC and impl == "pandas":
                        limits["timeout_s"] = args.pandas_timeout
                    runs = []
                    for i in range(repeats):
                        res = _measure(impl, data_dir, keep_dirs[impl] if i == 0 else None,
                                       **limits)
                        runs.append(res)
                        print(f"   {impl} run {i + 1}: {res['status']}, "
                              f"{_fmt_s(res.get('seconds'))}, "
                              f"peak {_fmt_mem(res['peak_rss_bytes'])}, cpu {res['cpu_s']} s, "
                              f"load {res['load_before']} -> {res['load_after']}", flush=True)
                        if res["status"] != "ok":
                            break
                    entry[impl] = {**_summary(runs), "all_runs": runs,
                                   "limit_s": limits.get("timeout_s")}
                if entry["tagrec"]["status"] == entry["pandas"]["status"] == "ok":
                    entry["comparison"] = _compare(keep_dirs["tagrec"], keep_dirs["pandas"])
                    print("   comparison:", json.dumps(entry["comparison"]), flush=True)
            finally:
                for d in keep_dirs.values():
                    shutil.rmtree(d, ignore_errors=True)
            for impl in ("tagrec", "pandas"):
                stage_runs = [r for r in entry[impl]["all_runs"] if r.get("stages")]
                if stage_runs:
                    stages = stage_runs[0]["stages"]
                    end = [] if stages[-1][0] == "done" else [("stopped", stage_runs[0][
                        "process_wall_s"])]
                    print(f"   {impl} stages (first run): " + "; ".join(
                        f"{name} {b - a:.2f} s" for (name, a), (_, b)
                        in zip(stages, stages[1:] + end, strict=False)), flush=True)
            results["scales"][scale] = entry
    finally:
        for folder in cleanup:
            shutil.rmtree(folder, ignore_errors=True)
        for folder in kept:
            print(f"kept the generated data in {folder}")

    results["machine"]["load_at_end"] = _load()
    _print_table(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {args.json}")


if __name__ == "__main__":
    main()
