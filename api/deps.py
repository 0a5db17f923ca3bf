"""Request dependencies: settings, clock, the unit of work, the caller and role checks."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

import anyio
from fastapi import Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session

from services import audit
from services.auth import resolve_bearer, resolve_bearer_claiming
from services.config import Settings
from services.db import has_writes_at_commit
from services.errors import Forbidden, Unauthorized, Unavailable
from services.pagination import DEFAULT_LIMIT, MAX_LIMIT
from services.principal import Principal

log = logging.getLogger("nfod.errors")


async def get_settings(request: Request) -> Settings:
    # Trivial dependencies are ``async def``: they run on the event loop instead of costing
    # a thread-pool hop each (sync dependencies are sent to the pool on every request).
    return request.app.state.settings


async def get_now(request: Request) -> datetime:
    """The current time. Tests replace ``app.state.clock`` to move it."""
    return request.app.state.clock()


def client_addr(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _rollback(session: Session) -> None:
    """Roll back; commit what must survive (refused reads, login failures). Keeps it open."""
    session.rollback()
    if audit.keep_only_survivors(session):
        try:
            session.commit()
        except Exception:  # noqa: BLE001 - the original error matters more
            session.rollback()


def is_settled(session: Session) -> bool:
    """Nothing left to commit or roll back: closing it does no I/O."""
    return (
        not session.in_transaction()
        and not audit.has_pending(session)
        and not has_writes_at_commit(session)
    )


def _finish(session: Session) -> None:
    try:
        session.commit()
    except BaseException:
        _rollback(session)
        raise
    finally:
        audit.discard_pending(session)
        session.close()


def _fail(session: Session) -> None:
    try:
        _rollback(session)
    finally:
        audit.discard_pending(session)
        session.close()


def end_unit_of_work(call: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a synchronous route handler so the request's session commits (or rolls back) at
    the end of the handler, in the handler's own thread.

    A request holds its database locks (matching's identity lock, a row it inserted that
    another request's unique check waits on) until it commits. Were the commit a separate
    thread-pool hop, every thread could end up waiting on locks held by requests that need a
    thread to commit - and nothing would move again (seen with 12 parallel notifications
    about one person and 10 threads). Committed here, a lock is only ever held by a request
    that holds a thread.
    """

    @functools.wraps(call)
    def handler(*args: Any, **kwargs: Any) -> Any:
        sessions = [v for v in kwargs.values() if isinstance(v, Session)]
        try:
            result = call(*args, **kwargs)
        except BaseException:
            for session in sessions:
                _rollback(session)
            raise
        for session in sessions:
            if is_settled(session):  # committed already (api.idempotency): nothing to do
                continue
            try:
                session.commit()
            except BaseException:
                _rollback(session)
                raise
        return result

    return handler


class UnitOfWorkRoute(APIRoute):
    """The route class of every router: a synchronous handler ends its request's unit of
    work itself (:func:`end_unit_of_work`)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = end_unit_of_work(endpoint)
        super().__init__(path, endpoint, **kwargs)


def _per_loop_semaphore(request: Request, name: str, size: int) -> asyncio.Semaphore:
    """An admission limit of the worker's, kept on the app's state under ``name``: one per
    event loop (a test client may run the app on more than one)."""
    loop = asyncio.get_running_loop()
    state = request.app.state
    current = getattr(state, name, None)
    if current is None or current[0] is not loop:
        current = (loop, asyncio.Semaphore(size))
        setattr(state, name, current)
    return current[1]


def session_slots(request: Request) -> asyncio.Semaphore:
    """The worker's admission limit for database sessions (``Settings.session_slots``)."""
    return _per_loop_semaphore(request, "session_slots", request.app.state.settings.session_slots)


def hash_slots(request: Request) -> asyncio.Semaphore:
    """The worker's admission limit for password hashes (``Settings.password_hash_slots``)."""
    return _per_loop_semaphore(
        request, "hash_slots", request.app.state.settings.password_hash_slots
    )


async def _take(request: Request, slots: asyncio.Semaphore) -> None:
    """Take one of ``slots``, waiting at most ``Settings.db_queue_timeout_seconds`` on the
    event loop (holding neither a thread nor a connection), or answer 503 with Retry-After."""
    if not slots.locked():
        await slots.acquire()  # free: taken without waiting
        return
    limit = request.app.state.settings.db_queue_timeout_seconds
    try:
        async with asyncio.timeout(limit):
            await slots.acquire()
    except TimeoutError:
        log.warning("request shed", extra={"waited_seconds": limit})
        raise Unavailable(
            "the service is too busy to take this request now; retry shortly",
            headers={"Retry-After": "1"},
        ) from None


async def admit(request: Request) -> asyncio.Semaphore:
    """Take one of the worker's session slots (:func:`session_slots`) for the request, and
    return the semaphore to give it back to. A request that cannot get one within
    ``Settings.db_queue_timeout_seconds`` is answered 503 with Retry-After instead: when the
    database stalls (a table held by a migration, a lost server) every slot's request waits out
    its own limit (services.db.Timeouts), and without this bound the requests queued behind
    them would wait for turn after turn."""
    slots = session_slots(request)
    await _take(request, slots)
    return slots


@asynccontextmanager
async def hashing_turn(request: Request) -> AsyncIterator[None]:
    """A turn to hash a password (:func:`hash_slots`), taken like a session slot. Those
    waiting for one hold no thread, so a burst of sign-ins cannot take the thread pool from
    the requests that hold sessions; and at most that many hashes (64 MiB each) run at once
    (services.security also bounds the process's hashes, with the same setting)."""
    slots = hash_slots(request)
    await _take(request, slots)
    try:
        yield
    finally:
        slots.release()


def open_session(request: Request) -> Session:
    """The request's session, with its audit context (no I/O: it connects on first use)."""
    session: Session = request.app.state.request_session_factory()
    set_request_context(session, request)
    return session


def set_request_context(session: Session, request: Request) -> None:
    """The request's audit context (its id, the caller's address) on the session."""
    audit.set_context(
        session, request_id=request.state.request_id, client_addr=client_addr(request)
    )


def close_session(session: Session, *, failed: bool) -> None:
    """Commit (or, ``failed``, roll back) what is left of the request's work and close it."""
    if is_settled(session):
        session.close()
    elif failed:
        _fail(session)
    else:
        _finish(session)


async def _session(request: Request) -> AsyncIterator[Session]:
    """One session per request, committed before the response is sent.

    At most ``Settings.session_slots`` requests of a worker hold one at a time; the others
    wait here (:func:`admit`: at most ``Settings.db_queue_timeout_seconds``, then 503), on the
    event loop, with neither a thread nor a connection (the request body has already been
    read). So the connection pool is never exhausted and never churns under overload, and
    every request holding a session can get a thread to finish with.

    A synchronous handler commits it at its own end, in its own thread (see
    :func:`end_unit_of_work`); otherwise (a session only the dependencies used, or an error
    before the handler ran) it is committed or rolled back here, in the thread pool and
    shielded from cancellation, so a client that hangs up cannot leak a connection. On an
    error the work is rolled back, but audit entries that must survive (refused reads, login
    failures) are still committed. Opening a session does no I/O (it connects on first use),
    so it happens on the event loop. It keeps its connection from first use until it is
    closed, across commits (services.db.RequestSession).
    """
    slots = await admit(request)
    try:
        session = open_session(request)
        try:
            yield session
        except BaseException:
            if is_settled(session):
                session.close()
            else:
                with anyio.CancelScope(shield=True):
                    await run_in_threadpool(close_session, session, failed=True)
            raise
        if is_settled(session):
            session.close()
        else:
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(close_session, session, failed=False)
    finally:
        slots.release()


DbSession = Annotated[Session, Depends(_session, scope="function")]
# The same, for a coroutine handler that needs more than one unit of work, with time between
# them that holds no session (api.routes.auth: a sign-in's password hash):
# ``async with unit_of_work(request) as session:`` then the work, in the thread pool.
unit_of_work = asynccontextmanager(_session)
Now = Annotated[datetime, Depends(get_now)]
AppSettings = Annotated[Settings, Depends(get_settings)]


def get_principal(
    request: Request, session: DbSession, settings: AppSettings, now: Now
) -> Principal:
    principal = resolve_bearer(
        session, settings=settings, now=now, credential=_bearer_credential(request)
    )
    return _signed_in(request, principal)


def get_principal_claiming(
    request: Request,
    session: Session,
    settings: Settings,
    now: datetime,
    *,
    key: str,
    request_hash: str,
) -> Principal:
    """:func:`get_principal` for a request with an Idempotency-Key whose claim comes next
    in this transaction (api.direct): a partner's look at its key is made with its caller's
    look-up (services.auth.resolve_bearer_claiming) and left on ``request.state`` for
    api.idempotency."""
    principal, looked = resolve_bearer_claiming(
        session,
        settings=settings,
        now=now,
        credential=_bearer_credential(request),
        key=key,
        method=request.method,
        path=request.url.path,
        request_hash=request_hash,
    )
    principal = _signed_in(request, principal)
    request.state.idempotency_look = looked
    return principal


def _bearer_credential(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise Unauthorized(
            "sign in first: send Authorization: Bearer <token or API key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return credential.strip()


def _signed_in(request: Request, principal: Principal | None) -> Principal:
    if principal is None:
        raise Unauthorized(
            "the token or API key is not valid (expired, revoked or deactivated)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require(*roles: str) -> Callable[..., Principal]:
    """A dependency admitting only the given roles (403 for the rest, before the body is read)."""

    async def dependency(principal: CurrentPrincipal) -> Principal:
        return check_role(principal, roles)

    dependency.__name__ = f"require_{'_'.join(roles)}"
    dependency.roles = roles  # type: ignore[attr-defined] - read by api.direct
    return dependency


def check_role(principal: Principal, roles: tuple[str, ...]) -> Principal:
    if principal.role not in roles:
        raise Forbidden(f"the {principal.role} role may not use this endpoint")
    return principal


def any_user(principal: CurrentPrincipal) -> Principal:
    if principal.kind != "user":
        raise Forbidden("this endpoint is for signed-in users")
    return principal


class PageParams:
    def __init__(
        self,
        limit: Annotated[
            int, Query(ge=1, le=MAX_LIMIT, description="page size, 1 to 500")
        ] = DEFAULT_LIMIT,
        cursor: Annotated[
            str | None, Query(max_length=1000, description="next_cursor of the previous page")
        ] = None,
    ):
        self.limit = limit
        self.cursor = cursor


Paging = Annotated[PageParams, Depends()]
