"""Load test of `tagrec serve` on 127.0.0.1: requests/s, p50/p99 latency and errors.

Starts `tagrec serve` on a workspace, then for each scenario runs a bounded load (C clients for
D seconds) with `wrk` (Debian's package; a Lua script picks a random path per request), or,
where wrk is absent, with a Python asyncio client (its own overhead shares the CPU too: say
so when quoting it). The client competes with the server for the same cores.

    known users   GET /recommend?user=ID   ID drawn from the user table
    tags          GET /recommend?tags=A,B  two tags drawn from the 200 most common movie tags

    python benchmarks/serve.py --workdir /tmp/ws-small [--workers 2] [--clients 20]
        [--duration 20] [--json benchmarks/serve-small.json]

Before/after in one run: --code LABEL=DIR (repeatable) serves the tagrec_cli of checkout DIR
(on PYTHONPATH, with this interpreter) under LABEL; the servers take turns, each answering
every scenario, --rounds times (ABAB...), so a change in the machine's load touches both:

    python benchmarks/serve.py --workdir WS --code before=../main --code after=. --rounds 2

Each scenario starts once the machine is idle (--settle: up to 60 s for under 10% of the CPUs
busy over a second), so that it does not run in the tail of the one before; the load average
before and after is printed and the busy share seen is in the JSON. Prints a table and writes
JSON. Goal (issue 14): >= 300 requests/s for known users with p99
under 50 ms on ml-latest-small, on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np

WRK_SCRIPT = r"""
local paths = {}
for line in io.lines(os.getenv("TAGREC_BENCH_PATHS")) do paths[#paths + 1] = line end
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
request = function() return wrk.format("GET", paths[math.random(#paths)]) end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, '
    .. '"p99_us": %d, "max_us": %d, "errors": {"connect": %d, "read": %d, "write": %d, '
    .. '"status": %d, "timeout": %d}}\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max, e.connect, e.read, e.write,
    e.status, e.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(base: str, proc: subprocess.Popen, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"tagrec serve exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as r:
                return json.load(r)
        except OSError:
            time.sleep(0.2)
    raise SystemExit("tagrec serve did not answer /health")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its descendants (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return total


def busy_share(seconds: float = 1.0) -> float:
    """Share of the machine's CPU time spent busy over the next `seconds` (/proc/stat)."""
    def sample() -> tuple[int, int]:
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait
    (t0, i0), _ = sample(), time.sleep(seconds)
    t1, i1 = sample()
    return 1 - (i1 - i0) / max(t1 - t0, 1)


def settle(limit: float, busy: float = 0.1) -> float:
    """Wait, up to `limit` s, until the machine is idle (under `busy` over a second): a
    scenario must not start in the tail of the previous one. Returns the busy share seen."""
    deadline, share = time.monotonic() + limit, busy_share()
    while share > busy and time.monotonic() < deadline:
        share = busy_share()
    return share


def scenario_paths(workdir: Path, n: int, seed: int) -> dict[str, list[str]]:
    from tagrec_cli.store import Store

    store = Store(workdir)
    rng = random.Random(seed)
    users = store.table("user").ids.tolist()
    catalogue = store.catalogue
    counts = Counter(t for r in range(len(catalogue.ids)) for t in catalogue.terms.tags(r))
    common = [t for t, _ in counts.most_common(200) if "," not in t and '"' not in t]
    return {
        "known users": [f"/recommend?user={rng.choice(users)}" for _ in range(n)],
        "tags": ["/recommend?tags=" + urllib.parse.quote(",".join(rng.sample(common, 2)))
                 for _ in range(n)],
    }


def run_wrk(base: str, paths: list[str], clients: int, duration: float, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "paths.txt").write_text("\n".join(paths) + "\n")
        (Path(tmp) / "random.lua").write_text(WRK_SCRIPT)
        out = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{clients}", f"-d{int(duration)}s", "--timeout", "10s",
             "-s", str(Path(tmp) / "random.lua"), base],
            capture_output=True, text=True, check=True,
            env={**os.environ, "TAGREC_BENCH_PATHS": str(Path(tmp) / "paths.txt")})
    raw = json.loads(re.search(r"WRKJSON (\{.*\})", out.stdout).group(1))
    seconds = raw["duration_us"] / 1e6
    return {"client": f"wrk -t{threads} -c{clients}", "requests": raw["requests"],
            "seconds": round(seconds, 2), "rps": round(raw["requests"] / seconds, 1),
            "p50_ms": raw["p50_us"] / 1000, "p99_ms": raw["p99_us"] / 1000,
            "max_ms": raw["max_us"] / 1000, "errors": sum(raw["errors"].values()),
            "error_kinds": raw["errors"]}


async def _client(host: str, port: int, paths: list[str], stop_at: float,
                  lat: list[float], errors: list[str], rng: random.Random) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop_at:
            path = rng.choice(paths)
            start = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
            await reader.readexactly(length)
            lat.append(time.perf_counter() - start)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head.split(b"\r\n")[0].decode())
    finally:
        writer.close()


def run_python(base: str, paths: list[str], clients: int, duration: float) -> dict:
    url = urllib.parse.urlsplit(base)
    lat: list[float] = []
    errors: list[str] = []

    async def main() -> float:
        start = time.perf_counter()
        rng = random.Random(0)
        await asyncio.gather(*[_client(url.hostname, url.port, paths, start + duration, lat,
                                       errors, rng) for _ in range(clients)])
        return time.perf_counter() - start

    seconds = asyncio.run(main())
    ms = np.array(lat) * 1000
    return {"client": f"python asyncio, {clients} connections", "requests": len(lat),
            "seconds": round(seconds, 2), "rps": round(len(lat) / seconds, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "max_ms": round(float(ms.max()), 2), "errors": len(errors),
            "error_kinds": dict(Counter(errors))}


def serve_scenarios(args: argparse.Namespace, client: str, checkout: str | None,
                    paths: dict[str, list[str]]) -> tuple[dict, list[dict]]:
    """Start `tagrec serve` (the tagrec_cli of `checkout`, or the installed one), load it
    with each scenario in turn, stop it: (its /health, one row per scenario)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    if checkout is not None:
        env["PYTHONPATH"] = str(Path(checkout).resolve())
    # The console script, not `python -m`: that would put the current folder's tagrec_cli
    # first on sys.path, ahead of PYTHONPATH.
    tagrec = Path(sys.executable).with_name("tagrec")
    proc = subprocess.Popen([str(tagrec), "serve", "--workdir", str(args.workdir), "--port",
                             str(port), "--workers", str(args.workers)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rows = []
    try:
        health = wait_healthy(base, proc)
        for name in [s.strip() for s in args.scenarios.split(",")]:
            for p in paths[name][:2 * args.workers]:  # every worker opens and warms first
                urllib.request.urlopen(base + p, timeout=60).read()
            idle_busy = settle(args.settle) if args.settle else None
            cpu, load = cpu_seconds(proc.pid), os.getloadavg()[0]
            res = (run_wrk(base, paths[name], args.clients, args.duration, threads=1)
                   if client == "wrk" else
                   run_python(base, paths[name], args.clients, args.duration))
            res["server_cpu_ms_per_request"] = round(
                (cpu_seconds(proc.pid) - cpu) * 1000 / max(res["requests"], 1), 2)
            res["load_average_1min"] = [round(load, 1), round(os.getloadavg()[0], 1)]
            res["busy_before"] = None if idle_busy is None else round(idle_busy, 3)
            rows.append({"scenario": name, **res})
    finally:
        proc.terminate()
        proc.wait(30)
    return health, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--scenarios", default="known users,tags")
    ap.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--code", action="append", default=[], metavar="LABEL=DIR",
                    help="serve the tagrec_cli of checkout DIR (repeatable; default: the "
                    "installed one)")
    ap.add_argument("--rounds", type=int, default=1, help="turns of every --code")
    ap.add_argument("--settle", type=float, default=60, metavar="S",
                    help="before each scenario wait up to S s for the machine to be idle "
                    "(under 10%% busy over a second; 0: don't wait)")
    args = ap.parse_args()

    client = args.client if args.client != "auto" else ("wrk" if shutil.which("wrk")
                                                        else "python")
    codes = dict(c.split("=", 1) for c in args.code) or {"installed": None}
    paths = scenario_paths(args.workdir, 2000, seed=0)
    rows = []
    for turn in range(args.rounds):
        for label, checkout in codes.items():
            health, got = serve_scenarios(args, client, checkout, paths)
            rows += [{"code": label, "round": turn + 1, **r} for r in got]

    report = {"workdir": str(args.workdir), "users": health["tables"]["users"],
              "movies": health["tables"]["movies"], "workers": args.workers,
              "clients": args.clients, "duration_s": args.duration, "cpus": os.cpu_count(),
              "code": {k: str(Path(v).resolve()) if v else None for k, v in codes.items()},
              "results": rows}
    print(f"tagrec serve, {report['users']:,} users, {report['movies']:,} movies; "
          f"{args.workers} workers, {args.clients} clients for {args.duration:g} s, "
          f"{report['cpus']} CPUs shared with the client ({rows[0]['client']})")
    print(f"{'code':<10} {'scenario':<12} {'requests':>9} {'req/s':>8} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'max ms':>8} {'errors':>7} {'server CPU ms/req':>18} "
          f"{'load avg':>10}")
    for r in rows:
        print(f"{r['code']:<10} {r['scenario']:<12} {r['requests']:>9,} {r['rps']:>8.1f} "
              f"{r['p50_ms']:>8.2f} "
              f"{r['p99_ms']:>8.2f} {r['max_ms']:>8.1f} {r['errors']:>7} "
              f"{r['server_cpu_ms_per_request']:>18.2f} "
              f"{'→'.join(str(x) for x in r['load_average_1min']):>10}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
