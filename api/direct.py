"""DirectRoute: a route whose whole request is handled in one thread-pool hop.

For the hottest write path (``POST /v1/incidents``: every partner notification) FastAPI's
per-request dependency solving cost more CPU than the route's own work on the event loop -
a quarter of the request's CPU, including a thread-pool hop of its own for the caller's
look-up (BENCHMARKS.md, seventh round). A DirectRoute keeps the endpoint exactly as it is
declared (its signature still makes the OpenAPI document, and FastAPI still builds its
dependant), but answers a request itself, in this order, all in one worker thread:

1. the caller (``api.deps.get_principal``) and the role check of its ``require(...)``
   dependency - 401 and 403 before anything in the request is validated, as API.md asks;
2. the header parameters and the JSON body, validated by the same FastAPI fields and
   helpers an ordinary route uses (the same 400/422 answers, errors and locations);
3. the endpoint, with the request's session, clock and settings (``api.deps``), then the
   end of the unit of work: commit, or roll back keeping the entries that must survive.

A request with an Idempotency-Key is validated before its caller is looked up, so that a
partner's key can be looked at in the caller's own statement (``api.deps.
get_principal_claiming``; one round trip fewer on a keyed notification, BENCHMARKS.md
thirteenth round), but the answers keep the order above: 401 and 403 before any 400/422.
That look hashes the body model (``api.idempotency.request_hash``), as
``api.idempotency.idempotent`` does when the endpoint hands it the model; an endpoint that
hands it another form is still right: its claim simply looks again.

The session admission limit is taken on the event loop before the hop, as for any route.
What it supports is checked when the route is built: a ``Request`` parameter, header
parameters, one body model, and the dependencies ``require(...)``, ``DbSession``, ``Now``
and ``AppSettings`` (any other dependency is a TypeError at start-up, never a silent
difference). Dependencies added where the router is included are not supported (none are).
``tests/platform/test_direct_route.py`` checks that its answers equal the ordinary
handler's for good and bad requests alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import json
import queue
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request
from fastapi.dependencies.utils import request_params_to_args
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response

from api import deps, idempotency
from api.problems import log_failure
from services import db
from services import idempotency as services_idempotency
from services.errors import Invalid

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def _sane_key(key: str) -> bool:
    try:
        services_idempotency.validate_key(key)
    except Invalid:
        return False
    return True


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    main, _, sub = media.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


class DirectRoute(deps.UnitOfWorkRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if inspect.iscoroutinefunction(endpoint):
            raise TypeError("a DirectRoute endpoint is a plain (synchronous) function")
        super().__init__(path, endpoint, **kwargs)

    def ordinary_handler(self) -> Handler:
        """FastAPI's own request handler for this route (what the tests compare with)."""
        return super().get_route_handler()

    def get_route_handler(self) -> Handler:
        dependant = self.dependant
        if dependant.query_params or dependant.path_params or dependant.cookie_params:
            raise TypeError("a DirectRoute takes header and body parameters only")
        if len(dependant.body_params) > 1 or self.body_field is None:
            raise TypeError("a DirectRoute takes exactly one body model")
        roles: tuple[str, ...] | None = None
        provided: dict[str, str] = {}  # parameter name -> what it receives
        for sub in dependant.dependencies:
            if getattr(sub.call, "roles", None) is not None and roles is None:
                roles = sub.call.roles
                provided[sub.name] = "principal"
            elif sub.call is deps._session:
                provided[sub.name] = "session"
            elif sub.call is deps.get_now:
                provided[sub.name] = "now"
            elif sub.call is deps.get_settings:
                provided[sub.name] = "settings"
            else:
                raise TypeError(f"a DirectRoute cannot provide the dependency {sub.call!r}")
        if roles is None:
            raise TypeError("a DirectRoute needs a require(...) dependency")
        header_fields = dependant.header_params
        body_field = self.body_field
        body_name = dependant.body_params[0].name
        request_name = dependant.request_param_name
        endpoint = self.endpoint  # already wrapped by UnitOfWorkRoute: it commits itself

        def validated(request: Request, raw: bytes) -> dict[str, Any]:
            """The endpoint's header and body arguments, or RequestValidationError."""
            values, errors = request_params_to_args(header_fields, request.headers)
            if not raw:
                body: Any = None
                errors.append(
                    {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
                )
            else:
                document: Any = raw
                if _is_json(request.headers.get("content-type")):
                    try:
                        document = json.loads(raw)
                    except json.JSONDecodeError as exc:
                        raise RequestValidationError(
                            [
                                {
                                    "type": "json_invalid",
                                    "loc": ("body", exc.pos),
                                    "msg": "JSON decode error",
                                    "input": {},
                                    "ctx": {"error": exc.msg},
                                }
                            ],
                            body=exc.doc,
                        ) from exc
                    except ValueError as exc:  # not UTF-8: FastAPI's answer to it, a 400
                        raise HTTPException(400, "There was an error parsing the body") from exc
                body, body_errors = body_field.validate(document, values, loc=("body",))
                errors.extend(body_errors)
            if errors:
                raise RequestValidationError(errors, body=raw)
            values[body_name] = body
            return values

        def keyed(
            request: Request, raw: bytes, session: Any, settings: Any, now: Any, key: str
        ) -> tuple[Any, dict[str, Any]]:
            """The caller and the arguments of a request with an Idempotency-Key. The body
            is validated first, so that the key's claim can be looked at with the caller's
            look-up (its request hash is the body's), but its errors are answered after the
            caller's: 401 and 403 still come first."""
            try:
                kwargs: dict[str, Any] | None = validated(request, raw)
                invalid: Exception | None = None
            except (RequestValidationError, HTTPException) as exc:
                kwargs, invalid = None, exc
            if kwargs is None or not _sane_key(key):
                principal = deps.get_principal(request, session, settings, now)
            else:
                hashed = idempotency.request_hash(request, kwargs[body_name])
                principal = deps.get_principal_claiming(
                    request, session, settings, now, key=key, request_hash=hashed
                )
            deps.check_role(principal, roles)
            if invalid is not None:
                raise invalid
            assert kwargs is not None
            return principal, kwargs

        def run(request: Request, raw: bytes) -> Response:
            session = _session_for(request)
            failed = True
            try:
                settings = request.app.state.settings
                now = request.app.state.clock()
                key = request.headers.get(idempotency.HEADER)
                if key is None:
                    principal = deps.get_principal(request, session, settings, now)
                    deps.check_role(principal, roles)
                    kwargs = validated(request, raw)
                else:
                    principal, kwargs = keyed(request, raw, session, settings, now, key)
                given = {"principal": principal, "session": session, "now": now}
                given["settings"] = settings
                for name, what in provided.items():
                    kwargs[name] = given[what]
                if request_name:
                    kwargs[request_name] = request
                response = endpoint(**kwargs)
                failed = False
            finally:
                _keep_or_close(session, failed=failed)
            if not isinstance(response, Response):
                raise TypeError("a DirectRoute endpoint returns a Response")
            return response

        async def handler(request: Request) -> Response:
            try:
                raw = await request.body()
            except Exception as exc:  # noqa: BLE001 - as FastAPI answers it (the middleware's 413)
                raise HTTPException(400, "There was an error parsing the body") from exc
            return await in_worker_thread(request, run, raw)

        return handler


# The session a worker thread kept from its last request, with the disconnect count of
# services.db when it was kept (see WorkerThreads).
_kept = threading.local()


def _session_for(request: Request) -> Any:
    """The request's session: the one this worker thread kept, if it may be reused, else a
    new one (api.deps.open_session). Either way it has this request's audit context."""
    kept = getattr(_kept, "session", None)
    _kept.session = None
    if kept is not None:
        session, disconnects = kept
        if disconnects == db.disconnects_seen() and session.is_reusable():
            deps.set_request_context(session, request)
            return session
        session.close()
    return deps.open_session(request)


def _keep_or_close(session: Any, *, failed: bool) -> None:
    """End the request's unit of work. A session whose request ended cleanly - committed,
    nothing pending, its connection valid - is kept by this thread for its next request
    (its identity map emptied); any other is closed as api.deps.close_session closes it."""
    if not failed and deps.is_settled(session) and session.is_reusable():
        session.expunge_all()
        _kept.session = (session, db.disconnects_seen())
        return
    deps.close_session(session, failed=failed)


def _release_kept_session() -> None:
    """Close the session this thread kept (its connection goes back to the pool)."""
    kept = getattr(_kept, "session", None)
    _kept.session = None
    if kept is not None:
        kept[0].close()


async def in_worker_thread(
    request: Request, run: Callable[[Request, bytes], Response], raw: bytes
) -> Response:
    """Run ``run(request, raw)`` in one of the app's worker threads (:class:`WorkerThreads`)
    while holding one of the worker's session slots (``api.deps.admit``), and
    answer with its result.

    A cancelled request does not stop its work: the unit of work always ends in its thread,
    and the slot is given back only then, so no more sessions are ever at work than there
    are slots (and threads for them). A thread may also keep one idle session for its next
    request (:class:`WorkerThreads`), so connections in use stay under twice the slots, which
    the pool's overflow (services.db.make_engine) covers.
    """
    slots = await deps.admit(request)
    try:
        future = workers(request.app).submit(run, (request, raw), then=slots.release)
    except BaseException:
        slots.release()
        raise
    return await future


class WorkerThreads:
    """Up to ``size`` threads that run calls for the event loop: the thread-pool hop of a
    DirectRoute.

    anyio's ``to_thread.run_sync`` (what Starlette uses for every other synchronous route)
    and asyncio's ``run_in_executor`` each spent 6-9 % of an intake's CPU on the hop - a
    capacity limiter, cancel scopes and timing in one, a thread-safe ``concurrent.futures``
    Future copied into an asyncio one in the other (BENCHMARKS.md, eighth round). Here a job
    is one ``SimpleQueue.put``; its thread runs it in the caller's context (the request id
    the logs carry) and hands the outcome back with one ``call_soon_threadsafe``, which then
    calls ``then`` (even when nobody awaits the answer any more) and settles the future.
    A thread is started when a job finds every started one busy, so an app that never sees
    more than a few requests at once never has more threads than that.

    A thread keeps the session of a request that ended cleanly (committed, nothing pending,
    its connection valid) for its next request: no new session, no pool checkout and
    checkin, about 5 % of a notification's CPU (BENCHMARKS.md, thirteenth round). It gives it
    back after ``idle`` seconds without work (services.db.PING_AFTER_IDLE, the idleness
    after which the pool pings a connection before handing it out again), when it stops, and
    instead of reusing it once the process has seen a disconnect (a restarted server: every
    kept connection is suspect, as every pooled one is). A failed request's session is
    always closed, as api.deps closes it.
    """

    def __init__(
        self, size: int, name: str = "nfod-direct", idle: float = db.PING_AFTER_IDLE
    ) -> None:
        self._size = size
        self._name = name
        self._idle = idle  # seconds without work before a thread gives its session back
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._unfinished = 0  # jobs submitted and not yet run to their end

    def submit(
        self, call: Callable[..., Any], args: tuple, *, then: Callable[[], Any]
    ) -> asyncio.Future:
        """``call(*args)`` in a thread; the future (of the running loop) gets its outcome."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            self._unfinished += 1
            if self._unfinished > len(self._threads) and len(self._threads) < self._size:
                thread = threading.Thread(
                    target=self._serve, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
        self._jobs.put((loop, future, then, contextvars.copy_context(), call, args))
        return future

    @property
    def threads(self) -> int:
        return len(self._threads)

    def _serve(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self._idle)
            except queue.Empty:
                # Idle: give the kept session's connection back, as the pool would have had
                # it back; from now on its next checkout pings it (services.db).
                _release_kept_session()
                job = self._jobs.get()
            if job is None:
                _release_kept_session()
                return
            loop, future, then, context, call, args = job
            del job
            result = error = None
            try:
                result = context.run(call, *args)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting request
                error = exc
            with self._lock:
                self._unfinished -= 1
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(_settle, future, then, result, error)
            del loop, future, then, context, call, args, result, error

    def shutdown(self) -> None:
        """Let every thread finish its job, then stop them."""
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._jobs.put(None)
        for thread in threads:
            thread.join()


def _settle(future: asyncio.Future, then: Callable[[], Any], result: Any, error: Any) -> None:
    then()
    if future.cancelled():  # the request went away; its work has still ended
        if error is not None:
            log_failure(error)
        return
    if error is None:
        future.set_result(result)
    elif isinstance(error, StopIteration):  # a Future cannot hold one
        future.set_exception(RuntimeError("StopIteration in a worker thread"))
    else:
        future.set_exception(error)


_WORKERS_LOCK = threading.Lock()


def workers(app: Any) -> WorkerThreads:
    """The app's threads for DirectRoutes: up to one per session slot (each job holds a
    slot while it runs), made on first use and stopped with the app (:func:`shutdown`)."""
    found = getattr(app.state, "direct_workers", None)
    if found is None:
        with _WORKERS_LOCK:
            found = getattr(app.state, "direct_workers", None)
            if found is None:
                found = WorkerThreads(app.state.settings.session_slots)
                app.state.direct_workers = found
    return found


def shutdown(app: Any) -> None:
    """Stop the DirectRoute threads (at the end of the app's lifespan), after their work."""
    with _WORKERS_LOCK:
        found = getattr(app.state, "direct_workers", None)
        app.state.direct_workers = None
    if found is not None:
        found.shutdown()
