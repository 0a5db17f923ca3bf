"""Time, EXPLAIN and check the summary report in-process on the big database (BENCHMARKS.md,
"Follow-up: reports").

    .venv/bin/python -m bench.reports_followup time [runs] [--impl FILE ...]
    .venv/bin/python -m bench.reports_followup explain OUT.txt
    .venv/bin/python -m bench.reports_followup save OUT.json [--impl FILE]
    .venv/bin/python -m bench.reports_followup compare A.json B.json
    .venv/bin/python -m bench.reports_followup check --impl OLD.py [--impl NEW.py]
    .venv/bin/python -m bench.reports_followup trigger-cost

``time`` runs compute + suppress (the analyst view; the coordinator view is the same
``compute``) for the one-year period (wall time, and the PostgreSQL backend's CPU time when
the server runs on this machine), alternating between the implementations given with
``--impl`` (a copy of services/reports.py, e.g. an older commit's from ``git show``; default:
the current one), and prints each run and the medians. ``save`` writes both views of several
periods as JSON; ``compare`` reports every field that differs; ``check`` computes two
implementations on one REPEATABLE READ snapshot (other writers may be loading the shared
database meanwhile) and reports every field that differs; ``trigger-cost`` shows what the
occurred_at-copy trigger (migration 0002) adds to each inserted substance row (ingest), next
to the foreign-key check's trigger, and what the person copies' trigger (migration 0008) adds
to each inserted incident with a person, next to the person foreign key's check, from EXPLAIN
ANALYZE of 20,000-row INSERTs in a scratch database on the same server (created and dropped).
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import sys
import time
from datetime import UTC, date, datetime

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from bench import explain as ex
from services import reports
from services.config import load_settings

URL = os.environ.get(
    "NFOD_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/nfod_bench"
)
START, END = date(2025, 11, 24), date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
PERIODS = [
    (START, END),  # the bench's year
    (date(2026, 11, 1), date(2026, 11, 3)),  # small: suppression has work to do
    (date(2026, 3, 29), date(2026, 10, 25)),  # starts and ends on clock-change days
    (date(2016, 11, 25), END),  # the longest period allowed: every incident
]


def load(path: str | None):
    if path is None:
        return reports
    spec = importlib.util.spec_from_file_location(f"reports_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def views(module, session: Session, settings, start: date, end: date) -> dict:
    figures = module.compute(session, settings=settings, now=NOW, start=start, end=end)
    return {"coordinator": dict(figures, suppressed=False), "analyst": module.suppress(figures)}


def _backend_cpu(pid: int) -> float:
    """CPU seconds the server process has used (same machine; parallel workers not counted):
    what the statements cost without waiting for a shared CPU."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def trigger_cost() -> None:
    import uuid

    from sqlalchemy.engine import make_url

    from services import migrations

    base = make_url(URL)
    name = f"nfod_reptrig_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = base.set(database=name).render_as_string(hide_password=False)
        migrations.upgrade(url)
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO agencies (id, name, kind, created_at)"
                    " VALUES ('a', 'A', 's', now())"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO incidents (id, source_agency_id, created_by_type, created_by_id,"
                    " occurred_at, reported_at, contact_due_at, fu_status, created_at, updated_at)"
                    " SELECT 'i' || g, 'a', 'user', 'u', now(), now(), now(), 'awaiting_contact',"
                    " now(), now() FROM generate_series(1, 20000) g"
                )
            )
            conn.execute(text("ANALYZE"))

        def triggers(insert: str) -> None:
            """EXPLAIN ANALYZE of the INSERT (committed): its triggers' lines and the total."""
            with engine.begin() as conn:
                plan = conn.execute(text(f"EXPLAIN (ANALYZE) {insert}")).scalars()
                print([line for line in plan if "Trigger" in line or "Execution" in line])

        for position in range(3):
            triggers(
                "INSERT INTO incident_substances (incident_id, position, substance)"
                f" SELECT 'i' || g, {position}, 'heroin' FROM generate_series(1, 20000) g"
            )
        # The person copies' trigger (migration 0008) on each inserted incident with a person,
        # next to the person foreign key's check: 20,000 incidents for 20,000 people.
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO persons (id, sex, date_of_birth, created_at, updated_at)"
                    " SELECT 'p' || g, 'male', date '1980-01-01' + g % 9000, now(), now()"
                    " FROM generate_series(1, 20000) g"
                )
            )
            conn.execute(text("ANALYZE persons"))
        for round_ in range(3):
            triggers(
                "INSERT INTO incidents (id, source_agency_id, created_by_type, created_by_id,"
                " occurred_at, reported_at, contact_due_at, fu_status, created_at, updated_at,"
                f" person_id) SELECT 'j{round_}-' || g, 'a', 'user', 'u', now(), now(), now(),"
                " 'awaiting_contact', now(), now(), 'p' || g FROM generate_series(1, 20000) g"
            )
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    args = sys.argv[1:]
    impls = [args[i + 1] for i, a in enumerate(args) if a == "--impl"]
    args = [a for i, a in enumerate(args) if a != "--impl" and (i == 0 or args[i - 1] != "--impl")]
    mode = args[0] if args else "time"
    engine = create_engine(URL)
    settings = load_settings()

    if mode == "time":
        runs = int(args[1]) if len(args) > 1 else 5
        modules = [(path or "current", load(path)) for path in (impls or [None])]
        times: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in modules}
        for n in range(runs):
            for name, module in modules:
                with Session(engine) as s:
                    pid = s.execute(text("SELECT pg_backend_pid()")).scalar_one()
                    s.commit()
                    cpu, t = _backend_cpu(pid), time.perf_counter()
                    module.suppress(
                        module.compute(s, settings=settings, now=NOW, start=START, end=END)
                    )
                    ms, cpu = 1000 * (time.perf_counter() - t), 1000 * (_backend_cpu(pid) - cpu)
                times[name].append((ms, cpu))
                print(f"run {n} {name}: {ms:.0f} ms (backend CPU {cpu:.0f} ms)", flush=True)
        for name, values in times.items():
            wall = statistics.median(v[0] for v in values)
            cpu = statistics.median(v[1] for v in values)
            print(f"median {name}: {wall:.0f} ms, backend CPU {cpu:.0f} ms, {len(values)} runs")
    elif mode == "explain":
        # The replayed statements run on their own connection: give it the work_mem and jit
        # that compute() sets for its transaction (SET statements are not replayed).
        engine = create_engine(URL, connect_args={"options": "-c work_mem=64MB -c jit=off"})
        rec = ex.Recorder(engine)

        def run() -> None:
            with Session(engine) as s:
                views(reports, s, settings, START, END)

        rows = ex.explain(engine, rec.capture(run), keep=20, include_writes=True)
        out = [f"# reports summary {START}..{END}, every statement, EXPLAIN (ANALYZE, BUFFERS)", ""]
        for r in rows:
            seqs = r["seq_scans_on_big_tables"] or "none"
            out += [f"-- {r['execution_ms']} ms; seq scans on big tables: {seqs}", r["sql"], ""]
            out += [r["plan"], ""]
        with open(args[1], "w") as f:
            f.write("\n".join(out))
        print("explained:", [(r["execution_ms"], r["seq_scans_on_big_tables"]) for r in rows])
    elif mode == "save":
        module = load(impls[0] if impls else None)
        out = {}
        with Session(engine) as s:
            for start, end in PERIODS:
                out[f"{start}..{end}"] = views(module, s, settings, start, end)
        with open(args[1], "w") as f:
            json.dump(out, f, indent=1, sort_keys=True)
        print("saved", args[1], {k: v["coordinator"]["incidents"] for k, v in out.items()})
    elif mode == "check":
        # Old and new on one snapshot (REPEATABLE READ), so concurrent writers cannot differ.
        modules = [load(impls[0]), load(impls[1] if len(impls) > 1 else None)]
        diffs, fields = [], 0
        with Session(engine.execution_options(isolation_level="REPEATABLE READ")) as s:
            for start, end in PERIODS:
                a, b = (views(m, s, settings, start, end) for m in modules)
                for view in a:
                    fields += len(a[view])
                    diffs += [
                        (start, end, view, key, a[view].get(key), b[view].get(key))
                        for key in sorted(set(a[view]) | set(b[view]))
                        if a[view].get(key) != b[view].get(key)
                    ]
                print(f"{start}..{end}: {a['coordinator']['incidents']} incidents", flush=True)
        for d in diffs:
            print("DIFFERS", *d)
        print(f"{len(diffs)} differences in {fields} fields over {len(PERIODS)} periods x 2 views")
        sys.exit(1 if diffs else 0)
    elif mode == "trigger-cost":
        trigger_cost()
    elif mode == "compare":
        with open(args[1]) as f:
            a = json.load(f)
        with open(args[2]) as f:
            b = json.load(f)
        diffs = [
            (period, view, key, a[period][view].get(key), b.get(period, {}).get(view, {}).get(key))
            for period in a
            for view in a[period]
            for key in sorted(set(a[period][view]) | set(b.get(period, {}).get(view, {})))
            if a[period][view].get(key) != b.get(period, {}).get(view, {}).get(key)
        ]
        for d in diffs:
            print("DIFFERS", *d)
        fields = sum(len(v) for p in a.values() for v in p.values())
        print(f"{len(diffs)} differences in {fields} fields over {len(a)} periods x 2 views")
        sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
