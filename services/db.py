"""Engine and session factory. One session per request (or per sweep); services flush only."""

from __future__ import annotations

import collections
import contextlib
import functools
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pydantic_core
from sqlalchemy import (
    Connection,
    Engine,
    Table,
    any_,
    bindparam,
    create_engine,
    event,
    exc,
    insert,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import Insert

from services import db_watchdog
from services.db_watchdog import AnswerTimeout, WatchedConnection, watch


class JSONText(str):
    """A value already rendered as JSON text (``model_dump_json()``): a JSON column stores
    it as it is (:func:`json_text`) and api.responses.RenderedJSON sends it as it is, so an
    answer that is both stored (an Idempotency-Key's) and sent is rendered once."""

    __slots__ = ()


def json_text(value: Any) -> str:
    """JSON columns' serializer: the values ``json.dumps`` would write, as compact JSON with
    non-ASCII characters kept, by pydantic-core, about five times faster (an intake writes
    three such values). A :class:`JSONText` is already that text."""
    if type(value) is JSONText:
        return str(value)
    return pydantic_core.to_json(value).decode()


# Seconds a pooled connection may sit unused before its next checkout pings it; a connection
# kept by a DirectRoute worker thread (api.direct) is given back after as long without work.
PING_AFTER_IDLE = 1.0

# How many disconnects (a restarted server, a cut connection) this process has seen, on any
# of its engines: a session kept across requests is not reused once this has moved.
_disconnects = [0]


def disconnects_seen() -> int:
    return _disconnects[0]


@dataclass(frozen=True)
class Timeouts:
    """How long a PostgreSQL connection waits on the server before giving up, in seconds
    (0: no limit). Without them a request waits as long as what it waits for: behind a
    migration that holds a table for minutes, or on a server whose host went away without
    closing the connection (TCP gives up after about 15 minutes) - holding its thread and its
    connection meanwhile, while the requests behind it queue. With them it fails, its
    transaction is rolled back, and the API answers 503 with Retry-After (api.problems), which
    an Idempotency-Key makes safe to retry.

    - ``statement``: PostgreSQL's ``statement_timeout``, any statement (COMMIT included);
    - ``lock``: ``lock_timeout``, a wait for any lock, advisory locks included;
    - ``idle_in_transaction``: ``idle_in_transaction_session_timeout``: the server ends a
      session whose transaction a stalled client left open, and so releases its locks;
    - ``tcp``: libpq's TCP keep-alives and ``tcp_user_timeout``, so that a server that stopped
      answering (its host down, a cut network) counts as lost after about this long;
    - ``answer``: the longest any one wait for the server's answer lasts, enforced by this
      process (services.db_watchdog): the backstop for a server process that is frozen
      while its host is fine (stopped, or stuck on a hung disk), which none of the others
      ends. Above ``statement``, so that a server that runs answers first.
    """

    statement: float = 0
    lock: float = 0
    idle_in_transaction: float = 0
    tcp: float = 0
    answer: float = 0

    @classmethod
    def from_settings(cls, settings: Any) -> Timeouts:
        return cls(
            statement=settings.db_statement_timeout_seconds,
            lock=settings.db_lock_timeout_seconds,
            idle_in_transaction=settings.db_idle_in_transaction_timeout_seconds,
            tcp=settings.db_tcp_timeout_seconds,
            answer=settings.db_answer_timeout_seconds,
        )

    def connect_args(self) -> dict[str, Any]:
        """libpq connection parameters: the server settings go in the start-up packet
        (``options``), so they cost nothing per request."""
        args: dict[str, Any] = {}
        options = [
            f"-c {name}={round(seconds * 1000)}"
            for name, seconds in (
                ("statement_timeout", self.statement),
                ("lock_timeout", self.lock),
                ("idle_in_transaction_session_timeout", self.idle_in_transaction),
            )
            if seconds > 0
        ]
        if options:
            args["options"] = " ".join(options)
        if self.tcp > 0:
            # Probes after a third of the time without traffic, then every sixth, three
            # unanswered ones end the connection; data sent and not acknowledged for the
            # whole time ends it too (TCP_USER_TIMEOUT), whichever comes first.
            args.update(
                keepalives=1,
                keepalives_idle=max(1, round(self.tcp / 3)),
                keepalives_interval=max(1, round(self.tcp / 6)),
                keepalives_count=3,
                tcp_user_timeout=round(self.tcp * 1000),
            )
        return args


def make_engine(
    url: str,
    *,
    ping_after_idle: float = PING_AFTER_IDLE,
    timeouts: Timeouts | None = None,
    application_name: str | None = None,
    **kwargs,
) -> Engine:
    """An engine for ``url``. ``timeouts`` (PostgreSQL only) bounds every wait on the server;
    the API and the sweep (``nfod scheduler``, ``nfod sweep``) pass the configured ones (the
    sweep lifts the statement limit for its own transaction: api.scheduler.run_sweep); the
    other commands (``nfod audit verify``, ``nfod demo`` ...) and migrations wait as long as
    their work takes. ``application_name`` (PostgreSQL) names the connections in
    ``pg_stat_activity`` and the server's log: which process holds a lock, or is waiting."""
    kwargs.setdefault("json_serializer", json_text)
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
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_timeout", 10)
    if url.startswith("postgresql"):
        connect_args: dict[str, Any] = {"connect_timeout": 5}
        if timeouts is not None:
            connect_args.update(timeouts.connect_args())
        if application_name:
            connect_args["application_name"] = application_name
        kwargs.setdefault("connect_args", connect_args)
    engine = create_engine(url, **kwargs)
    if url.startswith("postgresql") and timeouts is not None:
        _watch_answers(engine, timeouts.answer)
    if not kwargs.get("pool_pre_ping"):
        _ping_when_idle(engine, ping_after_idle)

    @event.listens_for(engine, "handle_error")
    def _count_disconnects(context):
        if _ended_by_server(context.original_exception):
            context.is_disconnect = True  # the connection is gone: never reuse it
        if context.is_disconnect:
            _disconnects[0] += 1

    return engine


def _ended_by_server(error: BaseException) -> bool:
    """The session is over though SQLAlchemy may not see it: PostgreSQL ended it itself
    (Timeouts.idle_in_transaction; psycopg reports an InternalError, SQLSTATE 25P03), or
    the watchdog closed its connection (Timeouts.answer). Either would otherwise go back to
    the pool."""
    from psycopg import errors

    return isinstance(error, (errors.IdleInTransactionSessionTimeout, AnswerTimeout))


def _watch_answers(engine: Engine, answer: float) -> None:
    """The engine's connections are :class:`~services.db_watchdog.WatchedConnection`s,
    each wait bounded by ``answer`` seconds (0: not bounded, but a block of
    :func:`~services.db_watchdog.answer_limit` may still set one)."""

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect, _record, cargs, cparams):
        conn = WatchedConnection.connect(*cargs, **cparams)
        watch(conn, answer)
        return conn


def _ping_when_idle(engine: Engine, after: float) -> None:
    """Pessimistic disconnect handling, paid for only where it can find something.

    A pooled connection that sat idle for ``after`` seconds or more is pinged when it is
    checked out, and replaced if the server no longer answers (a restarted PostgreSQL, an
    idle connection cut by a firewall). One back in the pool for less than that was in use
    a moment ago: pinging it would be a round trip on every request for nothing. Should
    the server go away in that moment, the request's first statement fails as a disconnect
    (503, problems.py), which also invalidates every older connection of the pool, so they
    are all replaced before their next use - the same outcome as with ``pool_pre_ping``.
    """

    @event.listens_for(engine, "connect")
    def _fresh(_dbapi_connection, record):  # a new connection needs no ping
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _idle(_dbapi_connection, record):
        if record is not None:
            record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection, record, _proxy):
        since = record.info.get("idle_since")
        if since is not None and time.monotonic() - since < after:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            # One dead, all suspect (a restarted server): every older connection is
            # replaced before its next use, not only the idle ones.
            raise exc.InvalidatePoolError(str(error)) from error
        if not alive:  # pragma: no cover - do_ping answers True or raises
            raise exc.InvalidatePoolError("the connection did not answer a ping")


@contextlib.contextmanager
def long_statements(session: Session, *, answer_limit: float | None) -> Iterator[None]:
    """On PostgreSQL, the rest of the session's transaction runs without the statement limit
    (Timeouts.statement; ``SET LOCAL``, so the next transaction has it again), and each wait
    for the server's answer is bounded by ``answer_limit`` seconds (None: not at all)
    instead of Timeouts.answer, until the block ends. Elsewhere it changes nothing."""
    if session.get_bind().dialect.name != "postgresql":
        yield
        return
    session.execute(text("SET LOCAL statement_timeout = 0"))
    with db_watchdog.answer_limit(session.connection().connection.driver_connection, answer_limit):
        yield


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


class RequestSession(Session):
    """A session that keeps one connection from its first use until it is closed.

    A plain session returns its connection to the pool at every commit and checks one out
    again at its next use. A request that commits more than once (an audit entry that must
    survive a rolled-back request, a retried claim) would pay that each time. This one
    binds itself to a connection of its engine at first use, so its transactions all run on
    that connection; the connection goes back to the pool when the session is closed (or
    reset, or invalidated). Commit, rollback and the session's events are unchanged: each
    transaction is still begun and ended by the session.
    """

    _held: Connection | None = None

    def get_bind(self, *args: Any, **kwargs: Any) -> Any:
        bind = super().get_bind(*args, **kwargs)
        if not isinstance(bind, Engine):
            return bind
        if self._held is None or self._held.closed:
            self._held = bind.connect()
        return self._held

    # (the session's transaction, its connection), from the last plain connection() call.
    _current: tuple[Any, Connection] | None = None

    def connection(self, bind_arguments=None, execution_options=None) -> Connection:
        """As Session's. The services ask for the connection before every statement (an
        intake ten times); while the same transaction is active the answer cannot change,
        so it is remembered instead of being looked up through the transaction again."""
        if bind_arguments is None and execution_options is None:
            current, transaction = self._current, self._transaction
            if current is not None and current[0] is transaction and transaction.is_active:
                return current[1]
            conn = super().connection()
            self._current = (self._transaction, conn)
            return conn
        return super().connection(bind_arguments, execution_options)

    def is_reusable(self) -> bool:
        """Its connection (if it has one yet) is still open and valid."""
        held = self._held
        return held is None or not (held.closed or held.invalidated)

    def _release(self) -> None:
        self._current = None
        held, self._held = self._held, None
        if held is not None:
            held.close()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release()

    def reset(self) -> None:
        try:
            super().reset()
        finally:
            self._release()

    def invalidate(self) -> None:
        try:
            super().invalidate()
        finally:
            self._release()


def make_request_session_factory(engine: Engine) -> sessionmaker[RequestSession]:
    """Sessions for API requests (see :class:`RequestSession`)."""
    return sessionmaker(bind=engine, class_=RequestSession, expire_on_commit=False, autoflush=True)


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
    """INSERT rows with statements built and compiled once. Up to ``MULTI_ROW_LIMIT`` rows
    with the same columns go in one multi-row ``VALUES`` statement (built once per table,
    columns and row count), more in an executemany. Core, on the session's connection: no
    ORM execution layer (:func:`execute_direct`)."""
    if not rows:
        return
    conn = session.connection()
    one = _one_insert(table, rows) if len(rows) <= MULTI_ROW_LIMIT else None
    if one is None:
        execute_direct(conn, plain_insert(table), rows)  # an executemany
    else:
        execute_direct(conn, *one)


def _one_insert(table: Table, rows: list[dict]) -> tuple[Insert, dict] | None:
    """One INSERT statement for these rows and its parameters: the plain one for one row, a
    multi-row ``VALUES`` one for rows with the same columns; None when their columns
    differ."""
    if len(rows) == 1:
        return plain_insert(table), rows[0]
    keys = tuple(rows[0])
    if any(tuple(row) != keys for row in rows):
        return None
    params = {f"{key}_{i}": row[key] for i, row in enumerate(rows) for key in keys}
    return _multi_row_insert(table, keys, len(rows)), params


# The most rows one multi-row INSERT carries: a handful (an incident's substances, a
# request's audit entries) is one round trip; a long list is an executemany (pipelined).
MULTI_ROW_LIMIT = 8


@functools.cache
def _multi_row_insert(table: Table, keys: tuple[str, ...], count: int) -> Insert:
    """``INSERT INTO table (keys) VALUES (...), (...)`` for ``count`` rows, parameters
    ``<key>_<row>``, typed as their columns (JSON is converted, casts are rendered)."""
    return insert(table).values(
        [
            {key: bindparam(f"{key}_{i}", type_=table.c[key].type) for key in keys}
            for i in range(count)
        ]
    )


# --- direct execution of hot statements ----------------------------------------------------

_Shape = tuple[str, tuple[str, ...], bool]


class _Direct:
    """A statement compiled once for one dialect and one set of parameter names."""

    __slots__ = ("compiled", "sql", "processors", "row")

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self.sql = compiled.string
        self.processors = compiled._bind_processors  # what SQLAlchemy applies to each value
        names = tuple(column.keyname for column in compiled._result_columns)
        # Rows read by column name (row.id) or position, like SQLAlchemy's; rename=True
        # turns a repeated name into _0, _1, ... A text() statement's rows are tuples.
        self.row = collections.namedtuple("Row", names, rename=True)._make if names else None

    def parameters(self, params: dict[str, Any]) -> dict[str, Any]:
        values = self.compiled.construct_params(params)
        for name, process in self.processors.items():
            if name in values:
                values[name] = process(values[name])
        return values


# (id of the statement, dialect, parameter names, executemany) -> (statement, form). The
# statement is kept with its form, so an id reused by another object never matches it.
_direct_cache: dict[tuple[int, _Shape], tuple[Any, _Direct | None]] = {}
_DIRECT_CACHE_LIMIT = 1000  # a bound, not a policy: hot statements are built once


def _direct_form(conn: Connection, statement: Any, keys: tuple[str, ...], many: bool):
    """The statement's direct form for this connection, or None when only SQLAlchemy's own
    execution does it right (Python-side column defaults to fill in, expanding IN lists,
    result types SQLAlchemy converts)."""
    dialect = conn.dialect
    cache_key = (id(statement), (dialect.name, keys, many))
    entry = _direct_cache.get(cache_key)
    if entry is not None and entry[0] is statement:
        return entry[1]
    compiled = statement.compile(dialect=dialect, column_keys=list(keys), for_executemany=many)
    usable = not (
        compiled.insert_prefetch
        or compiled.update_prefetch
        or compiled.post_compile_params
        or compiled.literal_execute_params
        or any(
            column.type._cached_result_processor(dialect, None) is not None
            for column in compiled._result_columns
        )
    )
    form = _Direct(compiled) if usable else None
    if len(_direct_cache) >= _DIRECT_CACHE_LIMIT:
        _direct_cache.clear()
    _direct_cache[cache_key] = (statement, form)
    return form


def execute_direct(conn: Connection, statement: Any, params: dict | list[dict]) -> list[Any]:
    """Execute a statement built once at import (Core or ``text``) on PostgreSQL's driver
    directly and return its rows (columns by name, like SQLAlchemy's rows, or by position).

    SQLAlchemy's execution layer costs about 60 microseconds of CPU a statement over the
    driver's own (measured: 113 vs 49 us per INSERT), and a keyed intake runs about ten of
    them. This keeps everything SQLAlchemy does that matters here: the statement is compiled
    by SQLAlchemy (once per parameter names), its parameters are made and converted by the
    compiled form (bind processors, e.g. JSON), it runs in the connection's current
    transaction, and a driver error goes through SQLAlchemy's own handling - wrapped as
    ``sqlalchemy.exc.DBAPIError`` (IntegrityError, OperationalError, ...) and, for a lost
    connection, the connection and the pool invalidated. Any other database, a statement
    that needs SQLAlchemy's execution (see :func:`_direct_form`), and a connection with
    event listeners (statement hooks in tests and benchmarks see every statement) take the
    ordinary ``conn.execute``.
    """
    many = isinstance(params, list)
    if many and not params:
        return []
    first = params[0] if many else params
    if conn.dialect.name != "postgresql" or _hooked(conn):
        return _ordinary(conn, statement, params, many)
    form = _direct_form(conn, statement, tuple(first), many)
    if form is None:
        return _ordinary(conn, statement, params, many)
    if many:
        values: Any = [form.parameters(p) for p in params]
    else:
        values = form.parameters(params)
    cursor = _cursor(conn)
    try:
        if many:
            cursor.executemany(form.sql, values)
            return []
        cursor.execute(form.sql, values)
        # No rows to fetch when the result has no columns (an INSERT without RETURNING).
        # Asked of the result itself: ``cursor.description`` would build a Column object
        # per column, on every statement, only to be tested against None.
        result = cursor.pgresult
        if result is None or not result.nfields:
            return []
        rows = cursor.fetchall()
        return list(map(form.row, rows)) if form.row is not None else rows
    except conn.dialect.loaded_dbapi.Error as error:
        conn._handle_dbapi_exception(error, form.sql, values, cursor, None)
        raise  # pragma: no cover - _handle_dbapi_exception always raises


_CURSOR = "nfod_direct_cursor"


def _cursor(conn: Connection) -> Any:
    """The driver cursor direct statements run on: one per driver connection, kept in the
    pool's ``info`` for that connection (emptied when the connection is replaced). Making
    and closing a psycopg cursor per statement cost about 1.5 % of an intake's instructions
    (BENCHMARKS.md, eighth round). A connection serves one thread at a
    time, and every statement here reads its rows before the next one runs."""
    fairy = conn.connection
    cursor = fairy.info.get(_CURSOR)
    if cursor is None or cursor.closed or cursor.connection is not fairy.dbapi_connection:
        cursor = fairy.info[_CURSOR] = fairy.dbapi_connection.cursor()
    return cursor


def _hooked(conn: Connection) -> bool:
    """Whether statement-level event listeners are registered (on the connection or its
    engine): they must see every statement, so those take SQLAlchemy's execution.

    First the flags SQLAlchemy itself tests before any connection event (set when a
    listener of any connection event is added to the connection or its engine, and never
    cleared): with none, there is nothing to look up. Asking the dispatcher for four event
    lists cost about 2 % of an intake's CPU (a profile of the worker threads under wrk)."""
    if not (conn._has_events or conn.engine._has_events):
        return False
    dispatch = conn.dispatch
    return bool(
        dispatch.before_execute
        or dispatch.after_execute
        or dispatch.before_cursor_execute
        or dispatch.after_cursor_execute
    )


def _ordinary(conn: Connection, statement: Any, params: Any, many: bool) -> list[Any]:
    result = conn.execute(statement, params)
    return [] if many or not result.returns_rows else result.all()


# --- writes sent with the commit --------------------------------------------------------

_AT_COMMIT = "nfod_writes_at_commit"
_PREPARERS: list[Callable[[Session], None]] = []
# The most writes one statement carries (each a WITH part of it); more are sent in turns.
TOGETHER_LIMIT = 8


def write_at_commit(session: Session, statement: Any, params: dict[str, Any]) -> None:
    """Queue a single-row-set write (an INSERT or UPDATE built once, with its parameters)
    that nothing in this transaction reads back: it is sent at the session's outermost
    commit, in order with the others queued, and on PostgreSQL in one statement with them
    (:func:`execute_together`). A rollback (or close) of the transaction drops it.

    For the writes that end a request - an Idempotency-Key's stored answer, the audit
    entries (services.audit) - each of which would otherwise cost a round trip of its own."""
    if not session.in_transaction():
        session.begin()  # no I/O; its rollback must drop what was queued in it
    session.info.setdefault(_AT_COMMIT, []).append((statement, params))


def insert_rows_at_commit(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """:func:`insert_rows`, sent with the commit (:func:`write_at_commit`): rows with the
    same columns go in multi-row ``VALUES`` statements of up to ``AT_COMMIT_ROWS`` rows,
    written in the order given."""
    for start in range(0, len(rows), AT_COMMIT_ROWS):
        chunk = rows[start : start + AT_COMMIT_ROWS]
        one = _one_insert(table, chunk)
        for statement, params in [one] if one else [(plain_insert(table), r) for r in chunk]:
            write_at_commit(session, statement, params)


# Rows one queued multi-row INSERT carries (a page of search results audits 50 reads).
AT_COMMIT_ROWS = 64


def before_commit_writes(prepare: Callable[[Session], None]) -> Callable[[Session], None]:
    """Register ``prepare(session)``, run at every outermost commit just before the queued
    writes are sent, to queue its own (services.audit queues the entries it has kept)."""
    _PREPARERS.append(prepare)
    return prepare


def has_writes_at_commit(session: Session) -> bool:
    return bool(session.info.get(_AT_COMMIT))


@event.listens_for(Session, "before_commit")
def _send_writes_at_commit(session: Session) -> None:
    # Also fired when a SAVEPOINT is released: only the real (outermost) commit sends them.
    if session.in_nested_transaction():
        return
    for prepare in _PREPARERS:
        prepare(session)
    send_writes_at_commit(session)


def send_writes_at_commit(session: Session) -> None:
    """Send the writes queued so far now (the outermost commit does it anyway)."""
    queued = session.info.pop(_AT_COMMIT, None)
    if queued:
        execute_together(session.connection(), queued)


@event.listens_for(Session, "after_transaction_end")
def _drop_writes_at_commit(session: Session, transaction: Any) -> None:
    # The whole transaction ended (committed - its writes were sent - rolled back or closed),
    # not a savepoint: nothing queued in it may reach another transaction of the session.
    if transaction.parent is None and not transaction.nested:
        session.info.pop(_AT_COMMIT, None)


def execute_together(conn: Connection, writes: list[tuple[Any, dict[str, Any]]]) -> None:
    """Run writes (statement, parameters) in order. On PostgreSQL, up to ``TOGETHER_LIMIT``
    at a time go as one statement - ``WITH w0 AS (write 0), w1 AS (write 1) write 2`` - so
    they cost one round trip; each is compiled as :func:`execute_direct` compiles it, its
    parameters renamed ``w<n>_<name>``. Data-modifying WITH parts all run, to completion,
    on the statement's one snapshot, which is why only writes that read nothing the others
    write may be queued together (no part sees another's rows; foreign keys are checked at
    the end of the statement). A statement that has a WITH of its own runs alone."""
    if conn.dialect.name != "postgresql":
        for statement, params in writes:
            execute_direct(conn, statement, params)
        return
    pending: list[tuple[_Direct, dict[str, Any]]] = []
    for statement, params in writes:
        form = _direct_form(conn, statement, tuple(params), False)
        if form is None or form.sql.lstrip()[:4].upper() == "WITH":
            _send_together(conn, pending)
            pending = []
            execute_direct(conn, statement, params)
            continue
        pending.append((form, params))
        if len(pending) == TOGETHER_LIMIT:
            _send_together(conn, pending)
            pending = []
    _send_together(conn, pending)


# A pyformat placeholder, or an escaped percent sign (kept as it is).
_PLACEHOLDER = re.compile(r"%%|%\(([^)]+)\)s")
# (the parts' forms) -> the statement's SQL. Bounded like _direct_cache.
_together_cache: dict[tuple[_Direct, ...], str] = {}


def _together_sql(forms: tuple[_Direct, ...]) -> str:
    sql = _together_cache.get(forms)
    if sql is None:
        parts = [
            _PLACEHOLDER.sub(
                lambda m, n=n: m.group(0) if m.group(1) is None else f"%(w{n}_{m.group(1)})s",
                form.sql,
            )
            for n, form in enumerate(forms)
        ]
        sql = (
            "WITH "
            + ", ".join(f"w{n} AS ({part})" for n, part in enumerate(parts[:-1]))
            + " "
            + parts[-1]
        )
        if len(_together_cache) >= _DIRECT_CACHE_LIMIT:
            _together_cache.clear()
        _together_cache[forms] = sql
    return sql


def _send_together(conn: Connection, pending: list[tuple[_Direct, dict[str, Any]]]) -> None:
    if not pending:
        return
    if len(pending) == 1:
        form, params = pending[0]
        _run(conn, form.sql, form.parameters(params))
        return
    values: dict[str, Any] = {}
    for n, (form, params) in enumerate(pending):
        for name, value in form.parameters(params).items():
            values[f"w{n}_{name}"] = value
    _run(conn, _together_sql(tuple(form for form, _ in pending)), values)


def _run(conn: Connection, sql: str, values: dict[str, Any]) -> None:
    """One compiled statement on the driver (statement hooks see it, as SQLAlchemy's own
    ``exec_driver_sql``, when there are any)."""
    if _hooked(conn):
        conn.exec_driver_sql(sql, values)
        return
    cursor = _cursor(conn)
    try:
        cursor.execute(sql, values)
    except conn.dialect.loaded_dbapi.Error as error:
        conn._handle_dbapi_exception(error, sql, values, cursor, None)
        raise  # pragma: no cover - _handle_dbapi_exception always raises


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


# The most values one ``IN (...)`` list carries (SQLite allows 32,766 bound parameters in
# a statement, PostgreSQL 65,535); longer lists are sent in batches.
IN_BATCH = 5000


def in_batches(values: list[Any], size: int | None = None) -> list[list[Any]]:
    """``values`` in consecutive lists of at most ``size`` (default ``IN_BATCH``; none for
    an empty list)."""
    size = size or IN_BATCH
    return [values[i : i + size] for i in range(0, len(values), size)]


def among(dialect: str, column: Any, values: list[Any]) -> Any:
    """The condition ``column IN (values)`` for a list of values known only at run time (the
    ids a page or an agenda names). On PostgreSQL it is ``column = ANY(:values)``, one array
    parameter, so the statement's text is the same whatever the list's length: the driver
    converts it once and PostgreSQL prepares its plan after a few uses. An ``IN`` list is
    rendered with a placeholder per value on every execution, and with a hundred ids it is
    new text each time and too long for psycopg's statement cache: converting and planning it
    anew was 15 % of the agenda's instructions (BENCHMARKS.md, fifteenth round). Elsewhere
    (SQLite) an ordinary ``IN`` list; use :func:`among_batches` for the lists."""
    if dialect == "postgresql":
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


def among_batches(dialect: str, values: list[Any]) -> list[list[Any]]:
    """The lists to give :func:`among`: all the values at once on PostgreSQL (an array is one
    parameter, whatever its length), else :func:`in_batches`."""
    if dialect == "postgresql":
        return [values] if values else []
    return in_batches(values)
