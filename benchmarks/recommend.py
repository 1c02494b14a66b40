"""Whole-process wall time of the query commands, as a person at a shell sees them.

Each run is a fresh `python -m tagrec_cli ...` process (interpreter start, imports, reading
the tables, ranking, printing), run round-robin with `python -c pass` and the others so that
a change in the machine's load touches every command alike; the median is reported. It also
checks that every answer has k movies, that `--user` returns none the user already rated
(and `--unrated` none that anybody rated; it is left out where every movie is), and which of
polars, torch and scipy each command imported (none, on the query path). `--ratings FILE`
is timed on a file of the same user's ratings (movieId,rating, written to a temporary
folder): a new user known by as many ratings, whose answer must leave them all out.

    python benchmarks/recommend.py --workdir WS --runs 7
    python benchmarks/recommend.py --workdir WS --user 42 --movie 2 --tags "pixar, animation"
    python benchmarks/recommend.py --workdir WS25 --skip-tags   # after random_tables.py WS25
    python benchmarks/recommend.py --workdir WS --code before=/tmp/old --code after=.

With --code, each command runs under every code (a checkout's folder, first on PYTHONPATH),
taking turns, and the table says whether their --json answers were the same. Every code's
package is byte-compiled first, as `pip install` leaves it: where PYTHONDONTWRITEBYTECODE is
set, an edited module would otherwise be compiled again in every process.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("polars", "torch", "scipy", "transformers", "pydantic")
# Runs the CLI in-process, then prints which heavy modules it had imported (stdout's last line).
PROBE = ("import sys, runpy; sys.argv = ['tagrec'] + sys.argv[1:]\n"
         "try:\n    runpy.run_module('tagrec_cli', run_name='__main__')\n"
         "except SystemExit:\n    pass\n"
         f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")


def commands(args: argparse.Namespace) -> dict[str, list[str]]:
    ws = ["--workdir", str(args.workdir.resolve()), "-k", str(args.k)]
    out = {f"recommend --user {args.user}": ["recommend", "--user", str(args.user), *ws],
           f'recommend --tags "{args.tags}"': ["recommend", "--tags", args.tags, *ws],
           f"recommend --user {args.user} --unrated": ["recommend", "--user", str(args.user),
                                                      "--unrated", *ws],
           ratings_query(args): ["recommend", "--ratings", str(args.ratings_file), *ws],
           f"similar --movie {args.movie}": ["similar", "--movie", str(args.movie), *ws]}
    if args.skip_tags:  # random tables (random_tables.py): no model to encode a query with
        out.pop(f'recommend --tags "{args.tags}"')
        out.pop(ratings_query(args))
    if not args.unrated_ids:  # every movie rated: --unrated is an error there
        out.pop(f"recommend --user {args.user} --unrated")
    return out


def ratings_query(args: argparse.Namespace) -> str:
    """The --ratings command's name in the table: a file of the user's own ratings."""
    return f"recommend --ratings ({len(args.seen)} of user {args.user}'s)"


def workspace_lists(workdir: Path, user: int) -> tuple[list[int], list[float], list[int]]:
    """The user's rated movies and their ratings, and the movies nobody rated, from the tables
    the queries read."""
    code = ("import sys, json; from tagrec_cli.store import Store; s = Store(sys.argv[1]); "
            f"m, r = s.seen.of({user}); "
            "print(json.dumps([m.tolist(), r.tolist(), "
            "s.table('movie').ids[s.unrated_rows].tolist()]))")
    out = subprocess.run([sys.executable, "-c", code, str(workdir)], capture_output=True,
                         text=True, check=True).stdout
    seen, stars, unrated = json.loads(out)
    return seen, stars, unrated


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, required=True, help="workspace after `tagrec embed`")
    ap.add_argument("--user", type=int, default=42)
    ap.add_argument("--movie", type=int, default=2)
    ap.add_argument("--tags", default="pixar, animation")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--skip-tags", action="store_true",
                    help="no --tags or --ratings query (random tables: no model)")
    ap.add_argument("--code", action="append", default=[], metavar="NAME=DIR",
                    help="run every command under this checkout too (repeatable)")
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/recommend.json"))
    args = ap.parse_args(argv)
    args.seen, stars, args.unrated_ids = workspace_lists(args.workdir, args.user)
    with tempfile.TemporaryDirectory() as folder:
        args.ratings_file = Path(folder) / "ratings.csv"
        args.ratings_file.write_text("movieId,rating\n" + "".join(
            f"{m},{r}\n" for m, r in zip(args.seen, stars, strict=True)))
        return run(args)


def run(args: argparse.Namespace) -> int:
    seen = args.seen

    codes = dict(c.split("=", 1) for c in args.code) or {"": "."}
    envs, cwds = {}, {}  # each code runs in its own folder: `-m` puts the cwd first on sys.path
    for name, folder in codes.items():
        cwds[name] = Path(folder).resolve()
        compileall.compile_dir(Path(folder) / "tagrec_cli", quiet=1)
        path = os.pathsep.join([str(Path(folder).resolve()), os.environ.get("PYTHONPATH", "")])
        envs[name] = {**os.environ, "PYTHONPATH": path.rstrip(os.pathsep)}
    cmds = {f"{code}: {name}" if code else name: (code, cmd)
            for name, cmd in commands(args).items() for code in codes}
    runs: dict[str, list[float]] = {name: [] for name in ["python -c pass", *cmds]}
    answers: dict[str, dict] = {}
    for _ in range(args.runs):
        for name in runs:
            code, cmd = cmds.get(name, ("", []))
            argv_ = ([sys.executable, "-c", "pass"] if name == "python -c pass"
                     else [sys.executable, "-m", "tagrec_cli", *cmd, "--json"])
            start = time.perf_counter()
            proc = subprocess.run(argv_, capture_output=True, text=True, check=True,
                                  env=envs.get(code), cwd=cwds.get(code))
            runs[name].append(time.perf_counter() - start)
            if name != "python -c pass":
                answers[name] = json.loads(proc.stdout)
    problems = []
    imported = {}
    for name, (code, cmd) in cmds.items():
        recs = answers[name]["recommendations"]
        if len(recs) != args.k:
            problems.append(f"{name}: {len(recs)} movies, not {args.k}")
        probe = subprocess.run([sys.executable, "-c", PROBE, *cmd, "--json"],
                               capture_output=True, text=True, check=True, env=envs[code],
                               cwd=cwds[code])
        imported[name] = probe.stdout.strip().splitlines()[-1]
    same = {name: len({json.dumps(answers[f"{code}: {name}"], sort_keys=True)
                       for code in codes}) == 1
            for name in commands(args)} if len(codes) > 1 else {}
    for code in codes:
        for query in (f"recommend --user {args.user}", f"recommend --user {args.user} --unrated",
                      ratings_query(args)):
            user_cmd = f"{code}: {query}" if code else query
            if user_cmd not in answers:
                continue
            got = {r["movieId"] for r in answers[user_cmd]["recommendations"]}
            if set(seen) & got:
                problems.append(f"{user_cmd}: returned rated movies {sorted(set(seen) & got)}")
            rated = got - set(args.unrated_ids)
            if query.endswith("--unrated") and rated:
                problems.append(f"{user_cmd}: returned movies somebody rated {sorted(rated)}")

    base = statistics.median(runs["python -c pass"])
    result = {"workdir": str(args.workdir), "runs": args.runs, "codes": codes,
              "same_answer": same, "commands": {}}
    print(f"{'command (whole process, --json)':<52} {'median s':>9} {'min s':>7} {'max s':>7} "
          f"{'- python s':>10}  heavy imports")
    for name, times in runs.items():
        med = statistics.median(times)
        heavy = imported.get(name, "-")
        print(f"{name:<52} {med:>9.3f} {min(times):>7.3f} {max(times):>7.3f} "
              f"{med - base:>10.3f}  {heavy}")
        result["commands"][name] = {"median_s": med, "min_s": min(times), "max_s": max(times),
                                    "minus_python_s": med - base, "times_s": times,
                                    "heavy_imports": heavy}
    for name, equal in same.items():
        print(f"{name}: the codes' --json answers are {'the same' if equal else 'different'}")
    for p in problems:
        print("PROBLEM:", p)
    result["problems"] = problems
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
