"""The runners: `nfod sweep --at` on a real database, parallel CLI sweeps, the background
scheduler starting and stopping cleanly, and surviving a failing tick."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from api.scheduler import BackgroundScheduler
from models.alert import Alert
from tests.alerts.helpers import T0
from tests.conftest import make_settings, postgres_only

ROOT = Path(__file__).resolve().parents[2]
NFOD = str(Path(sys.executable).with_name("nfod"))


def nfod(db_url: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, NFOD_DATABASE_URL=db_url, NFOD_ENV="test", NFOD_LOG_LEVEL="WARNING")
    return subprocess.run(
        [NFOD, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def count(sf, kind=None) -> int:
    with sf() as s:
        stmt = select(func.count()).select_from(Alert)
        if kind:
            stmt = stmt.where(Alert.kind == kind)
        return s.execute(stmt).scalar_one()


def wait_for(predicate, timeout=10.0):
    """Waits for another thread to do work (not for time to pass in the app)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_nfod_sweep_at_raises_alerts_on_the_database(db_url, data, sf):
    data.incident(occurred_at=T0, source_agency_id=data.agency())
    due = T0 + timedelta(hours=72)
    before = nfod(
        db_url, "sweep", "--at", (due - timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    )
    assert before.returncode == 0, before.stderr
    assert count(sf, "contact_overdue") == 0
    after = nfod(db_url, "sweep", "--at", (due + timedelta(seconds=1)).isoformat())
    assert after.returncode == 0, after.stderr
    assert "contact_overdue=1" in after.stdout
    assert count(sf, "contact_overdue") == 1
    again = nfod(db_url, "sweep", "--at", (due + timedelta(minutes=1)).isoformat())
    assert again.returncode == 0 and count(sf) == 2  # + the due-soon alert of the first run
    naive = nfod(db_url, "sweep", "--at", "2026-11-05T12:00:00")
    assert naive.returncode == 2


@postgres_only
def test_parallel_nfod_sweep_processes_raise_each_alert_once(db_url, data, sf):
    agency = data.agency()
    people = [data.person() for _ in range(5)]
    for n in range(40):
        data.incident(
            occurred_at=T0 + timedelta(hours=n % 10),
            source_agency_id=agency,
            person_id=people[n % 5],
            district=f"DD{n % 2 + 1}",
        )
    at = (T0 + timedelta(hours=10)).isoformat()
    env = dict(os.environ, NFOD_DATABASE_URL=db_url, NFOD_ENV="test", NFOD_LOG_LEVEL="WARNING")
    procs = [
        subprocess.Popen(
            [NFOD, "sweep", "--at", at],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    with sf() as s:
        total = s.execute(select(func.count()).select_from(Alert)).scalar_one()
        keys = s.execute(select(func.count(func.distinct(Alert.dedupe_key)))).scalar_one()
    assert total == keys == count(sf, "repeat_overdose") + count(sf, "cluster")
    assert count(sf, "cluster") == 2 and count(sf, "repeat_overdose") == 35


def test_background_scheduler_starts_sweeps_and_stops_cleanly(sf, data, db_url, clock):
    settings = make_settings(db_url, sweep_seconds=0.05)
    data.incident(occurred_at=T0, source_agency_id=data.agency())
    clock.set(T0 + timedelta(hours=73))
    runner = BackgroundScheduler(sf, settings=settings, clock=clock)
    runner.start()
    try:
        assert runner.running
        assert wait_for(lambda: runner.ticks >= 3)
        assert count(sf, "contact_overdue") == 1
    finally:
        runner.stop()
    assert not runner.running and runner.failures == 0
    assert not any(t.name == "nfod-scheduler" and t.is_alive() for t in threading.enumerate())


def test_a_failing_tick_is_logged_and_retried_not_fatal(sf, data, db_url, clock, caplog):
    settings = make_settings(db_url, sweep_seconds=0.05)
    data.incident(occurred_at=T0, source_agency_id=data.agency())
    calls = {"n": 0}

    def flaky_clock():
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return T0 + timedelta(hours=73)

    class FlakyFactory:
        """A database that is down for one tick."""

        def __init__(self):
            self.down = True

        def __call__(self):
            if self.down:
                self.down = False
                raise ConnectionError("database unreachable")
            return sf()

    runner = BackgroundScheduler(FlakyFactory(), settings=settings, clock=flaky_clock)
    runner.start()
    try:
        assert wait_for(lambda: count(sf, "contact_overdue") == 1)
    finally:
        runner.stop()
    assert runner.failures == 2 and runner.ticks >= 3
    messages = [r.getMessage() for r in caplog.records if r.name == "nfod.scheduler"]
    assert "sweep failed; retrying next tick" in messages
    assert not any("boom" in m or "unreachable" in m for m in messages)


def test_serve_runs_the_scheduler_in_process_and_stops_it(engine, db_url, data, clock, sf):
    settings = make_settings(db_url, sweep_seconds=0.05)
    data.incident(occurred_at=T0, source_agency_id=data.agency())
    clock.set(T0 + timedelta(hours=73))
    app = create_app(settings, engine=engine, clock=clock, run_scheduler=True)
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
        assert wait_for(lambda: count(sf, "contact_overdue") == 1)
    assert not any(t.name == "nfod-scheduler" and t.is_alive() for t in threading.enumerate())


def test_nfod_scheduler_loops_and_stops_gracefully_on_sigterm(db_url, data, sf):
    import signal
    from datetime import UTC, datetime

    data.incident(
        occurred_at=datetime.now(UTC) - timedelta(hours=80), source_agency_id=data.agency()
    )
    env = dict(
        os.environ,
        NFOD_DATABASE_URL=db_url,
        NFOD_ENV="test",
        NFOD_SWEEP_SECONDS="0.1",
        NFOD_LOG_LEVEL="INFO",
    )
    proc = subprocess.Popen(
        [NFOD, "scheduler"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(lambda: count(sf, "contact_overdue") == 1, timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert count(sf, "contact_overdue") == 1


def test_metrics_count_sweeps_alerts_and_deliveries(client, data, sf, db_url):
    from api.scheduler import tick

    data.incident(occurred_at=T0, source_agency_id=data.agency())

    def sample(name: str, labels: str = "") -> float:
        text = client.get("/metrics").text
        for line in text.splitlines():
            if line.startswith(name + labels + " "):
                return float(line.split()[-1])
        return 0.0

    raised = sample("nfod_alerts_raised_total", '{kind="contact_overdue"}')
    sweeps = sample("nfod_sweep_duration_seconds_count")
    tick(sf, settings=make_settings(db_url), at=T0 + timedelta(hours=73))
    assert sample("nfod_alerts_raised_total", '{kind="contact_overdue"}') == raised + 1
    assert sample("nfod_sweep_duration_seconds_count") == sweeps + 1
    assert "nfod_webhook_outbox_backlog" in client.get("/metrics").text


@postgres_only
def test_the_sweep_has_no_statement_limit_but_keeps_its_lock_limit(db_url):
    """A sweep's statements grow with its backlog; cut short by the statement limit it would
    fail the same way every tick (api.scheduler.run_sweep). Made to wait 1.5 s on a lock under
    a 0.5 s statement limit, it still completes; a lock held past the lock limit still fails it."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from api.scheduler import run_sweep
    from services.db import Timeouts, make_engine, make_session_factory

    settings = make_settings(db_url)
    engine = make_engine(db_url, timeouts=Timeouts(statement=0.5, lock=3))
    holder_engine = make_engine(db_url)
    factory = make_session_factory(engine)

    def sweep_behind_alerts_lock(hold: float) -> float:
        holder = holder_engine.connect()
        holder.execute(text("LOCK TABLE alerts IN ACCESS EXCLUSIVE MODE"))
        timer = threading.Timer(hold, holder.rollback)
        timer.start()
        started = time.monotonic()
        try:
            run_sweep(factory, settings=settings, at=T0)
            return time.monotonic() - started
        finally:
            timer.join()
            holder.close()

    try:
        with engine.connect() as conn, pytest.raises(DBAPIError) as limited:
            conn.execute(text("SELECT pg_sleep(1)"))  # the statement limit is on for the engine
        assert type(limited.value.orig).__name__ == "QueryCanceled"
        assert sweep_behind_alerts_lock(1.5) >= 1.4  # waited out the lock, then swept
        with pytest.raises(DBAPIError) as locked:
            sweep_behind_alerts_lock(6)
        assert type(locked.value.orig).__name__ == "LockNotAvailable"
    finally:
        engine.dispose()
        holder_engine.dispose()
