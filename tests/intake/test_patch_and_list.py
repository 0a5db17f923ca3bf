"""PATCH /v1/incidents/{id} (coordinator corrections) and GET /v1/incidents filters and paging."""

from __future__ import annotations

from datetime import timedelta

from models.incident import Incident
from tests.conftest import assert_problem
from tests.intake.conftest import count, iso


def _post(client, actor, data):
    r = client.post("/v1/incidents", json=data, headers=actor.headers)
    assert r.status_code == 201, r.text
    return r.json()


def test_correcting_occurred_at_recomputes_the_deadline(client, cast, body, clock):
    inc = _post(client, cast.partner_a, body())
    new_time = clock() - timedelta(hours=10)
    r = client.patch(
        f"/v1/incidents/{inc['id']}",
        json={"occurred_at": iso(new_time)},
        headers=cast.coordinator.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["contact_due_at"] == iso(new_time + timedelta(hours=72))
    # every rule still holds: after reported_at, or in the future
    for bad in (
        {"occurred_at": iso(clock() - timedelta(hours=1))},
        {"occurred_at": iso(clock() + timedelta(hours=1))},
        {"occurred_at": None},
        {"occurred_at": "2026-01-01T00:00:00"},
    ):
        assert_problem(
            client.patch(f"/v1/incidents/{inc['id']}", json=bad, headers=cast.coordinator.headers),
            422,
        )
    got = client.get(f"/v1/incidents/{inc['id']}", headers=cast.coordinator.headers).json()
    assert got["occurred_at"] == iso(new_time)


def test_patch_fields_assignment_person_and_closing(client, cast, body, session):
    inc = _post(client, cast.partner_a, body())
    other = _post(
        client, cast.partner_a, body(person={"given_name": "Alex", "family_name": "Brown"})
    )
    h = cast.coordinator.headers
    r = client.patch(
        f"/v1/incidents/{inc['id']}",
        json={
            "hospital": "conveyed",
            "substances": ["Cocaine"],
            "location": {"postcode": "dd1 1aa"},
            "assigned_agency_id": cast.agency_b,
            "person_id": other["person_id"],
        },
        headers=h,
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["hospital"] == "conveyed" and got["substances"] == ["cocaine"]
    assert got["location"]["postcode_district"] == "DD1"
    assert got["follow_up"]["assigned_agency_id"] == cast.agency_b
    assert got["person_id"] == other["person_id"]
    r = client.patch(
        f"/v1/incidents/{inc['id']}",
        json={"follow_up": {"status": "closed", "closed_reason": "moved_away"}},
        headers=h,
    )
    assert r.status_code == 200
    assert (
        r.json()["follow_up"]["status"] == "closed"
        and r.json()["follow_up"]["closed_reason"] == "moved_away"
    )
    for bad in (
        {"assigned_agency_id": "no-such-agency"},
        {"person_id": "no-such-person"},
        {"follow_up": {"status": "closed", "closed_reason": "bored"}},
        {"follow_up": {"status": "contacted"}},
        {"follow_up": {"status": "closed"}},
        {"follow_up": None},
        {"hospital": "maybe"},
        {"source_agency_id": cast.agency_b},
        {"colour": "red"},
        {"location": {"postcode": "nope"}},
    ):
        assert_problem(client.patch(f"/v1/incidents/{inc['id']}", json=bad, headers=h), 422)
    assert_problem(client.patch("/v1/incidents/nope", json={"notes": "x"}, headers=h), 404)


def test_no_automatic_closure_after_many_failed_attempts(client, cast, body, clock):
    inc = _post(client, cast.partner_a, body())
    for i in range(8):
        payload = {
            "attempted_at": iso(clock() - timedelta(minutes=60 - i)),
            "method": "phone",
            "outcome": "no_answer",
        }
        assert (
            client.post(
                f"/v1/incidents/{inc['id']}/contacts",
                json=payload,
                headers=cast.coordinator.headers,
            ).status_code
            == 201
        )
    got = client.get(f"/v1/incidents/{inc['id']}", headers=cast.coordinator.headers).json()
    assert got["follow_up"]["status"] == "awaiting_contact"


def test_list_filters_and_paging(client, cast, body, clock, session):
    now = clock()
    old = _post(
        client,
        cast.partner_a,
        body(occurred_at=iso(now - timedelta(days=5)), reported_at=iso(now - timedelta(days=5))),
    )
    mid = _post(
        client,
        cast.partner_a,
        body(
            occurred_at=iso(now - timedelta(days=2)),
            reported_at=iso(now - timedelta(days=2)),
            person={"given_name": "Alex", "family_name": "Brown"},
        ),
    )
    new = _post(
        client,
        cast.partner_a,
        body(occurred_at=iso(now - timedelta(hours=2)), reported_at=iso(now - timedelta(hours=1))),
    )
    h = cast.coordinator.headers
    client.patch(
        f"/v1/incidents/{mid['id']}", json={"assigned_agency_id": cast.agency_b}, headers=h
    )
    client.patch(
        f"/v1/incidents/{new['id']}",
        json={"follow_up": {"status": "closed", "closed_reason": "declined"}},
        headers=h,
    )

    def ids(**params):
        r = client.get("/v1/incidents", params=params, headers=h)
        assert r.status_code == 200, r.text
        return [i["id"] for i in r.json()["items"]]

    assert ids() == [new["id"], mid["id"], old["id"]]  # newest occurred_at first
    assert ids(overdue="true") == [old["id"]]
    assert ids(status="closed") == [new["id"]]
    assert ids(status="awaiting_contact") == [mid["id"], old["id"]]
    assert ids(person_id=old["person_id"]) == [new["id"], old["id"]]
    assert ids(assigned_agency_id=cast.agency_b) == [mid["id"]]
    assert ids(occurred_from=iso(now - timedelta(days=3))) == [new["id"], mid["id"]]
    assert ids(occurred_to=iso(now - timedelta(days=3))) == [old["id"]]
    assert ids(
        occurred_from=iso(now - timedelta(days=3)), occurred_to=iso(now - timedelta(days=1))
    ) == [mid["id"]]
    # keyset pages
    first = client.get("/v1/incidents", params={"limit": 2}, headers=h).json()
    assert [i["id"] for i in first["items"]] == [new["id"], mid["id"]] and first["next_cursor"]
    second = client.get(
        "/v1/incidents", params={"limit": 2, "cursor": first["next_cursor"]}, headers=h
    ).json()
    assert [i["id"] for i in second["items"]] == [old["id"]] and second["next_cursor"] is None
    for bad in (
        {"limit": 501},
        {"limit": 0},
        {"status": "open"},
        {"overdue": "perhaps"},
        {"occurred_from": "2026-01-01T00:00:00"},
        {"cursor": "garbage!"},
    ):
        assert_problem(client.get("/v1/incidents", params=bad, headers=h), 422)
    assert count(session, Incident) == 3
