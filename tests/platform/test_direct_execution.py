"""services.db.execute_direct and insert_rows: hot statements run on the driver directly on
PostgreSQL, with SQLAlchemy's conversions, errors and disconnect handling kept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, event, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from models.agency import Agency
from models.audit import AuditEntry
from models.incident import Incident
from services import db
from services.db import MULTI_ROW_LIMIT, execute_direct, insert_rows, plain_insert
from services.matching import _identity_lock
from tests.conftest import postgres_only

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
AGENCIES = Agency.__table__
AUDIT = AuditEntry.__table__
_BY_ID = select(AGENCIES.c.id, AGENCIES.c.name, AGENCIES.c.kind).where(
    AGENCIES.c.id == bindparam("id")
)
_INSERT_RETURNING = plain_insert(AGENCIES).returning(AGENCIES.c.id, AGENCIES.c.name)


def _agency(**extra) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "name": f"Agency {uuid.uuid4().hex[:8]}",
        "kind": "statutory",
        "created_at": NOW,
    } | extra


def _audit(**extra) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "at": NOW,
        "actor_type": "client",
        "actor_id": "c1",
        "action": "create",
        "subject_type": "incident",
        "subject_id": str(uuid.uuid4()),
        "request_id": "r1",
        "client_addr": "127.0.0.1",
        "details": None,
        "content_hash": "0" * 64,
    } | extra


@pytest.fixture
def never_ordinary(monkeypatch):
    """Fail any execute_direct call that falls back to SQLAlchemy's execution."""

    def refuse(conn, statement, params, many):
        raise AssertionError(f"not run directly: {statement}")

    monkeypatch.setattr(db, "_ordinary", refuse)


def test_rows_read_by_name_and_position_on_every_database(engine):
    with engine.begin() as conn:
        row = _agency()
        inserted = execute_direct(conn, _INSERT_RETURNING, row)
        assert [(r.id, r.name) for r in inserted] == [(row["id"], row["name"])]
        found = execute_direct(conn, _BY_ID, {"id": row["id"]})
        assert len(found) == 1
        assert (found[0].id, found[0].name, found[0].kind) == (row["id"], row["name"], "statutory")
        assert tuple(found[0]) == (row["id"], row["name"], "statutory")
        assert execute_direct(conn, _BY_ID, {"id": "no such id"}) == []
        assert execute_direct(conn, text("SELECT 1 AS a, 2 AS a"), {})[0][1] == 2


@postgres_only
def test_postgresql_runs_them_on_the_driver_with_the_same_answers(engine, never_ordinary):
    with engine.begin() as conn:
        row = _agency()
        assert execute_direct(conn, _INSERT_RETURNING, row)[0].id == row["id"]
        assert execute_direct(conn, _BY_ID, {"id": row["id"]})[0].name == row["name"]
        assert conn.execute(_BY_ID, {"id": row["id"]}).one().name == row["name"]
        # repeated column names (the identity locks) read by position
        assert execute_direct(conn, _identity_lock(2), {"k0": "a", "k1": "b"}) == [("", "")]


@postgres_only
def test_values_are_converted_as_sqlalchemy_converts_them(engine, never_ordinary):
    details = {"incident_id": "i-1", "nested": [1, "two", None]}
    entry = _audit(details=details)
    with engine.begin() as conn:
        execute_direct(conn, plain_insert(AUDIT), entry)
        stored = conn.execute(
            select(AUDIT.c.details, AUDIT.c.at).where(AUDIT.c.id == entry["id"])
        ).one()
    assert stored.details == details  # JSON serialised by the column's bind processor
    assert stored.at == NOW


def test_a_statement_needing_python_defaults_takes_the_ordinary_path(engine):
    """Agency.id has a Python-side default: SQLAlchemy must fill it in."""
    row = _agency()
    del row["id"]
    with engine.begin() as conn:
        execute_direct(conn, plain_insert(AGENCIES), row)
        stored = conn.execute(select(AGENCIES.c.id).where(AGENCIES.c.name == row["name"])).one()
    assert len(stored.id) == 36


@postgres_only
def test_statement_hooks_see_every_statement(engine):
    seen: list[str] = []

    def hook(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", hook)
    try:
        with engine.begin() as conn:
            execute_direct(conn, _BY_ID, {"id": "x"})
    finally:
        event.remove(engine, "before_cursor_execute", hook)
    assert any(s.startswith("SELECT agencies.id") for s in seen)
    with engine.begin() as conn:  # the hook removed, the direct path is back
        execute_direct(conn, _BY_ID, {"id": "y"})
    assert len([s for s in seen if s.startswith("SELECT agencies.id")]) == 1


@postgres_only
def test_a_hook_added_while_a_connection_is_open_sees_its_next_statements(engine):
    # The direct path asks the connection's and the engine's event flags first; the
    # engine's is read at each statement, so an open connection notices a new hook.
    seen: list[str] = []

    def hook(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    with engine.begin() as conn:
        execute_direct(conn, _BY_ID, {"id": "x"})
        event.listen(engine, "before_cursor_execute", hook)
        try:
            execute_direct(conn, _BY_ID, {"id": "y"})
        finally:
            event.remove(engine, "before_cursor_execute", hook)
        execute_direct(conn, _BY_ID, {"id": "z"})
    assert len([s for s in seen if s.startswith("SELECT agencies.id")]) == 1


def test_a_unique_violation_is_sqlalchemys_integrity_error_and_rolls_back(engine):
    row = _agency()
    with engine.begin() as conn:
        execute_direct(conn, plain_insert(AGENCIES), row)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        execute_direct(conn, plain_insert(AGENCIES), _agency(name="other"))
        execute_direct(conn, plain_insert(AGENCIES), row)  # same id
    with engine.connect() as conn:  # nothing of the failed transaction was kept
        names = conn.execute(select(AGENCIES.c.name)).scalars().all()
    assert names == [row["name"]]


@postgres_only
def test_a_lost_connection_is_invalidated_and_replaced(engine, never_ordinary):
    conn = engine.connect()
    try:
        pid = execute_direct(conn, text("SELECT pg_backend_pid() AS pid"), {})[0][0]
        with engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            other.commit()
        with pytest.raises(DBAPIError) as raised:
            execute_direct(conn, _BY_ID, {"id": "x"})
        assert raised.value.connection_invalidated
        assert conn.invalidated
    finally:
        conn.close()
    with engine.connect() as fresh:  # the pool hands out a working connection
        assert execute_direct(fresh, text("SELECT 1"), {}) == [(1,)]


@pytest.mark.parametrize("count", [1, 2, MULTI_ROW_LIMIT, MULTI_ROW_LIMIT + 3])
def test_insert_rows_writes_every_row_once(session, count):
    rows = [_audit(details={"n": i} if i % 2 else None) for i in range(count)]
    insert_rows(session, AUDIT, rows)
    session.commit()
    stored = dict(session.execute(select(AUDIT.c.id, AUDIT.c.details)).all())
    assert stored == {r["id"]: r["details"] for r in rows}


@postgres_only
def test_a_keyed_intake_runs_its_statements_directly(app, client, factory, clock, never_ordinary):
    """Every statement of a partner's keyed intake, a new person and a known one, takes the
    direct path (a hot statement silently falling back would cost what this saves)."""
    partner = factory.partner()
    for attempt in range(2):  # the first creates the person, the second matches it
        now = clock()
        body = {
            "source_ref": f"D-{attempt}",
            "occurred_at": (now - timedelta(hours=2)).isoformat(),
            "substances": ["heroin", "alcohol"],
            "person": {
                "chi": "0101801238",
                "given_name": "Sam",
                "family_name": "Reid",
                "date_of_birth": "1980-01-01",
            },
        }
        r = client.post(
            "/v1/incidents",
            json=body,
            headers=partner.headers | {"Idempotency-Key": f"key-{attempt}"},
        )
        assert r.status_code == 201, r.text
    with app.state.engine.connect() as conn:
        assert len(conn.execute(select(Incident.id)).scalars().all()) == 2
