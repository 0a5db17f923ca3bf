"""A partner's keyed notification on PostgreSQL: its caller's look-up and its key's look are
one statement (services.idempotency.look_as_client) - with the same answers, in the same
order (401, 403, then 400/422), and the very same locks as when they are made apart."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import event, text, update

from api.schemas.incidents import IncidentCreate
from models.api_client import ApiClient
from models.idempotency import IdempotencyRecord
from models.incident import Incident
from services import auth, idempotency
from services.canonical import canonical_hash
from services.db import make_session_factory
from tests.conftest import assert_problem, postgres_only
from tests.intake.conftest import count

PATH = "/v1/incidents"


def _hash(data: dict) -> str:
    model = IncidentCreate.model_validate(data)
    return canonical_hash({"body": model.model_dump(mode="json", exclude_unset=True)})


def _advisory_locks(session) -> int:
    return session.execute(
        text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
    ).scalar_one()


def test_a_keyed_request_answers_its_caller_before_its_body(client, cast, factory, session):
    """The body is validated before the caller is looked up (to hash it for the key's look),
    but its errors still come after 401 and 403, as for a request without a key."""
    invalid = {"colour": "red"}
    key = {"Idempotency-Key": "order-of-answers"}
    revoked = factory.partner(cast.agency_a)
    session.execute(
        update(ApiClient).where(ApiClient.id == revoked.id).values(revoked_at=ApiClient.created_at)
    )
    session.commit()
    for headers, status in (
        (key, 401),
        ({"Authorization": "Bearer nfod_not-a-key"} | key, 401),
        (revoked.headers | key, 401),
        (cast.analyst.headers | key, 403),
        (cast.partner_a.headers | key, 422),
        (cast.partner_a.headers | {"Idempotency-Key": "k" * 256}, 422),
    ):
        assert_problem(client.post(PATH, json=invalid, headers=headers), status)
    # A valid body with a revoked key is refused too, and leaves nothing behind.
    assert_problem(client.post(PATH, json={"colour": "red"}, headers=revoked.headers | key), 401)
    assert count(session, IdempotencyRecord) == 0 and count(session, Incident) == 0


def test_a_keyed_request_of_a_revoked_client_is_refused(client, cast, body, session):
    data = body()
    session.execute(
        update(ApiClient)
        .where(ApiClient.id == cast.partner_b.id)
        .values(revoked_at=ApiClient.created_at)
    )
    session.commit()
    r = client.post(PATH, json=data, headers=cast.partner_b.headers | {"Idempotency-Key": "r"})
    assert_problem(r, 401)
    assert count(session, IdempotencyRecord) == 0 and count(session, Incident) == 0


@postgres_only
def test_one_statement_looks_up_the_caller_and_claims_the_key(app, client, cast, body):
    statements: list[str] = []

    def listener(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(app.state.engine, "before_cursor_execute", listener)
    try:
        r = client.post(
            PATH, json=body(), headers=cast.partner_a.headers | {"Idempotency-Key": "1"}
        )
    finally:
        event.remove(app.state.engine, "before_cursor_execute", listener)
    assert r.status_code == 201, r.text
    callers = [s for s in statements if "api_clients" in s]
    locking = [s for s in statements if "pg_try_advisory_xact_lock" in s]
    assert len(callers) == 1 and locking == callers


@postgres_only
@pytest.mark.parametrize("same_request, status", [(True, 409), (False, 422)])
def test_it_takes_the_locks_a_claim_apart_takes(client, cast, body, engine, same_request, status):
    """Another transaction holds the key's locks, taken by services.idempotency.look (the
    claim made apart, as for a signed-in user): the one statement finds exactly those taken -
    the key's (so 422, another request has it) and, for the same request, its body's (409)."""
    data = body()
    key = "held-elsewhere"
    with make_session_factory(engine)() as other:
        looked = idempotency.look(
            other,
            principal_key=f"client:{cast.partner_a.id}",
            key=key,
            method="POST",
            path=PATH,
            request_hash=_hash(data) if same_request else "another request",
        )
        assert looked.mine and looked.body_free
        r = client.post(PATH, json=data, headers=cast.partner_a.headers | {"Idempotency-Key": key})
        assert_problem(r, status)
        other.rollback()  # its locks go with its transaction
    r = client.post(PATH, json=data, headers=cast.partner_a.headers | {"Idempotency-Key": key})
    assert r.status_code == 201, r.text


@postgres_only
def test_a_key_no_live_client_holds_takes_no_lock(session, cast, settings, clock, factory):
    def claiming(credential: str):
        return auth.resolve_bearer_claiming(
            session,
            settings=settings,
            now=clock(),
            credential=credential,
            key="k",
            method="POST",
            path=PATH,
            request_hash="h",
        )

    revoked = factory.partner(cast.agency_a)
    session.execute(
        update(ApiClient).where(ApiClient.id == revoked.id).values(revoked_at=ApiClient.created_at)
    )
    session.commit()
    for credential in (revoked.token, "nfod_not-a-key"):
        assert claiming(credential) == (None, None)
        assert _advisory_locks(session) == 0
        session.rollback()
    principal, looked = claiming(cast.partner_a.token)
    assert principal is not None and principal.key == f"client:{cast.partner_a.id}"
    assert principal.role == "partner" and principal.agency_id == cast.agency_a
    assert looked.principal_key == principal.key and looked.mine and looked.body_free
    assert looked.stored is None
    assert _advisory_locks(session) == 2  # the key's and its body's, until the rollback
    session.rollback()
    assert _advisory_locks(session) == 0


@postgres_only
def test_parallel_keyed_notifications_with_one_key_create_one_incident(client, cast, body, session):
    data = body()
    headers = cast.partner_a.headers | {"Idempotency-Key": "parallel-one-statement"}
    statuses: list[int] = []
    barrier = threading.Barrier(8)

    def send():
        barrier.wait()
        statuses.append(client.post(PATH, json=data, headers=headers).status_code)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(set(statuses)) <= [201, 409], statuses
    assert statuses.count(201) >= 1
    assert count(session, Incident) == 1 and count(session, IdempotencyRecord) == 1
