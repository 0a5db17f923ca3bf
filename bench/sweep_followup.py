"""The sweep at 1 M, step by step, without changing the shared data set (BENCHMARKS.md,
"Follow-up: sweep").

    .venv/bin/python -m bench.sweep_followup [--rounds N] [--old FILE] [--explain FILE]
        [--explain-old] [--without-load-rows]

Reproduces bench/run.py's sweep step inside ONE transaction that is rolled back at the end:
a warm-up sweep at A = B - 6 h, the same 10,000-row back-fill whose 72-hour windows end in
(A, B) (plus ``ANALYZE incidents``, as the bench does), then rounds that alternate

    sweep at B (this checkout's services/sweep.py)  [-> the --old copy's sweep at B]
    -> the hand-written UPDATE the bench compares with

each under a savepoint that is rolled back, so every round sees the same data. Per round it
prints the time of each alert kind, of the outbox step and the total. The alerts each
implementation raised at B (kind, dedupe key, incident, person, details) are compared: with
``--old`` (e.g. ``git show <rev>:services/sweep.py > /tmp/sweep_old.py``) the two sets must
be identical, or the script says so and exits 1. ``--explain FILE`` writes EXPLAIN
(ANALYZE, BUFFERS) of every statement one sweep at B runs, executed in order inside the
transaction (so each sees the batch and the alerts raised before it).

Nothing is committed: the back-fill, the warm-up's alerts and every sweep are rolled back
(``ANALYZE`` inside the transaction leaves only pg_class's row estimate touched).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, event, text
from sqlalchemy.orm import Session

from bench.common import ROOT, bench_url
from services import webhooks
from services.config import load_settings

BATCH = 10_000

_BACKFILL = """
WITH src AS (SELECT id FROM agencies ORDER BY name LIMIT 1),
     cli AS (SELECT id FROM api_clients ORDER BY created_at LIMIT 1),
     ppl AS (SELECT id, row_number() OVER () AS rn FROM (
               SELECT id FROM persons TABLESAMPLE SYSTEM (10) REPEATABLE (7) LIMIT :n) p),
     g AS (SELECT s, CAST(:at AS timestamptz) - interval '72 hours'
                  - (((s * 7919) % 21600) * interval '1 second') - interval '1 second' AS occurred
             FROM generate_series(1, :n) s)
INSERT INTO incidents (id, source_agency_id, source_ref, created_by_type, created_by_id,
    occurred_at, reported_at, contact_due_at, postcode, postcode_district, person_id, fu_status,
    hospital, naloxone_administered, created_at, updated_at)
SELECT gen_random_uuid()::text, (SELECT id FROM src), 'SWEEPFOLLOWUP-' || g.s,
       'client', (SELECT id FROM cli), g.occurred, CAST(:at AS timestamptz) - interval '1 hour',
       g.occurred + interval '72 hours', 'DD1 1AA', 'DD1', ppl.id, 'awaiting_contact',
       'declined', true, CAST(:at AS timestamptz) - interval '1 hour',
       CAST(:at AS timestamptz) - interval '1 hour'
  FROM g LEFT JOIN ppl ON ppl.rn = g.s
"""
_BASELINE = (
    "UPDATE incidents SET updated_at = :b WHERE fu_status = 'awaiting_contact' "
    "AND contact_due_at > :a AND contact_due_at < :b"
)


def remove_load_rows(conn) -> int:
    """What bench/run.py's remove_bench_rows deletes for ingest leftovers (rolled back here)."""
    added = "SELECT id FROM incidents WHERE source_ref LIKE 'LOAD-%%'"
    for table in ("incident_substances", "huddle_items"):
        conn.exec_driver_sql(f"DELETE FROM {table} WHERE incident_id IN ({added})")
    conn.exec_driver_sql(
        "DELETE FROM contact_codes WHERE contact_id IN "
        f"(SELECT id FROM contact_attempts WHERE incident_id IN ({added}))"
    )
    conn.exec_driver_sql(f"DELETE FROM contact_attempts WHERE incident_id IN ({added})")
    conn.exec_driver_sql(f"DELETE FROM alerts WHERE incident_id IN ({added})")
    return conn.exec_driver_sql(f"DELETE FROM incidents WHERE id IN ({added})").rowcount


def load_module(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up here
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


class Timer:
    """Wraps a sweep module's steps and the outbox call to time each one."""

    def __init__(self, mod):
        self.mod = mod
        self.times: dict[str, float] = {}
        steps = []
        for kind, fn in mod._STEPS:
            steps.append((kind, self._wrap(kind, fn)))
        mod._STEPS = tuple(steps)

    def _wrap(self, kind, fn):
        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.times[kind] = self.times.get(kind, 0.0) + time.perf_counter() - t

        return timed


_real_enqueue = webhooks.enqueue
_outbox_time = [0.0]


def _timed_enqueue(*args, **kwargs):
    t = time.perf_counter()
    try:
        return _real_enqueue(*args, **kwargs)
    finally:
        _outbox_time[0] += time.perf_counter() - t


webhooks.enqueue = _timed_enqueue


def raised_at_b(conn, b: datetime) -> list[tuple]:
    rows = conn.execute(
        text(
            "SELECT kind, dedupe_key, incident_id, person_id, CAST(CAST(details AS jsonb) AS text) "
            "FROM alerts WHERE raised_at = :b ORDER BY dedupe_key"
        ),
        {"b": b},
    ).all()
    return [tuple(r) for r in rows]


def deliveries_at_b(conn, b: datetime) -> int:
    return conn.execute(
        text(
            "SELECT count(*) FROM webhook_deliveries d JOIN alerts a ON a.id = d.alert_id "
            "WHERE a.raised_at = :b"
        ),
        {"b": b},
    ).scalar_one()


def run_sweep(conn, mod, timer: Timer, b: datetime, settings) -> tuple[dict, list[tuple], int]:
    timer.times = {}
    _outbox_time[0] = 0.0
    session = Session(bind=conn, join_transaction_mode="create_savepoint")
    t = time.perf_counter()
    result = mod.sweep(session, at=b, settings=settings)
    session.flush()
    total = time.perf_counter() - t
    alerts = raised_at_b(conn, b)
    deliveries = deliveries_at_b(conn, b)
    session.rollback()
    session.close()
    timing = {k: timer.times.get(k, 0.0) for k, _ in mod._STEPS}
    timing["outbox"] = _outbox_time[0]
    timing["total"] = total
    timing["raised"] = dict(result.raised)
    return timing, alerts, deliveries


def run_baseline(conn, a: datetime, b: datetime) -> tuple[float, int]:
    sp = conn.begin_nested()
    t = time.perf_counter()
    n = conn.execute(text(_BASELINE), {"a": a, "b": b}).rowcount
    elapsed = time.perf_counter() - t
    sp.rollback()
    return elapsed, n


def explain_sweep(engine, conn, mod, b: datetime, settings, path: str) -> None:
    captured: list[tuple[str, object, bool]] = []

    def hook(_c, _cur, statement, parameters, _ctx, executemany):  # noqa: ANN001
        captured.append((statement, parameters, executemany))

    event.listen(engine, "before_cursor_execute", hook)
    session = Session(bind=conn, join_transaction_mode="create_savepoint")
    try:
        mod.sweep(session, at=b, settings=settings)
        session.flush()
    finally:
        event.remove(engine, "before_cursor_execute", hook)
        session.rollback()
        session.close()
    dbapi = conn.connection.driver_connection
    out = [
        f"# one sweep at B={b.isoformat()}: every statement in order, EXPLAIN (ANALYZE, BUFFERS)"
    ]
    sp = conn.begin_nested()
    for statement, params, many in captured:
        head = statement.lstrip().split(None, 1)[0].upper()
        if head in ("SAVEPOINT", "RELEASE", "ROLLBACK") or many:
            if many:
                out.append(f"\n-- executemany (not explained): {statement[:120]}")
            continue
        if head == "SET":  # the sweep's own settings apply to what follows
            with dbapi.cursor() as cur:
                cur.execute(statement, params)
            out += [f"\n-- (run, not explained) {statement.strip()}"]
            continue
        with dbapi.cursor() as cur:
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
            plan = "\n".join(r[0] for r in cur.fetchall())
        ms = plan.rsplit("Execution Time: ", 1)[-1].split(" ms")[0] if "Execution" in plan else "?"
        out += [f"\n-- {ms} ms", statement.strip(), "", plan]
    sp.rollback()
    with open(path, "w") as fh:
        fh.write("\n".join(out) + "\n")
    print(f"explain: {len(captured)} statements written to {path}")


def digest(alerts: list[tuple]) -> str:
    return hashlib.sha256(repr(alerts).encode()).hexdigest()[:16]


def fmt(timing: dict) -> str:
    parts = [f"{k}={1000 * v:.0f}" for k, v in timing.items() if k not in ("raised", "total") and v]
    return f"total={1000 * timing['total']:.0f} ms [" + " ".join(parts) + "]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--old", help="a copy of an older services/sweep.py to compare with")
    ap.add_argument("--explain", help="write EXPLAIN ANALYZE of one sweep at B here")
    ap.add_argument(
        "--explain-old", action="store_true", help="explain the --old copy's sweep instead"
    )
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument(
        "--without-load-rows",
        action="store_true",
        help="first delete (in the transaction) what bench ingest runs left (source_ref LOAD-%%)",
    )
    args = ap.parse_args()

    url = bench_url()
    settings = load_settings(database_url=url, log_level="WARNING")
    engine = create_engine(url)
    new = load_module(os.path.join(ROOT, "services", "sweep.py"), "sweep_new")
    impls = [("new", new, Timer(new))]
    if args.old:
        old = load_module(args.old, "sweep_old")
        impls.insert(0, ("old", old, Timer(old)))

    b = datetime.now(UTC).replace(microsecond=0)
    a = b - timedelta(hours=6)
    print(f"load: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    # One snapshot for the whole run: rows other people commit meanwhile (ingest runs) stay
    # invisible, so every round (and old and new) sweeps the same data.
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        outer = conn.begin()
        try:
            if args.without_load_rows:
                removed = remove_load_rows(conn)
                print(f"removed (until the rollback) {removed} incidents left by ingest runs")
            t = time.perf_counter()
            with Session(bind=conn, join_transaction_mode="create_savepoint") as s:
                r = impls[-1][1].sweep(s, at=a, settings=settings)
                s.commit()  # releases the savepoint; the outer transaction is rolled back
            print(f"warm-up sweep at A={a.isoformat()}: {time.perf_counter() - t:.2f} s {r.raised}")
            n = conn.execute(text(_BACKFILL), {"n": args.batch, "at": b}).rowcount
            conn.execute(text("ANALYZE incidents"))
            newly = conn.execute(
                text(
                    "SELECT count(*) FROM incidents WHERE fu_status = 'awaiting_contact' "
                    "AND contact_due_at > :a AND contact_due_at < :b"
                ),
                {"a": a, "b": b},
            ).scalar_one()
            print(f"back-fill: {n} rows; newly overdue in (A, B): {newly}")

            times: dict[str, list[float]] = {name: [] for name, _, _ in impls}
            base: list[float] = []
            per_step: dict[tuple[str, str], list[float]] = {}
            sets: dict[str, list[tuple]] = {}
            same = True
            for rnd in range(args.rounds):
                this_round: dict[str, list[tuple]] = {}
                for name, mod, timer in impls:
                    timing, alerts, deliveries = run_sweep(conn, mod, timer, b, settings)
                    times[name].append(timing["total"])
                    for step, secs in timing.items():
                        if step not in ("raised", "total"):
                            per_step.setdefault((name, step), []).append(secs)
                    this_round[name] = alerts
                    if name not in sets:
                        sets[name] = alerts
                        print(
                            f"{name}: raised {timing['raised']}, deliveries {deliveries}, "
                            f"alert set digest {digest(alerts)} ({len(alerts)} rows)"
                        )
                    elif alerts != sets[name]:
                        print(f"{name}: round {rnd} raised a different set")
                    print(f"round {rnd} {name:>3}: {fmt(timing)}")
                if len(this_round) == 2 and this_round["old"] != this_round["new"]:
                    same = False
                    print(f"round {rnd}: old and new raised DIFFERENT alerts")
                elapsed, rows = run_baseline(conn, a, b)
                base.append(elapsed)
                print(f"round {rnd} UPDATE: {1000 * elapsed:.0f} ms ({rows} rows)")

            med_base = statistics.median(base)
            print(f"\nbaseline UPDATE median {1000 * med_base:.0f} ms over {len(base)}")
            for name in times:
                med = statistics.median(times[name])
                print(
                    f"sweep {name} median {1000 * med:.0f} ms over {len(times[name])}; "
                    f"ratio {med / med_base:.2f}"
                )
                steps = [
                    f"{step}={1000 * statistics.median(v):.0f}"
                    for (impl, step), v in per_step.items()
                    if impl == name
                ]
                print(f"  per step (median ms): {' '.join(steps)}")
            if "old" in sets:
                print(f"old and new raised identical alerts at B in every round: {same}")
            if args.explain:
                which = impls[0][1] if args.explain_old and args.old else new
                explain_sweep(engine, conn, which, b, settings, args.explain)
            print(
                f"load: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}"
            )
            return 0 if same else 1
        finally:
            with contextlib.suppress(Exception):
                outer.rollback()


if __name__ == "__main__":
    sys.exit(main())
