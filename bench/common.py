"""Shared helpers for the benchmark harness: database URLs, timing, percentiles."""

from __future__ import annotations

import os
import statistics
import time
from urllib.parse import urlsplit, urlunsplit

import psycopg

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/nfod_bench"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
NFOD = os.path.join(ROOT, ".venv", "bin", "nfod")

# Fixed credentials the generator seeds into every bench database (never used outside bench).
BENCH_API_KEY = "nfod_bench-partner-key-0000000000000000000000"
BENCH_COORDINATOR = ("bench-coordinator", "bench-coordinator-pw")
BENCH_ANALYST = ("bench-analyst", "bench-analyst-pw")


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent busy so far, all CPUs (/proc/stat: user, nice,
    system, irq, softirq). Under a CPU-bound load, the change over a run divided by the
    requests answered is what a request costs the machine: client, server and database."""
    with open("/proc/stat") as fh:
        fields = fh.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq = map(int, fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """User + system CPU time of every running ``postgres`` process so far (a backend that
    exits takes its share with it: the servers' pools keep theirs open during a run)."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                name, fields = fh.read().split(" (", 1)[1].rsplit(")", 1)
        except OSError:
            continue
        if name == "postgres":
            parts = fields.split()
            total += int(parts[11]) + int(parts[12])
    return total / os.sysconf("SC_CLK_TCK")


def bench_url() -> str:
    return os.environ.get("NFOD_BENCH_DATABASE_URL", DEFAULT_URL)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def libpq(url: str) -> str:
    """A SQLAlchemy URL as a libpq one (drop the +driver)."""
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def recreate_database(url: str) -> None:
    """Drop and create the database named in ``url`` (a bench database only)."""
    name = database_name(url)
    if not name.startswith("nfod_bench"):
        raise SystemExit(f"refusing to drop {name!r}: bench databases are named nfod_bench*")
    admin = libpq(with_database(url, "postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


def summary_ms(samples: list[float]) -> dict:
    """Latency samples in seconds -> a dict of milliseconds."""
    if not samples:
        return {"n": 0}
    return {
        "n": len(samples),
        "p50_ms": round(pct(samples, 50) * 1000, 2),
        "p95_ms": round(pct(samples, 95) * 1000, 2),
        "p99_ms": round(pct(samples, 99) * 1000, 2),
        "max_ms": round(max(samples) * 1000, 2),
        "mean_ms": round(statistics.fmean(samples) * 1000, 2),
    }


def _python_probe() -> int:
    # Integer arithmetic and a generator: the interpreter's own speed, no allocation to speak of.
    return sum(i * i % 7 for i in range(200_000))


def speed_probe(url: str, runs: int = 3) -> dict:
    """How fast the machine is right now: the best of ``runs`` timings (ms) of a fixed
    Python loop and of a fixed PostgreSQL query (300,000 generated rows counted, no table read).
    The same code on the same data took up to twice as long on these virtual machines from
    one hour to the next; a run's probes say which state its absolute figures were taken in
    (lower is faster). Ratios need no probe: both sides are measured side by side."""
    python_ms = []
    for _ in range(runs):
        t = time.perf_counter()
        _python_probe()
        python_ms.append((time.perf_counter() - t) * 1000)
    postgres_ms = []
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        for _ in range(runs):
            t = time.perf_counter()
            conn.execute("SELECT count(*) FROM generate_series(1, 300000)").fetchone()
            postgres_ms.append((time.perf_counter() - t) * 1000)
    return {"python_ms": round(min(python_ms), 1), "postgres_ms": round(min(postgres_ms), 1)}


def _dirty_mb() -> float:
    """The kernel's dirty and under-write-back page cache (/proc/meminfo), in MB."""
    kb = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith(("Dirty:", "Writeback:")):
                kb += int(line.split()[1])
    return kb / 1024


def flush_writes(url: str, *, below_mb: float = 64, timeout: float = 180) -> dict:
    """Write out what a bulk load left behind before anything is timed: a CHECKPOINT (the
    server's dirty buffers), then the kernel's dirty pages (``os.sync``), then wait until the
    page cache's dirty and write-back pages are under ``below_mb`` (or ``timeout``). Reads
    that commit (every audited read flushes the WAL) would otherwise wait behind the load's
    write-back. Added when the agenda's p50 was 40 ms right after generating and 24 ms
    minutes later on the same data and code; the next run found nothing left to write, so
    that was not the cause there (BENCHMARKS.md, fifteenth round), but it rules the
    write-back out of every run. Returns what it took."""
    started = time.perf_counter()
    dirty_before = _dirty_mb()
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    os.sync()
    while _dirty_mb() > below_mb and time.perf_counter() - started < timeout:
        time.sleep(0.5)
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "dirty_mb_before": round(dirty_before, 1),
        "dirty_mb_after": round(_dirty_mb(), 1),
    }
