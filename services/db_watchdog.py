"""A bound on every wait for PostgreSQL's answer, enforced by this process, not the server.

The server's own limits (services.db.Timeouts: ``statement_timeout``, ``lock_timeout``) need
the server process to run, and TCP's need the server's host to stop acknowledging. Neither
ends a wait on a backend that is frozen while its host is fine: stopped (``kill -STOP``, a
debugger), or stuck in its own I/O on a hung disk. Its kernel still acknowledges what is
sent, so the connection looks healthy, and the request waits as long as the freeze, holding
its thread, its connection and its session slot.

Here each connection notes when it began to wait for the server (psycopg's ``wait``, which
every blocking operation of a connection goes through: a statement, a fetch, COMMIT,
ROLLBACK), and one watchdog thread per process shuts down the socket of a connection that
has waited longer than its limit. The waiting thread wakes at once with an error
(:class:`AnswerTimeout`), the connection counts as lost (it is never reused, and the pool
replaces it), and the API answers 503 "did not answer in time" with Retry-After, as for the
server's own limits (api.problems). A write whose COMMIT was cut off may or may not have
been made; the Idempotency-Key makes its retry safe either way.

The limit is set above the statement limit, so that a server that runs answers first with
its own, cleaner, error (the transaction is rolled back and the connection kept); this is
the backstop for a server that does not run. The cost on the request path is two attribute
writes and a clock reading per wait.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

log = logging.getLogger("nfod.db")

# How often the watchdog looks, at most: a tenth of the shortest limit it watches, so that
# a wait ends within about 10 % past its limit.
_LONGEST_NAP = 1.0


class AnswerTimeout(psycopg.OperationalError):
    """The server did not answer within the connection's limit: the connection was closed
    by this process's watchdog (a PostgreSQL error class, so that SQLAlchemy wraps it as an
    OperationalError and counts the connection as lost)."""


_base_wait = psycopg.Connection.wait
_monotonic = time.monotonic


class WatchedConnection(psycopg.Connection):
    """A psycopg connection whose every wait on the server is bounded by ``answer_limit``
    seconds (None: not bounded), enforced by the process's :class:`_Watchdog`."""

    answer_limit: float | None = None
    # When the current wait began (time.monotonic()), 0.0 when not waiting.
    _waiting_since: float = 0.0
    _abandoned: float = 0.0  # how long the wait had lasted when the watchdog ended it

    def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        # Called for every statement: the base method and the clock are looked up once, at
        # import (super() and the module attribute cost 150 ns a call between them).
        if self.answer_limit is None:
            return _base_wait(self, gen, *args, **kwargs)
        self._waiting_since = _monotonic()
        try:
            return _base_wait(self, gen, *args, **kwargs)
        except psycopg.OperationalError as error:
            if self._abandoned:
                raise AnswerTimeout(
                    f"PostgreSQL did not answer within {self.answer_limit:g} s "
                    f"(waited {self._abandoned:.1f} s); the connection was closed"
                ) from error
            raise
        finally:
            self._waiting_since = 0.0

    def close(self) -> None:
        # Not while the watchdog is shutting this connection's socket down: the socket's
        # number must not be freed (and reused by another connection) under it.
        with _watchdog.lock:
            super().close()


def watch(conn: WatchedConnection, answer_limit: float | None) -> None:
    """Bound the connection's waits by ``answer_limit`` seconds (None or 0: unbounded)."""
    conn.answer_limit = answer_limit or None
    if conn.answer_limit is not None:
        _watchdog.add(conn)


@contextmanager
def answer_limit(conn: Any, limit: float | None) -> Iterator[None]:
    """Within the block, the driver connection ``conn`` (a :class:`WatchedConnection`, or any
    other, which is left alone) waits up to ``limit`` seconds (None: without limit) for each
    answer; its own limit again after it."""
    if not isinstance(conn, WatchedConnection):
        yield
        return
    kept = conn.answer_limit
    watch(conn, limit)
    try:
        yield
    finally:
        conn.answer_limit = kept


class _Watchdog:
    """One thread per process, started with the first watched connection. It holds the
    connections weakly: one that is closed and dropped leaves its set by itself."""

    def __init__(self) -> None:
        # Re-entrant: a connection may be closed by a finalizer (SQLAlchemy's pool returns
        # a connection dropped without being closed) in whatever thread the garbage
        # collector runs in - the watchdog's own, while it holds this, included.
        self.lock = threading.RLock()
        self._connections: weakref.WeakSet[WatchedConnection] = weakref.WeakSet()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._nap = _LONGEST_NAP
        self.abandoned = 0  # waits ended, since the process started

    def add(self, conn: WatchedConnection) -> None:
        with self.lock:
            self._connections.add(conn)
            self._nap = min(self._nap, max(0.01, (conn.answer_limit or _LONGEST_NAP) / 10))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="nfod-db-watchdog", daemon=True
                )
                self._thread.start()
            else:
                self._wake.set()  # a shorter nap may be due

    def _run(self) -> None:
        while True:
            self._wake.wait(self._nap)
            self._wake.clear()
            try:
                self.check(time.monotonic())
            except Exception:  # pragma: no cover - the watch must go on whatever happens
                log.exception("database watchdog check failed")

    def check(self, now: float) -> int:
        """End every wait that has outlasted its connection's limit; how many it ended."""
        ended = 0
        with self.lock:
            for conn in list(self._connections):
                since, limit = conn._waiting_since, conn.answer_limit
                if not since or limit is None or now - since <= limit or conn.closed:
                    continue
                conn._abandoned = now - since  # before the waiting thread can wake
                if not _shut_down(conn):
                    conn._abandoned = 0.0
                    continue
                ended += 1
                self.abandoned += 1
                log.warning(
                    "database wait abandoned",
                    extra={"waited_seconds": round(now - since, 1), "limit_seconds": limit},
                )
        return ended


def abandoned_total() -> int:
    """How many waits the watchdog has ended since this process started (Prometheus:
    ``nfod_db_waits_abandoned_total``, api.metrics)."""
    return _watchdog.abandoned


def _shut_down(conn: WatchedConnection) -> bool:
    """Shut the connection's socket down (both ways) without closing its file descriptor,
    which stays the driver's: the thread waiting on it sees the connection end at once."""
    try:
        fd = conn.pgconn.socket
    except psycopg.OperationalError:  # already finished by the driver
        return False
    try:
        duplicate = socket.socket(fileno=os.dup(fd))
    except OSError:  # closed meanwhile
        return False
    try:
        duplicate.shutdown(socket.SHUT_RDWR)
    except OSError:  # not connected any more
        return False
    finally:
        duplicate.close()
    return True


_watchdog = _Watchdog()
