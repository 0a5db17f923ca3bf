"""Fixtures for the huddle and safety-plan tests: incidents and people inserted directly
(the intake API is another area), and a cast of callers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest

import models
from tests.conftest import make_settings

# Tokens outlive the jumps in time these tests make (days, across clock changes).
LONG_TOKEN_TTL = 3 * 365 * 24 * 3600


@pytest.fixture
def settings(db_url):
    return make_settings(db_url, token_ttl_seconds=LONG_TOKEN_TTL)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@dataclass
class Cast:
    coordinator: object
    outreach: object
    outreach_other: object
    analyst: object
    partner: object
    source_agency_id: str


@pytest.fixture
def cast(factory) -> Cast:
    source = factory.agency("Scottish Ambulance Service")
    return Cast(
        coordinator=factory.user("coordinator", display_name="Coordinator One"),
        outreach=factory.user("outreach"),
        outreach_other=factory.user("outreach"),
        analyst=factory.user("analyst"),
        partner=factory.partner(source),
        source_agency_id=source,
    )


class Data:
    """Inserts people and incidents straight into the database."""

    def __init__(self, factory, settings):
        self.session_factory = factory.session_factory
        self.factory = factory
        self.settings = settings

    def person(
        self,
        given: str | None = "Sam",
        family: str | None = "Reid",
        dob: date | None = date(1980, 1, 1),
    ) -> str:
        now = self.factory.clock()
        with self.session_factory() as s, s.begin():
            p = models.Person(
                given_name=given,
                family_name=family,
                date_of_birth=dob,
                created_at=now,
                updated_at=now,
            )
            s.add(p)
            s.flush()
            return p.id

    def incident(
        self,
        *,
        source_agency_id: str,
        occurred_at: datetime,
        reported_at: datetime | None = None,
        person_id: str | None = None,
        substances: tuple[str, ...] = (),
        fu_status: str = "awaiting_contact",
        assigned_agency_id: str | None = None,
        discussed_at_huddle_id: str | None = None,
        location: str | None = "Hilltown flats",
        postcode: str | None = "DD3 7AA",
    ) -> str:
        reported_at = reported_at or occurred_at + timedelta(minutes=30)
        with self.session_factory() as s, s.begin():
            inc = models.Incident(
                source_agency_id=source_agency_id,
                source_ref=f"REF-{uuid.uuid4().hex[:10]}",
                created_by_type="user",
                created_by_id="test",
                occurred_at=occurred_at,
                reported_at=reported_at,
                contact_due_at=occurred_at + timedelta(hours=self.settings.contact_window_hours),
                location_description=location,
                postcode=postcode,
                postcode_district=postcode.split(" ")[0] if postcode else None,
                person_id=person_id,
                fu_status=fu_status,
                assigned_agency_id=assigned_agency_id,
                discussed_at_huddle_id=discussed_at_huddle_id,
                discussed_at=reported_at if discussed_at_huddle_id else None,
                created_at=reported_at,
                updated_at=reported_at,
            )
            s.add(inc)
            s.flush()
            for i, sub in enumerate(substances):
                s.add(models.IncidentSubstance(incident_id=inc.id, position=i, substance=sub))
            return inc.id

    def get_incident(self, incident_id: str) -> models.Incident:
        with self.session_factory() as s:
            inc = s.get(models.Incident, incident_id)
            s.expunge(inc)
            return inc


@pytest.fixture
def data(factory, settings) -> Data:
    return Data(factory, settings)
