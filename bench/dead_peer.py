"""A network cut between the service and PostgreSQL: packets dropped, no reset.

    .venv/bin/python -m bench.dead_peer [--tcp 30] [--cap 90]      (as root: ip netns, veth)

A restarted PostgreSQL closes its connections, and the next statement fails at once (make
bench's ``pgrestart``). A server whose host went down, or a network that was cut, says nothing:
the connection looks open, and a statement sent on it waits for an answer that never comes -
about 15 minutes, until the kernel gives up retransmitting. The service's connections carry
TCP keep-alives and ``tcp_user_timeout`` (services.db.Timeouts, ``NFOD_DB_TCP_TIMEOUT_SECONDS``)
so that such a connection counts as lost after about that long, and the request is answered
503 instead of hanging.

This makes a network namespace joined to this one by a veth pair, and a ``socat`` forwarder
at 10.77.0.1:6432 to the PostgreSQL of the bench URL. In the namespace it opens a connection
through it, drops the namespace's end of the link (``ip link set ... down``: packets are
lost, nothing is reset), sends one statement and times what happens: once with ``--tcp``
seconds as the limit, once with none (waited for ``--cap`` seconds at most). The namespace
and the forwarder are removed afterwards. Needs root, iproute2 and socat (Debian packages).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

from bench.common import PYTHON, ROOT, bench_url

NAMESPACE = "nfod-dead-peer"
HOST_END, PEER_END = "nfoddp0", "nfoddp1"
HOST_ADDR, PEER_ADDR, PORT = "10.77.0.1", "10.77.0.2", 6432


def _ip(*args: str, netns: bool = False, check: bool = True) -> None:
    prefix = ["ip", "netns", "exec", NAMESPACE] if netns else []
    subprocess.run([*prefix, "ip", *args], check=check, capture_output=True)


def set_up() -> subprocess.Popen:
    tear_down()
    _ip("netns", "add", NAMESPACE)
    _ip("link", "add", HOST_END, "type", "veth", "peer", "name", PEER_END)
    _ip("link", "set", PEER_END, "netns", NAMESPACE)
    _ip("addr", "add", f"{HOST_ADDR}/24", "dev", HOST_END)
    _ip("link", "set", HOST_END, "up")
    _ip("addr", "add", f"{PEER_ADDR}/24", "dev", PEER_END, netns=True)
    _ip("link", "set", PEER_END, "up", netns=True)
    _ip("link", "set", "lo", "up", netns=True)
    server = urlsplit(bench_url().replace("postgresql+psycopg", "postgresql"))
    forwarder = subprocess.Popen(
        [
            "socat",
            f"TCP-LISTEN:{PORT},bind={HOST_ADDR},fork,reuseaddr",
            f"TCP:{server.hostname or '127.0.0.1'}:{server.port or 5432}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    return forwarder


def tear_down(forwarder: subprocess.Popen | None = None) -> None:
    if forwarder is not None:
        forwarder.terminate()
        forwarder.wait(5)
    _ip("link", "del", HOST_END, check=False)
    _ip("netns", "del", NAMESPACE, check=False)


def probe(tcp: float, cap: float) -> dict:
    """In the namespace: connect, cut the link, send one statement, time the outcome."""
    from sqlalchemy import text

    from services.db import Timeouts, make_engine

    server = urlsplit(bench_url())
    url = f"postgresql+psycopg://{server.username or 'postgres'}@{HOST_ADDR}:{PORT}{server.path}"
    engine = make_engine(url, timeouts=Timeouts(tcp=tcp), pool_size=1, max_overflow=0)
    conn = engine.connect()
    conn.execute(text("SELECT 1"))
    conn.commit()
    _ip("link", "set", PEER_END, "down")
    outcome: list[str] = []

    def statement() -> None:
        try:
            conn.execute(text("SELECT 1"))
            outcome.append("answered")
        except Exception as exc:  # noqa: BLE001 - what happened is the measurement
            outcome.append(f"{type(exc).__name__} ({type(getattr(exc, 'orig', exc)).__name__})")

    started = time.monotonic()
    worker = threading.Thread(target=statement, daemon=True)
    worker.start()
    worker.join(cap)
    waited = round(time.monotonic() - started, 1)
    _ip("link", "set", PEER_END, "up")
    return {
        "tcp_timeout_seconds": tcp,
        "seconds": waited,
        "outcome": outcome[0] if outcome else f"still waiting after {cap:g} s",
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--tcp", type=float, default=30, help="the limit measured (NFOD default 30)")
    p.add_argument("--cap", type=float, default=90, help="seconds to wait without a limit")
    p.add_argument("--probe", nargs=2, type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.probe:
        print(json.dumps(probe(*args.probe)))
        return 0
    if os.geteuid() != 0:
        print("needs root (ip netns)", file=sys.stderr)
        return 2
    forwarder = set_up()
    try:
        results = []
        for tcp in (args.tcp, 0.0):
            out = subprocess.run(
                ["ip", "netns", "exec", NAMESPACE, PYTHON, "-m", "bench.dead_peer"]
                + ["--probe", str(tcp), str(args.cap)],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": ROOT},
                check=True,
                capture_output=True,
                text=True,
            )
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]))
    finally:
        tear_down(forwarder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
