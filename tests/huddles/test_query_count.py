"""The agenda costs a fixed number of queries whatever its length (no per-item queries)."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import date

from sqlalchemy import event

from services import huddles
from services.principal import Principal
from tests.huddles.conftest import utc

DAY = date(2026, 11, 24)


@contextmanager
def count_queries(engine):
    statements: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        if not statement.lstrip().upper().startswith(("BEGIN", "SAVEPOINT", "RELEASE")):
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", before)


def _populate(client, cast, data, n: int, offset: int) -> None:
    """n incidents, each with a person, two substances and (for half) a safety plan;
    a third of them already discussed (follow-ups)."""
    for i in range(offset, offset + n):
        pid = data.person(given=f"P{i}", family="Test")
        data.incident(
            source_agency_id=cast.source_agency_id,
            occurred_at=utc(2026, 11, 20, 0, 0).replace(minute=i % 60, second=i // 60),
            person_id=pid,
            substances=("heroin", f"substance {i}"),
            discussed_at_huddle_id="earlier" if i % 3 == 0 else None,
        )
        # A second, older incident for the same person (counts).
        data.incident(
            source_agency_id=cast.source_agency_id,
            occurred_at=utc(2026, 6, 1, 0, 0),
            person_id=pid,
            fu_status="closed",
            discussed_at_huddle_id="older",
        )
        if i % 2 == 0:
            r = client.put(
                f"/v1/persons/{pid}/safety-plan",
                json={"risk_level": "amber"},
                headers=cast.coordinator.headers,
            )
            assert r.status_code == 201


def test_agenda_query_count_does_not_grow_with_its_length(
    client, clock, cast, data, engine, factory, settings
):
    clock.set(utc(2026, 11, 24, 8, 0))
    coordinator = Principal(kind="user", id=cast.coordinator.id, role="coordinator", agency_id=None)

    def measure() -> tuple[int, int, int]:
        with count_queries(engine) as http_statements:
            r = client.get("/v1/huddles/2026-11-24/agenda", headers=cast.coordinator.headers)
        assert r.status_code == 200
        length = len(r.json()["new"]) + len(r.json()["follow_ups"])
        with factory.session_factory() as s:
            with count_queries(engine) as service_statements:
                huddles.get_agenda(
                    s, principal=coordinator, now=clock(), settings=settings, day=DAY
                )
            s.rollback()
        return length, len(http_statements), len(service_statements)

    _populate(client, cast, data, 3, 0)
    small = measure()
    _populate(client, cast, data, 57, 3)
    large = measure()
    assert (small[0], large[0]) == (3, 60)
    assert small[1:] == large[1:], (small, large)
    # The service itself: huddle lookup + incidents + people + counts, and the substances:
    # on PostgreSQL a column of the incidents' statement, after the SET LOCAL that gives
    # these their own custom plans; on SQLite a statement of their own.
    assert large[2] == 5
