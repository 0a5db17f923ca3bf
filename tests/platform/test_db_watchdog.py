"""A PostgreSQL server process that is frozen while its host is fine (stopped, or stuck on
a hung disk) is not waited for past NFOD_DB_ANSWER_TIMEOUT_SECONDS (services.db_watchdog):
the server's own limits need it to run, and TCP sees nothing wrong. The wait ends with the
connection closed, the request is answered 503 with Retry-After, and its keyed retry is
safe. Frozen here with SIGSTOP, which needs the right to signal the server's processes."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError

from api.app import create_app
from api.problems import database_timed_out, database_unavailable
from services import db_watchdog
from services.db import Timeouts, long_statements, make_engine, make_session_factory
from tests.conftest import make_settings, postgres_only
from tests.platform.conftest import captured_json_logs
from tests.platform.test_db_timeouts import _count, _notification
from tests.platform.test_errors import problem


def test_the_answer_limit_must_be_above_the_statement_limit(db_url):
    assert make_settings(db_url).db_answer_timeout_seconds == 40
    assert Timeouts.from_settings(make_settings(db_url)).answer == 40
    with pytest.raises(ValidationError, match="NFOD_DB_ANSWER_TIMEOUT_SECONDS"):
        make_settings(db_url, db_statement_timeout_seconds=30, db_answer_timeout_seconds=30)
    # Either off is fine: the other limit stands alone.
    make_settings(db_url, db_statement_timeout_seconds=30, db_answer_timeout_seconds=0)
    make_settings(db_url, db_statement_timeout_seconds=0, db_answer_timeout_seconds=5)


def test_a_connection_without_a_limit_is_not_watched():
    class Fake:
        pass

    # Not a WatchedConnection: the block leaves it alone.
    with db_watchdog.answer_limit(Fake(), 1.0):
        pass


@contextmanager
def frozen(pid: int, at_most: float = 10) -> Iterator[None]:
    """The server process ``pid`` stopped (SIGSTOP) for at most ``at_most`` seconds, after
    which it is let go on, so that a regression fails its test instead of hanging it."""
    try:
        os.kill(pid, signal.SIGSTOP)
    except PermissionError:  # pragma: no cover - depends on the user the tests run as
        pytest.skip("may not signal the PostgreSQL server's processes")
    timer = threading.Timer(at_most, _let_go_on, (pid,))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        _let_go_on(pid)


def _let_go_on(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it has ended meanwhile
        os.kill(pid, signal.SIGCONT)


def _backend_pid(conn) -> int:
    return conn.connection.driver_connection.info.backend_pid


def _gone(engine, pid: int, within: float = 5) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            alive = conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
            ).scalar_one()
        if not alive:
            return True
        time.sleep(0.1)
    return False


@postgres_only
def test_a_wait_on_a_frozen_server_ends_at_the_limit_and_the_pool_recovers(db_url):
    engine = make_engine(db_url, timeouts=Timeouts(statement=1, answer=1.5))
    try:
        conn = engine.connect()
        pid = _backend_pid(conn)
        conn.commit()
        with frozen(pid), captured_json_logs("nfod.db") as logs:
            started = time.monotonic()
            with pytest.raises(DBAPIError) as failed:
                conn.execute(text("SELECT 1"))
            waited = time.monotonic() - started
        assert 1.5 <= waited < 3, waited  # frozen for 10 s
        assert isinstance(failed.value.orig, db_watchdog.AnswerTimeout)
        assert "did not answer within 1.5 s" in str(failed.value.orig)
        # A lost connection (never reused), answered 503 "did not answer in time".
        assert failed.value.connection_invalidated
        assert database_unavailable(failed.value) and database_timed_out(failed.value)
        assert [rec["msg"] for rec in logs] == ["database wait abandoned"]
        assert logs[0]["limit_seconds"] == 1.5
        conn.close()
        with engine.connect() as fresh:
            assert fresh.execute(text("SELECT 2")).scalar_one() == 2
        # The frozen process, let go on, finds its connection closed and ends.
        assert _gone(engine, pid)
    finally:
        engine.dispose()


@postgres_only
def test_without_the_limit_a_frozen_server_is_waited_for(db_url):
    """What the limit changes: with it off (0), the same wait lasts as long as the freeze."""
    engine = make_engine(db_url, timeouts=Timeouts(statement=1, answer=0))
    answers: list = []
    try:
        conn = engine.connect()
        pid = _backend_pid(conn)
        conn.commit()
        with frozen(pid):
            worker = threading.Thread(
                target=lambda: answers.append(conn.execute(text("SELECT 3")).scalar_one())
            )
            worker.start()
            worker.join(2.5)
            assert worker.is_alive() and not answers  # still waiting
        worker.join(10)
        assert answers == [3]
        conn.close()
    finally:
        engine.dispose()


@postgres_only
def test_long_statements_lift_the_statement_limit_and_set_their_own_answer_limit(db_url):
    engine = make_engine(db_url, timeouts=Timeouts(statement=0.3, answer=0.6))
    factory = make_session_factory(engine)
    try:
        with factory() as session:
            with long_statements(session, answer_limit=5):
                # Past both of the engine's limits, within the block's own.
                assert session.execute(text("SELECT pg_sleep(1.0), 4")).one()[1] == 4
            session.commit()
            with pytest.raises(DBAPIError) as failed:  # the engine's limits again
                session.execute(text("SELECT pg_sleep(1.0)"))
            assert type(failed.value.orig).__name__ == "QueryCanceled"
            session.rollback()
        with factory() as session:
            pid = _backend_pid(session.connection())
            session.commit()
            with long_statements(session, answer_limit=1.0), frozen(pid):
                started = time.monotonic()
                with pytest.raises(DBAPIError) as failed:
                    session.execute(text("SELECT 5"))
                waited = time.monotonic() - started
            session.rollback()
        assert isinstance(failed.value.orig, db_watchdog.AnswerTimeout)
        assert 1.0 <= waited < 2.5, waited
    finally:
        engine.dispose()


@postgres_only
def test_a_request_on_a_frozen_server_is_503_then_its_retry_is_201(db_url, engine, clock, factory):
    """The server process freezes just as the request sends its first statement."""
    with engine.connect() as conn:  # may this process signal the server's processes?
        try:
            os.kill(_backend_pid(conn), 0)
        except PermissionError:  # pragma: no cover - depends on the user the tests run as
            pytest.skip("may not signal the PostgreSQL server's processes")
    partner = factory.partner()
    headers = {"Authorization": f"Bearer {partner.token}", "Idempotency-Key": "frozen-1"}
    payload = _notification(clock, "FROZEN-1")
    settings = make_settings(
        db_url, db_statement_timeout_seconds=0.5, db_answer_timeout_seconds=1.5
    )
    app = create_app(settings, clock=clock)
    armed = threading.Event()
    stopped: list[int] = []
    timers: list[threading.Timer] = []

    @event.listens_for(app.state.engine, "before_cursor_execute")
    def _freeze(conn, _cursor, _statement, _params, _context, _many):
        if armed.is_set():
            armed.clear()
            pid = conn.connection.driver_connection.info.backend_pid
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
            # Let go on after 10 s whatever happens, as frozen() does.
            timers.append(threading.Timer(10, _let_go_on, (pid,)))
            timers[-1].start()

    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            abandoned_before = _abandoned_metric(client)
            with captured_json_logs("nfod.errors", "nfod.db") as logs:
                armed.set()
                started = time.monotonic()
                try:
                    r = client.post("/v1/incidents", json=payload, headers=headers)
                finally:
                    for timer in timers:
                        timer.cancel()
                    for pid in stopped:
                        _let_go_on(pid)
                waited = time.monotonic() - started
            assert stopped, "no statement was sent"
            body = problem(r, 503)
            assert body["detail"] == "the database did not answer in time; retry shortly"
            assert r.headers["retry-after"] == "1"
            assert 1.5 <= waited < 4, waited
            assert [(rec["msg"], rec.get("db_error_type")) for rec in logs] == [
                ("database wait abandoned", None),
                ("database unavailable", "AnswerTimeout"),
            ]
            assert _count(engine, "FROZEN-1") == 0  # nothing of it was kept
            assert _abandoned_metric(client) == abandoned_before + 1

            again = client.post("/v1/incidents", json=payload, headers=headers)
            assert again.status_code == 201, again.text
            replay = client.post("/v1/incidents", json=payload, headers=headers)
            assert replay.status_code == 201 and replay.json()["id"] == again.json()["id"]
    finally:
        app.state.engine.dispose()
    assert _count(engine, "FROZEN-1") == 1


def _abandoned_metric(client: TestClient) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("nfod_db_waits_abandoned_total "):
            return float(line.split()[1])
    raise AssertionError("nfod_db_waits_abandoned_total is not in /metrics")
