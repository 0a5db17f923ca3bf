"""services.db.write_at_commit: writes queued for the commit are sent with it, in order, on
PostgreSQL as one statement; a rollback drops them; a savepoint does not send them."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, event, select, text, update
from sqlalchemy.exc import IntegrityError

from models.agency import Agency
from services import db
from services.db import (
    AT_COMMIT_ROWS,
    has_writes_at_commit,
    insert_rows_at_commit,
    make_session_factory,
    plain_insert,
    write_at_commit,
)
from tests.conftest import is_postgres, postgres_only

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
AGENCIES = Agency.__table__
_RENAME = update(AGENCIES).where(AGENCIES.c.id == bindparam("agency")).values(name=bindparam("to"))
# A literal percent sign next to a placeholder: both must survive the renaming.
_SUFFIX = text("UPDATE agencies SET name = name || '%(x)s 100%' || :suffix WHERE id = :id")


def _agency(name: str | None = None) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "name": name or f"Agency {uuid.uuid4().hex[:8]}",
        "kind": "statutory",
        "created_at": NOW,
    }


@pytest.fixture
def statements(engine):
    """Every statement the engine sends (hooks see the combined one too)."""
    seen: list[str] = []

    def listener(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", listener)
    yield seen
    event.remove(engine, "before_cursor_execute", listener)


def _names(session) -> dict[str, str]:
    rows = session.execute(select(AGENCIES.c.id, AGENCIES.c.name)).all()
    session.rollback()
    return dict(rows)


def test_queued_writes_are_sent_at_commit_in_order(engine, session, statements):
    first, second, third = _agency("First"), _agency("Second"), _agency("Third")
    with engine.begin() as conn:
        conn.execute(plain_insert(AGENCIES), [first, second])
    statements.clear()
    work = make_session_factory(engine)()
    try:
        write_at_commit(work, _RENAME, {"agency": first["id"], "to": "Renamed"})
        write_at_commit(work, plain_insert(AGENCIES), third)
        write_at_commit(work, _SUFFIX, {"id": second["id"], "suffix": "!"})
        assert has_writes_at_commit(work) and statements == []  # nothing sent yet
        work.commit()
    finally:
        work.close()
    writes = [s for s in statements if re.match(r"\s*(WITH|INSERT|UPDATE)", s)]
    if is_postgres():
        assert len(writes) == 1 and writes[0].startswith("WITH w0 AS (UPDATE")
    else:
        assert len(writes) == 3
    assert _names(session) == {
        first["id"]: "Renamed",
        second["id"]: "Second%(x)s 100%!",
        third["id"]: "Third",
    }


def test_a_rollback_drops_them_and_a_savepoint_does_not_send_them(engine, session, statements):
    work = make_session_factory(engine)()
    dropped, kept = _agency(), _agency()
    try:
        write_at_commit(work, plain_insert(AGENCIES), dropped)
        work.rollback()
        assert not has_writes_at_commit(work)
        with work.begin_nested():
            write_at_commit(work, plain_insert(AGENCIES), kept)
        assert has_writes_at_commit(work)  # released savepoint: still queued
        assert not [s for s in statements if "INSERT" in s]
        work.commit()
    finally:
        work.close()
    assert set(_names(session)) == {kept["id"]}


def test_a_closed_session_forgets_them(engine, session):
    """A session closed without committing (and used again) sends nothing it queued."""
    work = make_session_factory(engine)()
    try:
        write_at_commit(work, plain_insert(AGENCIES), _agency())
        work.close()
        assert not has_writes_at_commit(work)
        work.commit()  # the same session, a new transaction: nothing to send
    finally:
        work.close()
    assert _names(session) == {}


def test_many_rows_go_in_statements_of_at_most_so_many(engine, session, statements):
    rows = [_agency() for _ in range(AT_COMMIT_ROWS + 3)]
    work = make_session_factory(engine)()
    try:
        insert_rows_at_commit(work, AGENCIES, rows)
        work.commit()
    finally:
        work.close()
    assert set(_names(session)) == {r["id"] for r in rows}
    inserts = [s for s in statements if "INSERT" in s]
    assert len(inserts) == (1 if is_postgres() else 2)


@postgres_only
def test_a_failing_part_fails_the_commit_and_writes_nothing(engine, session):
    work = make_session_factory(engine)()
    row = _agency()
    try:
        write_at_commit(work, plain_insert(AGENCIES), row)
        write_at_commit(work, plain_insert(AGENCIES), row)  # the same id twice
        with pytest.raises(IntegrityError):
            work.commit()
        work.rollback()
    finally:
        work.close()
    assert _names(session) == {}


@postgres_only
def test_more_writes_than_one_statement_carries_are_sent_in_turns(engine, session, statements):
    rows = [_agency() for _ in range(db.TOGETHER_LIMIT + 2)]
    work = make_session_factory(engine)()
    try:
        for row in rows:
            write_at_commit(work, plain_insert(AGENCIES), row)
        work.commit()
    finally:
        work.close()
    assert len([s for s in statements if "INSERT" in s]) == 2
    assert set(_names(session)) == {r["id"] for r in rows}


@postgres_only
def test_writes_that_cannot_be_a_with_part_run_alone_in_their_turn(engine, session, statements):
    """A write with a WITH of its own cannot be nested in another; one that needs
    SQLAlchemy's own execution (here: a Python-side default for the id) takes it. Both run
    alone, in their turn, and the order of all the writes is kept."""
    first, last = _agency("First"), _agency("Last")
    no_id = {k: v for k, v in _agency("Defaulted").items() if k != "id"}
    with_its_own = text(
        "WITH target AS (SELECT CAST(:id AS VARCHAR) AS id) "
        "UPDATE agencies SET name = name || ' (seen)' FROM target WHERE agencies.id = target.id"
    )
    work = make_session_factory(engine)()
    try:
        write_at_commit(work, plain_insert(AGENCIES), first)
        write_at_commit(work, with_its_own, {"id": first["id"]})
        write_at_commit(work, plain_insert(AGENCIES), no_id)
        write_at_commit(work, plain_insert(AGENCIES), last)
        work.commit()
    finally:
        work.close()
    names = sorted(_names(session).values())
    assert names == ["Defaulted", "First (seen)", "Last"]
    writes = [s for s in statements if re.match(r"\s*(WITH|INSERT|UPDATE)", s)]
    assert len(writes) == 4  # each alone: a part before a WITH, the WITH, the default, the last
