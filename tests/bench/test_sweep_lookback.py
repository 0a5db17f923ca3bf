"""The sweep's repeat-overdose look-back (a bench finding): recent repeats still alert,
repeats that ended long before the sweep are not re-examined on every pass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.alert import Alert
from models.incident import Incident
from models.person import Person
from services.db import make_session_factory
from services.sweep import REPEAT_LOOKBACK, sweep

AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _incident(s, agency_id: str, person_id: str, occurred: datetime) -> str:
    inc = Incident(
        source_agency_id=agency_id, created_by_type="client", created_by_id="t",
        occurred_at=occurred, reported_at=occurred, contact_due_at=occurred + timedelta(hours=72),
        person_id=person_id, fu_status="closed", closed_reason="declined", closed_at=occurred,
        created_at=occurred, updated_at=occurred,
    )  # fmt: skip
    s.add(inc)
    s.flush()
    return inc.id


def test_repeat_inside_the_lookback_alerts_and_one_before_it_does_not(engine, factory, settings):
    agency = factory.agency()
    sf = make_session_factory(engine)
    with sf() as s, s.begin():
        recent, old = Person(created_at=AT, updated_at=AT), Person(created_at=AT, updated_at=AT)
        s.add_all([recent, old])
        s.flush()
        # A pair whose second incident is just inside the look-back (a late notification).
        inside = AT - REPEAT_LOOKBACK + timedelta(hours=1)
        _incident(s, agency, recent.id, inside - timedelta(days=3))
        second = _incident(s, agency, recent.id, inside)
        # A pair entirely older than the look-back.
        outside = AT - REPEAT_LOOKBACK - timedelta(hours=1)
        _incident(s, agency, old.id, outside - timedelta(days=3))
        _incident(s, agency, old.id, outside)
    with sf() as s, s.begin():
        sweep(s, at=AT, settings=settings)
    with sf() as s:
        repeats = [a.incident_id for a in s.query(Alert).filter(Alert.kind == "repeat_overdose")]
    assert repeats == [second]
