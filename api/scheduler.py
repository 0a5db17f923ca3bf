"""The scheduler runners: one tick = one sweep (committed) + one webhook delivery pass.

- :func:`run_once` - ``nfod sweep [--at]``: one tick, exit code 0 (or 1 if it failed).
- :func:`run_forever` - ``nfod scheduler``: a tick every ``NFOD_SWEEP_SECONDS`` until
  SIGTERM/SIGINT, finishing the tick in progress.
- :class:`BackgroundScheduler` - the same loop in a daemon thread inside ``nfod serve``.

A failing tick is logged (error type only: never messages that could carry personal
data), counted in ``nfod_sweep_failures_total`` and retried on the next tick; it never
stops the loop or the API. Exactly-once lives in the database (see services/sweep.py),
so any number of these may run at once.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from api import metrics
from services import idempotency, webhooks
from services.config import Settings
from services.db import Timeouts, long_statements, make_engine, make_session_factory
from services.sweep import SweepResult, sweep

log = logging.getLogger("nfod.scheduler")

# The longest the sweep waits for any one answer from PostgreSQL (services.db_watchdog), in
# place of the API's NFOD_DB_ANSWER_TIMEOUT_SECONDS: about fifty times the first sweep of
# the 1 M bench data set (12 s), and still a bound, so that a frozen server cannot stop the
# alerts for good (the tick fails, is logged and counted, and the next one starts afresh).
SWEEP_ANSWER_LIMIT = 600.0


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class TickResult:
    sweep: SweepResult
    deliveries: dict[str, int]


def run_sweep(
    session_factory: sessionmaker[Session], *, settings: Settings, at: datetime
) -> SweepResult:
    """One sweep in its own transaction (alerts and their outbox rows commit together)."""
    started = time.perf_counter()
    with session_factory() as session:
        try:
            # No statement limit for the sweep (NFOD_DB_STATEMENT_TIMEOUT_SECONDS): its
            # statements grow with its backlog - a first sweep over the 1 M bench data set
            # raised 63 k alerts in 12 s - and, cut short, it would fail the same way every
            # tick and raise nothing. Its lock, idle and TCP limits stay.
            with long_statements(session, answer_limit=SWEEP_ANSWER_LIMIT):
                result = sweep(session, at=at, settings=settings)
                session.commit()
        except BaseException:
            session.rollback()
            raise
    metrics.SWEEP_DURATION.observe(time.perf_counter() - started)
    for kind, count in result.raised.items():
        if count:
            metrics.ALERTS_RAISED.labels(kind=kind).inc(count)
    return result


def run_deliveries(
    session_factory: sessionmaker[Session], *, settings: Settings, now: datetime
) -> dict[str, int]:
    """One delivery pass: lease due rows (commit), POST them (no transaction open), record."""
    totals = {"delivered": 0, "retry": 0, "failed": 0, "skipped": 0}
    for _ in range(20):  # bounded: at most 20 batches per pass
        with session_factory() as session:
            claims = webhooks.claim_due(session, now=now, settings=settings)
            session.commit()
        if not claims:
            break
        outcomes = webhooks.send(claims, now=now, settings=settings)
        with session_factory() as session:
            counts = webhooks.record_results(session, outcomes=outcomes, now=now, settings=settings)
            session.commit()
        for outcome, count in counts.items():
            totals[outcome] += count
            if count:
                metrics.WEBHOOK_DELIVERIES.labels(outcome=outcome).inc(count)
        if len(claims) < webhooks.CLAIM_BATCH or counts["skipped"]:
            break  # all done, or a receiver is down: its messages wait for the next pass
    with session_factory() as session:
        metrics.OUTBOX_BACKLOG.set(webhooks.backlog(session))
    return totals


def run_housekeeping(session_factory: sessionmaker[Session], *, at: datetime) -> int:
    """Forget Idempotency-Keys past their retention (NFOD_IDEMPOTENCY_TTL_HOURS).

    Never ahead of the real clock: a replay with ``--at`` in the future must not purge keys
    a client may still retry with.
    """
    with session_factory() as session:
        purged = idempotency.purge_expired(session, min(at, utc_now()))
        session.commit()
    return purged


def tick(session_factory: sessionmaker[Session], *, settings: Settings, at: datetime) -> TickResult:
    result = run_sweep(session_factory, settings=settings, at=at)
    deliveries = run_deliveries(session_factory, settings=settings, now=at)
    run_housekeeping(session_factory, at=at)
    return TickResult(sweep=result, deliveries=deliveries)


def safe_tick(
    session_factory: sessionmaker[Session], *, settings: Settings, at: datetime
) -> TickResult | None:
    """A tick that never raises: failures are logged and counted, and retried next time."""
    try:
        return tick(session_factory, settings=settings, at=at)
    except Exception as exc:  # noqa: BLE001 - the loop must survive anything
        metrics.SWEEP_FAILURES.inc()
        log.error("sweep failed; retrying next tick", extra={"error_type": type(exc).__name__})
        return None


def run_once(settings: Settings, at: datetime | None = None) -> int:
    """``nfod sweep``: one sweep then one delivery pass at ``at`` (default now)."""
    engine = make_engine(
        settings.database_url,
        timeouts=Timeouts.from_settings(settings),
        application_name="nfod-scheduler",
    )
    try:
        result = safe_tick(
            make_session_factory(engine), settings=settings, at=(at or utc_now()).astimezone(UTC)
        )
    finally:
        engine.dispose()
    if result is None:
        print("sweep failed (see the log); nothing was committed")
        return 1
    raised = ", ".join(f"{k}={v}" for k, v in result.sweep.raised.items())
    delivered = ", ".join(f"{k}={v}" for k, v in result.deliveries.items())
    at_text = result.sweep.at.isoformat()
    print(f"sweep at {at_text}: raised {result.sweep.total} ({raised}); webhooks: {delivered}")
    return 0


def run_forever(settings: Settings, *, stop: threading.Event | None = None) -> int:
    """``nfod scheduler``: tick every ``sweep_seconds`` until SIGTERM or SIGINT."""
    stop = stop or threading.Event()

    def _stop(signum, _frame):
        log.info("scheduler stopping", extra={"signal": signum})
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, _stop)
    engine = make_engine(
        settings.database_url,
        timeouts=Timeouts.from_settings(settings),
        application_name="nfod-scheduler",
    )
    factory = make_session_factory(engine)
    log.info("scheduler started", extra={"interval_seconds": settings.sweep_seconds})
    try:
        while not stop.is_set():
            started = time.monotonic()
            safe_tick(factory, settings=settings, at=utc_now())
            stop.wait(max(0.0, settings.sweep_seconds - (time.monotonic() - started)))
    finally:
        engine.dispose()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("scheduler stopped")
    return 0


class BackgroundScheduler:
    """The sweep loop in a daemon thread (``nfod serve``). ``clock`` is the app's clock."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        settings: Settings,
        clock: Callable[[], datetime] = utc_now,
    ):
        self.session_factory = session_factory
        self.settings = settings
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks = 0
        self.failures = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="nfod-scheduler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                result = safe_tick(self.session_factory, settings=self.settings, at=self.clock())
            except Exception as exc:  # noqa: BLE001 - e.g. the clock itself; never kill the API
                metrics.SWEEP_FAILURES.inc()
                log.error(
                    "sweep failed; retrying next tick", extra={"error_type": type(exc).__name__}
                )
                result = None
            self.ticks += 1
            if result is None:
                self.failures += 1
            self._stop.wait(max(0.0, self.settings.sweep_seconds - (time.monotonic() - started)))

    def stop(self, timeout: float | None = None) -> None:
        """Ask the loop to stop and wait for the tick in progress to finish."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(
                timeout if timeout is not None else self.settings.webhook_timeout_seconds * 3 + 30
            )
        self._thread = None
