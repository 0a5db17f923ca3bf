"""Full-speed ingest driven by wrk, a C load client (Debian package ``wrk``).

The async httpx client of bench/load.py needs about a core for 450 requests a second, so
against the bare baseline it is the client, not the server, that sets the pace, and the
ingest ratio flatters the API. wrk sends the same kind of bodies for a fraction of that CPU.
Each body is made beforehand by bench.load.BodyMaker (same mix of known, new and unnamed
people) and sent once (bench/wrk_ingest.lua).

    python -m bench.wrk --base http://127.0.0.1:8100 --people people.json --seconds 20 [--keys]

Prints one JSON line, with the fields bench.load's max mode prints where they mean the same,
and the CPU time per answered request that the whole machine (client included) and
PostgreSQL's processes spent during wrk's run: with both CPUs busy, what bounds throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

from bench.common import BENCH_API_KEY, ROOT, machine_busy_seconds, postgres_cpu_seconds
from bench.load import BodyMaker

SCRIPT = os.path.join(ROOT, "bench", "wrk_ingest.lua")


def available() -> bool:
    return shutil.which("wrk") is not None


def write_bodies(path: str, people: list[dict], count: int, tag: str, seed: int = 7) -> None:
    """``count`` lines of "<Idempotency-Key>\\t<body>", every source_ref and key unique."""
    maker = BodyMaker(people, seed, tag)
    with open(path, "w") as fh:
        for _ in range(count):
            body = json.dumps(maker.make(), separators=(",", ":"))
            fh.write(f"{uuid.uuid4()}\t{body}\n")


def run(
    base: str,
    people: list[dict],
    *,
    seconds: float,
    connections: int = 16,
    threads: int = 1,
    keys: bool = False,
    max_rps: int = 2000,
) -> dict:
    """One wrk run of ``seconds`` at ``connections``, with enough bodies for ``max_rps``."""
    count = int(seconds * max_rps)
    with tempfile.TemporaryDirectory() as tmp:
        bodies = os.path.join(tmp, "bodies.tsv")
        write_bodies(bodies, people, count, uuid.uuid4().hex[:8])
        cmd = [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--timeout",
            "30s",
            "-s",
            SCRIPT,
            base,
            "--",
            bodies,
            str(threads),
            "keys" if keys else "nokeys",
            BENCH_API_KEY,
        ]
        # The machine's and PostgreSQL's CPU over wrk's run alone (the bodies are made first).
        machine0, postgres0 = machine_busy_seconds(), postgres_cpu_seconds()
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
        machine_s = machine_busy_seconds() - machine0
        postgres_s = postgres_cpu_seconds() - postgres0
    if res.returncode != 0:
        raise RuntimeError(f"wrk failed: {res.stderr[-2000:]}")
    line = [ln for ln in res.stdout.splitlines() if ln.startswith('{"wrk"')][-1]
    raw = json.loads(line)
    elapsed = raw["duration_us"] / 1e6
    failed = raw["non_2xx_3xx"]
    ok = raw["requests"] - failed
    return {
        "mode": "max",
        "client": "wrk",
        "idempotency_keys": keys,
        "concurrency": connections,
        "seconds": round(elapsed, 2),
        "ok": ok,
        "non_2xx": failed,
        "socket_errors": raw["connect_errors"]
        + raw["read_errors"]
        + raw["write_errors"]
        + raw["timeouts"],
        "bodies_reused": raw["wrapped"],
        "throughput_rps": round(ok / elapsed, 1),
        "machine_cpu_ms_per_request": round(machine_s * 1000 / max(1, ok), 2),
        "postgres_cpu_ms_per_request": round(postgres_s * 1000 / max(1, ok), 2),
        "latency_ms": {
            "p50": round(raw["p50_us"] / 1000, 2),
            "p90": round(raw["p90_us"] / 1000, 2),
            "p99": round(raw["p99_us"] / 1000, 2),
            "max": round(raw["max_us"] / 1000, 2),
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--people", help="JSON file: a list of existing person blocks")
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--keys", action="store_true", help="an Idempotency-Key on every request")
    args = p.parse_args(argv)
    if not available():
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    with open(args.people) if args.people else open(os.devnull) as fh:
        people = json.load(fh) if args.people else []
    out = run(
        args.base,
        people,
        seconds=args.seconds,
        connections=args.connections,
        threads=args.threads,
        keys=args.keys,
    )
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
