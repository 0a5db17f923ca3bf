"""Ingest throughput, API against the baseline, measured alternately (A, B, A, B ...).

    .venv/bin/python -m bench.ingest_followup [--rounds 3] [--seconds 10] [--keys]
        [--client wrk] [--profile out.svg] [--compare-root DIR]

Both servers run as one uvicorn worker on the bench database (NFOD_BENCH_DATABASE_URL,
default nfod_bench). Each round runs the baseline, then the API, at full speed with 16
connections (bench.load ``--mode max``); the medians of the rounds give the ratio. Because
the rounds alternate, a change in the machine's load affects both sides alike - which is
what makes a before/after comparison on a shared machine meaningful. ``--keys`` sends a fresh
Idempotency-Key with every request (what a partner that retries safely does). It also reports
each server's CPU time per request (from /proc), which a busy machine disturbs far less than
throughput: one worker's throughput is bounded by 1 / (CPU per request); and, per request,
the CPU time of PostgreSQL's processes and of the whole machine (client included), which is
what bounds throughput once both CPUs are busy. ``--profile``
records the API with py-spy during its last round (py-spy must be installed in the venv;
a name ending in .txt gives collapsed stacks of the thread holding the GIL, to count).

Rows this script adds carry ``source_ref`` ``LOAD-...``; ``make bench`` removes them when it
reuses the data set.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess

from bench import wrk
from bench.common import PYTHON, ROOT, bench_url, machine_busy_seconds, postgres_cpu_seconds
from bench.run import LOGS, load, sample_people
from bench.servers import Server


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--warmup", type=float, default=5, help="seconds of load on each server first")
    p.add_argument("--keys", action="store_true")
    p.add_argument("--profile")
    p.add_argument(
        "--client",
        choices=["httpx", "wrk"],
        default="httpx",
        help="the load client: bench.load (async httpx) or wrk (bench/wrk.py)",
    )
    p.add_argument(
        "--compare-root",
        help="a checkout of another version: its API replaces the baseline, for an A/B test",
    )
    p.add_argument(
        "--compare-env",
        action="append",
        default=[],
        help="NAME=VALUE for the compared API only (with --compare-root), e.g. a setting",
    )
    args = p.parse_args()
    raw_profile = bool(args.profile and args.profile.endswith(".txt"))
    os.makedirs(LOGS, exist_ok=True)
    url = bench_url()
    people = os.path.join(LOGS, "people.json")
    sample_people(url, people)
    with open(people) as fh:
        people_rows = json.load(fh)
    extra = ["--idempotency-keys"] if args.keys else []
    servers = {
        "baseline": Server("baseline-followup", "baseline", url, 8193, LOGS),
        "api": Server("api-followup", "api", url, 8192, LOGS),
    }
    if args.compare_root:  # "baseline" is then the other checkout's API
        servers["baseline"] = Server(
            "api-compare",
            "api",
            url,
            8193,
            LOGS,
            extra_env={"PYTHONPATH": args.compare_root}
            | dict(item.split("=", 1) for item in args.compare_env),
        )
    for s in servers.values():
        s.start()
    rps: dict[str, list[float]] = {"baseline": [], "api": []}
    p99: dict[str, list[float]] = {"baseline": [], "api": []}
    cpu_ms: dict[str, list[float]] = {"baseline": [], "api": []}
    pg_ms: dict[str, list[float]] = {"baseline": [], "api": []}
    machine_ms: dict[str, list[float]] = {"baseline": [], "api": []}
    try:
        for s in servers.values():  # warm-up
            load(
                s.base,
                "--mode",
                "max",
                "--seconds",
                str(args.warmup),
                "--concurrency",
                str(args.concurrency),
                "--people",
                people,
                *extra,
            )
        for r in range(args.rounds):
            for name, s in servers.items():
                spy = None
                if args.profile and name == "api" and r == args.rounds - 1:
                    spy = subprocess.Popen(
                        [
                            os.path.join(ROOT, ".venv", "bin", "py-spy"),
                            "record",
                            "-p",
                            str(s.pid),
                            "-o",
                            args.profile,
                            "-d",
                            str(int(args.seconds)),
                            "-r",
                            "200",
                            # out.txt: collapsed stacks of the thread holding the GIL
                            *(["--format", "raw", "--gil"] if raw_profile else []),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                cpu0, machine0, pg0 = (
                    s.cpu_seconds(),
                    machine_busy_seconds(),
                    postgres_cpu_seconds(),
                )
                if args.client == "wrk":
                    out = wrk.run(
                        s.base,
                        people_rows,
                        seconds=args.seconds,
                        connections=args.concurrency,
                        keys=args.keys,
                    )
                    out["latency"] = {"p99_ms": out["latency_ms"]["p99"]}
                    out["statuses"] = {"2xx": out["ok"], "other": out["non_2xx"]}
                else:
                    out = load(
                        s.base,
                        "--mode",
                        "max",
                        "--seconds",
                        str(args.seconds),
                        "--concurrency",
                        str(args.concurrency),
                        "--people",
                        people,
                        "--seed",
                        str(r + 1),
                        *extra,
                    )
                if spy:
                    spy.wait()
                answered = max(1, out["ok"])
                per_request = (s.cpu_seconds() - cpu0) * 1000 / answered
                cpu_ms[name].append(round(per_request, 2))
                # wrk measures these over its own run (not while the bodies are made).
                if "machine_cpu_ms_per_request" not in out:  # the httpx client
                    out["postgres_cpu_ms_per_request"] = round(
                        (postgres_cpu_seconds() - pg0) * 1000 / answered, 2
                    )
                    out["machine_cpu_ms_per_request"] = round(
                        (machine_busy_seconds() - machine0) * 1000 / answered, 2
                    )
                pg_ms[name].append(out["postgres_cpu_ms_per_request"])
                machine_ms[name].append(out["machine_cpu_ms_per_request"])
                rps[name].append(out["throughput_rps"])
                p99[name].append(out["latency"].get("p99_ms", 0))
                print(
                    json.dumps(
                        {
                            "round": r + 1,
                            "server": name,
                            "rps": out["throughput_rps"],
                            "server_cpu_ms_per_request": cpu_ms[name][-1],
                            "postgres_cpu_ms_per_request": pg_ms[name][-1],
                            "machine_cpu_ms_per_request": machine_ms[name][-1],
                            "statuses": out["statuses"],
                            "latency": out["latency"],
                        }
                    ),
                    flush=True,
                )
        peak = servers["api"].peak_rss_mb()
    finally:
        for s in servers.values():
            s.stop()
    med = {k: statistics.median(v) for k, v in rps.items()}
    print(
        json.dumps(
            {
                "keys": args.keys,
                "baseline_rps": rps["baseline"],
                "api_rps": rps["api"],
                "median_ratio": round(med["api"] / med["baseline"], 3),
                "server_cpu_ms_per_request": cpu_ms,
                "postgres_cpu_ms_per_request": pg_ms,
                "machine_cpu_ms_per_request": machine_ms,
                "cpu_ratio_baseline_over_api": round(
                    statistics.median(cpu_ms["baseline"]) / statistics.median(cpu_ms["api"]), 3
                ),
                "api_p99_ms": p99["api"],
                "api_peak_rss_mb": peak,
                "python": PYTHON,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
