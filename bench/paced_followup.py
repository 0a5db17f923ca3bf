"""Keyed ingest at a steady 100 req/s, this checkout's API against another's, alternated,
each run on a fresh API process and (``--cold``) with the OS page cache dropped first.

    sudo .venv/bin/python -m bench.paced_followup --compare-root DIR [--rounds 4] [--cold]

What ``make bench``'s paced run (its "p99 at 100 req/s") measures, plus what it does to
PostgreSQL, for an A/B test of a change to the write path (BENCHMARKS.md, nineteenth round:
time-ordered ids):

- the client's latencies (bench.load: p50, p99, max);
- the WAL written per notification (``pg_current_wal_lsn()`` before and after; a CHECKPOINT
  starts each run, so every run pays the first change of each page after it in full);
- how often the API's server processes were seen waiting to read a page from disk
  (``DataFileRead`` in ``pg_stat_activity``, sampled every 50 ms for application_name
  ``nfod-api``).

``--cold`` writes 3 to /proc/sys/vm/drop_caches before each run (root only): PostgreSQL's
own shared buffers stay as they are, the page cache under them is emptied, which is the
state in which the seventeenth round's runs missed the p99 goal. Rows it adds carry
``source_ref`` ``LOAD-...``; ``make bench`` removes them when it reuses the data set.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time

import psycopg

from bench.common import bench_url, flush_writes, libpq, with_database
from bench.run import LOGS, load, sample_people
from bench.servers import Server


def _lsn(conn: psycopg.Connection) -> int:
    return int(conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0])


class _WaitSampler:
    """Counts the API's server processes seen in each wait event, every 50 ms."""

    def __init__(self, url: str):
        self.url = url
        self.counts: dict[str, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(libpq(self.url), autocommit=True) as conn:
            while not self.stop.is_set():
                for (event,) in conn.execute(
                    "SELECT wait_event FROM pg_stat_activity"
                    " WHERE application_name = 'nfod-api' AND state = 'active'"
                    " AND wait_event IS NOT NULL"
                ):
                    self.counts[event] = self.counts.get(event, 0) + 1
                time.sleep(0.05)

    def __enter__(self) -> _WaitSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(5)


def _drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as fh:
        fh.write("3\n")


def one_run(server: Server, url: str, people: str, *, rate: int, seconds: float, cold: bool):
    flush_writes(with_database(url, "postgres"))
    if cold:
        _drop_caches()
    server.start()
    try:
        with psycopg.connect(libpq(url), autocommit=True) as conn:
            before = _lsn(conn)
            with _WaitSampler(url) as waits:
                out = load(
                    server.base,
                    "--mode",
                    "rate",
                    "--rate",
                    str(rate),
                    "--seconds",
                    str(seconds),
                    "--people",
                    people,
                    "--idempotency-keys",
                )
            wal = _lsn(conn) - before
    finally:
        server.stop()
    lat = out.get("latency", {})
    ok = sum(n for status, n in out.get("statuses", {}).items() if status.startswith("2"))
    return {
        "p50_ms": lat.get("p50_ms"),
        "p99_ms": lat.get("p99_ms"),
        "max_ms": lat.get("max_ms"),
        "statuses": out.get("statuses"),
        "wal_kb_per_request": round(wal / 1024 / max(1, ok), 1),
        "data_file_read_samples": waits.counts.get("DataFileRead", 0),
        "waits": dict(sorted(waits.counts.items(), key=lambda kv: -kv[1])[:5]),
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--compare-root", required=True, help="a checkout of the other version")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--rate", type=int, default=100)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--cold", action="store_true", help="drop the OS page cache before each run")
    args = p.parse_args()
    os.makedirs(LOGS, exist_ok=True)
    url = bench_url()
    people = os.path.join(LOGS, "people.json")
    if not os.path.exists(people):
        sample_people(url, people)
    servers = {
        "this": Server("api-paced-this", "api", url, 8192, LOGS),
        "other": Server(
            "api-paced-other",
            "api",
            url,
            8193,
            LOGS,
            extra_env={"PYTHONPATH": args.compare_root},
        ),
    }
    runs: dict[str, list[dict]] = {name: [] for name in servers}
    for r in range(args.rounds):
        # Alternate which goes first, so neither always follows the other's writes.
        order = list(servers) if r % 2 == 0 else list(reversed(servers))
        for name in order:
            result = one_run(
                servers[name], url, people, rate=args.rate, seconds=args.seconds, cold=args.cold
            )
            runs[name].append(result)
            print(json.dumps({"round": r, "side": name, **result}), flush=True)
    summary = {
        name: {
            key: statistics.median(run[key] for run in results)
            for key in (
                "p50_ms",
                "p99_ms",
                "max_ms",
                "wal_kb_per_request",
                "data_file_read_samples",
            )
        }
        for name, results in runs.items()
    }
    print(json.dumps({"medians": summary, "cold": args.cold, "rounds": args.rounds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
