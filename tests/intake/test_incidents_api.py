"""POST/GET /v1/incidents: the resource, defaults, normalisation."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

from sqlalchemy import select

from models.audit import AuditEntry
from models.incident import Incident, IncidentSubstance
from models.person import Person
from tests.conftest import assert_problem
from tests.intake.conftest import count, iso


def test_create_returns_the_incident_in_utc_with_its_deadline(client, cast, body, clock):
    data = body(occurred_at="2026-01-01T10:00:00+01:00", reported_at="2026-01-01T10:30:00+01:00")
    clock.set(clock().replace(year=2026, month=1, day=2, hour=12))
    r = client.post("/v1/incidents", json=data, headers=cast.partner_a.headers)
    assert r.status_code == 201, r.text
    inc = r.json()
    assert inc["occurred_at"] == "2026-01-01T09:00:00Z"
    assert inc["reported_at"] == "2026-01-01T09:30:00Z"
    assert inc["contact_due_at"] == "2026-01-04T09:00:00Z"
    assert inc["source_agency_id"] == cast.agency_a
    assert inc["substances"] == ["heroin", "street benzodiazepine"]
    assert inc["location"] == {
        "description": "Hilltown flats stairwell",
        "postcode": "DD3 7AA",
        "postcode_district": "DD3",
    }
    assert inc["follow_up"] == {
        "status": "awaiting_contact",
        "overdue": False,
        "first_contact_at": None,
        "within_window": None,
        "assigned_agency_id": None,
        "closed_reason": None,
        "closed_at": None,
    }
    assert inc["person_id"]
    assert inc["person"]["chi"] == "0101801238"
    assert inc["discussed_at_huddle_id"] is None
    assert r.headers["location"] == f"/v1/incidents/{inc['id']}"
    got = client.get(f"/v1/incidents/{inc['id']}", headers=cast.partner_a.headers)
    assert got.status_code == 200
    assert got.json() == inc


def test_only_occurred_at_is_required_and_reported_at_defaults_to_now(client, cast, clock, session):
    r = client.post(
        "/v1/incidents",
        json={"occurred_at": iso(clock() - timedelta(hours=1))},
        headers=cast.coordinator.headers | {},
        params={},
    )
    # a coordinator without an agency must name the source agency
    assert_problem(r, 422)
    r = client.post(
        "/v1/incidents",
        json={"occurred_at": iso(clock() - timedelta(hours=1))},
        headers=cast.partner_b.headers,
    )
    assert r.status_code == 201, r.text
    inc = r.json()
    assert inc["reported_at"] == iso(clock())
    assert inc["person_id"] is None and inc["person"] is None and inc["substances"] == []
    assert count(session, Person) == 0


def test_overdue_is_computed_at_read_time(client, cast, body, clock):
    inc = client.post("/v1/incidents", json=body(), headers=cast.partner_a.headers).json()
    assert inc["follow_up"]["overdue"] is False
    clock.advance(hours=69, seconds=1)
    assert client.get(f"/v1/incidents/{inc['id']}", headers=cast.partner_a.headers).json()[
        "follow_up"
    ]["overdue"]


def test_substances_stored_in_order(client, cast, body, session):
    inc = client.post(
        "/v1/incidents", json=body(substances=["B", " a ", "C"]), headers=cast.partner_a.headers
    ).json()
    rows = (
        session.execute(
            select(IncidentSubstance.substance)
            .where(IncidentSubstance.incident_id == inc["id"])
            .order_by(IncidentSubstance.position)
        )
        .scalars()
        .all()
    )
    assert rows == ["b", "a", "c"]
    assert session.get(Incident, inc["id"]).postcode_district == "DD3"


def test_an_incident_id_is_time_ordered_and_its_persons_random(client, cast, body, session):
    """An incident's id (like a contact attempt's or an audit entry's) starts with its
    creation time, so that its index entries go to the right-hand edge; a person's does
    not, since partners see it and it would tell when the person was first recorded."""
    first = client.post("/v1/incidents", json=body(), headers=cast.partner_a.headers).json()
    time.sleep(0.002)  # a later millisecond
    second = client.post("/v1/incidents", json=body(), headers=cast.partner_b.headers).json()
    assert uuid.UUID(first["id"]).version == 7 and uuid.UUID(second["id"]).version == 7
    assert first["id"] < second["id"]
    assert first["person_id"] == second["person_id"]
    assert uuid.UUID(first["person_id"]).version == 4
    entries = session.execute(select(AuditEntry.id)).scalars().all()
    assert entries and all(uuid.UUID(e).version == 7 for e in entries)
