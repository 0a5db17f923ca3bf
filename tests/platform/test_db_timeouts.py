"""Waits on PostgreSQL are bounded (services.db.Timeouts, NFOD_DB_*_TIMEOUT_SECONDS): a
request behind a lock it cannot get, or a statement that runs too long, is answered 503 with
Retry-After instead of hanging, changes nothing, and its retry with the same key succeeds."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from api.app import create_app
from api.problems import database_unavailable
from models import Incident
from services.db import Timeouts, make_engine
from tests.conftest import make_settings, postgres_only
from tests.platform.conftest import captured_json_logs
from tests.platform.test_errors import problem


def test_connect_args_name_only_the_limits_that_are_set():
    assert Timeouts().connect_args() == {}
    args = Timeouts(statement=30, lock=0.25, idle_in_transaction=0, tcp=30).connect_args()
    assert args.pop("options") == "-c statement_timeout=30000 -c lock_timeout=250"
    assert args == {
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": 30000,
    }


def test_the_settings_give_the_limits(db_url):
    settings = make_settings(
        db_url,
        db_statement_timeout_seconds=12.5,
        db_lock_timeout_seconds=0,
        db_idle_in_transaction_timeout_seconds=60,
        db_tcp_timeout_seconds=0,
    )
    assert Timeouts.from_settings(settings) == Timeouts(12.5, 0, 60, 0, 40)
    defaults = Timeouts.from_settings(make_settings(db_url))
    assert defaults == Timeouts(statement=30, lock=10, idle_in_transaction=60, tcp=30, answer=40)


@postgres_only
def test_the_server_and_the_driver_apply_them(db_url):
    engine = make_engine(
        db_url, timeouts=Timeouts(statement=12.5, lock=3, idle_in_transaction=61, tcp=9)
    )
    try:
        with engine.connect() as conn:
            shown = {
                name: conn.execute(text(f"SHOW {name}")).scalar_one()
                for name in (
                    "statement_timeout",
                    "lock_timeout",
                    "idle_in_transaction_session_timeout",
                )
            }
            params = conn.connection.driver_connection.info.get_parameters()
    finally:
        engine.dispose()
    assert shown == {
        "statement_timeout": "12500ms",
        "lock_timeout": "3s",
        "idle_in_transaction_session_timeout": "61s",
    }
    assert params["tcp_user_timeout"] == "9000" and params["keepalives"] == "1"


@postgres_only
def test_the_api_and_the_scheduler_name_their_connections(db_url, clock, monkeypatch):
    """pg_stat_activity tells which process holds a lock or waits (application_name)."""
    from api import scheduler

    app = create_app(make_settings(db_url), clock=clock)
    try:
        with app.state.engine.connect() as conn:
            assert conn.execute(text("SHOW application_name")).scalar_one() == "nfod-api"
    finally:
        app.state.engine.dispose()
    named: list[str] = []
    real = scheduler.make_engine

    def spy(url, **kwargs):
        named.append(kwargs.get("application_name"))
        return real(url, **kwargs)

    monkeypatch.setattr(scheduler, "make_engine", spy)
    assert scheduler.run_once(make_settings(db_url), at=clock()) == 0
    assert named == ["nfod-scheduler"]


# --- behind a lock --------------------------------------------------------------------


@contextmanager
def incidents_locked(db_url: str, at_most: float = 8) -> Iterator[None]:
    """Another session holds the incidents table as a migration does while it rewrites it;
    for ``at_most`` seconds, after which that session is ended, so that a request that waits
    for the lock makes its test fail instead of hanging it."""
    other = make_engine(db_url)
    conn = other.connect()
    holder = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()

    def end_holder() -> None:
        with other.connect() as c:
            c.execute(text("SELECT pg_terminate_backend(:p)"), {"p": holder})

    timer = threading.Timer(at_most, end_holder)
    try:
        conn.execute(text("LOCK TABLE incidents IN ACCESS EXCLUSIVE MODE"))
        timer.start()
        yield
    finally:
        timer.cancel()
        with contextlib.suppress(DBAPIError):  # ended by the timer
            conn.rollback()
        conn.close()
        other.dispose()


@contextmanager
def api_with(db_url: str, clock, **limits: float) -> Iterator[TestClient]:
    """The API as `nfod serve` builds it: its own engine, with these limits."""
    app = create_app(make_settings(db_url, **limits), clock=clock)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client
    finally:
        app.state.engine.dispose()


def _notification(clock, ref: str) -> dict:
    now = clock()
    return {
        "source_ref": ref,
        "occurred_at": (now - timedelta(hours=3)).isoformat(),
        "reported_at": (now - timedelta(hours=2)).isoformat(),
        "substances": ["heroin"],
        "person": {"given_name": "Sam", "family_name": "Reid", "date_of_birth": "1980-01-01"},
    }


def _count(engine, ref: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(Incident).where(Incident.source_ref == ref)
        ).scalar_one()


@postgres_only
@pytest.mark.parametrize(
    "limits, db_error",
    [
        ({"db_lock_timeout_seconds": 0.5, "db_statement_timeout_seconds": 0}, "LockNotAvailable"),
        ({"db_lock_timeout_seconds": 0, "db_statement_timeout_seconds": 0.5}, "QueryCanceled"),
    ],
    ids=["lock_timeout", "statement_timeout"],
)
def test_a_request_behind_a_held_table_is_503_then_its_retry_is_201(
    db_url, engine, clock, factory, limits, db_error
):
    partner = factory.partner()
    headers = {"Authorization": f"Bearer {partner.token}", "Idempotency-Key": "behind-a-lock-1"}
    payload = _notification(clock, "LOCKED-1")
    with api_with(db_url, clock, **limits) as client:
        with incidents_locked(db_url), captured_json_logs("nfod.errors") as logs:
            started = time.monotonic()
            r = client.post("/v1/incidents", json=payload, headers=headers)
            waited = time.monotonic() - started
            listed = client.get(
                "/v1/incidents", headers={"Authorization": f"Bearer {partner.token}"}
            )
        body = problem(r, 503)
        assert r.headers["retry-after"] == "1"
        assert body["detail"] == "the database did not answer in time; retry shortly"
        assert waited < 5, waited  # the lock is held for 8 s
        problem(listed, 503)
        assert [(rec["msg"], rec["db_error_type"]) for rec in logs] == [
            ("database unavailable", db_error)
        ] * 2
        assert _count(engine, "LOCKED-1") == 0  # nothing of it was kept, its key included

        again = client.post("/v1/incidents", json=payload, headers=headers)
        assert again.status_code == 201, again.text
        replay = client.post("/v1/incidents", json=payload, headers=headers)
        assert replay.status_code == 201 and replay.json()["id"] == again.json()["id"]
    assert _count(engine, "LOCKED-1") == 1


@postgres_only
def test_without_limits_the_request_waits_for_the_lock(db_url, engine, clock, factory):
    """What the limits change: with them off (0) the same request waits as long as the lock
    is held, then succeeds."""
    partner = factory.partner()
    headers = {"Authorization": f"Bearer {partner.token}"}
    limits = {"db_lock_timeout_seconds": 0, "db_statement_timeout_seconds": 0}
    answers: list = []
    with api_with(db_url, clock, **limits) as client:
        with incidents_locked(db_url):
            worker = threading.Thread(
                target=lambda: answers.append(
                    client.post(
                        "/v1/incidents", json=_notification(clock, "WAITED-1"), headers=headers
                    )
                )
            )
            worker.start()
            worker.join(1.5)
            assert worker.is_alive() and not answers  # still waiting on the lock
        worker.join(10)
    assert answers and answers[0].status_code == 201, answers
    assert _count(engine, "WAITED-1") == 1


# --- a transaction left open --------------------------------------------------------------


@postgres_only
def test_the_server_ends_a_transaction_left_idle_and_the_pool_recovers(db_url):
    engine = make_engine(db_url, timeouts=Timeouts(idle_in_transaction=0.3))
    try:
        conn = engine.connect()
        conn.execute(text("SELECT 1"))  # a transaction is open from here
        time.sleep(1.0)
        with pytest.raises(DBAPIError) as failed:
            conn.execute(text("SELECT 1"))
        # Counted as a lost connection (services.db): never given back to the pool, and
        # answered 503 "retry" by the API (api.problems.database_unavailable).
        assert failed.value.connection_invalidated
        assert database_unavailable(failed.value)
        conn.close()
        with engine.connect() as fresh:
            assert fresh.execute(text("SELECT 2")).scalar_one() == 2
    finally:
        engine.dispose()


@postgres_only
def test_requests_leave_no_transaction_open_between_them(db_url, clock, factory):
    """The API's connections (kept by its worker threads between requests) sit outside a
    transaction when idle, so the idle-in-transaction limit never ends them."""
    partner = factory.partner()
    headers = {"Authorization": f"Bearer {partner.token}"}
    with api_with(db_url, clock, db_idle_in_transaction_timeout_seconds=0.3) as client:
        assert client.get("/v1/incidents", headers=headers).status_code == 200
        time.sleep(1.0)
        for _ in range(3):
            assert client.get("/v1/incidents", headers=headers).status_code == 200
        r = client.post("/v1/incidents", json=_notification(clock, "IDLE-1"), headers=headers)
        assert r.status_code == 201, r.text
        time.sleep(1.0)
        assert client.get("/v1/incidents", headers=headers).status_code == 200


# --- the queue for a session ----------------------------------------------------------


@contextmanager
def writes_stalled(db_url: str, engine) -> Iterator[None]:
    """Writes to incidents wait: PostgreSQL's table held as above, SQLite's write lock held
    by another connection (a request then waits out its busy timeout, 30 s)."""
    if engine.dialect.name == "postgresql":
        with incidents_locked(db_url, at_most=20):
            yield
        return
    conn = engine.raw_connection()
    try:
        conn.driver_connection.execute("BEGIN IMMEDIATE")
        yield
    finally:
        conn.driver_connection.execute("ROLLBACK")
        conn.close()


def test_requests_queued_behind_a_stalled_one_are_shed_with_503(db_url, engine, clock, factory):
    """With every session slot held by a request that waits on the database, the requests
    queued behind it are answered 503 after NFOD_DB_QUEUE_TIMEOUT_SECONDS, not when the
    stall ends; the stalled request itself still completes."""
    partner = factory.partner()
    headers = {"Authorization": f"Bearer {partner.token}"}
    settings = make_settings(
        db_url, db_sessions=1, db_queue_timeout_seconds=0.5, db_lock_timeout_seconds=0
    )
    app = create_app(settings, engine=engine, clock=clock)
    first: list = []
    with TestClient(app, raise_server_exceptions=False) as client:
        with writes_stalled(db_url, engine), captured_json_logs("nfod.errors") as logs:
            stalled = threading.Thread(
                target=lambda: first.append(
                    client.post(
                        "/v1/incidents", json=_notification(clock, "STALLED-1"), headers=headers
                    )
                )
            )
            stalled.start()
            time.sleep(0.5)  # it holds the only slot, waiting for the lock
            started = time.monotonic()
            queued_write = client.post(
                "/v1/incidents", json=_notification(clock, "QUEUED-1"), headers=headers
            )
            queued_read = client.get("/v1/incidents", headers=headers)
            waited = time.monotonic() - started
            assert stalled.is_alive() and not first
        stalled.join(30)
    for r in (queued_write, queued_read):
        body = problem(r, 503)
        assert body["detail"] == "the service is too busy to take this request now; retry shortly"
        assert r.headers["retry-after"] == "1"
    assert waited < 5, waited
    assert [rec["msg"] for rec in logs] == ["request shed", "request shed"]
    assert first and first[0].status_code == 201, first
    assert _count(engine, "STALLED-1") == 1 and _count(engine, "QUEUED-1") == 0
