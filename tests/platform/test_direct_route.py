"""api.direct.DirectRoute answers POST /v1/incidents exactly as FastAPI's own handler does.

The same requests go to two apps on the same database: the real one, and one whose
DirectRoute is built with FastAPI's ordinary handler (dependency solving, a thread-pool hop
for the caller, another for the endpoint). Every answer - status, media type, the headers a
client reads and the body with its generated ids masked - must be the same, for accepted,
repeated, replayed and refused requests alike.

The last tests are about the session a worker thread keeps from one request to the next
(api.direct.WorkerThreads): reused only after a clean request and never after a disconnect,
given back when the thread is idle or the app stops, and never carrying one request's audit
context into another.
"""

from __future__ import annotations

import contextlib
import copy
import re
import threading
import time
import uuid
from datetime import timedelta

import pytest
from fastapi.routing import request_response
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.direct import DirectRoute, workers
from models.incident import Incident
from tests.conftest import listening
from tests.intake.conftest import count, iso

# Generated, or made unique per app by the cases (source_ref, the person's family name).
GENERATED = {"id", "person_id", "created_at", "updated_at", "existing_id", "source_ref"}
GENERATED |= {"family_name"}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
READ_HEADERS = ("content-type", "www-authenticate", "idempotent-replayed")


def _masked(value):
    if isinstance(value, dict):
        return {k: "<generated>" if k in GENERATED else _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    if isinstance(value, str):
        return UUID.sub("<uuid>", value)
    return value


def _answer(response) -> dict:
    try:
        body = _masked(response.json())
    except ValueError:
        body = response.text
    return {
        "status": response.status_code,
        "headers": {h: response.headers.get(h) for h in READ_HEADERS},
        "location": _masked(response.headers.get("location")),
        "body": body,
    }


@pytest.fixture
def clients(app, settings, engine, clock):
    """(direct, ordinary): clients of the real app and of one whose POST /v1/incidents route
    answers through FastAPI's own handler instead (a copy of the same DirectRoute, its ASGI
    app built from ``DirectRoute.ordinary_handler``; api.routes.install puts the route
    objects themselves on each app, so the copy replaces it on the second app only)."""
    ordinary = create_app(settings, engine=engine, clock=clock)
    replaced = []
    for i, route in enumerate(ordinary.router.routes):
        if isinstance(route, DirectRoute):
            twin = copy.copy(route)
            twin.app = request_response(twin.ordinary_handler())
            ordinary.router.routes[i] = twin
            replaced.append((route.path, sorted(route.methods)))
    assert replaced == [("/v1/incidents", ["POST"])]
    assert not any(r is twin for r in app.router.routes)
    with contextlib.ExitStack() as stack:
        direct = stack.enter_context(TestClient(app, raise_server_exceptions=False))
        plain = stack.enter_context(TestClient(ordinary, raise_server_exceptions=False))
        yield direct, plain


def _cases(clock, partner, analyst, tag: str):
    """(name, method kwargs) pairs; source_refs and names are unique per app (``tag``)."""
    now = clock()

    def body(ref: str, **extra):
        data = {
            "source_ref": f"{tag}-{ref}",
            "occurred_at": iso(now - timedelta(hours=3)),
            "reported_at": iso(now - timedelta(hours=2)),
            "location": {"description": "stairwell", "postcode": "DD3 7AA"},
            "substances": ["heroin", "street benzodiazepine"],
            "naloxone_administered": True,
            "person": {"given_name": "Sam", "family_name": f"Reid{tag}", "sex": "male"},
        }
        data.update(extra)
        return data

    auth = partner.headers
    key = f"{tag}-{uuid.uuid4()}"
    key2 = f"{tag}-{uuid.uuid4()}"
    json_headers = auth | {"Content-Type": "application/json"}
    return [
        ("no credentials", {"json": body("a")}),
        ("unknown API key", {"json": body("a"), "headers": {"Authorization": "Bearer nfod_x"}}),
        ("not a bearer", {"json": body("a"), "headers": {"Authorization": "Basic abc"}}),
        ("role refused", {"json": body("a"), "headers": analyst.headers}),
        ("refused before validation", {"json": {"colour": "red"}, "headers": analyst.headers}),
        ("created", {"json": body("a"), "headers": auth}),
        ("identical repeat", {"json": body("a"), "headers": auth}),
        ("source_ref conflict", {"json": body("a", notes="other"), "headers": auth}),
        ("unknown field", {"json": body("b", colour="red"), "headers": auth}),
        ("several errors", {"json": {"occurred_at": "yesterday", "x": 1}, "headers": auth}),
        ("not an object", {"json": [1, 2], "headers": auth}),
        ("null body", {"content": b"null", "headers": json_headers}),
        ("invalid JSON", {"content": b'{"source_ref": ', "headers": json_headers}),
        ("not UTF-8", {"content": b"\xe9M", "headers": json_headers}),
        ("empty body", {"content": b"", "headers": json_headers}),
        ("no content type", {"content": b'{"a": 1}', "headers": auth}),
        (
            "form body",
            {
                "content": b"a=1",
                "headers": auth | {"Content-Type": "application/x-www-form-urlencoded"},
            },
        ),
        (
            "problem+json body",
            {
                "content": b'{"source_ref": 1}',
                "headers": auth | {"Content-Type": "application/merge-patch+json"},
            },
        ),
        (
            "key too long, body invalid",
            {"json": {"x": 1}, "headers": auth | {"Idempotency-Key": "k" * 256}},
        ),
        ("keyed", {"json": body("c"), "headers": auth | {"Idempotency-Key": key}}),
        ("keyed replay", {"json": body("c"), "headers": auth | {"Idempotency-Key": key}}),
        (
            "keyed, other body",
            {"json": body("d"), "headers": auth | {"Idempotency-Key": key}},
        ),
        ("outreach worker", {"json": body("e"), "headers": "outreach"}),
        # With a key, the body is validated before the caller is looked up (api.direct),
        # and still answered after it.
        ("keyed, no credentials", {"json": {"x": 1}, "headers": {"Idempotency-Key": key2}}),
        (
            "keyed, role refused, body invalid",
            {"json": {"x": 1}, "headers": analyst.headers | {"Idempotency-Key": key2}},
        ),
        (
            "keyed, body invalid",
            {"json": body("f", colour="red"), "headers": auth | {"Idempotency-Key": key2}},
        ),
        (
            "keyed, invalid JSON",
            {"content": b'{"a', "headers": json_headers | {"Idempotency-Key": key2}},
        ),
        (
            "keyed, not UTF-8",
            {"content": b"\xe9M", "headers": json_headers | {"Idempotency-Key": key2}},
        ),
        (
            "keyed, key not printable",
            {"json": body("f"), "headers": auth | {"Idempotency-Key": "a\x7fb"}},
        ),
        ("keyed, outreach worker", {"json": body("g"), "headers": ("outreach", key2)}),
        ("keyed, outreach replay", {"json": body("g"), "headers": ("outreach", key2)}),
    ]


def test_answers_equal_fastapis_own_handler(clients, factory, clock, session):
    agency = factory.agency()
    partner = factory.partner(agency)
    analyst = factory.user("analyst")
    outreach = factory.user("outreach", agency)
    answers = {}
    for tag, client in zip(("D", "O"), clients, strict=True):
        got = []
        for name, kwargs in _cases(clock, partner, analyst, tag):
            if kwargs.get("headers") == "outreach":
                kwargs = kwargs | {"headers": outreach.headers}
            elif isinstance(kwargs.get("headers"), tuple):
                key = {"Idempotency-Key": kwargs["headers"][1]}
                kwargs = kwargs | {"headers": outreach.headers | key}
            got.append((name, _answer(client.post("/v1/incidents", **kwargs))))
        answers[tag] = got
    for (name, direct), (_, fastapi_own) in zip(answers["D"], answers["O"], strict=True):
        assert direct == fastapi_own, name
    statuses = [a["status"] for _, a in answers["D"]]
    assert statuses[:14] == [401, 401, 401, 403, 403, 201, 200, 409, 422, 422, 422, 422, 400, 400]
    assert statuses[14:23] == [422, 422, 422, 422, 422, 201, 201, 422, 201]
    assert statuses[23:] == [401, 403, 422, 400, 400, 422, 201, 201]
    # Each app stored its four new incidents (created, keyed, outreach and keyed outreach).
    for tag in ("D", "O"):
        assert count(session, Incident, Incident.source_ref.like(f"{tag}-%")) == 4


def test_the_caller_and_the_work_share_one_thread(app, factory, clock, monkeypatch):
    """The point of the route: the caller's look-up, validation and the work run in one
    worker thread (FastAPI's handler uses one for the caller and another for the work)."""
    import api.deps
    import services.intake

    threads = {}
    real_principal = api.deps.get_principal
    real_create = services.intake.create_incident_with_substances

    def principal(*args, **kwargs):
        threads["principal"] = threading.get_ident()
        return real_principal(*args, **kwargs)

    def create(*args, **kwargs):
        threads["work"] = threading.get_ident()
        return real_create(*args, **kwargs)

    monkeypatch.setattr(api.deps, "get_principal", principal)
    monkeypatch.setattr(services.intake, "create_incident_with_substances", create)
    partner = factory.partner()
    now = clock()
    with TestClient(app) as client:
        r = client.post(
            "/v1/incidents",
            json={"occurred_at": iso(now - timedelta(hours=1)), "source_ref": "T-1"},
            headers=partner.headers,
        )
    assert r.status_code == 201, r.text
    assert threads["principal"] == threads["work"]
    assert threads["principal"] != threading.get_ident()  # not the event loop's


def test_routes_it_cannot_serve_are_refused_at_start_up():
    from fastapi import APIRouter, Query

    from api.deps import DbSession

    router = APIRouter(route_class=DirectRoute)

    def with_query(session: DbSession, q: str = Query("x")):
        return None

    with pytest.raises(TypeError, match="header and body"):
        router.add_api_route("/x", with_query, methods=["POST"])

    async def not_sync():
        return None

    with pytest.raises(TypeError, match="synchronous"):
        router.add_api_route("/y", not_sync, methods=["POST"])


def _run(coroutine_function):
    """asyncio.run in a thread of its own: a test before this one (the browser tests'
    sync Playwright) may have left an event loop running in this one."""
    import asyncio

    outcome = {}

    def target():
        try:
            outcome["result"] = asyncio.run(coroutine_function())
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the test
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the scenario did not finish"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")


def _bare_app(slots: int):
    """Just what api.direct's thread hop reads: the settings' slot count, the app state."""
    from types import SimpleNamespace

    from starlette.datastructures import State

    state = State()
    state.settings = SimpleNamespace(session_slots=slots)
    return SimpleNamespace(state=state)


def test_a_cancelled_request_keeps_its_slot_until_its_work_has_ended():
    """The unit of work is never cut short by the client going away, and its session slot
    is given back only when the work has ended - never two sessions for one slot."""
    import asyncio
    from types import SimpleNamespace

    from api import deps, direct

    app = _bare_app(1)
    request = SimpleNamespace(app=app)
    started, release, ended = threading.Event(), threading.Event(), threading.Event()

    def work(_request, raw):
        started.set()
        release.wait(10)
        ended.set()
        return raw

    async def scenario():
        task = asyncio.create_task(direct.in_worker_thread(request, work, b"answer"))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        slots = deps.session_slots(request)
        assert slots.locked() and not ended.is_set()  # the work goes on, holding the slot
        release.set()
        await asyncio.wait_for(slots.acquire(), 10)  # given back once the work ended
        assert ended.is_set()
        slots.release()
        # and the next request runs as usual
        assert await direct.in_worker_thread(request, lambda r, raw: raw * 2, b"ab") == b"abab"

    try:
        _run(scenario)
    finally:
        release.set()
        direct.shutdown(app)


def test_the_worker_thread_sees_the_requests_context_and_is_stopped_with_the_app():
    from types import SimpleNamespace

    from api import direct
    from api.logging_setup import request_id_var

    app = _bare_app(2)
    request = SimpleNamespace(app=app)

    def work(_request, _raw):
        return request_id_var.get(), threading.current_thread()

    async def scenario():
        request_id_var.set("req-42")  # what RequestContextMiddleware sets for the logs
        return await direct.in_worker_thread(request, work, b"")

    seen, thread = _run(scenario)
    assert seen == "req-42"
    assert thread is not threading.main_thread() and thread.is_alive()
    direct.shutdown(app)
    thread.join(10)
    assert not thread.is_alive()
    assert app.state.direct_workers is None
    direct.shutdown(app)  # twice is harmless


def test_worker_threads_are_started_only_when_every_started_one_is_busy():
    import asyncio

    from api.direct import WorkerThreads

    pool = WorkerThreads(3)
    gate = threading.Event()
    released = []

    async def scenario():
        for _ in range(5):  # one after another: one thread does it all
            assert await pool.submit(lambda x: x + 1, (1,), then=lambda: released.append(1)) == 2
        assert pool.threads == 1
        blocked = [pool.submit(gate.wait, (10,), then=lambda: None) for _ in range(5)]
        assert pool.threads == 3  # three at once at most, the other jobs wait their turn
        gate.set()
        assert await asyncio.gather(*blocked) == [True] * 5
        assert pool.threads == 3

    try:
        _run(scenario)
    finally:
        gate.set()
        pool.shutdown()
    assert released == [1] * 5 and pool.threads == 0


def _checkouts():
    found: list[object] = []
    return found, lambda dbapi_conn, record, proxy: found.append(record)


def _post(client, partner, clock, ref: str, **headers):
    now = clock()
    data = {"occurred_at": iso(now - timedelta(hours=1)), "source_ref": ref}
    return client.post("/v1/incidents", json=data, headers=partner.headers | headers)


def test_a_worker_thread_keeps_the_session_of_a_clean_request(app, factory, clock, session):
    """The next request on the thread reuses it: no checkout, no new session, and its own
    audit context (each request's entries carry its own request id)."""
    from models.audit import AuditEntry

    partner = factory.partner()
    checkouts, listener = _checkouts()
    with TestClient(app) as client, listening(app.state.engine, "checkout", listener):
        first = _post(client, partner, clock, "K-1", **{"X-Request-ID": "req-first"})
        second = _post(client, partner, clock, "K-2", **{"X-Request-ID": "req-second"})
        assert (first.status_code, second.status_code) == (201, 201), second.text
        assert len(checkouts) == 1
        assert workers(app).threads == 1
    by_incident = dict(
        session.execute(
            select(AuditEntry.subject_id, AuditEntry.request_id).where(
                AuditEntry.subject_id.in_([first.json()["id"], second.json()["id"]])
            )
        ).all()
    )
    assert by_incident == {first.json()["id"]: "req-first", second.json()["id"]: "req-second"}


def test_a_failed_request_does_not_keep_its_session(app, factory, clock):
    partner = factory.partner()
    checkouts, listener = _checkouts()
    with TestClient(app) as client, listening(app.state.engine, "checkout", listener):
        assert _post(client, partner, clock, "F-1").status_code == 201
        refused = client.post("/v1/incidents", json={"colour": "red"}, headers=partner.headers)
        assert refused.status_code == 422
        assert _post(client, partner, clock, "F-2").status_code == 201
    # The refused request checked out no connection of its own: it reused the kept session,
    # and closed it; the request after it needed a new one.
    assert len(checkouts) == 2


def test_a_disconnect_anywhere_drops_the_kept_sessions(app, factory, clock, monkeypatch):
    """A restarted server breaks every connection kept by a thread: after any disconnect
    the process has seen, none of them is reused (each thread takes a fresh one, which the
    pool pings or replaces)."""
    from services import db

    partner = factory.partner()
    checkouts, listener = _checkouts()
    with TestClient(app) as client, listening(app.state.engine, "checkout", listener):
        assert _post(client, partner, clock, "D-1").status_code == 201
        monkeypatch.setattr(db, "_disconnects", [db.disconnects_seen() + 1])
        assert _post(client, partner, clock, "D-2").status_code == 201
    assert len(checkouts) == 2


def test_an_idle_thread_and_a_stopped_app_give_the_connection_back(
    app, factory, engine, settings, clock
):
    from api.direct import WorkerThreads

    app.state.direct_workers = WorkerThreads(settings.session_slots, idle=0.1)
    partner = factory.partner()
    with TestClient(app) as client:
        assert _post(client, partner, clock, "I-1").status_code == 201
        assert engine.pool.checkedout() == 1  # kept by the thread
        deadline = time.monotonic() + 10
        while engine.pool.checkedout() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.pool.checkedout() == 0
        assert _post(client, partner, clock, "I-2").status_code == 201
        assert engine.pool.checkedout() == 1
    assert engine.pool.checkedout() == 0  # the app stopped: its threads gave theirs back
