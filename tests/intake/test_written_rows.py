"""What an intake writes, row by row - the same on both databases, whether it is written by
separate statements (SQLite) or by the single statement of services.intake on PostgreSQL."""

from __future__ import annotations

import re

from sqlalchemy import select

from models.incident import Incident, IncidentSubstance
from models.person import Person, PossibleDuplicate
from tests.conftest import listening, postgres_only
from tests.intake.conftest import count


def _post(client, actor, data, status=201):
    r = client.post("/v1/incidents", json=data, headers=actor.headers)
    assert r.status_code == status, r.text
    return r.json()


def test_substances_are_stored_in_order_with_the_incidents_time(client, cast, body, session):
    got = _post(client, cast.partner_a, body(substances=["Cocaine", " heroin", "alcohol "]))
    rows = session.execute(
        select(IncidentSubstance).where(IncidentSubstance.incident_id == got["id"])
    ).scalars()
    stored = sorted((r.position, r.substance, r.occurred_at) for r in rows)
    incident = session.get(Incident, got["id"])
    assert [(p, s) for p, s, _ in stored] == [(0, "cocaine"), (1, "heroin"), (2, "alcohol")]
    # The reports count substances by this copy of the incident's time (migration 0002).
    assert {t for _, _, t in stored} == {incident.occurred_at}
    session.rollback()


def test_an_incident_without_substances_or_person_stores_neither(client, cast, body, session):
    got = _post(client, cast.partner_a, body(substances=..., person=...))
    assert got["person_id"] is None and got["substances"] == []
    assert count(session, IncidentSubstance) == 0 and count(session, Person) == 0


def test_a_new_person_is_stored_with_its_possible_duplicates(client, cast, body, session):
    known = {"given_name": "Sam", "family_name": "Reid", "date_of_birth": "1980-02-03"}
    first = _post(client, cast.partner_a, body(person=known))
    second = _post(client, cast.partner_a, body(person={**known, "given_name": "Samm"}))
    assert second["person_id"] != first["person_id"]
    person = session.get(Person, second["person_id"])
    assert (person.given_name, person.family_key, person.name_key) == ("Samm", "reid", "reid|samm")
    pairs = session.execute(select(PossibleDuplicate.person_id, PossibleDuplicate.candidate_id))
    assert set(pairs) == {(second["person_id"], first["person_id"])}
    assert session.get(Incident, second["id"]).person_id == second["person_id"]
    session.rollback()


def test_a_repeat_whose_person_is_only_weakly_known_leaves_no_new_person(
    client, cast, body, session
):
    """Matching cannot link a person known by name alone (no date of birth, no CHI): the
    repeat of its incident would create a second person, were it not a repeat."""
    data = body(person={"given_name": "Alex", "family_name": "Brown"})
    first = _post(client, cast.partner_a, data)
    again = _post(client, cast.partner_a, data, status=200)
    assert again["id"] == first["id"] and again["person_id"] == first["person_id"]
    assert again["substances"] == first["substances"]
    assert count(session, Person) == 1
    assert count(session, PossibleDuplicate) == 0
    assert count(session, Incident) == 1


_WRITE = re.compile(r"(?:INSERT INTO|UPDATE|DELETE FROM)\s+(\w+)", re.IGNORECASE)


@postgres_only
def test_postgresql_writes_a_notification_in_one_statement(app, client, cast, body):
    """The incident, its new person, possible duplicates and substances: one statement (a
    round trip each would cost the intake's throughput; BENCHMARKS.md, tenth round)."""
    known = {"given_name": "Sam", "family_name": "Reid", "date_of_birth": "1980-02-03"}
    _post(client, cast.partner_a, body(person=known))
    writes: list[list[str]] = []

    def listener(conn, cursor, statement, parameters, context, executemany):
        tables = _WRITE.findall(statement)
        if tables:
            writes.append(tables)

    with listening(app.state.engine, "before_cursor_execute", listener):
        _post(client, cast.partner_a, body(person={**known, "given_name": "Samm"}))
    together = ["incidents", "persons", "possible_duplicates", "incident_substances"]
    assert [t for t in writes if "incidents" in t] == [together]
    # Besides it: the audit entries only (no separate person, duplicate or substance write).
    assert [t for t in writes if "incidents" not in t] == [["audit_log"]]


@postgres_only
def test_a_keyed_notifications_answer_is_stored_with_its_audit_entries(app, client, cast, body):
    """Keyed: the intake's statement, then the key's row with its answer and the audit
    entries together (services.db.write_at_commit): two writes in all (the caller's expired
    keys, purged now and then, aside). The claim itself only reads."""
    writes: list[list[str]] = []

    def listener(conn, cursor, statement, parameters, context, executemany):
        tables = _WRITE.findall(statement)
        if tables and not statement.startswith("DELETE"):
            writes.append(tables)

    h = cast.partner_a.headers | {"Idempotency-Key": "one-statement"}
    with listening(app.state.engine, "before_cursor_execute", listener):
        r = client.post("/v1/incidents", json=body(), headers=h)
    assert r.status_code == 201, r.text
    assert writes[0][0] == "incidents"
    assert writes[1:] == [["idempotency_keys", "audit_log"]]
