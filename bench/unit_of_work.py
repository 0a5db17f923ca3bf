"""What a unit of work costs the process around its statements, on PostgreSQL.

    .venv/bin/python -m bench.unit_of_work [--n 5000] [--rounds 2]

Each variant runs BEGIN, one ``SELECT 1`` (through services.db.execute_direct where
SQLAlchemy is involved) and COMMIT, ``--n`` times after a warm-up, and reports the process's
CPU time (user + system, from getrusage) per unit; the variants alternate, ``--rounds``
times. From a fresh ``RequestSession`` (what every request has) down to psycopg's own
BEGIN/COMMIT, the differences show what the ORM session and the pool's checkout/checkin cost
(BENCHMARKS.md, thirteenth round). Runs against the bench database (NFOD_BENCH_DATABASE_URL);
it reads nothing from it. Nothing here is asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import resource
from collections.abc import Callable

import psycopg
from sqlalchemy import make_url, text
from sqlalchemy.orm import Session, sessionmaker

from bench.common import bench_url
from services.db import RequestSession, execute_direct, make_engine

ONE = text("SELECT 1")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _per_unit(fn: Callable[[], None], n: int) -> float:
    for _ in range(min(300, n)):
        fn()
    start = _cpu()
    for _ in range(n):
        fn()
    return (_cpu() - start) / n * 1e6


def variants(url: str) -> dict[str, Callable[[], None]]:
    engine = make_engine(url, pool_size=4)
    sessions = sessionmaker(bind=engine, class_=RequestSession, expire_on_commit=False)
    kept_connection = engine.connect()
    kept_session = sessions()
    parts = make_url(url)
    raw = psycopg.connect(
        host=parts.host, port=parts.port or 5432, user=parts.username, dbname=parts.database
    )
    open_tx = engine.connect()
    open_tx.begin()

    def request_session():
        s = sessions()
        execute_direct(s.connection(), ONE, {})
        s.commit()
        s.close()

    def fresh_connection_session():
        conn = engine.connect()
        s = Session(bind=conn, expire_on_commit=False)
        execute_direct(s.connection(), ONE, {})
        s.commit()
        s.close()
        conn.close()

    def kept_connection_session():
        s = Session(bind=kept_connection, expire_on_commit=False)
        execute_direct(s.connection(), ONE, {})
        s.commit()
        s.close()

    def kept_orm_session():
        execute_direct(kept_session.connection(), ONE, {})
        kept_session.commit()

    def fresh_connection_core():
        with engine.connect() as conn, conn.begin():
            execute_direct(conn, ONE, {})

    def kept_connection_core():
        with kept_connection.begin():
            execute_direct(kept_connection, ONE, {})

    def psycopg_only():
        raw.execute("SELECT 1").fetchall()
        raw.commit()

    def statement_alone():
        execute_direct(open_tx, ONE, {})

    return {
        "a fresh RequestSession (every request now)": request_session,
        "a fresh connection, an ORM Session on it": fresh_connection_session,
        "a kept connection, a fresh ORM Session on it": kept_connection_session,
        "one ORM session kept open": kept_orm_session,
        "a fresh connection, Core begin/commit": fresh_connection_core,
        "a kept connection, Core begin/commit": kept_connection_core,
        "psycopg alone": psycopg_only,
        "the statement alone, in an open transaction": statement_alone,
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    found = variants(bench_url())
    results: dict[str, list[float]] = {name: [] for name in found}
    for _ in range(args.rounds):
        for name, fn in found.items():
            results[name].append(round(_per_unit(fn, args.n), 1))
    for name, values in results.items():
        print(json.dumps({"unit": name, "cpu_us_per_unit": values}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
