"""Holding the huddle (freezing), recording discussions, late items, listing, access."""

from __future__ import annotations

import threading

from sqlalchemy import select

import models
from tests.conftest import assert_problem, is_postgres, postgres_only
from tests.huddles.conftest import utc
from tests.huddles.test_agenda import agenda, discuss, hold, ids


def test_hold_freezes_the_agenda_and_a_second_hold_is_409(client, clock, cast, data, session):
    src = cast.source_agency_id
    clock.set(utc(2026, 11, 24, 8, 0))
    a = data.incident(source_agency_id=src, occurred_at=utc(2026, 11, 23, 20, 0))
    b = data.incident(
        source_agency_id=src, occurred_at=utc(2026, 11, 21, 10, 0), discussed_at_huddle_id="x"
    )
    r = client.post(
        "/v1/huddles",
        json={"date": "2026-11-24", "chair_name": "Ali Khan"},
        headers=cast.coordinator.headers,
    )
    assert r.status_code == 201, r.text
    held = r.json()
    assert held["id"] and held["date"] == "2026-11-24" and held["held"] is True
    assert held["chair_name"] == "Ali Khan" and held["held_at"] == "2026-11-24T08:00:00Z"
    assert ids(held["new"]) == [a] and ids(held["follow_ups"]) == [b]
    frozen_hours = held["new"][0]["hours_remaining"]
    assert frozen_hours == 60.0

    again = client.post(
        "/v1/huddles", json={"date": "2026-11-24"}, headers=cast.coordinator.headers
    )
    body = assert_problem(again, 409)
    assert body["huddle_id"] == held["id"]

    # Time moves on, a new incident arrives before the cut-off: the held agenda does not change.
    clock.advance(hours=30)
    data.incident(
        source_agency_id=src,
        occurred_at=utc(2026, 11, 24, 7, 0),
        reported_at=utc(2026, 11, 24, 8, 30),
    )
    view = agenda(client, cast.coordinator, "2026-11-24")
    assert view["held"] is True and view["huddle_id"] == held["id"]
    assert ids(view["new"]) == [a] and ids(view["follow_ups"]) == [b]
    assert view["new"][0]["hours_remaining"] == frozen_hours
    assert view["new"][0]["overdue"] is False
    got = client.get(f"/v1/huddles/{held['id']}", headers=cast.coordinator.headers)
    assert got.status_code == 200
    assert got.json()["new"][0]["hours_remaining"] == frozen_hours
    audit = (
        session.execute(
            select(models.AuditEntry).where(
                models.AuditEntry.subject_id == held["id"], models.AuditEntry.action == "create"
            )
        )
        .scalars()
        .all()
    )
    assert len(audit) == 1


def test_discussion_moves_an_incident_from_new_to_later_follow_ups(client, clock, cast, data):
    src = cast.source_agency_id
    clock.set(utc(2026, 11, 24, 8, 0))
    a = data.incident(source_agency_id=src, occurred_at=utc(2026, 11, 23, 20, 0))
    b = data.incident(source_agency_id=src, occurred_at=utc(2026, 11, 23, 21, 0))
    held = hold(client, cast.coordinator, "2026-11-24")
    item = discuss(
        client,
        cast.coordinator,
        held["id"],
        a,
        assigned_agency_id=cast.outreach.agency_id,
        notes="call today",
    )
    assert item["incident_id"] == a and item["discussed"] is True
    assert item["assigned_agency_id"] == cast.outreach.agency_id and item["notes"] == "call today"
    assert item["discussed_at"] == "2026-11-24T08:00:00Z" and item["section"] == "new"
    inc = data.get_incident(a)
    assert (
        inc.discussed_at_huddle_id == held["id"]
        and inc.assigned_agency_id == cast.outreach.agency_id
    )

    clock.set(utc(2026, 11, 25, 8, 0))
    wed = agenda(client, cast.coordinator, "2026-11-25")
    assert ids(wed["new"]) == [b]  # not discussed: still new, nothing falls off
    assert ids(wed["follow_ups"]) == [a]
    assert wed["follow_ups"][0]["follow_up"]["assigned_agency_id"] == cast.outreach.agency_id
    # The held huddle shows the outcome.
    tue = client.get(f"/v1/huddles/{held['id']}", headers=cast.coordinator.headers).json()
    outcome = {i["incident_id"]: (i["discussed"], i["assigned_agency_id"]) for i in tue["new"]}
    assert outcome == {a: (True, cast.outreach.agency_id), b: (False, None)}


def test_discussing_again_keeps_the_first_huddle_and_cannot_be_undone(client, clock, cast, data):
    src = cast.source_agency_id
    clock.set(utc(2026, 11, 24, 8, 0))
    a = data.incident(source_agency_id=src, occurred_at=utc(2026, 11, 23, 20, 0))
    tue = hold(client, cast.coordinator, "2026-11-24")
    discuss(client, cast.coordinator, tue["id"], a)
    clock.set(utc(2026, 11, 25, 8, 0))
    wed = hold(client, cast.coordinator, "2026-11-25")
    assert ids(wed["follow_ups"]) == [a]
    item = discuss(client, cast.coordinator, wed["id"], a, notes="no answer yet")
    assert item["section"] == "follow_ups" and item["discussed"] is True
    inc = data.get_incident(a)
    assert inc.discussed_at_huddle_id == tue["id"]
    assert inc.discussed_at == utc(2026, 11, 24, 8, 0)
    undo = client.post(
        f"/v1/huddles/{wed['id']}/items/{a}",
        json={"discussed": False},
        headers=cast.coordinator.headers,
    )
    assert_problem(undo, 409)
    # Notes alone can still be changed.
    r = client.post(
        f"/v1/huddles/{wed['id']}/items/{a}",
        json={"notes": "left message"},
        headers=cast.coordinator.headers,
    )
    assert (
        r.status_code == 200
        and r.json()["notes"] == "left message"
        and r.json()["discussed"] is True
    )


def test_an_incident_reported_after_the_cutoff_can_be_added_as_a_late_item(
    client, clock, cast, data
):
    src = cast.source_agency_id
    clock.set(utc(2026, 11, 24, 9, 30))
    held = hold(client, cast.coordinator, "2026-11-24")
    assert held["new"] == []
    late = data.incident(
        source_agency_id=src,
        occurred_at=utc(2026, 11, 24, 7, 0),
        reported_at=utc(2026, 11, 24, 9, 15),
    )
    item = discuss(
        client, cast.coordinator, held["id"], late, assigned_agency_id=cast.outreach.agency_id
    )
    assert item["section"] == "late" and item["incident_id"] == late and item["discussed"] is True
    view = client.get(f"/v1/huddles/{held['id']}", headers=cast.coordinator.headers).json()
    assert view["new"] == [] and ids(view["late"]) == [late]
    # It was discussed: it is never new again.
    assert late not in ids(agenda(client, cast.coordinator, "2026-11-25")["new"])
    assert late in ids(agenda(client, cast.coordinator, "2026-11-25")["follow_ups"])


def test_assignment_at_the_huddle_gives_the_agency_s_outreach_workers_access(
    client, clock, cast, data
):
    clock.set(utc(2026, 11, 24, 8, 0))
    pid = data.person()
    inc = data.incident(
        source_agency_id=cast.source_agency_id, occurred_at=utc(2026, 11, 23, 20, 0), person_id=pid
    )
    r = client.put(
        f"/v1/persons/{pid}/safety-plan",
        json={"risk_level": "amber"},
        headers=cast.coordinator.headers,
    )
    assert r.status_code == 201
    plan_url = f"/v1/persons/{pid}/safety-plan"
    assert_problem(client.get(plan_url, headers=cast.outreach.headers), 404)
    held = hold(client, cast.coordinator, "2026-11-24")
    discuss(client, cast.coordinator, held["id"], inc, assigned_agency_id=cast.outreach.agency_id)
    assert client.get(plan_url, headers=cast.outreach.headers).status_code == 200
    assert_problem(client.get(plan_url, headers=cast.outreach_other.headers), 404)
    # The incident itself (intake's endpoint) is visible to that agency's outreach now.
    incident = client.get(f"/v1/incidents/{inc}", headers=cast.outreach.headers)
    assert incident.status_code == 200, incident.text
    assert incident.json()["follow_up"]["assigned_agency_id"] == cast.outreach.agency_id
    assert_problem(client.get(f"/v1/incidents/{inc}", headers=cast.outreach_other.headers), 404)


def test_discussion_errors(client, clock, cast, data):
    clock.set(utc(2026, 11, 24, 8, 0))
    a = data.incident(source_agency_id=cast.source_agency_id, occurred_at=utc(2026, 11, 23, 20, 0))
    held = hold(client, cast.coordinator, "2026-11-24")
    h = cast.coordinator.headers
    url = f"/v1/huddles/{held['id']}/items/{a}"
    assert_problem(
        client.post(f"/v1/huddles/nope/items/{a}", json={"discussed": True}, headers=h), 404
    )
    assert_problem(
        client.post(f"/v1/huddles/{held['id']}/items/nope", json={"discussed": True}, headers=h),
        404,
    )
    body = assert_problem(
        client.post(url, json={"assigned_agency_id": "no-such-agency"}, headers=h), 422
    )
    assert body["errors"][0]["loc"] == ["body", "assigned_agency_id"]
    assert_problem(client.post(url, json={"discussed": "yes"}, headers=h), 422)
    assert_problem(client.post(url, json={"discussed": True, "colour": "red"}, headers=h), 422)
    # Outreach may not use the endpoint at all, whatever the body: 403 before validation.
    assert_problem(
        client.post(url, json={"discussed": "nonsense"}, headers=cast.outreach.headers), 403
    )
    assert data.get_incident(a).discussed_at_huddle_id is None


def test_hold_validation_and_roles(client, cast):
    h = cast.coordinator.headers
    assert_problem(client.post("/v1/huddles", json={}, headers=h), 422)
    assert_problem(client.post("/v1/huddles", json={"date": "24/11/2026"}, headers=h), 422)
    assert_problem(client.post("/v1/huddles", json={"date": 0}, headers=h), 422)
    assert_problem(client.post("/v1/huddles", json={"date": "9999-12-31"}, headers=h), 422)
    assert_problem(client.post("/v1/huddles", json={"date": "2026-11-24T00:00:00"}, headers=h), 422)
    assert_problem(
        client.post("/v1/huddles", json={"date": "2026-11-24", "extra": 1}, headers=h), 422
    )
    assert_problem(
        client.post("/v1/huddles", json={"date": "bad"}, headers=cast.outreach.headers), 403
    )
    assert_problem(client.get("/v1/huddles", headers=cast.analyst.headers), 403)
    assert_problem(client.get("/v1/huddles/whatever", headers=h), 404)


def test_list_huddles_newest_first_filtered_and_keyset_paged(client, clock, cast, data):
    clock.set(utc(2026, 11, 27, 10, 0))
    made = {}
    for day in ("2026-11-23", "2026-11-24", "2026-11-25", "2026-11-26"):
        made[day] = hold(client, cast.coordinator, day)["id"]
    h = cast.coordinator.headers
    r = client.get("/v1/huddles", headers=h).json()
    assert [i["date"] for i in r["items"]] == [
        "2026-11-26",
        "2026-11-25",
        "2026-11-24",
        "2026-11-23",
    ]
    r = client.get(
        "/v1/huddles", params={"from": "2026-11-24", "to": "2026-11-25"}, headers=h
    ).json()
    assert [i["id"] for i in r["items"]] == [made["2026-11-25"], made["2026-11-24"]]
    seen, cursor = [], None
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/huddles", params=params, headers=h).json()
        seen += [i["date"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ["2026-11-26", "2026-11-25", "2026-11-24", "2026-11-23"]
    assert_problem(
        client.get("/v1/huddles", params={"from": "2026-11-25", "to": "2026-11-24"}, headers=h), 422
    )
    assert_problem(client.get("/v1/huddles", params={"from": "yesterday"}, headers=h), 422)
    assert_problem(client.get("/v1/huddles", params={"limit": 0}, headers=h), 422)


@postgres_only
def test_concurrent_holds_of_the_same_date_one_wins(client, clock, cast, data):
    assert is_postgres()
    clock.set(utc(2026, 11, 24, 8, 0))
    for n in range(20):
        data.incident(source_agency_id=cast.source_agency_id, occurred_at=utc(2026, 11, 23, n, 0))
    results: list[int] = []
    barrier = threading.Barrier(6)

    def attempt():
        barrier.wait()
        r = client.post(
            "/v1/huddles", json={"date": "2026-11-24"}, headers=cast.coordinator.headers
        )
        results.append(r.status_code)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [201, 409, 409, 409, 409, 409]
    view = client.get("/v1/huddles", headers=cast.coordinator.headers).json()
    assert len(view["items"]) == 1 and view["items"][0]["item_count"] == 20


@postgres_only
def test_concurrent_discussions_of_one_late_incident_add_one_item(client, clock, cast, data):
    clock.set(utc(2026, 11, 24, 9, 30))
    held = hold(client, cast.coordinator, "2026-11-24")
    late = data.incident(
        source_agency_id=cast.source_agency_id,
        occurred_at=utc(2026, 11, 24, 7, 0),
        reported_at=utc(2026, 11, 24, 9, 15),
    )
    results: list[int] = []
    barrier = threading.Barrier(5)

    def attempt(i):
        barrier.wait()
        r = client.post(
            f"/v1/huddles/{held['id']}/items/{late}",
            json={"discussed": True, "notes": f"writer {i}"},
            headers=cast.coordinator.headers,
        )
        results.append(r.status_code)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 5
    view = client.get(f"/v1/huddles/{held['id']}", headers=cast.coordinator.headers).json()
    assert ids(view["late"]) == [late]
    assert data.get_incident(late).discussed_at_huddle_id == held["id"]
