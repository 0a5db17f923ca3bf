"""``make bench``: every figure of issue 7, measured side by side in one run.

    .venv/bin/python -m bench.run            (or: make bench)

Environment (all optional):

    NFOD_BENCH_DATABASE_URL   the big database (default ...5432/nfod_bench); the small one is
                              the same URL with database ``nfod_bench_small``
    BENCH_INCIDENTS           size of the big data set (default 1000000)
    BENCH_SMALL_INCIDENTS     size of the small data set (default 10000)
    BENCH_REUSE=1             reuse existing databases instead of regenerating them
    BENCH_SECONDS             seconds per ingest measurement (default 20)
    BENCH_READS               requests per read endpoint (default 100)
    BENCH_REPORT_READS        requests per report view (default 20)
    BENCH_OVERDUE_BATCH       newly overdue incidents for the sweep figure (default 10000)
    BENCH_ONLY                comma list of steps: generate,reads,sweep,ingest,crash,pgrestart,lock,freeze,parallel,signins
    BENCH_LOCK_HOLD_SECONDS   how long the lock step holds the incidents table (default 30)
    BENCH_FREEZE_SECONDS      how long the freeze step stops the API's server processes (default 60)
    BENCH_SIGNIN_BURST        sign-ins at once in the signins step (default 20)
    BENCH_PG_BIN              PostgreSQL binaries for the private instance (/usr/lib/postgresql/15/bin)
    BENCH_PRIVATE_PG_PORT     port of the private instance (default 5544)

Writes bench/results/results.json and bench/results/results.md (plus EXPLAIN plans in
bench/results/explain/ and server logs in bench/results/logs/, not committed).
"""

# ruff: noqa: E501, SIM105, SIM115  (report-rendering strings; log files handed to child processes)

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from bench import explain as explain_mod
from bench import wrk
from bench.common import (
    BENCH_ANALYST,
    BENCH_COORDINATOR,
    NFOD,
    PYTHON,
    ROOT,
    bench_url,
    flush_writes,
    libpq,
    speed_probe,
    summary_ms,
    with_database,
)
from bench.servers import Server, token

RESULTS = os.path.join(ROOT, "bench", "results")
LOGS = os.path.join(RESULTS, "logs")
EXPLAINS = os.path.join(RESULTS, "explain")

BIG_N = int(os.environ.get("BENCH_INCIDENTS", "1000000"))
SMALL_N = int(os.environ.get("BENCH_SMALL_INCIDENTS", "10000"))
REUSE = os.environ.get("BENCH_REUSE") == "1"
SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))
# wrk's full-speed runs alternate baseline, API, keyed API this many times, each run
# BENCH_SECONDS / 2 long; the ratios are the medians of the rounds' own ratios.
# Five since the nineteenth round (three before): one round's ratio ranged 0.49-0.70 within a
# run, and the median of three moved with one round's luck. More rounds estimate the same
# ratio with less scatter; they do not raise it.
WRK_ROUNDS = int(os.environ.get("BENCH_WRK_ROUNDS", "5"))
READS = int(os.environ.get("BENCH_READS", "100"))
# Each report takes about half a second, so it is timed fewer times than the other reads; but
# with 10 samples the p95 (nearest rank, bench.common.pct) is the slowest one. With 20 it is
# the 19th.
REPORT_READS = int(os.environ.get("BENCH_REPORT_READS", "20"))
OVERDUE_BATCH = int(os.environ.get("BENCH_OVERDUE_BATCH", "10000"))
SETTLE = float(os.environ.get("BENCH_SETTLE_SECONDS", "30"))
ONLY = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))
PG_BIN = os.environ.get("BENCH_PG_BIN", "/usr/lib/postgresql/15/bin")
PRIVATE_PORT = int(os.environ.get("BENCH_PRIVATE_PG_PORT", "5544"))
CRASH_SECONDS = int(os.environ.get("BENCH_CRASH_SECONDS", "20"))
# How long the lock step holds the incidents table: longer than the API's lock limit.
LOCK_HOLD_SECONDS = float(os.environ.get("BENCH_LOCK_HOLD_SECONDS", "30"))
# How long the freeze step stops the API's PostgreSQL server processes: longer than the
# API's answer limit (NFOD_DB_ANSWER_TIMEOUT_SECONDS, 40) and its queue limit together.
FREEZE_SECONDS = float(os.environ.get("BENCH_FREEZE_SECONDS", "60"))
API_PORT, BASE_PORT = 8190, 8191
# The 10 k data set's API while the agenda is timed on both data sets at once (step_reads).
SMALL_PORT = 8192


def wanted(step: str) -> bool:
    return not ONLY or step in ONLY


def log(*a) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}]", *a, flush=True)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def pg_exec(url: str, sql: str, params=None, fetch: bool = True):
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if fetch and cur.description else None


def versions(url: str) -> dict:
    import fastapi
    import pydantic
    import sqlalchemy
    import uvicorn

    pg = pg_exec(with_database(url, "postgres"), "SHOW server_version")[0][0]
    return {
        "python": platform.python_version(),
        "postgresql": pg,
        "fastapi": fastapi.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "pydantic": pydantic.__version__,
        "uvicorn": uvicorn.__version__,
        "psycopg": psycopg.__version__,
        "httpx": httpx.__version__,
    }


# The server settings that the figures depend on most (the bench runs against the server as
# it is configured; the shared server here runs PostgreSQL's defaults): how much of the data
# set stays in PostgreSQL's own cache, how commits reach the disk, how often checkpoints come.
POSTGRES_SETTINGS = (
    "shared_buffers",
    "effective_cache_size",
    "work_mem",
    "synchronous_commit",
    "wal_compression",
    "checkpoint_timeout",
    "max_wal_size",
    "autovacuum",
)


def postgres_settings(url: str) -> dict:
    return {
        name: pg_exec(with_database(url, "postgres"), f"SHOW {name}")[0][0]
        for name in POSTGRES_SETTINGS
    }


def git_commit() -> str | None:
    try:
        return subprocess.check_output(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True
        ).strip()
    except Exception:  # noqa: BLE001
        return None


# --- data sets --------------------------------------------------------------------------------


def dataset(url: str, n: int, anchor: datetime) -> dict:
    from bench.common import database_name
    from bench.generate import generate

    path = os.path.join(RESULTS, f"dataset-{database_name(url)}.json")
    if REUSE and os.path.exists(path):
        try:
            pg_exec(url, "SELECT 1")
            info = json.load(open(path))
            info["reused"] = True
            return info
        except psycopg.OperationalError:
            pass
    log(f"generating {n:,} incidents into {database_name(url)}")
    info = generate(url, incidents=n, anchor=anchor)
    info["reused"] = False
    return info


# --- read endpoints ---------------------------------------------------------------------------


def timed_gets(client: httpx.Client, paths: list[str], n: int, warmup: int = 3) -> dict:
    return timed_gets_alternating([(client, paths)], n, warmup)[0]


def timed_gets_alternating(
    sides: list[tuple[httpx.Client, list[str]]], n: int, warmup: int = 3
) -> list[dict]:
    """Latency of ``n`` GETs on each side (a client and the paths it cycles through), after
    ``warmup`` untimed ones; with several sides their requests are interleaved (one to each
    in turn, the order reversed every other turn), so a change in the machine's speed during
    the measurement lands on every side alike and their ratio holds."""
    for client, paths in sides:
        for i in range(warmup):
            client.get(paths[i % len(paths)])
    lat: list[list[float]] = [[] for _ in sides]
    statuses: list[dict[str, int]] = [{} for _ in sides]
    sizes: list[list[int]] = [[] for _ in sides]
    order = list(range(len(sides)))
    for i in range(n):
        for k in order if i % 2 == 0 else order[::-1]:
            client, paths = sides[k]
            t = time.perf_counter()
            resp = client.get(paths[i % len(paths)])
            lat[k].append(time.perf_counter() - t)
            statuses[k][str(resp.status_code)] = statuses[k].get(str(resp.status_code), 0) + 1
            sizes[k].append(len(resp.content))
    out = []
    for k in order:
        one = summary_ms(lat[k])
        one["statuses"] = statuses[k]
        one["mean_bytes"] = int(statistics.fmean(sizes[k])) if sizes[k] else 0
        out.append(one)
    return out


def agenda_day(info: dict) -> str:
    return info["agenda_date"]


def agenda_paths(info: dict) -> list[str]:
    return [f"/v1/huddles/{agenda_day(info)}/agenda"]


def agenda_shape(client: httpx.Client, info: dict) -> dict:
    resp = client.get(agenda_paths(info)[0])
    if resp.status_code != 200:
        return {"status": resp.status_code}
    body = resp.json()
    return {"new": len(body.get("new", [])), "follow_ups": len(body.get("follow_ups", []))}


def read_paths(url: str, info: dict) -> dict[str, list[str]]:
    rows = pg_exec(
        url, "SELECT family_name, chi FROM persons WHERE chi IS NOT NULL ORDER BY md5(id) LIMIT 200"
    )
    families = sorted({r[0] for r in rows})
    chis = [r[1] for r in rows]
    pids = [
        r[0]
        for r in pg_exec(
            url,
            "SELECT person_id FROM incidents WHERE person_id IS NOT NULL ORDER BY md5(id) LIMIT 50",
        )
    ]
    anchor = datetime.fromisoformat(info["anchor"].replace("Z", "+00:00"))
    year_to = anchor.date()
    year_from = year_to - timedelta(days=364)
    return {
        "person_search_name": [f"/v1/persons?q={f}" for f in families],
        "person_search_name_2words": [
            f"/v1/persons?q={f}%20{g}"
            for f, g in zip(families, ["sam", "john", "sarah", "amy"] * 50, strict=False)
        ],
        "person_search_chi": [f"/v1/persons?chi={c}" for c in chis],
        "incident_list_first_page": ["/v1/incidents?limit=50"],
        "incident_list_awaiting": ["/v1/incidents?status=awaiting_contact&limit=50"],
        "incident_list_overdue": ["/v1/incidents?overdue=true&limit=50"],
        "incident_list_person": [f"/v1/incidents?person_id={p}" for p in pids],
        "incident_list_year": [
            f"/v1/incidents?occurred_from={year_from}T00:00:00Z&occurred_to={year_to}T00:00:00Z&limit=50"
        ],
        "reports_summary_year": [f"/v1/reports/summary?from={year_from}&to={year_to}"],
    }


def deep_page_paths(client: httpx.Client, pages: int = 20) -> list[str]:
    """Cursors of pages 2..pages of the incident list (keyset paging deep into the list)."""
    paths = []
    path = "/v1/incidents?limit=50"
    for _ in range(pages):
        resp = client.get(path)
        if resp.status_code != 200:
            break
        cur = resp.json().get("next_cursor")
        if not cur:
            break
        path = f"/v1/incidents?limit=50&cursor={cur}"
        paths.append(path)
    return paths


def remove_bench_rows(url: str) -> int:
    """Delete what earlier ingest/sweep steps added, so a reused data set is the generated one."""
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        added = "SELECT id FROM incidents WHERE source_ref LIKE 'LOAD-%%' OR source_ref LIKE 'SWEEPBATCH-%%'"
        conn.execute(
            f"DELETE FROM webhook_deliveries WHERE alert_id IN (SELECT id FROM alerts WHERE incident_id IN ({added}))"
        )
        conn.execute(f"DELETE FROM alerts WHERE incident_id IN ({added})")
        for table in ("incident_substances", "huddle_items"):
            conn.execute(f"DELETE FROM {table} WHERE incident_id IN ({added})")
        conn.execute(
            f"DELETE FROM contact_codes WHERE contact_id IN (SELECT id FROM contact_attempts WHERE incident_id IN ({added}))"
        )
        conn.execute(f"DELETE FROM contact_attempts WHERE incident_id IN ({added})")
        removed = conn.execute(f"DELETE FROM incidents WHERE id IN ({added})").rowcount
        # Fresh statistics: planned with the back-fill's 10 k undiscussed rows still counted,
        # the agenda's per-person count query turns into a 5 s parallel scan.
        conn.execute("VACUUM ANALYZE incidents")
        return removed


def step_reads(big_url: str, small_url: str, big: dict, small: dict) -> dict:
    out: dict = {}
    if REUSE:
        out["removed_rows_of_earlier_runs"] = remove_bench_rows(big_url) + remove_bench_rows(
            small_url
        )
    # The agenda on both data sets, each behind its own API, timed at the same time with
    # their requests interleaved (the ratio is the figure; see timed_gets_alternating).
    small_server = Server("api-reads-small", "api", small_url, SMALL_PORT, LOGS)
    server = Server("api-reads-big", "api", big_url, API_PORT, LOGS)
    small_server.start()
    try:
        server.start()
        try:
            with contextlib.ExitStack() as stack:
                clients = {}
                for label, srv in (("small", small_server), ("big", server)):
                    tok = token(srv.base, *BENCH_COORDINATOR)
                    clients[label] = stack.enter_context(
                        httpx.Client(
                            base_url=srv.base,
                            headers={"Authorization": f"Bearer {tok}"},
                            timeout=60,
                        )
                    )
                infos = {"small": small, "big": big}
                timed = timed_gets_alternating(
                    [(clients[label], agenda_paths(infos[label])) for label in ("small", "big")],
                    READS,
                )
                for label, one in zip(("small", "big"), timed, strict=True):
                    out[f"agenda_{label}"] = one
                    one["items"] = agenda_shape(clients[label], infos[label])
                small_server.stop()
                client = clients["big"]
                for name, paths in read_paths(big_url, big).items():
                    n = REPORT_READS if name.startswith("reports") else READS
                    out[name] = timed_gets(client, paths, n, warmup=1)
                deep = deep_page_paths(client)
                if deep:
                    out["incident_list_pages_2_to_20"] = timed_gets(client, deep, READS)
            analyst = token(server.base, *BENCH_ANALYST)
            with httpx.Client(
                base_url=server.base, headers={"Authorization": f"Bearer {analyst}"}, timeout=60
            ) as c:
                out["reports_summary_year_analyst"] = timed_gets(
                    c, read_paths(big_url, big)["reports_summary_year"], REPORT_READS, warmup=1
                )
        finally:
            server.stop()
    finally:
        small_server.stop()
    a_small = out["agenda_small"].get("p95_ms")
    a_big = out["agenda_big"].get("p95_ms")
    if a_small and a_big:
        out["agenda_ratio_p95_big_over_small"] = round(a_big / a_small, 2)
    return out


def step_explain(big_url: str, big: dict) -> dict:
    """EXPLAIN ANALYZE of the statements each hot endpoint runs (in-process, same database)."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from services.config import load_settings
    from services.db import make_engine

    os.makedirs(EXPLAINS, exist_ok=True)
    engine = make_engine(big_url)
    rec = explain_mod.Recorder(engine)
    app = create_app(load_settings(database_url=big_url, log_level="WARNING"), engine=engine)
    summary: dict = {}
    with TestClient(app) as client:
        tok = client.post(
            "/v1/auth/token",
            data=dict(zip(("username", "password"), BENCH_COORDINATOR, strict=True)),
        ).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {tok}"
        paths = read_paths(big_url, big)
        targets = {
            "agenda": agenda_paths(big)[0],
            "person_search_name": paths["person_search_name"][0],
            "person_search_chi": paths["person_search_chi"][0],
            "incident_list_first_page": paths["incident_list_first_page"][0],
            "incident_list_overdue": paths["incident_list_overdue"][0],
            "incident_list_person": paths["incident_list_person"][0],
            "incident_list_year": paths["incident_list_year"][0],
            "reports_summary_year": paths["reports_summary_year"][0],
        }
        for name, path in targets.items():
            client.get(path)  # warm
            stmts = rec.capture(lambda p=path: client.get(p))
            plans = explain_mod.explain(engine, stmts)
            summary[name] = [{k: v for k, v in p.items() if k != "plan"} for p in plans]
            write_plans(name, path, plans)
    engine.dispose()
    return summary


def write_plans(name: str, what: str, plans: list[dict]) -> None:
    with open(os.path.join(EXPLAINS, f"{name}.txt"), "w") as fh:
        fh.write(
            f"# {name}: {what}\n# the slowest statements it ran, EXPLAIN (ANALYZE, BUFFERS)\n\n"
        )
        for p in plans:
            fh.write(
                f"-- {p['execution_ms']} ms; seq scans on big tables: {p['seq_scans_on_big_tables'] or 'none'}\n"
            )
            fh.write(p["sql"] + "\n\n" + p["plan"] + "\n\n")


# --- sweep ------------------------------------------------------------------------------------


def add_overdue_batch(url: str, n: int, at: datetime) -> int:
    """n incidents whose 72-hour window ends in (at - 6 h, at), reported an hour before ``at``."""
    sql = """
    WITH src AS (SELECT id FROM agencies ORDER BY name LIMIT 1),
         cli AS (SELECT id FROM api_clients ORDER BY created_at LIMIT 1),
         ppl AS (SELECT id, row_number() OVER () AS rn FROM (
                   SELECT id FROM persons TABLESAMPLE SYSTEM (10) LIMIT %(n)s) p),
         g AS (SELECT s, %(at)s::timestamptz - interval '72 hours'
                      - (random() * interval '6 hours') - interval '1 second' AS occurred
                 FROM generate_series(1, %(n)s) s)
    INSERT INTO incidents (id, source_agency_id, source_ref, created_by_type, created_by_id,
        occurred_at, reported_at, contact_due_at, postcode, postcode_district, person_id, fu_status,
        hospital, naloxone_administered, created_at, updated_at)
    SELECT gen_random_uuid()::text, (SELECT id FROM src), 'SWEEPBATCH-' || %(tag)s || '-' || g.s,
           'client', (SELECT id FROM cli), g.occurred, %(at)s::timestamptz - interval '1 hour',
           g.occurred + interval '72 hours', 'DD1 1AA', 'DD1', ppl.id, 'awaiting_contact',
           'declined', true, %(at)s::timestamptz - interval '1 hour', %(at)s::timestamptz - interval '1 hour'
      FROM g LEFT JOIN ppl ON ppl.rn = g.s
    """
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        cur = conn.execute(sql, {"n": n, "at": at, "tag": f"{int(at.timestamp())}"})
        conn.execute("ANALYZE incidents")
        return cur.rowcount


def step_sweep(big_url: str, big: dict) -> dict:
    from sqlalchemy import text

    from services.config import load_settings
    from services.db import make_engine, make_session_factory
    from services.sweep import sweep

    settings = load_settings(database_url=big_url, log_level="WARNING")
    engine = make_engine(big_url)
    factory = make_session_factory(engine)
    out: dict = {}
    b = datetime.now(UTC).replace(microsecond=0)
    a = b - timedelta(hours=6)

    # 1. Bring the alerts to a steady state at A (what the previous sweeps raised).
    existing = pg_exec(big_url, "SELECT count(*) FROM alerts")[0][0]
    log(f"sweep: warm-up sweep at A={iso(a)} (alerts present: {existing:,})")
    t = time.perf_counter()
    with factory() as s:
        r = sweep(s, at=a, settings=settings)
        s.commit()
    out["warmup_sweep_at_A"] = {
        "seconds": round(time.perf_counter() - t, 3),
        "raised": r.raised,
        "alerts_before": existing,
    }
    # 2. The newly overdue batch, then the timed sweep at B (rolled back and repeated).
    out["overdue_batch_inserted"] = add_overdue_batch(big_url, OVERDUE_BATCH, b)
    newly = pg_exec(
        big_url,
        "SELECT count(*) FROM incidents WHERE fu_status='awaiting_contact' "
        "AND contact_due_at > %s AND contact_due_at < %s",
        (a, b),
    )[0][0]
    out["newly_overdue_rows"] = newly
    out["total_incidents"] = pg_exec(big_url, "SELECT count(*) FROM incidents")[0][0]
    runs = []
    raised = None
    for _ in range(3):
        with factory() as s:
            t = time.perf_counter()
            r = sweep(s, at=b, settings=settings)
            s.flush()
            runs.append(time.perf_counter() - t)
            raised = r.raised
            s.rollback()
    out["sweep_seconds_runs"] = [round(x, 3) for x in runs]
    out["sweep_seconds"] = round(statistics.median(runs), 3)
    out["sweep_raised"] = raised
    # 3. EXPLAIN ANALYZE of the sweep's statements (inside a rolled-back transaction), on the
    # tables the timed runs saw: before the nineteenth round it came after the baseline's
    # rolled-back UPDATEs, and its plans read their dead row versions too (33,915 heap pages
    # for 10,039 rows).
    rec = explain_mod.Recorder(engine)
    with factory() as s:
        stmts = rec.capture(lambda: (sweep(s, at=b, settings=settings), s.flush()))
        s.rollback()
    plans = explain_mod.explain(engine, stmts, keep=6, include_writes=True)
    os.makedirs(EXPLAINS, exist_ok=True)
    write_plans("sweep", f"one sweep at B over {out['total_incidents']:,} incidents", plans)
    out["explain"] = [
        {k: v for k, v in p.items() if k not in ("plan", "sql")} | {"sql": p["sql"][:160]}
        for p in plans
    ]
    # 4. The baseline: one hand-written UPDATE flagging exactly those rows (rolled back).
    base_runs = []
    for _ in range(3):
        with engine.connect() as conn:
            t = time.perf_counter()
            res = conn.execute(
                text(
                    "UPDATE incidents SET updated_at = :b WHERE fu_status = 'awaiting_contact' "
                    "AND contact_due_at > :a AND contact_due_at < :b"
                ),
                {"a": a, "b": b},
            )
            base_runs.append(time.perf_counter() - t)
            out["baseline_rows"] = res.rowcount
            conn.rollback()
    out["baseline_update_seconds_runs"] = [round(x, 4) for x in base_runs]
    out["baseline_update_seconds"] = round(statistics.median(base_runs), 4)
    out["ratio_sweep_over_update"] = round(out["sweep_seconds"] / out["baseline_update_seconds"], 2)
    # 5. Commit one sweep at B (so later steps see the steady state).
    with factory() as s:
        sweep(s, at=b, settings=settings)
        s.commit()
    engine.dispose()
    return out


# --- ingest -----------------------------------------------------------------------------------


def sample_people(url: str, path: str) -> None:
    rows = pg_exec(
        url,
        "SELECT given_name, family_name, date_of_birth, sex, chi FROM persons "
        "TABLESAMPLE SYSTEM (5) WHERE merged_into_id IS NULL LIMIT 2000",
    )
    people = []
    for given, family, dob, sex, chi in rows:
        p = {
            "given_name": given,
            "family_name": family,
            "date_of_birth": dob.isoformat(),
            "sex": sex,
        }
        if chi:
            p["chi"] = chi
        people.append(p)
    json.dump(people, open(path, "w"))


def load(base: str, *args: str, timeout: float = 600) -> dict:
    cmd = [PYTHON, "-m", "bench.load", "--base", base, *args]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"load client failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def with_server_cpu(server: Server, drive) -> dict:
    """Run ``drive()`` (a full-speed load returning ``ok``) and add the server's CPU time
    per answered request to its result."""
    cpu0 = server.cpu_seconds()
    result = drive()
    used = server.cpu_seconds() - cpu0
    result["server_cpu_ms_per_request"] = round(used * 1000 / max(1, result["ok"]), 2)
    return result


def _flush_quietly(url: str) -> dict:
    """:func:`bench.common.flush_writes` on the server of ``url``; an error is returned, never
    raised (it must not stop the bench)."""
    try:
        return flush_writes(with_database(url, "postgres"))
    except Exception as exc:  # noqa: BLE001 - said in the results instead
        return {"error": type(exc).__name__}


def step_ingest(big_url: str) -> dict:
    """Full-speed ingest (16 connections) and a fixed 100 req/s, baseline then API, from the
    httpx client; then wrk's full-speed runs, alternated between the two servers.

    The API is also driven with a fresh Idempotency-Key on every request (what a partner that
    retries safely sends), and each full-speed run records the server's CPU time per request:
    one worker's throughput is bounded by 1 / (CPU per request), and that figure is far less
    disturbed by a busy machine than throughput is.
    """
    people = os.path.join(LOGS, "people.json")
    sample_people(big_url, people)
    with open(people) as fh:
        people_rows = json.load(fh)
    out: dict = {}
    secs = str(SECONDS)
    servers = {
        kind: Server(f"{kind}-ingest", kind, big_url, port, LOGS)
        for kind, port in (("baseline", BASE_PORT), ("api", API_PORT))
    }
    try:
        for server in servers.values():
            server.start()
        for kind, server in servers.items():
            common = ["--people", people]
            load(server.base, "--mode", "max", "--seconds", "3", "--concurrency", "8", *common)
            runs = [("max", [])]
            if kind == "api":
                runs.append(("max_keys", ["--idempotency-keys"]))
            for label, extra in runs:
                out[f"{kind}_{label}"] = with_server_cpu(
                    server,
                    functools.partial(
                        load,
                        server.base,
                        "--mode",
                        "max",
                        "--seconds",
                        secs,
                        "--concurrency",
                        "16",
                        *common,
                        *extra,
                    ),
                )
            # The full-speed runs just now left 100-160 MB to write back; the kernel writing
            # it out during the paced run stalled commits (the baseline's p99 as much as the
            # API's: BENCHMARKS.md, sixteenth round). The paced run measures latency at a
            # steady 100 req/s, so it starts with that written out (and says so).
            flushed = _flush_quietly(big_url)
            out[f"{kind}_rate100"] = load(
                server.base, "--mode", "rate", "--rate", "100", "--seconds", secs, *common
            )
            out[f"{kind}_rate100"]["flushed_before"] = flushed
        if wrk.available():
            out.update(wrk_alternated(servers, people_rows))
        else:
            out["wrk"] = "not measured: wrk is not installed (Debian: apt-get install wrk)"
        for kind, server in servers.items():
            out[f"{kind}_peak_rss_mb"] = server.peak_rss_mb()
    finally:
        for server in servers.values():
            server.stop()
    base_rps = out["baseline_max"]["throughput_rps"]
    out["ratio_throughput_api_over_baseline"] = round(
        out["api_max"]["throughput_rps"] / base_rps, 3
    )
    out["ratio_throughput_api_keys_over_baseline"] = round(
        out["api_max_keys"]["throughput_rps"] / base_rps, 3
    )
    return out


def wrk_alternated(servers: dict[str, Server], people_rows: list[dict]) -> dict:
    """wrk at full speed (a C client, which the baseline cannot outrun), in ``WRK_ROUNDS``
    rounds of baseline, API, keyed API, each run ``BENCH_SECONDS / 2``.

    A single run per server, a minute apart, measured the machine's drift as much as the
    servers: on a shared 2-CPU machine the same code's CPU per request moved by a fifth
    between two 10-second rounds. Each round's API runs are divided by that round's baseline
    run, and the ratio is the median of the rounds'; each server's figures are its median
    round (by throughput), and every round is kept (``<name>_rounds``).
    """
    plan = [
        ("baseline_wrk", "baseline", False),
        ("api_wrk", "api", False),
        ("api_wrk_keys", "api", True),
    ]
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in plan}
    for _ in range(WRK_ROUNDS):
        for name, kind, keyed in plan:
            server = servers[kind]
            runs[name].append(
                with_server_cpu(
                    server,
                    functools.partial(
                        wrk.run, server.base, people_rows, seconds=SECONDS / 2, keys=keyed
                    ),
                )
            )
    out: dict = {}
    for name, results in runs.items():
        out[name] = sorted(results, key=lambda r: r["throughput_rps"])[len(results) // 2]
        out[f"{name}_rounds"] = [
            {
                "throughput_rps": r["throughput_rps"],
                "server_cpu_ms_per_request": r["server_cpu_ms_per_request"],
                "postgres_cpu_ms_per_request": r.get("postgres_cpu_ms_per_request"),
                "machine_cpu_ms_per_request": r.get("machine_cpu_ms_per_request"),
            }
            for r in results
        ]

    def ratio(name: str) -> float:
        pairs = zip(runs[name], runs["baseline_wrk"], strict=True)
        return round(
            statistics.median(a["throughput_rps"] / b["throughput_rps"] for a, b in pairs), 3
        )

    out["ratio_wrk_api_over_baseline"] = ratio("api_wrk")
    out["ratio_wrk_api_keys_over_baseline"] = ratio("api_wrk_keys")
    out["wrk_rounds"] = WRK_ROUNDS
    out["wrk_seconds_per_run"] = SECONDS / 2
    return out


# --- resilience -------------------------------------------------------------------------------


def check_journal(url: str, journal: str, tag: str) -> dict:
    """Every key answered 2xx: one id, the incident exists once; no source_ref twice."""
    by_key: dict[str, dict] = {}
    problems_5xx = non_problem_5xx = 0
    for line in open(journal):
        r = json.loads(line)
        k = by_key.setdefault(r["key"], {"ref": r["ref"], "ids": set(), "statuses": []})
        k["statuses"].append(r["status"])
        if r.get("id"):
            k["ids"].add(r["id"])
        if isinstance(r["status"], int) and r["status"] >= 500:
            if r.get("problem"):
                problems_5xx += 1
            else:
                non_problem_5xx += 1
    acked = {k: v for k, v in by_key.items() if v["ids"]}
    inconsistent = sum(1 for v in acked.values() if len(v["ids"]) > 1)
    ids = [next(iter(v["ids"])) for v in acked.values()]
    found = {}
    with psycopg.connect(libpq(url)) as conn:
        for i in range(0, len(ids), 1000):
            chunk = ids[i : i + 1000]
            for iid, ref in conn.execute(
                "SELECT id, source_ref FROM incidents WHERE id = ANY(%s)", (chunk,)
            ):
                found[iid] = ref
        dup = conn.execute(
            "SELECT count(*) FROM (SELECT source_ref FROM incidents WHERE source_ref LIKE %s "
            "GROUP BY source_agency_id, source_ref HAVING count(*) > 1) d",
            (f"LOAD-{tag}-%",),
        ).fetchone()[0]
        stored = conn.execute(
            "SELECT count(*) FROM incidents WHERE source_ref LIKE %s", (f"LOAD-{tag}-%",)
        ).fetchone()[0]
    missing = sum(1 for v in acked.values() if next(iter(v["ids"])) not in found)
    wrong_ref = sum(
        1 for v in acked.values() if found.get(next(iter(v["ids"]))) not in (None, v["ref"])
    )
    unanswered = [k for k, v in by_key.items() if not v["ids"]]
    return {
        "requests": len(by_key),
        "acknowledged": len(acked),
        "acknowledged_missing_in_db": missing,
        "acknowledged_with_two_ids": inconsistent,
        "acknowledged_wrong_source_ref": wrong_ref,
        "never_acknowledged": len(unanswered),
        "stored_incidents": stored,
        "duplicated_source_refs": dup,
        "stored_but_never_acknowledged": stored - len(acked),
        "5xx_problem_json": problems_5xx,
        "5xx_not_problem_json": non_problem_5xx,
        "ok": len(acked) > 0
        and missing == 0
        and inconsistent == 0
        and dup == 0
        and wrong_ref == 0
        and stored == len(acked),
    }


def run_load_async(base: str, *args: str) -> subprocess.Popen:
    cmd = [PYTHON, "-m", "bench.load", "--base", base, *args]
    return subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@dataclasses.dataclass
class JournalledLoad:
    tag: str
    journal: str
    server: Server
    loader: subprocess.Popen

    def outcome(self, timeout: float) -> dict:
        """What the client printed when it ended (or its error output)."""
        stdout, stderr = self.loader.communicate(timeout=timeout)
        if stdout.strip():
            return json.loads(stdout.strip().splitlines()[-1])
        return {"error": stderr[-1000:]}


@contextlib.contextmanager
def journalled_load(
    url: str,
    name: str,
    *,
    rate: int,
    seconds: float,
    give_up: int,
    people: str,
    attempt_timeout: float = 30,
) -> Iterator[JournalledLoad]:
    """The API (``api-<name>``) on ``url``, and bench.load's crash mode against it: keyed
    ingest at ``rate`` for ``seconds``, every attempt journalled, each request retried until
    answered (or ``give_up`` seconds after the load; an attempt is abandoned and retried
    after ``attempt_timeout``). Both are stopped afterwards; check the journal with
    :func:`check_journal`."""
    tag = f"{name}{int(time.time())}"
    journal = os.path.join(LOGS, f"{tag}.jsonl")
    if not os.path.exists(people):
        sample_people(url, people)
    server = Server(f"api-{name}", "api", url, API_PORT, LOGS)
    server.start()
    loader = run_load_async(
        server.base,
        "--mode",
        "crash",
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
        "--journal",
        journal,
        "--tag",
        tag,
        "--people",
        people,
        "--give-up",
        str(give_up),
        "--timeout",
        str(attempt_timeout),
    )
    try:
        yield JournalledLoad(tag, journal, server, loader)
    finally:
        server.stop()
        if loader.poll() is None:
            loader.kill()


def step_crash(big_url: str) -> dict:
    seconds = CRASH_SECONDS
    kill_at = random.uniform(5, seconds - 5)
    people = os.path.join(LOGS, "people.json")
    with journalled_load(
        big_url, "crash", rate=200, seconds=seconds, give_up=300, people=people
    ) as run:
        time.sleep(kill_at)
        run.server.kill9()
        killed = datetime.now(UTC)
        time.sleep(1.0)
        t = time.perf_counter()
        run.server.start()
        restart_s = time.perf_counter() - t
        client = run.outcome(timeout=seconds + 300 + 120)
    return {
        "rate_rps": 200,
        "seconds": seconds,
        "killed_after_s": round(kill_at, 1),
        "killed_at": iso(killed),
        "restart_seconds": round(restart_s, 2),
        "client": client,
        "check": check_journal(big_url, run.journal, run.tag),
    }


def step_lock(big_url: str) -> dict:
    """A table held under load, as a migration holds it while it rewrites it: keyed ingest at
    100 req/s for 20 s, and 5 s in another session takes the incidents table (ACCESS
    EXCLUSIVE) for LOCK_HOLD_SECONDS (30), longer than the API's lock limit and queue limit
    together. The API's waits are bounded (services.db.Timeouts, api.deps.admit): each
    attempt is answered within about those two limits - 503 while the table is held, not
    after the whole hold - and the client's retries with the same key then store every
    acknowledged incident exactly once. ``ok`` asks both."""
    seconds = 20
    people = os.path.join(LOGS, "people.json")
    with journalled_load(
        big_url, "lock", rate=100, seconds=seconds, give_up=120, people=people
    ) as run:
        time.sleep(5)
        with psycopg.connect(libpq(big_url)) as conn:
            conn.execute("LOCK TABLE incidents IN ACCESS EXCLUSIVE MODE")
            taken = time.perf_counter()
            time.sleep(LOCK_HOLD_SECONDS)
            conn.rollback()
            held = time.perf_counter() - taken
        client = run.outcome(timeout=seconds + 120 + 120)
    return {
        "rate_rps": 100,
        "seconds": seconds,
        "held_seconds": round(held, 1),
        "client": client,
        **within_limits(big_url, run, "db_lock_timeout_seconds", stalled_s=held),
    }


def within_limits(url: str, run: JournalledLoad, limit: str, *, stalled_s: float) -> dict:
    """A journalled load through a stall of ``stalled_s`` seconds, judged: its longest
    attempt, its 5xx answers by their problem detail and the journal's check; ``ok`` when
    the check passed and every attempt was answered within the API's ``limit`` (a setting's
    name) and queue limit (plus 2 s) and sooner than the stall."""
    from services.config import load_settings

    settings = load_settings(database_url=url)
    bound_s = getattr(settings, limit) + settings.db_queue_timeout_seconds
    attempts = [json.loads(line) for line in open(run.journal)]
    details: dict[str, int] = {}
    for a in attempts:
        if a.get("detail"):
            details[a["detail"]] = details.get(a["detail"], 0) + 1
    longest_s = max(a.get("ms", 0) for a in attempts) / 1000
    check = check_journal(url, run.journal, run.tag)
    return {
        limit.removeprefix("db_"): getattr(settings, limit),
        "queue_timeout_seconds": settings.db_queue_timeout_seconds,
        "longest_attempt_seconds": round(longest_s, 2),
        "answers_5xx_by_detail": details,
        "check": check,
        "ok": check["ok"] and longest_s <= bound_s + 2 and longest_s < stalled_s,
    }


def step_freeze(big_url: str) -> dict:
    """The API's PostgreSQL server processes frozen under load, as a hung disk or a stopped
    process freezes them while their host is fine: keyed ingest at 100 req/s for 20 s, and
    5 s in every backend the API holds (``application_name`` nfod-api) is stopped (SIGSTOP)
    for FREEZE_SECONDS (60), longer than the API's answer limit and queue limit together.
    The server's own limits cannot end those waits (they need the process to run) and TCP
    sees nothing wrong; the API's watchdog (services.db_watchdog,
    NFOD_DB_ANSWER_TIMEOUT_SECONDS) does. Each attempt is answered within about the answer
    limit and the queue limit (the client waits up to 120 s for one), and the retries store
    every acknowledged incident exactly once. ``ok`` asks both. Needs the right to signal
    the server's processes (root)."""
    import signal

    seconds = 20
    people = os.path.join(LOGS, "people.json")
    stopped: list[int] = []
    with journalled_load(
        big_url,
        "freeze",
        rate=100,
        seconds=seconds,
        give_up=120,
        people=people,
        attempt_timeout=120,
    ) as run:
        time.sleep(5)
        database = libpq(big_url).rsplit("/", 1)[-1]
        with psycopg.connect(libpq(big_url), autocommit=True) as conn:
            pids = [
                pid
                for (pid,) in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = 'nfod-api'",
                    (database,),
                )
            ]
        try:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
                    stopped.append(pid)
            frozen_at = time.perf_counter()
            time.sleep(FREEZE_SECONDS)
        finally:
            for pid in stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        held = time.perf_counter() - frozen_at
        client = run.outcome(timeout=seconds + 120 + 240)
    judged = within_limits(big_url, run, "db_answer_timeout_seconds", stalled_s=held)
    return {
        "rate_rps": 100,
        "seconds": seconds,
        "frozen_backends": len(stopped),
        "frozen_seconds": round(held, 1),
        "client": client,
        **judged,
        "ok": bool(stopped) and judged["ok"],
    }


SIGNIN_BURST = int(os.environ.get("BENCH_SIGNIN_BURST", "20"))
SIGNIN_ROUNDS = 3


async def _signin_bursts(base: str, burst: int, rounds: int, bearer: str) -> dict:
    """``rounds`` bursts of ``burst`` sign-ins at once, each while a reader asks for an
    incident page every 20 ms: how long the burst takes, and what it does to a read."""
    signins: list[float] = []
    reads: list[float] = []
    statuses: dict[str, int] = {}
    burst_seconds: list[float] = []
    form = {"username": BENCH_COORDINATOR[0], "password": BENCH_COORDINATOR[1]}
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:

        async def sign_in() -> None:
            t = time.perf_counter()
            r = await client.post("/v1/auth/token", data=form)
            signins.append(time.perf_counter() - t)
            statuses[str(r.status_code)] = statuses.get(str(r.status_code), 0) + 1

        async def reader(stop: asyncio.Event) -> None:
            headers = {"Authorization": f"Bearer {bearer}"}
            while not stop.is_set():
                t = time.perf_counter()
                r = await client.get("/v1/incidents?limit=1", headers=headers)
                r.raise_for_status()
                reads.append(time.perf_counter() - t)
                await asyncio.sleep(0.02)

        for _ in range(rounds):
            stop = asyncio.Event()
            reading = asyncio.create_task(reader(stop))
            t = time.perf_counter()
            await asyncio.gather(*(sign_in() for _ in range(burst)))
            burst_seconds.append(round(time.perf_counter() - t, 2))
            stop.set()
            await reading
            await asyncio.sleep(1)
    return {
        "statuses": statuses,
        "burst_seconds": burst_seconds,
        "sign_in": summary_ms(signins),
        "read_during_burst": summary_ms(reads),
    }


def step_signins(big_url: str) -> dict:
    """A burst of sign-ins, as at the start of a shift (or an attacker's): SIGNIN_BURST
    (20) at once, three times, against a fresh API process. Each argon2id hash takes 64 MiB
    while it runs; the API hashes NFOD_PASSWORD_HASH_SLOTS at a time (api.deps.hashing_turn),
    holding no database session or thread while a sign-in waits for its turn. Records the
    process's peak RSS (its VmHWM, start-up included) and a read's latency during the
    bursts. Compare with a larger ``NFOD_PASSWORD_HASH_SLOTS`` in the environment."""
    server = Server("api-signins", "api", big_url, API_PORT, LOGS)
    server.start()
    try:
        bearer = token(server.base, *BENCH_COORDINATOR)
        rss_before = server.peak_rss_mb()
        out = asyncio.run(_signin_bursts(server.base, SIGNIN_BURST, SIGNIN_ROUNDS, bearer))
        out.update(
            burst=SIGNIN_BURST,
            rounds=SIGNIN_ROUNDS,
            hash_slots=int(os.environ.get("NFOD_PASSWORD_HASH_SLOTS", "0")) or "default",
            peak_rss_mb_before=rss_before,
            peak_rss_mb=server.peak_rss_mb(),
            rss_mb_after=server.rss_mb(),
        )
        return out
    finally:
        server.stop()


def private_postgres(tmp: str) -> dict:
    """initdb + start a throw-away PostgreSQL on PRIVATE_PORT, owned by the postgres user."""
    data = os.path.join(tmp, "pgdata")
    os.makedirs(data)
    shutil.chown(tmp, "postgres")
    shutil.chown(data, "postgres")
    subprocess.run(
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            f"{PG_BIN}/initdb",
            "-D",
            data,
            "-A",
            "trust",
            "-U",
            "postgres",
        ],
        check=True,
        capture_output=True,
    )
    pg_ctl(data, "start")
    return {"data": data, "port": PRIVATE_PORT}


def pg_ctl(data: str, action: str, *extra: str) -> None:
    args = [
        "runuser",
        "-u",
        "postgres",
        "--",
        f"{PG_BIN}/pg_ctl",
        "-D",
        data,
        "-w",
        "-l",
        os.path.join(os.path.dirname(data), "pg.log"),
    ]
    if action in ("start", "restart"):
        args += [
            "-o",
            f"-p {PRIVATE_PORT} -k {os.path.dirname(data)} -c listen_addresses=127.0.0.1",
        ]
    subprocess.run([*args, action, *extra], check=True, capture_output=True)


def step_pgrestart(anchor: datetime) -> dict:
    from bench.generate import generate

    tmp = tempfile.mkdtemp(prefix="nfod-bench-pg-")
    pg = private_postgres(tmp)
    url = f"postgresql+psycopg://postgres@127.0.0.1:{PRIVATE_PORT}/nfod_bench_private"
    try:
        generate(url, incidents=SMALL_N, anchor=anchor, quiet=True)
        seconds = CRASH_SECONDS
        outage = 8.0
        ready_during: list = []
        people = os.path.join(LOGS, "people-private.json")
        sample_people(url, people)
        with journalled_load(
            url, "pgrestart", rate=100, seconds=seconds, give_up=300, people=people
        ) as run:
            time.sleep(10)
            pg_ctl(pg["data"], "stop", "-m", "immediate")
            down_at = time.perf_counter()
            # Probe the API while the database is down: it must answer (503), not hang.
            probe_lat = []
            while time.perf_counter() - down_at < outage:
                t = time.perf_counter()
                try:
                    r = httpx.get(run.server.base + "/readyz", timeout=15)
                    ready_during.append(r.status_code)
                except httpx.HTTPError as exc:
                    ready_during.append(type(exc).__name__)
                probe_lat.append(time.perf_counter() - t)
                time.sleep(0.5)
            pg_ctl(pg["data"], "start")
            up_after = time.perf_counter() - down_at
            client = run.outcome(timeout=seconds + 300 + 120)
            after = httpx.get(run.server.base + "/readyz", timeout=15).status_code
        return {
            "rate_rps": 100,
            "seconds": seconds,
            "outage_seconds": round(up_after, 1),
            "readyz_during_outage": {str(s): ready_during.count(s) for s in set(ready_during)},
            "readyz_probe_max_ms": round(max(probe_lat) * 1000, 1) if probe_lat else None,
            "readyz_after": after,
            "client": client,
            "check": check_journal(url, run.journal, run.tag),
        }
    finally:
        try:
            pg_ctl(pg["data"], "stop", "-m", "fast")
        except Exception:  # noqa: BLE001
            pass
        shutil.rmtree(tmp, ignore_errors=True)


def step_parallel(big_url: str) -> dict:
    """Two `nfod scheduler` processes + the API's own loop, all sweeping the big data set at once."""
    pg_exec(big_url, "TRUNCATE alerts CASCADE", fetch=False)
    env = dict(
        os.environ,
        NFOD_DATABASE_URL=big_url,
        NFOD_SWEEP_SECONDS="2",
        NFOD_LOG_LEVEL="WARNING",
        PYTHONPATH=ROOT,
    )
    procs = []
    logs = []
    api = Server(
        "api-parallel", "api+scheduler", big_url, API_PORT, LOGS, {"NFOD_SWEEP_SECONDS": "2"}
    )
    t0 = time.perf_counter()
    api.start()
    for i in range(2):
        lf = open(os.path.join(LOGS, f"scheduler-{i}.log"), "w")
        logs.append(lf)
        procs.append(
            subprocess.Popen(
                [NFOD, "scheduler"],
                cwd=ROOT,
                env=env,
                stdout=lf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    # Run until the alert count has been stable for 3 consecutive checks (each process swept).
    last, stable, counts = -1, 0, []
    deadline = time.perf_counter() + 900
    while time.perf_counter() < deadline:
        time.sleep(5)
        n = pg_exec(big_url, "SELECT count(*) FROM alerts")[0][0]
        counts.append(n)
        stable = stable + 1 if n == last and n > 0 else 0
        last = n
        if stable >= 3:
            break
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
    api.stop()
    for lf in logs:
        lf.close()
    dup_keys = pg_exec(
        big_url,
        "SELECT count(*) FROM (SELECT dedupe_key FROM alerts GROUP BY 1 HAVING count(*) > 1) d",
    )[0][0]
    dup_pairs = pg_exec(
        big_url,
        "SELECT count(*) FROM (SELECT incident_id, kind FROM alerts WHERE incident_id IS NOT NULL "
        "GROUP BY 1, 2 HAVING count(*) > 1) d",
    )[0][0]
    by_kind = dict(pg_exec(big_url, "SELECT kind, count(*) FROM alerts GROUP BY 1 ORDER BY 1"))
    dup_deliveries = pg_exec(
        big_url,
        "SELECT count(*) FROM (SELECT webhook_id, alert_id FROM webhook_deliveries "
        "GROUP BY 1, 2 HAVING count(*) > 1) d",
    )[0][0]
    failures = 0
    for i in range(2):
        failures += open(os.path.join(LOGS, f"scheduler-{i}.log")).read().count("failed")
    return {
        "processes": "2 x nfod scheduler + nfod serve (in-process loop), NFOD_SWEEP_SECONDS=2",
        "seconds_until_stable": round(elapsed, 1),
        "alerts": sum(by_kind.values()),
        "by_kind": by_kind,
        "duplicate_dedupe_keys": dup_keys,
        "duplicate_incident_kind_pairs": dup_pairs,
        "duplicate_deliveries": dup_deliveries,
        "scheduler_log_failures": failures,
        "ok": dup_keys == 0 and dup_pairs == 0 and dup_deliveries == 0,
    }


# --- report -----------------------------------------------------------------------------------


def goal(value, op: str, target) -> str:
    if value is None:
        return "not measured"
    ok = value >= target if op == ">=" else value <= target
    return "met" if ok else "NOT met"


def _probes(probes: dict) -> str:
    return (
        ", ".join(
            f"{step} {p.get('python_ms')} / {p.get('postgres_ms')}" for step, p in probes.items()
        )
        or "none"
    )


def render_md(res: dict) -> str:
    r = res.get("results", {})
    lines = [
        "# NFOD Response benchmark results",
        "",
        f"Run {res['started']} - {res['finished']} (steps {res['config']['BENCH_ONLY'] or 'all'}; "
        f"earlier runs kept for the other steps: {res.get('earlier_runs', [])}) "
        f"on {res['machine']['cpus']} CPUs "
        f"({res['machine']['platform']}), commit {res['commit']}. Load average (1 min) when each "
        f"step began: {res.get('load_average_at_step_start')}; the machine's speed then (a fixed "
        "Python loop and a fixed PostgreSQL query, best of 3, ms; lower is faster; "
        f"bench.common.speed_probe): {_probes(res.get('speed_probe_at_step_start', {}))} "
        "(read the absolute figures with them; each ratio was measured side by side, back to "
        "back). Before the reads the load was written out (CHECKPOINT, sync, the page cache's "
        f"write-back waited for; bench.common.flush_writes): {res.get('flushed_after_load')}. "
        "Versions: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()) + ". "
        f"Memory: {res['machine'].get('memory_gb')} GB. PostgreSQL settings: "
        + ", ".join(f"{k} {v}" for k, v in res.get("postgres_settings", {}).items())
        + ".",
        "",
        "Reproduce: `make bench` (see BENCHMARKS.md for the knobs). Raw figures: results.json.",
        "",
        "## Goals",
        "",
        "| figure | measured | goal | verdict |",
        "| --- | --- | --- | --- |",
    ]

    def row(name, value, unit, op, target):
        shown = "-" if value is None else f"{value}{unit}"
        lines.append(f"| {name} | {shown} | {op} {target}{unit} | {goal(value, op, target)} |")

    ing = r.get("ingest", {})
    rd = r.get("reads", {})
    sw = r.get("sweep", {})
    gen = r.get("generate", {})
    if gen and not gen.get("reused"):
        row(
            f"generate {gen.get('rows', {}).get('incidents', '?'):,} incidents, "
            f"{gen.get('rows', {}).get('persons', '?'):,} people, "
            f"{gen.get('rows', {}).get('contact_attempts', '?'):,} contacts (COPY, indexes, keys; "
            f"then VACUUM ANALYZE to {gen.get('seconds_total')} s)",
            gen.get("seconds_loaded", gen.get("seconds_total")),
            " s",
            "<=",
            180,
        )
    row(
        "ingest throughput ratio (API / baseline)",
        ing.get("ratio_throughput_api_over_baseline"),
        "",
        ">=",
        0.5,
    )
    row(
        "ingest throughput ratio, every request with an Idempotency-Key",
        ing.get("ratio_throughput_api_keys_over_baseline"),
        "",
        ">=",
        0.5,
    )
    row(
        "ingest throughput ratio, wrk as the load client",
        ing.get("ratio_wrk_api_over_baseline"),
        "",
        ">=",
        0.5,
    )
    row(
        "ingest throughput ratio, wrk, every request with an Idempotency-Key",
        ing.get("ratio_wrk_api_keys_over_baseline"),
        "",
        ">=",
        0.5,
    )
    row(
        "ingest p99 at 100 req/s",
        ing.get("api_rate100", {}).get("latency", {}).get("p99_ms"),
        " ms",
        "<=",
        50,
    )
    row("agenda p95 at 10 k", rd.get("agenda_small", {}).get("p95_ms"), " ms", "<=", 50)
    row("agenda p95 at 1 M", rd.get("agenda_big", {}).get("p95_ms"), " ms", "<=", 50)
    row("agenda p95 ratio 1 M / 10 k", rd.get("agenda_ratio_p95_big_over_small"), "", "<=", 1.3)
    row("sweep (10 k newly overdue in 1 M)", sw.get("sweep_seconds"), " s", "<=", 1)
    row("sweep ratio vs one hand-written UPDATE", sw.get("ratio_sweep_over_update"), "", "<=", 2)
    # Both views: the goal is the report's, whoever reads it (the analyst's adds suppression).
    for name, label in (
        ("reports_summary_year", "reports summary, one year at 1 M (p95), coordinator"),
        ("reports_summary_year_analyst", "reports summary, one year at 1 M (p95), analyst"),
    ):
        rep = rd.get(name, {})
        row(
            label,
            rep.get("p95_ms") if rep.get("statuses", {}).get("200") else None,
            " ms",
            "<=",
            1000,
        )
    for name in (
        "person_search_name",
        "person_search_name_2words",
        "person_search_chi",
        "incident_list_first_page",
        "incident_list_awaiting",
        "incident_list_overdue",
        "incident_list_person",
        "incident_list_year",
        "incident_list_pages_2_to_20",
    ):
        v = rd.get(name, {})
        row(
            f"{name.replace('_', ' ')} p95",
            v.get("p95_ms") if v.get("statuses", {}).get("200") else None,
            " ms",
            "<=",
            50,
        )
    row("API peak RSS under ingest", ing.get("api_peak_rss_mb"), " MB", "<=", 150)
    signins = r.get("signins", {})
    if signins:
        lines.append(
            f"| API peak RSS under a burst of {signins.get('burst')} sign-ins (not a goal of"
            f" issue 7; {signins.get('hash_slots')} hashes at once) |"
            f" {signins.get('peak_rss_mb')} MB | - | - |"
        )
    lines += [
        "",
        "## Ingest (side by side)",
        "",
        "| server | req/s (16 conns) | server CPU per request | p50 | p99 | statuses | p99 at 100 req/s | peak RSS |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind, label in (("baseline", "baseline"), ("api", "api"), ("api", "api_keys")):
        m = ing.get(f"{kind}_max" if label != "api_keys" else "api_max_keys", {})
        q = ing.get(f"{kind}_rate100", {}) if label != "api_keys" else {}
        if not m:
            continue
        lines.append(
            f"| {label} | {m.get('throughput_rps')} | {m.get('server_cpu_ms_per_request')} ms | "
            f"{m.get('latency', {}).get('p50_ms')} ms | "
            f"{m.get('latency', {}).get('p99_ms')} ms | {m.get('statuses')} | "
            f"{q.get('latency', {}).get('p99_ms', '-')} ms ({q.get('statuses', '-')}) | "
            f"{ing.get(f'{kind}_peak_rss_mb') if label != 'api_keys' else '-'} MB |"
        )
    flushes = {
        kind: ing[f"{kind}_rate100"].get("flushed_before")
        for kind in ("baseline", "api")
        if f"{kind}_rate100" in ing
    }
    if any(flushes.values()):
        lines += [
            "",
            "Before each 100 req/s run the full-speed runs' writes were written out "
            f"(bench.common.flush_writes): {flushes}.",
        ]
    if "baseline_wrk" in ing:
        lines += [
            "",
            "The same full-speed load from wrk (a C client, 1 thread, 16 connections):",
            "",
            "| server | req/s | server CPU per request | p50 | p99 | non-2xx | socket errors | bodies reused |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for label in ("baseline_wrk", "api_wrk", "api_wrk_keys"):
            m = ing.get(label, {})
            lat = m.get("latency_ms", {})
            lines.append(
                f"| {label} | {m.get('throughput_rps')} | {m.get('server_cpu_ms_per_request')} ms | "
                f"{lat.get('p50')} ms | {lat.get('p99')} ms | {m.get('non_2xx')} | "
                f"{m.get('socket_errors')} | {m.get('bodies_reused')} |"
            )
        if ing.get("wrk_rounds"):
            lines += [
                "",
                f"Each row is the median of {ing['wrk_rounds']} alternated rounds (baseline, API,"
                f" keyed API; {ing['wrk_seconds_per_run']:g} s each); the ratios are the medians"
                " of each round's API / baseline. Every round, req/s (CPU ms per request: the"
                " server / PostgreSQL's processes / the whole machine, client included):",
                "",
            ]
            for label in ("baseline_wrk", "api_wrk", "api_wrk_keys"):
                rounds = ing.get(f"{label}_rounds", [])
                shown = ", ".join(
                    f"{r['throughput_rps']} ({r['server_cpu_ms_per_request']} / "
                    f"{r.get('postgres_cpu_ms_per_request', '-')} / "
                    f"{r.get('machine_cpu_ms_per_request', '-')})"
                    for r in rounds
                )
                lines.append(f"- {label}: {shown}")
    elif ing.get("wrk"):
        lines += ["", ing["wrk"]]
    lines += [
        "",
        "## Reads (sequential, one client)",
        "",
        "| endpoint | n | p50 | p95 | p99 | statuses | mean bytes |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, v in rd.items():
        if isinstance(v, dict) and "n" in v:
            lines.append(
                f"| {name} | {v.get('n')} | {v.get('p50_ms')} | {v.get('p95_ms')} | {v.get('p99_ms')} | "
                f"{v.get('statuses')} | {v.get('mean_bytes')} |"
            )
    if "agenda_small" in rd:
        lines.append("")
        lines.append(
            f"Agenda sizes: 10 k {rd['agenda_small'].get('items')}, 1 M {rd.get('agenda_big', {}).get('items')}."
        )
    if sw:
        lines += [
            "",
            "## Sweep",
            "",
            f"- incidents: {sw.get('total_incidents'):,}; newly overdue since the previous sweep: {sw.get('newly_overdue_rows'):,}",
            f"- warm-up sweep at A (steady state): {sw.get('warmup_sweep_at_A')}",
            f"- sweep at B: median {sw.get('sweep_seconds')} s of {sw.get('sweep_seconds_runs')}, raised {sw.get('sweep_raised')}",
            f"- baseline UPDATE of the same {sw.get('baseline_rows')} rows: median {sw.get('baseline_update_seconds')} s "
            f"of {sw.get('baseline_update_seconds_runs')}",
            f"- ratio: {sw.get('ratio_sweep_over_update')}",
        ]
    res_r = r
    for key, title in (
        ("crash", "Resilience: kill -9 of the API under idempotent load"),
        ("pgrestart", "Resilience: PostgreSQL (private instance) stopped and restarted under load"),
        ("lock", "Resilience: the incidents table held under load, as a migration holds it"),
        ("freeze", "Resilience: the API's PostgreSQL server processes frozen under load"),
        ("parallel", "Resilience: parallel sweeps"),
        ("signins", "Memory: a burst of sign-ins (argon2id, 64 MiB each while it runs)"),
    ):
        if key in res_r:
            lines += [
                "",
                f"## {title}",
                "",
                "```json",
                json.dumps(res_r[key], indent=1, default=str)[:4000],
                "```",
            ]
    if r.get("explain"):
        lines += [
            "",
            "## EXPLAIN ANALYZE (slowest statement per endpoint; full plans in explain/)",
            "",
            "| endpoint | slowest statement ms | seq scans on big tables |",
            "| --- | --- | --- |",
        ]
        for name, plans in r["explain"].items():
            if plans:
                worst = plans[0]
                seqs = sorted({t for p in plans for t in p["seq_scans_on_big_tables"]})
                lines.append(f"| {name} | {worst['execution_ms']} | {', '.join(seqs) or 'none'} |")
        if sw.get("explain"):
            seqs = sorted({t for p in sw["explain"] for t in p["seq_scans_on_big_tables"]})
            lines.append(
                f"| sweep | {sw['explain'][0]['execution_ms']} | {', '.join(seqs) or 'none'} |"
            )
    if res.get("errors"):
        lines += ["", "## Steps that failed", ""] + [
            f"- {k}: {v.splitlines()[-1] if v else v}" for k, v in res["errors"].items()
        ]
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    os.makedirs(LOGS, exist_ok=True)
    big_url = bench_url()
    small_url = with_database(big_url, "nfod_bench_small")
    started = datetime.now(UTC)
    anchor = started.replace(microsecond=0)
    res: dict = {
        "started": iso(started),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        },
        "commit": git_commit(),
        "config": {
            "BENCH_INCIDENTS": BIG_N,
            "BENCH_SMALL_INCIDENTS": SMALL_N,
            "BENCH_SECONDS": SECONDS,
            "BENCH_READS": READS,
            "BENCH_REPORT_READS": REPORT_READS,
            "BENCH_OVERDUE_BATCH": OVERDUE_BATCH,
            "BENCH_SETTLE_SECONDS": SETTLE,
            "BENCH_REUSE": REUSE,
            "BENCH_ONLY": sorted(ONLY),
        },
        "results": {},
        "errors": {},
    }
    previous = os.path.join(RESULTS, "results.json")
    if ONLY and os.path.exists(previous):
        # A partial run keeps the other steps' figures from the last run.
        try:
            prev = json.load(open(previous))
            res["results"] = prev.get("results", {})
            res["load_average_at_step_start"] = prev.get("load_average_at_step_start", {})
            res["speed_probe_at_step_start"] = prev.get("speed_probe_at_step_start", {})
            res["flushed_after_load"] = prev.get("flushed_after_load")
            res["earlier_runs"] = prev.get("earlier_runs", []) + [
                {
                    "started": prev.get("started"),
                    "finished": prev.get("finished"),
                    "steps": sorted(prev.get("results", {})),
                }
            ]
        except ValueError:
            pass
    res["versions"] = versions(big_url)
    res["postgres_settings"] = postgres_settings(big_url)

    def run(step: str, fn, *args):
        if not wanted(step.removesuffix("_small")):
            return None
        log(f"step {step} ... (load average {os.getloadavg()[0]:.1f})")
        res.setdefault("load_average_at_step_start", {})[step] = round(os.getloadavg()[0], 2)
        try:
            # The server's own database: the bench's may not exist yet.
            probe = speed_probe(with_database(bench_url(), "postgres"))
        except Exception as exc:  # noqa: BLE001 - a probe never stops the bench
            probe = {"error": type(exc).__name__}
        res.setdefault("speed_probe_at_step_start", {})[step] = probe
        t = time.perf_counter()
        try:
            value = fn(*args)
            res["results"][step] = value
            log(f"step {step} done in {time.perf_counter() - t:.0f}s")
            return value
        except Exception:  # noqa: BLE001 - record and go on with the other steps
            res["errors"][step] = traceback.format_exc()
            log(f"step {step} FAILED:\n{res['errors'][step]}")
            return None

    big = small = None
    if wanted("generate"):
        small = run("generate_small", dataset, small_url, SMALL_N, anchor) or res["results"].get(
            "generate_small"
        )
        big = run("generate", dataset, big_url, BIG_N, anchor) or res["results"].get("generate")
    else:
        big = res["results"].get("generate")
        small = res["results"].get("generate_small")
    if big and small:
        if wanted("generate"):
            # The load just written (WAL, checkpoint, the page cache's write-back) is not
            # what the reads should be timed against: write it out, then give the machine a
            # moment.
            flushed = _flush_quietly(big_url)
            res["flushed_after_load"] = flushed
            log(f"wrote out the load: {flushed}")
            if SETTLE:
                log(f"settling for {SETTLE:g} s after the load")
                time.sleep(SETTLE)
        run("reads", step_reads, big_url, small_url, big, small)
        run("explain", step_explain, big_url, big)
        run("sweep", step_sweep, big_url, big)
    run("ingest", step_ingest, big_url)
    run("crash", step_crash, big_url)
    run("pgrestart", step_pgrestart, anchor)
    run("lock", step_lock, big_url)
    run("freeze", step_freeze, big_url)
    run("signins", step_signins, big_url)
    run("parallel", step_parallel, big_url)
    res["finished"] = iso(datetime.now(UTC))
    json.dump(res, open(os.path.join(RESULTS, "results.json"), "w"), indent=1, default=str)
    open(os.path.join(RESULTS, "results.md"), "w").write(render_md(res))
    log(f"wrote {RESULTS}/results.md and results.json")
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
