"""Engine and session factory. One session per request (or per sweep); services flush only."""

from __future__ import annotations

import functools

from sqlalchemy import Engine, Table, create_engine, event, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import Insert


def make_engine(url: str, **kwargs) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # pragma: no cover - trivial
            # Let SQLAlchemy emit BEGIN itself so "BEGIN IMMEDIATE" can be used for writes.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # pragma: no cover - trivial
            # SQLite serialises writers; taking the write lock up front avoids
            # deadlock-style "database is locked" upgrades between concurrent requests.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_timeout", 10)
    if url.startswith("postgresql"):
        kwargs.setdefault("connect_args", {"connect_timeout": 5})
    return create_engine(url, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


@functools.cache
def plain_insert(table: Table) -> Insert:
    """``INSERT INTO table`` built once: its parameters come with each execute.

    Statements on the hot paths are built once and reused. SQLAlchemy memoises a statement's
    cache key on the statement object, so a reused one is looked up in the compiled cache at
    once, while one built per request is walked clause by clause to make its key (and built:
    coercion of every column and value) on every call.
    """
    return insert(table)


def insert_rows(session: Session, table: Table, rows: list[dict]) -> None:
    """INSERT rows with one statement built and compiled once: one row is a plain execute,
    several an executemany. (A multi-row ``.values([...])`` is compiled afresh on every call,
    which costs more than the round trips it saves.) Core, on the session's connection: no
    ORM execution layer."""
    if not rows:
        return
    session.connection().execute(plain_insert(table), rows[0] if len(rows) == 1 else rows)


@functools.cache
def insert_for(dialect: str):
    """The dialect's ``insert`` (PostgreSQL or SQLite), for ``ON CONFLICT`` clauses."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


@functools.cache
def insert_unless_conflict(dialect: str, table: Table, *conflict_columns: str) -> Insert:
    """``INSERT INTO table ... ON CONFLICT (conflict_columns) DO NOTHING RETURNING id``, built
    once per dialect (see :func:`plain_insert`): a row that the unique index refuses inserts
    nothing and returns no row, with no error and no savepoint."""
    return (
        insert_for(dialect)(table)
        .on_conflict_do_nothing(index_elements=list(conflict_columns))
        .returning(table.c.id)
    )
