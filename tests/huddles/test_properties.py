"""Property: a notification is `new` on the first huddle whose cut-off is after it was
reported (whatever the clock change, weekend or holiday), and not on the one before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import models
from services import audit, huddles
from services.calendar import WorkingCalendar
from services.principal import Principal

# Instants concentrated around the 2026 clock changes, Christmas and St Andrew's Day.
ANCHORS = [
    datetime(2026, 3, 27, 9, 0, tzinfo=UTC),
    datetime(2026, 3, 30, 8, 0, tzinfo=UTC),
    datetime(2026, 10, 23, 8, 0, tzinfo=UTC),
    datetime(2026, 10, 26, 9, 0, tzinfo=UTC),
    datetime(2026, 11, 27, 9, 0, tzinfo=UTC),
    datetime(2026, 12, 24, 9, 0, tzinfo=UTC),
]
instants = st.builds(
    lambda anchor, seconds: anchor + timedelta(seconds=seconds),
    st.sampled_from(ANCHORS),
    st.integers(-4 * 24 * 3600, 4 * 24 * 3600),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(reported_at=instants, delay_hours=st.integers(0, 240))
def test_property_a_notification_is_new_on_the_first_huddle_after_it_arrived(
    factory, settings, cast, reported_at, delay_hours
):
    cal = WorkingCalendar.from_settings(settings)
    coordinator = Principal(kind="user", id=cast.coordinator.id, role="coordinator", agency_id=None)
    # The first working day whose cut-off is after the report.
    day = cal.local_date(reported_at)
    if not cal.is_working_day(day) or cal.cutoff_at(day) <= reported_at:
        day = cal.next_working_day(day)
    previous = cal.previous_working_day(day)
    assert cal.cutoff_at(previous) <= reported_at < cal.cutoff_at(day)

    with factory.session_factory() as s:
        incident = models.Incident(
            source_agency_id=cast.source_agency_id,
            created_by_type="user",
            created_by_id="t",
            occurred_at=reported_at - timedelta(hours=delay_hours),
            reported_at=reported_at,
            contact_due_at=reported_at - timedelta(hours=delay_hours) + timedelta(hours=72),
            fu_status="awaiting_contact",
            created_at=reported_at,
            updated_at=reported_at,
        )
        s.add(incident)
        s.flush()
        now = reported_at + timedelta(days=10)
        on_day = huddles.get_agenda(s, principal=coordinator, now=now, settings=settings, day=day)
        before = huddles.get_agenda(
            s, principal=coordinator, now=now, settings=settings, day=previous
        )
        assert incident.id in [i["incident_id"] for i in on_day["new"]]
        assert incident.id not in [i["incident_id"] for i in before["new"]]
        assert on_day["previous_huddle_date"] == previous.isoformat()
        audit.discard_pending(s)
        s.rollback()


incident_specs = st.lists(
    st.tuples(
        st.integers(-10 * 24, 2 * 24),  # occurred, hours relative to the cut-off
        st.integers(0, 5 * 24),  # reporting delay in hours
        st.booleans(),  # already discussed
        st.sampled_from(["awaiting_contact", "awaiting_contact", "contacted", "closed"]),
    ),
    max_size=12,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(specs=incident_specs, now_offset=st.integers(-12, 48))
def test_property_agenda_partitions_and_orders_every_incident(
    factory, settings, cast, specs, now_offset
):
    """`new` is exactly the undiscussed incidents reported before the cut-off, oldest first;
    `follow_ups` exactly the discussed ones awaiting contact, overdue first then by deadline."""
    cal = WorkingCalendar.from_settings(settings)
    day = datetime(2026, 10, 26).date()  # Monday after the October clock change
    cutoff = cal.cutoff_at(day)
    now = cutoff + timedelta(hours=now_offset)
    coordinator = Principal(kind="user", id=cast.coordinator.id, role="coordinator", agency_id=None)
    with factory.session_factory() as s:
        made = []
        for occurred_h, delay_h, discussed, status in specs:
            occurred = cutoff + timedelta(hours=occurred_h)
            inc = models.Incident(
                source_agency_id=cast.source_agency_id,
                created_by_type="user",
                created_by_id="t",
                occurred_at=occurred,
                reported_at=occurred + timedelta(hours=delay_h),
                contact_due_at=occurred + timedelta(hours=72),
                fu_status=status,
                discussed_at_huddle_id="earlier" if discussed else None,
                created_at=occurred,
                updated_at=occurred,
            )
            s.add(inc)
            made.append(inc)
        s.flush()
        view = huddles.get_agenda(s, principal=coordinator, now=now, settings=settings, day=day)
        expected_new = sorted(
            (i for i in made if i.discussed_at_huddle_id is None and i.reported_at < cutoff),
            key=lambda i: (i.occurred_at, i.id),
        )
        expected_follow = sorted(
            (i for i in made if i.discussed_at_huddle_id and i.fu_status == "awaiting_contact"),
            key=lambda i: (not i.contact_due_at < now, i.contact_due_at, i.id),
        )
        assert [i["incident_id"] for i in view["new"]] == [i.id for i in expected_new]
        assert [i["incident_id"] for i in view["follow_ups"]] == [i.id for i in expected_follow]
        next_cutoff = cal.cutoff_at(cal.next_working_day(day))
        for item, inc in zip(
            view["new"] + view["follow_ups"], expected_new + expected_follow, strict=True
        ):
            awaiting = inc.fu_status == "awaiting_contact"
            assert item["overdue"] == (awaiting and inc.contact_due_at < now)
            assert item["due_before_next_huddle"] == (awaiting and inc.contact_due_at < next_cutoff)
            assert (
                abs(item["hours_remaining"] - (inc.contact_due_at - now).total_seconds() / 3600)
                < 0.01
            )
        audit.discard_pending(s)
        s.rollback()
