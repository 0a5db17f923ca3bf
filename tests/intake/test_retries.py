"""Retries never duplicate: Idempotency-Key, source_ref dedupe, parallel duplicates, batch."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select

from api.app import create_app
from models.contact import ContactAttempt
from models.idempotency import IdempotencyRecord
from models.incident import Incident
from models.person import Person
from services import idempotency
from services.db import make_engine
from tests.conftest import assert_problem, listening, make_settings, postgres_only
from tests.intake.conftest import count, iso


def test_same_key_same_body_replays_the_original_answer(client, cast, body, session):
    data = body()
    h = cast.partner_a.headers | {"Idempotency-Key": "abc-1"}
    first = client.post("/v1/incidents", json=data, headers=h)
    assert first.status_code == 201
    again = client.post("/v1/incidents", json=data, headers=h)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.headers["location"] == first.headers["location"]
    assert count(session, Incident) == 1


def test_same_key_other_body_is_422(client, cast, body, session):
    h = cast.partner_a.headers | {"Idempotency-Key": "abc-2"}
    assert client.post("/v1/incidents", json=body(), headers=h).status_code == 201
    r = client.post("/v1/incidents", json=body(notes="different"), headers=h)
    assert_problem(r, 422)
    assert count(session, Incident) == 1


def test_keys_are_per_caller(client, cast, body, session):
    data = body(source_ref="SAME-REF")
    a = client.post(
        "/v1/incidents", json=data, headers=cast.partner_a.headers | {"Idempotency-Key": "k"}
    )
    b = client.post(
        "/v1/incidents", json=data, headers=cast.partner_b.headers | {"Idempotency-Key": "k"}
    )
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]
    assert count(session, Incident) == 2


def _marker(session, principal_key, key, *, now, lease_s, body_hash="x", path="/v1/incidents"):
    session.add(
        IdempotencyRecord(
            principal_key=principal_key,
            key=key,
            method="POST",
            path=path,
            request_hash=body_hash,
            status_code=None,
            lease_expires_at=now + timedelta(seconds=lease_s),
            created_at=now,
            expires_at=now + timedelta(hours=48),
        )
    )
    session.commit()


def _hash(data):
    from fastapi.encoders import jsonable_encoder

    from api.schemas.incidents import IncidentCreate
    from services.canonical import canonical_hash

    model = IncidentCreate.model_validate(data)
    return canonical_hash(
        {"body": jsonable_encoder(model.model_dump(mode="json", exclude_unset=True))}
    )


def test_in_flight_duplicate_is_409_and_expired_lease_is_taken_over(
    client, cast, body, session, clock
):
    data = body()
    key = f"client:{cast.partner_a.id}"
    _marker(session, key, "busy", now=clock(), lease_s=30, body_hash=_hash(data))
    h = cast.partner_a.headers | {"Idempotency-Key": "busy"}
    r = client.post("/v1/incidents", json=data, headers=h)
    assert_problem(r, 409)
    assert int(r.headers["retry-after"]) >= 1
    assert count(session, Incident) == 0
    clock.advance(seconds=31)  # the first attempt died holding the lease
    r = client.post("/v1/incidents", json=data, headers=h)
    assert r.status_code == 201, r.text
    rec = session.execute(select(IdempotencyRecord)).scalar_one()
    assert rec.status_code == 201 and rec.response_body["id"] == r.json()["id"]
    session.rollback()
    assert client.post("/v1/incidents", json=data, headers=h).json()["id"] == r.json()["id"]
    assert count(session, Incident) == 1


def test_failed_work_releases_the_key(client, cast, body, session, clock):
    h = cast.partner_a.headers | {"Idempotency-Key": "retry-me"}
    bad = body(occurred_at=iso(clock() + timedelta(hours=1)), reported_at=...)
    assert_problem(client.post("/v1/incidents", json=bad, headers=h), 422)
    assert count(session, IdempotencyRecord) == 0
    # the same key can be used again (a corrected body is a new request)
    assert client.post("/v1/incidents", json=body(), headers=h).status_code == 201


def test_a_commit_that_fails_releases_the_key(client, cast, body, session, monkeypatch):
    """The work and its stored answer are committed inside the key's phase 2: a commit that
    fails (here: an audit entry without its content hash, refused by the chain) rolls both
    back and frees the key at once, so the retry is not refused as in flight."""
    from services import audit

    h = cast.partner_a.headers | {"Idempotency-Key": "commit-fails"}
    data = body()
    with monkeypatch.context() as patched:
        patched.setattr(audit, "content_hash", lambda values: None)
        failed = client.post("/v1/incidents", json=data, headers=h)
    assert failed.status_code >= 500
    assert count(session, Incident) == 0 and count(session, IdempotencyRecord) == 0
    assert client.post("/v1/incidents", json=data, headers=h).status_code == 201
    assert count(session, Incident) == 1


def test_a_key_past_retention_is_free_again_before_the_purge(client, cast, body, session, clock):
    h = cast.partner_a.headers | {"Idempotency-Key": "reused-later"}
    first = client.post("/v1/incidents", json=body(), headers=h)
    assert first.status_code == 201
    clock.advance(hours=47)  # still kept: another body under the key is refused
    assert_problem(client.post("/v1/incidents", json=body(notes="other"), headers=h), 422)
    clock.advance(hours=2)  # past 48 hours, not purged yet: the key starts afresh
    other = body(notes="other")
    second = client.post("/v1/incidents", json=other, headers=h)
    assert second.status_code == 201, second.text
    assert second.json()["id"] != first.json()["id"]
    rec = session.execute(select(IdempotencyRecord)).scalar_one()
    assert rec.response_body["id"] == second.json()["id"]
    assert rec.expires_at - rec.created_at == timedelta(hours=48)
    session.rollback()
    # ... and replays the new answer from now on
    again = client.post("/v1/incidents", json=other, headers=h)
    assert again.json()["id"] == second.json()["id"]
    assert again.headers.get("idempotent-replayed") == "true"
    assert count(session, Incident) == 2


def test_keys_are_kept_48_hours_then_purged(client, cast, body, session, clock):
    h = cast.partner_a.headers | {"Idempotency-Key": "old"}
    first = client.post("/v1/incidents", json=body(), headers=h).json()
    rec = session.execute(select(IdempotencyRecord)).scalar_one()
    assert rec.expires_at - rec.created_at == timedelta(hours=48)
    assert idempotency.purge_expired(session, clock() + timedelta(hours=47)) == 0
    assert idempotency.purge_expired(session, clock() + timedelta(hours=48)) == 1
    session.commit()
    clock.advance(hours=49)
    # after retention the key is forgotten: the source_ref still deduplicates (200, same incident)
    r = client.post(
        "/v1/incidents",
        json=body(
            source_ref=first["source_ref"],
            occurred_at=first["occurred_at"],
            reported_at=first["reported_at"],
        ),
        headers=h,
    )
    assert r.status_code in (200, 409)


def test_idempotency_key_must_be_sane(client, cast, body):
    r = client.post(
        "/v1/incidents",
        json=body(),
        headers=cast.partner_a.headers | {"Idempotency-Key": "x" * 300},
    )
    assert_problem(r, 422)


def test_contacts_are_idempotent(client, cast, body, session, clock):
    inc = client.post(
        "/v1/incidents", json=body(), headers=cast.coordinator.headers | {}, params={}
    )
    inc = client.post("/v1/incidents", json=body(), headers=cast.partner_a.headers).json()
    payload = {"attempted_at": iso(clock()), "method": "street", "outcome": "contacted"}
    h = cast.coordinator.headers | {"Idempotency-Key": "walk-1"}
    a = client.post(f"/v1/incidents/{inc['id']}/contacts", json=payload, headers=h)
    b = client.post(f"/v1/incidents/{inc['id']}/contacts", json=payload, headers=h)
    assert a.status_code == b.status_code == 201 and a.json() == b.json()
    assert count(session, ContactAttempt) == 1


# --- source_ref ------------------------------------------------------------------------


def test_source_ref_identical_repeat_is_200_and_different_body_409(client, cast, body, session):
    data = body(source_ref="SAS-1")
    first = client.post("/v1/incidents", json=data, headers=cast.partner_a.headers)
    assert first.status_code == 201
    again = client.post("/v1/incidents", json=data, headers=cast.partner_a.headers)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = client.post(
        "/v1/incidents", json={**data, "notes": "changed"}, headers=cast.partner_a.headers
    )
    problem = assert_problem(other, 409)
    assert problem["existing_id"] == first.json()["id"] and first.json()["id"] in str(problem)
    # another agency's same source_ref is its own incident
    b = client.post("/v1/incidents", json=data, headers=cast.partner_b.headers)
    assert b.status_code == 201
    assert count(session, Incident) == 2


def test_equivalent_bodies_are_identical(client, cast, body):
    data = body(
        source_ref="SAS-EQ", occurred_at="2026-11-01T10:00:00Z", reported_at="2026-11-01T11:00:00Z"
    )
    first = client.post("/v1/incidents", json=data, headers=cast.partner_a.headers)
    same = {
        **data,
        "occurred_at": "2026-11-01T11:00:00+01:00",
        "reported_at": "2026-11-01T12:00:00+01:00",
    }
    again = client.post("/v1/incidents", json=same, headers=cast.partner_a.headers)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]


def test_twelve_parallel_identical_requests_create_one_incident(client, cast, body, session):
    data = body(source_ref="SAS-PAR")
    results: list[int] = []
    ids: set[str] = set()
    barrier = threading.Barrier(12)

    def go():
        barrier.wait()
        r = client.post("/v1/incidents", json=data, headers=cast.partner_a.headers)
        results.append(r.status_code)
        if r.status_code in (200, 201):
            ids.add(r.json()["id"])

    threads = [threading.Thread(target=go) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200] * 11 + [201], results
    assert len(ids) == 1
    assert count(session, Incident) == 1
    assert count(session, Person) == 1


def test_twelve_parallel_requests_with_one_idempotency_key(client, cast, body, session):
    data = body(source_ref="SAS-PAR-K")
    results: list[int] = []
    barrier = threading.Barrier(12)

    def go():
        barrier.wait()
        h = cast.partner_a.headers | {"Idempotency-Key": "same"}
        results.append(client.post("/v1/incidents", json=data, headers=h).status_code)

    threads = [threading.Thread(target=go) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(201) >= 1 and set(results) <= {201, 409}, results
    assert count(session, Incident) == 1


# --- batch -----------------------------------------------------------------------------


def test_batch_items_succeed_or_fail_independently(client, cast, body, session, clock):
    good = body(source_ref="B-1")
    dup_same = dict(good)
    dup_other = {**good, "notes": "other"}
    bad = body(source_ref="B-2", hospital="maybe")
    future = body(source_ref="B-3", occurred_at=iso(clock() + timedelta(days=1)), reported_at=...)
    second = body(source_ref="B-4")
    r = client.post(
        "/v1/incidents/batch",
        json={"incidents": [good, dup_same, dup_other, bad, future, second, "nonsense"]},
        headers=cast.partner_a.headers,
    )
    assert r.status_code == 207, r.text
    results = r.json()["results"]
    assert [x["index"] for x in results] == list(range(7))
    assert [x["status"] for x in results] == [201, 200, 409, 422, 422, 201, 422]
    assert results[1]["id"] == results[0]["id"]
    assert results[2]["error"]["existing_id"] == results[0]["id"]
    assert results[3]["error"]["errors"][0]["loc"] == ["body", "hospital"]
    assert results[4]["error"]["errors"][0]["loc"] == ["body", "occurred_at"]
    assert count(session, Incident) == 2
    # the whole batch again: nothing new
    r = client.post(
        "/v1/incidents/batch", json={"incidents": [good, second]}, headers=cast.partner_a.headers
    )
    assert [x["status"] for x in r.json()["results"]] == [200, 200]
    assert count(session, Incident) == 2


def test_batch_limits(client, cast, body):
    assert_problem(
        client.post("/v1/incidents/batch", json={"incidents": []}, headers=cast.partner_a.headers),
        422,
    )
    many = {"incidents": [body() for _ in range(501)]}
    assert_problem(
        client.post("/v1/incidents/batch", json=many, headers=cast.partner_a.headers), 422
    )
    assert_problem(
        client.post("/v1/incidents/batch", json={"items": []}, headers=cast.partner_a.headers), 422
    )


def test_batch_of_500_is_accepted(client, cast, body, session):
    many = {"incidents": [body(person=None) for _ in range(500)]}
    r = client.post("/v1/incidents/batch", json=many, headers=cast.partner_a.headers)
    assert r.status_code == 207
    assert {x["status"] for x in r.json()["results"]} == {201}
    assert count(session, Incident) == 500


def test_a_callers_expired_keys_are_purged_when_it_uses_a_new_one(
    client, cast, body, session, clock
):
    h = cast.partner_a.headers
    client.post("/v1/incidents", json=body(), headers=h | {"Idempotency-Key": "one"})
    client.post(
        "/v1/incidents", json=body(), headers=cast.partner_b.headers | {"Idempotency-Key": "b"}
    )
    clock.advance(hours=49)
    client.post("/v1/incidents", json=body(), headers=h | {"Idempotency-Key": "two"})
    keys = sorted(session.execute(select(IdempotencyRecord.key)).scalars())
    session.rollback()
    assert keys == ["b", "two"]


def test_parallel_notifications_about_one_person_without_chi_find_one_person(
    client, cast, body, session
):
    """Different partners, same moment, same name and birthday, no CHI: one person, not two."""
    person = {"given_name": "Ali", "family_name": "Khan", "date_of_birth": "1990-05-05"}
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def go(i: int):
        barrier.wait()
        r = client.post(
            "/v1/incidents",
            json=body(source_ref=f"PAR-P-{i}", person=person),
            headers=cast.partner_a.headers,
        )
        statuses.append(r.status_code)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [201] * 8, statuses
    assert count(session, Incident) == 8
    assert count(session, Person) == 1


@postgres_only
def test_more_waiters_on_one_persons_lock_than_threads_still_all_finish(
    db_url, engine, clock, cast, body, session
):
    """Twelve notifications about one person through a pool of three threads: each request
    holds matching's identity lock until it commits, and commits in the thread it holds, so
    the waiters cannot starve the holder of a thread (with the commit in a separate hop this
    hung for good)."""
    app = create_app(make_settings(db_url, threadpool_size=3), engine=engine, clock=clock)
    person = {"given_name": "Iona", "family_name": "Reid", "date_of_birth": "1979-09-09"}
    n = 12
    barrier = threading.Barrier(n)
    statuses: list[int] = []
    with TestClient(app, raise_server_exceptions=False) as c:

        def go(i: int):
            barrier.wait()
            r = c.post(
                "/v1/incidents",
                json=body(source_ref=f"STARVE-{i}", person=person),
                headers=cast.partner_a.headers,
            )
            statuses.append(r.status_code)

        threads = [threading.Thread(target=go, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "requests still waiting after 60 s"
    assert statuses == [201] * n, statuses
    assert count(session, Person) == 1


def test_a_keyed_intake_checks_out_one_connection(app, client, cast, body, engine):
    """One connection for the whole request (its claim, its work, its answer); the next
    request on the same worker thread reuses it (api.direct keeps the session)."""
    checkouts: list[object] = []
    listener = lambda dbapi_conn, record, proxy: checkouts.append(record)  # noqa: E731
    with listening(app.state.engine, "checkout", listener):
        for key in ("one-connection", "the-same-connection"):
            h = cast.partner_a.headers | {"Idempotency-Key": key}
            r = client.post("/v1/incidents", json=body(), headers=h)
            assert r.status_code == 201, r.text
    assert len(checkouts) == 1


_WRITTEN = re.compile(r"(?:INSERT INTO|UPDATE|DELETE FROM)\s+(\S+)", re.IGNORECASE)


def _autocommit_by_table(app, client, method, path, **kwargs) -> dict[str, set[bool]]:
    """Send one request; for each table it wrote, whether the connection was in autocommit."""
    seen: dict[str, set[bool]] = {}

    def listener(conn, cursor, statement, parameters, context, executemany):
        # Every table a statement writes, its WITH parts included (intake's single statement).
        for table in _WRITTEN.findall(statement):
            seen.setdefault(table.strip('"'), set()).add(
                conn.connection.dbapi_connection.autocommit
            )

    event.listen(app.state.engine, "before_cursor_execute", listener)
    try:
        r = client.request(method, path, **kwargs)
    finally:
        event.remove(app.state.engine, "before_cursor_execute", listener)
    assert r.status_code < 300, r.text
    return seen


@pytest.fixture
def one_connection_app(settings, db_url, clock):
    """The app on a pool of one connection: every request reuses the same one."""
    eng = make_engine(db_url, pool_size=1, max_overflow=0)
    app = create_app(settings, engine=eng, clock=clock)
    with TestClient(app) as client:
        yield app, client
    eng.dispose()


@postgres_only
def test_a_keyed_intake_claims_its_key_in_the_works_transaction(one_connection_app, cast, body):
    """The key's row is written once, with the answer, in the same transaction as the work:
    nothing of the request is ever committed without the rest."""
    app, client = one_connection_app
    h = cast.partner_a.headers | {"Idempotency-Key": "one-transaction"}
    seen = _autocommit_by_table(app, client, "POST", "/v1/incidents", json=body(), headers=h)
    assert seen["idempotency_keys"] == {False}
    assert seen["incidents"] == {False} and seen["audit_log"] == {False}
    written: list[str] = []

    def listener(conn, cursor, statement, parameters, context, executemany):
        written.extend(
            f"{verb.split()[0].upper()} {table}"
            for verb, table in re.findall(
                r"(INSERT INTO|UPDATE|DELETE FROM)\s+(idempotency_keys)\b", statement, re.I
            )
        )

    with listening(app.state.engine, "before_cursor_execute", listener):
        r = client.post(
            "/v1/incidents",
            json=body(),
            headers=cast.partner_a.headers | {"Idempotency-Key": "written-once"},
        )
    assert r.status_code == 201, r.text
    assert written == ["INSERT idempotency_keys"]


@postgres_only
def test_a_keyed_intake_commits_once(one_connection_app, cast, body):
    """One transaction: the claim, the work and its answer, committed once."""
    app, client = one_connection_app
    commits: list[bool] = []

    def listener(conn):
        commits.append(conn.connection.dbapi_connection.autocommit)

    h = cast.partner_a.headers | {"Idempotency-Key": "one-commit"}
    with listening(app.state.engine, "commit", listener):
        r = client.post("/v1/incidents", json=body(), headers=h)
    assert r.status_code == 201, r.text
    assert commits == [False]  # one commit, of a transaction: the work with its answer


@pytest.fixture
def stalled_intake(monkeypatch):
    """Make the next intake wait, in the middle of its work (after its claim), until told."""
    import api.routes.incidents as routes

    started, release = threading.Event(), threading.Event()
    real = routes._one
    stall = [True]

    def one(*args, **kwargs):
        if stall[0]:
            stall[0] = False
            started.set()
            assert release.wait(30), "never released"
        return real(*args, **kwargs)

    monkeypatch.setattr(routes, "_one", one)
    return started, release


@postgres_only
def test_a_request_in_flight_holds_its_key_without_committing_anything(
    client, cast, body, session, stalled_intake
):
    """While the first request with a key is still working, the same request again is 409
    (retry later) and another request with that key is 422; once the first has answered,
    the same request replays its answer."""
    started, release = stalled_intake
    data = body()
    h = cast.partner_a.headers | {"Idempotency-Key": "in-flight"}
    first: list = []
    worker = threading.Thread(
        target=lambda: first.append(client.post("/v1/incidents", json=data, headers=h))
    )
    worker.start()
    try:
        assert started.wait(30)
        assert count(session, IdempotencyRecord) == 0  # nothing committed while in flight
        busy = client.post("/v1/incidents", json=data, headers=h)
        assert_problem(busy, 409)
        assert int(busy.headers["retry-after"]) >= 1
        assert_problem(client.post("/v1/incidents", json=body(notes="other"), headers=h), 422)
    finally:
        release.set()
        worker.join(30)
    assert first[0].status_code == 201, first[0].text
    again = client.post("/v1/incidents", json=data, headers=h)
    assert again.status_code == 201 and again.json() == first[0].json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert count(session, Incident) == 1


@postgres_only
def test_a_request_whose_key_was_stored_meanwhile_answers_as_its_retry(
    client, cast, body, session, engine, clock, monkeypatch
):
    """The other request with this key committed after this one looked (its row was not
    visible to this one's claim): this one's work is rolled back and it answers with the
    stored answer, as a retry would be answered. Nothing is duplicated."""
    import api.routes.incidents as routes

    data = body()
    key, principal_key = "stored-meanwhile", f"client:{cast.partner_a.id}"
    real = routes._one

    def one(*args, **kwargs):
        answer = real(*args, **kwargs)
        with engine.begin() as conn:  # the other request, committing first
            conn.execute(
                IdempotencyRecord.__table__.insert(),
                {
                    "id": "00000000-0000-4000-8000-000000000001",
                    "principal_key": principal_key,
                    "key": key,
                    "method": "POST",
                    "path": "/v1/incidents",
                    "request_hash": _hash(data),
                    "status_code": 201,
                    "response_body": {"id": "the-other-requests-incident"},
                    "response_headers": None,
                    "lease_expires_at": clock(),
                    "created_at": clock(),
                    "expires_at": clock() + timedelta(hours=48),
                },
            )
        return answer

    monkeypatch.setattr(routes, "_one", one)
    r = client.post(
        "/v1/incidents", json=data, headers=cast.partner_a.headers | {"Idempotency-Key": key}
    )
    assert r.status_code == 201, r.text
    assert r.json() == {"id": "the-other-requests-incident"}
    assert r.headers.get("idempotent-replayed") == "true"
    assert count(session, Incident) == 0  # this request's own incident was rolled back
    assert count(session, IdempotencyRecord) == 1
