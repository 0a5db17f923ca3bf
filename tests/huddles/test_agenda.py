"""The live agenda: what is new, what is a follow-up, in what order, with which values."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

import models
from tests.conftest import assert_problem
from tests.huddles.conftest import utc


def agenda(client, actor, day: str) -> dict:
    r = client.get(f"/v1/huddles/{day}/agenda", headers=actor.headers)
    assert r.status_code == 200, r.text
    return r.json()


def ids(items) -> list[str]:
    return [i["incident_id"] for i in items]


def hold(client, actor, day: str) -> dict:
    r = client.post("/v1/huddles", json={"date": day}, headers=actor.headers)
    assert r.status_code == 201, r.text
    return r.json()


def discuss(client, actor, huddle_id: str, incident_id: str, **body) -> dict:
    r = client.post(
        f"/v1/huddles/{huddle_id}/items/{incident_id}",
        json={"discussed": True, **body},
        headers=actor.headers,
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_new_is_every_undiscussed_incident_reported_before_the_cutoff_oldest_first(
    client, clock, cast, data
):
    src = cast.source_agency_id
    clock.set(utc(2026, 11, 24, 8, 30))
    recent = data.incident(source_agency_id=src, occurred_at=utc(2026, 11, 23, 20, 0))
    # A late notification: happened ten days ago, reported yesterday. It must not fall off.
    late = data.incident(
        source_agency_id=src,
        occurred_at=utc(2026, 11, 13, 2, 0),
        reported_at=utc(2026, 11, 23, 15, 0),
    )
    middle = data.incident(source_agency_id=src, occurred_at=utc(2026, 11, 22, 3, 0))
    # Reported after Tuesday's 09:00 cut-off: not on Tuesday's agenda, on Wednesday's.
    after = data.incident(
        source_agency_id=src,
        occurred_at=utc(2026, 11, 24, 7, 0),
        reported_at=utc(2026, 11, 24, 9, 0),
    )
    body = agenda(client, cast.coordinator, "2026-11-24")
    assert ids(body["new"]) == [late, middle, recent]
    assert body["follow_ups"] == []
    assert body["cutoff_at"] == "2026-11-24T09:00:00Z"
    assert body["previous_huddle_date"] == "2026-11-23"
    assert body["next_huddle_date"] == "2026-11-25"
    assert body["held"] is False and body["huddle_id"] is None
    assert ids(agenda(client, cast.coordinator, "2026-11-25")["new"]) == [
        late,
        middle,
        recent,
        after,
    ]


def test_monday_covers_friday_evening_and_the_weekend(client, clock, cast, data):
    src = cast.source_agency_id
    clock.set(utc(2026, 11, 20, 8, 0))  # Friday morning
    thursday = data.incident(source_agency_id=src, occurred_at=utc(2026, 11, 19, 23, 0))
    friday = hold(client, cast.coordinator, "2026-11-20")
    assert ids(friday["new"]) == [thursday]
    discuss(client, cast.coordinator, friday["id"], thursday)

    fri_evening = data.incident(source_agency_id=src, occurred_at=utc(2026, 11, 20, 19, 0))
    saturday = data.incident(source_agency_id=src, occurred_at=utc(2026, 11, 21, 2, 0))
    sunday = data.incident(source_agency_id=src, occurred_at=utc(2026, 11, 22, 22, 0))
    monday_early = data.incident(
        source_agency_id=src,
        occurred_at=utc(2026, 11, 23, 6, 0),
        reported_at=utc(2026, 11, 23, 8, 59),
    )
    monday_after_cutoff = data.incident(
        source_agency_id=src,
        occurred_at=utc(2026, 11, 23, 6, 0),
        reported_at=utc(2026, 11, 23, 9, 1),
    )
    clock.set(utc(2026, 11, 23, 8, 45))
    monday = agenda(client, cast.coordinator, "2026-11-23")
    assert monday["previous_huddle_date"] == "2026-11-20"
    assert ids(monday["new"]) == [fri_evening, saturday, sunday, monday_early]
    assert monday_after_cutoff not in ids(monday["new"])
    # Thursday's incident was discussed on Friday and still awaits contact: a follow-up.
    assert ids(monday["follow_ups"]) == [thursday]


def test_tuesday_after_a_bank_holiday_monday(client, clock, cast, data):
    src = cast.source_agency_id
    clock.set(utc(2026, 12, 1, 8, 0))
    # St Andrew's Day (Monday 30 Nov) is a holiday: Tuesday's agenda covers Friday to Tuesday.
    incs = [
        data.incident(source_agency_id=src, occurred_at=utc(2026, 11, 27, 12, 0)),
        data.incident(source_agency_id=src, occurred_at=utc(2026, 11, 29, 12, 0)),
        data.incident(source_agency_id=src, occurred_at=utc(2026, 11, 30, 12, 0)),
    ]
    body = agenda(client, cast.coordinator, "2026-12-01")
    assert body["previous_huddle_date"] == "2026-11-27"
    assert body["working_day"] is True
    assert ids(body["new"]) == incs
    holiday = agenda(client, cast.coordinator, "2026-11-30")
    assert holiday["working_day"] is False
    assert holiday["next_huddle_date"] == "2026-12-01"


def test_cutoff_follows_the_clock_change(client, clock, cast, data):
    src = cast.source_agency_id
    clock.set(utc(2026, 3, 31, 10, 0))
    # Monday 30 March 2026 is BST: the cut-off is 08:00Z. 08:30Z is 09:30 local: too late.
    too_late = data.incident(
        source_agency_id=src,
        occurred_at=utc(2026, 3, 30, 7, 0),
        reported_at=utc(2026, 3, 30, 8, 30),
    )
    in_time = data.incident(
        source_agency_id=src,
        occurred_at=utc(2026, 3, 30, 7, 0),
        reported_at=utc(2026, 3, 30, 7, 59),
    )
    body = agenda(client, cast.coordinator, "2026-03-30")
    assert body["cutoff_at"] == "2026-03-30T08:00:00Z"
    assert ids(body["new"]) == [in_time]
    # Friday 27 March is still GMT: 08:30Z is 08:30 local, before the cut-off.
    friday_item = data.incident(
        source_agency_id=src,
        occurred_at=utc(2026, 3, 27, 7, 0),
        reported_at=utc(2026, 3, 27, 8, 30),
    )
    fri = agenda(client, cast.coordinator, "2026-03-27")
    assert fri["cutoff_at"] == "2026-03-27T09:00:00Z"
    assert ids(fri["new"]) == [friday_item]
    assert too_late in ids(agenda(client, cast.coordinator, "2026-03-31")["new"])


def test_follow_ups_overdue_first_then_by_deadline_and_only_while_awaiting_contact(
    client, clock, cast, data, factory
):
    src = cast.source_agency_id
    clock.set(utc(2026, 11, 24, 8, 0))
    h = "prior-huddle"
    a = data.incident(
        source_agency_id=src, occurred_at=utc(2026, 11, 22, 10, 0), discussed_at_huddle_id=h
    )
    b = data.incident(
        source_agency_id=src, occurred_at=utc(2026, 11, 20, 10, 0), discussed_at_huddle_id=h
    )
    c = data.incident(
        source_agency_id=src, occurred_at=utc(2026, 11, 21, 10, 0), discussed_at_huddle_id=h
    )
    d = data.incident(
        source_agency_id=src, occurred_at=utc(2026, 11, 19, 10, 0), discussed_at_huddle_id=h
    )
    data.incident(
        source_agency_id=src,
        occurred_at=utc(2026, 11, 18, 10, 0),
        discussed_at_huddle_id=h,
        fu_status="contacted",
    )
    data.incident(
        source_agency_id=src,
        occurred_at=utc(2026, 11, 18, 10, 0),
        discussed_at_huddle_id=h,
        fu_status="closed",
    )
    body = agenda(client, cast.coordinator, "2026-11-24")
    assert body["new"] == []
    # d (due 22nd) and b (due 23rd) are overdue; c (due 24th 10:00) and a (due 25th) are not.
    assert ids(body["follow_ups"]) == [d, b, c, a]
    flags = [(i["overdue"], i["follow_up"]["overdue"]) for i in body["follow_ups"]]
    assert flags == [(True, True), (True, True), (False, False), (False, False)]
    hours = [i["hours_remaining"] for i in body["follow_ups"]]
    assert hours == [-46.0, -22.0, 2.0, 26.0]
    # hours_remaining is computed from the request's time.
    clock.advance(hours=3)
    body = agenda(client, cast.coordinator, "2026-11-24")
    assert [i["hours_remaining"] for i in body["follow_ups"]] == [-49.0, -25.0, -1.0, 23.0]
    assert [i["overdue"] for i in body["follow_ups"]] == [True, True, True, False]


def test_due_before_next_huddle_over_a_weekend_and_a_holiday(client, clock, cast, data):
    src = cast.source_agency_id
    clock.set(utc(2026, 11, 27, 8, 0))  # Friday; next huddle Tuesday 1 Dec (St Andrew's Monday)
    # Due Monday evening: before Tuesday's 09:00 cut-off.
    monday_due = data.incident(source_agency_id=src, occurred_at=utc(2026, 11, 27, 20, 0))
    # Due Tuesday 08:59Z: still before.
    tuesday_early = data.incident(source_agency_id=src, occurred_at=utc(2026, 11, 28, 8, 59))
    # Due Tuesday 09:30Z: after.
    tuesday_late = data.incident(
        source_agency_id=src,
        occurred_at=utc(2026, 11, 28, 9, 30),
        reported_at=utc(2026, 11, 28, 9, 45),
    )
    body = agenda(client, cast.coordinator, "2026-11-27")
    assert body["next_huddle_date"] == "2026-12-01"
    assert body["new"] == []  # all three were reported after Friday's cut-off
    # Saturday's agenda is served (not a working day) and its next huddle is Tuesday too.
    sat = agenda(client, cast.coordinator, "2026-11-29")
    assert sat["working_day"] is False and sat["next_huddle_date"] == "2026-12-01"
    flags = {i["incident_id"]: i["due_before_next_huddle"] for i in sat["new"]}
    assert flags == {monday_due: True, tuesday_early: True, tuesday_late: False}


def test_person_summary_counts_age_and_risk(client, clock, cast, data):
    src = cast.source_agency_id
    clock.set(utc(2026, 11, 24, 8, 0))
    pid = data.person(given="Sam", family="Reid", dob=date(1980, 11, 24))  # birthday today
    other = data.person(given=None, family=None, dob=None)
    main = data.incident(source_agency_id=src, occurred_at=utc(2026, 11, 23, 20, 0), person_id=pid)
    # History of the same person: 2 within 30 days (incl. main), 3 within 365, 1 older.
    data.incident(
        source_agency_id=src,
        occurred_at=utc(2026, 11, 1, 20, 0),
        person_id=pid,
        discussed_at_huddle_id="old",
        fu_status="contacted",
    )
    data.incident(
        source_agency_id=src,
        occurred_at=utc(2026, 3, 1, 20, 0),
        person_id=pid,
        discussed_at_huddle_id="old",
        fu_status="closed",
    )
    data.incident(
        source_agency_id=src,
        occurred_at=utc(2025, 11, 1, 20, 0),
        person_id=pid,
        discussed_at_huddle_id="old",
        fu_status="closed",
    )
    # After the cut-off: not counted.
    data.incident(
        source_agency_id=src,
        occurred_at=utc(2026, 11, 24, 9, 30),
        person_id=pid,
        reported_at=utc(2026, 11, 24, 9, 40),
    )
    anon = data.incident(source_agency_id=src, occurred_at=utc(2026, 11, 23, 21, 0))
    noname = data.incident(
        source_agency_id=src,
        occurred_at=utc(2026, 11, 23, 22, 0),
        person_id=other,
        substances=("heroin", "street benzodiazepine"),
    )
    r = client.put(
        f"/v1/persons/{pid}/safety-plan",
        json={"risk_level": "red"},
        headers=cast.coordinator.headers,
    )
    assert r.status_code == 201
    items = {i["incident_id"]: i for i in agenda(client, cast.coordinator, "2026-11-24")["new"]}
    assert set(items) == {main, anon, noname}
    assert items[main]["person"] == {
        "id": pid,
        "name": "Sam Reid",
        "age": 46,
        "incidents_30d": 2,
        "incidents_365d": 3,
        "risk_level": "red",
    }
    assert items[anon]["person"] is None
    assert items[noname]["person"]["name"] is None and items[noname]["person"]["age"] is None
    assert items[noname]["person"]["risk_level"] is None
    assert items[noname]["substances"] == ["heroin", "street benzodiazepine"]
    assert items[main]["substances"] == [] and items[anon]["substances"] == []
    item = items[main]
    assert item["source_agency"] == {"id": src, "name": "Scottish Ambulance Service"}
    assert item["location"]["postcode"] == "DD3 7AA"
    assert item["follow_up"]["status"] == "awaiting_contact"
    assert item["contact_due_at"] == "2026-11-26T20:00:00Z"
    expected_keys = {
        "incident_id",
        "occurred_at",
        "reported_at",
        "contact_due_at",
        "hours_remaining",
        "overdue",
        "due_before_next_huddle",
        "source_agency",
        "substances",
        "location",
        "follow_up",
        "person",
    }
    assert expected_keys <= set(item)
    assert {
        "status",
        "overdue",
        "first_contact_at",
        "within_window",
        "assigned_agency_id",
        "closed_reason",
    } <= set(item["follow_up"])


@pytest.mark.parametrize(
    "day",
    ["2026-13-01", "20261124", "tomorrow", "2026-11-31", "2026-1-5", "0001-01-01", "9999-12-31"],
)
def test_invalid_date_is_422(client, cast, day):
    assert_problem(client.get(f"/v1/huddles/{day}/agenda", headers=cast.coordinator.headers), 422)


def test_only_coordinators_see_the_agenda(client, cast, factory):
    for actor in (cast.outreach, cast.analyst, cast.partner, factory.user("admin")):
        assert_problem(client.get("/v1/huddles/2026-11-24/agenda", headers=actor.headers), 403)
    assert_problem(client.get("/v1/huddles/2026-11-24/agenda"), 401)


def test_agenda_views_are_audited_without_personal_data(client, clock, cast, data, session):
    clock.set(utc(2026, 11, 24, 8, 0))
    pid = data.person(given="Unique", family="Surname")
    inc = data.incident(
        source_agency_id=cast.source_agency_id, occurred_at=utc(2026, 11, 23, 1, 0), person_id=pid
    )
    agenda(client, cast.coordinator, "2026-11-24")
    entries = (
        session.execute(
            select(models.AuditEntry).where(models.AuditEntry.subject_type == "huddle_agenda")
        )
        .scalars()
        .all()
    )
    assert len(entries) == 1
    e = entries[0]
    assert (e.action, e.subject_id, e.actor_id) == ("read", "2026-11-24", cast.coordinator.id)
    assert inc in e.details["incident_ids"]
    assert "Unique" not in str(e.details) and "Surname" not in str(e.details)


def test_hours_and_due_values_are_numbers_with_the_documented_signs(client, clock, cast, data):
    clock.set(utc(2026, 11, 24, 8, 0))
    inc = data.incident(
        source_agency_id=cast.source_agency_id,
        occurred_at=utc(2026, 11, 24, 2, 0) - timedelta(hours=72),
    )
    item = agenda(client, cast.coordinator, "2026-11-24")["new"][0]
    assert item["incident_id"] == inc
    assert item["hours_remaining"] == -6.0 and item["overdue"] is True
    assert item["due_before_next_huddle"] is True


def test_the_agenda_body_is_exactly_its_response_model_live_and_frozen(client, clock, cast, data):
    """The route renders the service's answer without re-validating it (api/responses.py):
    it must round-trip through the declared Agenda model unchanged, field for field."""
    from api.schemas.huddles import Agenda

    src = cast.source_agency_id
    clock.set(utc(2026, 11, 24, 8, 30))
    person = data.person(given="Ann", family="Reid")
    data.incident(
        source_agency_id=src,
        occurred_at=utc(2026, 11, 23, 20, 0, 0),
        person_id=person,
        substances=("heroin", "cocaine"),
    )
    data.incident(source_agency_id=src, occurred_at=utc(2026, 11, 22, 3, 0), postcode=None)

    def same_as_model(body: dict) -> None:
        assert body["new"] or body["follow_ups"]
        assert Agenda.model_validate(body).model_dump(mode="json", exclude_unset=True) == body

    live = agenda(client, cast.coordinator, "2026-11-24")
    same_as_model(live)
    assert live["new"][-1]["person"]["name"] == "Ann Reid"
    assert live["new"][-1]["substances"] == ["heroin", "cocaine"]
    held = hold(client, cast.coordinator, "2026-11-24")
    discuss(client, cast.coordinator, held["id"], live["new"][0]["incident_id"], notes="seen")
    frozen = agenda(client, cast.coordinator, "2026-11-24")
    assert frozen["held"] is True
    same_as_model(frozen)


def test_an_agenda_longer_than_one_in_list_batch_is_the_same_agenda(
    client, clock, cast, data, monkeypatch
):
    """The agenda names its incidents and people in IN lists of at most IN_BATCH values;
    longer agendas are read in batches, with the same answer."""
    import services.db

    src = cast.source_agency_id
    clock.set(utc(2026, 11, 24, 8, 30))
    people = [data.person(given=f"P{i}", family="Reid") for i in range(3)]
    for i in range(7):
        data.incident(
            source_agency_id=src,
            occurred_at=utc(2026, 11, 23, 1 + i, 0),
            person_id=people[i % 3],
            substances=("heroin", f"drug {i}"),
        )
    whole = agenda(client, cast.coordinator, "2026-11-24")
    monkeypatch.setattr(services.db, "IN_BATCH", 2)
    batched = agenda(client, cast.coordinator, "2026-11-24")
    for body in (whole, batched):
        body.pop("generated_at")
    assert batched == whole
    assert len(whole["new"]) == 7
    assert {i["person"]["incidents_30d"] for i in whole["new"]} == {2, 3}
    assert whole["new"][6]["substances"] == ["heroin", "drug 6"]
