"""Instructions per request, counted by valgrind's callgrind: an A/B measure that a busy or
uneven machine does not disturb.

    .venv/bin/python -m bench.instructions intake [--keys] [--n 100] [--root DIR]
    .venv/bin/python -m bench.instructions agenda [--n 20] [--root DIR]

On the virtual machines this was written on, the CPU time one request costs varied by up to
30 % between two runs of the same code minutes apart, so a 5 % change could not be seen in
throughput or CPU time without many alternated rounds. The number of instructions the
process executes for the same requests is repeatable to a fraction of a percent. This runs
the app in-process (``TestClient``, the real PostgreSQL bench database) under callgrind twice
- ``--base`` requests and ``--base + --n`` requests, both after the same start-up - and
divides the difference by ``--n``: instructions per request, the client's share included (the
same for both versions). ``--root`` measures another checkout's code (``git worktree add`` or
``git clone . /tmp/other``) with this checkout's venv. PYTHONHASHSEED is fixed.

``intake``: ``POST /v1/incidents`` as the bench partner (bench.load's bodies; ``--keys``
with a fresh Idempotency-Key each) on nfod_bench; ``agenda``: the data set's agenda on
nfod_bench_small as the bench coordinator. Nothing here times anything. Needs valgrind
(Debian package ``valgrind``); about a minute per run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor

from bench.common import BENCH_API_KEY, BENCH_COORDINATOR, PYTHON, ROOT, bench_url, with_database

# This checkout's data set descriptions (another --root may have none of its own).
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def drive(what: str, count: int, keys: bool) -> None:
    """Run ``count`` requests in-process (the part valgrind counts)."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from bench.load import BodyMaker
    from services.config import load_settings

    if what == "intake":
        with open(os.path.join(RESULTS, "logs", "people.json")) as fh:
            people = json.load(fh)
        maker = BodyMaker(people, 3, "ins" + uuid.uuid4().hex[:6])
        app = create_app(load_settings(database_url=bench_url(), log_level="WARNING"))
        headers = {"Authorization": f"Bearer {BENCH_API_KEY}"}
        with TestClient(app) as client:
            for _ in range(count):
                h = headers | ({"Idempotency-Key": str(uuid.uuid4())} if keys else {})
                r = client.post("/v1/incidents", json=maker.make(), headers=h)
                assert r.status_code == 201, r.text
        return
    from bench.run import agenda_paths

    small = with_database(bench_url(), "nfod_bench_small")
    with open(os.path.join(RESULTS, "dataset-nfod_bench_small.json")) as fh:
        path = agenda_paths(json.load(fh))[0]
    app = create_app(load_settings(database_url=small, log_level="WARNING"))
    with TestClient(app) as client:
        form = dict(zip(("username", "password"), BENCH_COORDINATOR, strict=True))
        token = client.post("/v1/auth/token", data=form).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(count):
            assert client.get(path, headers=headers).status_code == 200


def counted(root: str, what: str, count: int, keys: bool) -> int:
    """Instructions callgrind collected for start-up plus ``count`` requests."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={tmp}/callgrind.out",
            PYTHON,
            "-W",
            "ignore",
            os.path.abspath(__file__),  # this driver, with the measured checkout's code
            what,
            "--drive",
            str(count),
        ] + (["--keys"] if keys else [])
        env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=root, NFOD_LOG_LEVEL="WARNING")
        res = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    found = re.search(r"Collected : (\d+)", res.stderr)
    if res.returncode != 0 or not found:
        raise RuntimeError(f"valgrind run failed: {res.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["intake", "agenda"])
    p.add_argument("--keys", action="store_true", help="intake: an Idempotency-Key each")
    p.add_argument("--n", type=int, help="requests counted (default 100 intake, 20 agenda)")
    p.add_argument("--base", type=int, default=None, help="requests in the base run")
    p.add_argument("--root", default=ROOT, help="the checkout whose code is measured")
    p.add_argument("--drive", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.drive is not None:
        drive(args.what, args.drive, args.keys)
        return 0
    n = args.n or (100 if args.what == "intake" else 20)
    base = args.base if args.base is not None else (20 if args.what == "intake" else 5)
    root = os.path.abspath(args.root)
    with ThreadPoolExecutor(2) as pool:  # the two runs side by side (one core each)
        low, high = pool.map(lambda c: counted(root, args.what, c, args.keys), (base, base + n))
    out = {
        "what": args.what,
        "keys": args.keys,
        "root": root,
        "requests": n,
        "instructions_per_request": round((high - low) / n),
        "instructions_base_run": low,
    }
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
