"""Connections: a request keeps one across its commits; a pooled connection the server
dropped is replaced (services.db: RequestSession, the ping after idle)."""

from __future__ import annotations

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from services.db import make_engine, make_request_session_factory
from tests.conftest import postgres_only


def _backend_pid(conn) -> int:
    return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def _terminate(db_url: str, pid: int) -> None:
    """End a server process from a connection of another engine (not the pool under test)."""
    other = make_engine(db_url)
    try:
        with other.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
    finally:
        other.dispose()


def test_a_request_session_keeps_its_connection_across_commits_and_returns_it_on_close(
    engine,
):
    checkouts: list[object] = []
    listener = lambda dbapi_conn, record, proxy: checkouts.append(record)  # noqa: E731
    event.listen(engine, "checkout", listener)
    try:
        session = make_request_session_factory(engine)()
        session.execute(text("SELECT 1"))
        first = session.connection()
        session.commit()
        session.execute(text("SELECT 1"))
        session.commit()
        session.execute(text("SELECT 1"))
        assert session.connection() is first
        assert len(checkouts) == 1
        session.rollback()
        assert engine.pool.checkedout() >= 1
        session.close()
        assert first.closed
    finally:
        event.remove(engine, "checkout", listener)


def test_the_remembered_connection_follows_the_sessions_transactions(engine):
    """RequestSession.connection() answers from memory only within one active transaction:
    after a commit, a rollback, inside and after a savepoint, it is what Session says."""
    from sqlalchemy.orm import Session

    session = make_request_session_factory(engine)()
    try:
        conn = session.connection()
        assert session.connection() is conn is Session.connection(session)
        outer = session.get_transaction()
        session.commit()
        assert session.get_transaction() is None
        again = session.connection()  # a new transaction (the same held connection)
        assert session.get_transaction() is not outer
        assert again is Session.connection(session)
        nested = session.begin_nested()
        assert session.connection() is Session.connection(session)
        nested.rollback()
        assert session.connection() is Session.connection(session)
        assert session.connection().execute(text("SELECT 1")).scalar() == 1
        session.rollback()
        assert session.get_transaction() is None
        assert session.connection() is Session.connection(session)
    finally:
        session.close()


@postgres_only
def test_an_idle_connection_the_server_dropped_is_replaced_before_use(db_url):
    eng = make_engine(db_url, ping_after_idle=0.0, pool_size=1, max_overflow=0)
    try:
        with eng.connect() as conn:
            pid = _backend_pid(conn)
        _terminate(db_url, pid)
        with eng.connect() as conn:  # pinged at checkout, found dead, replaced
            assert _backend_pid(conn) != pid
    finally:
        eng.dispose()


@postgres_only
def test_a_connection_used_a_moment_ago_is_not_pinged_and_a_drop_replaces_the_whole_pool(
    db_url,
):
    eng = make_engine(db_url, ping_after_idle=3600.0, pool_size=2, max_overflow=0)
    try:
        a, b = eng.connect(), eng.connect()
        pids = {_backend_pid(a), _backend_pid(b)}
        a.close()
        b.close()
        for pid in pids:
            _terminate(db_url, pid)
        # no ping: the first statement finds it gone
        with eng.connect() as conn, pytest.raises(OperationalError):
            _backend_pid(conn)
        # ... which invalidated the pool: both connections are new
        a, b = eng.connect(), eng.connect()
        assert not {_backend_pid(a), _backend_pid(b)} & pids
        a.close()
        b.close()
    finally:
        eng.dispose()
