"""The access matrix (each role x each endpoint x own/other agency) and the audit trail."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from models.audit import AuditEntry
from tests.conftest import assert_problem
from tests.intake.conftest import iso


@pytest.fixture
def world(client, cast, body):
    """Incident A from partner A assigned to agency A; incident B from partner B assigned to B."""
    a = client.post("/v1/incidents", json=body(), headers=cast.partner_a.headers).json()
    b = client.post(
        "/v1/incidents",
        json=body(
            person={"given_name": "Alex", "family_name": "Brown", "date_of_birth": "1990-05-06"}
        ),
        headers=cast.partner_b.headers,
    ).json()
    for inc, agency in ((a, cast.agency_a), (b, cast.agency_b)):
        r = client.patch(
            f"/v1/incidents/{inc['id']}",
            json={"assigned_agency_id": agency},
            headers=cast.coordinator.headers,
        )
        assert r.status_code == 200, r.text
    return {"a": a, "b": b}


def _actor(cast, name):
    return getattr(cast, name)


READ_RULES = {
    # role: (sees incident A, sees incident B)
    "coordinator": (True, True),
    "outreach_a": (True, False),
    "outreach_b": (False, True),
    "partner_a": (True, False),
    "partner_b": (False, True),
}


@pytest.mark.parametrize("who", list(READ_RULES))
def test_incident_reads_follow_the_scope(client, cast, world, who):
    actor = _actor(cast, who)
    sees_a, sees_b = READ_RULES[who]
    for key, sees in (("a", sees_a), ("b", sees_b)):
        r = client.get(f"/v1/incidents/{world[key]['id']}", headers=actor.headers)
        if sees:
            assert r.status_code == 200, (who, key, r.text)
        else:
            assert_problem(r, 404)
    listed = {i["id"] for i in client.get("/v1/incidents", headers=actor.headers).json()["items"]}
    expected = {world[k]["id"] for k, s in (("a", sees_a), ("b", sees_b)) if s}
    assert listed == expected


@pytest.mark.parametrize("who", ["analyst", "admin"])
def test_analysts_and_admins_see_no_case_data(client, cast, world, body, who):
    actor = _actor(cast, who)
    inc = world["a"]
    calls = [
        ("get", "/v1/incidents", None),
        ("get", f"/v1/incidents/{inc['id']}", None),
        ("post", "/v1/incidents", body()),
        ("post", "/v1/incidents/batch", {"incidents": [body()]}),
        ("patch", f"/v1/incidents/{inc['id']}", {"notes": "x"}),
        ("get", f"/v1/incidents/{inc['id']}/contacts", None),
        ("post", f"/v1/incidents/{inc['id']}/contacts", {"nonsense": True}),
        ("get", "/v1/persons", None),
        ("get", f"/v1/persons/{inc['person_id']}", None),
        ("post", f"/v1/persons/{inc['person_id']}/merge", {"duplicate_id": "x"}),
    ]
    for method, path, payload in calls:
        r = client.request(method, path, json=payload, headers=actor.headers)
        assert_problem(r, 403)


def test_partners_cannot_use_people_contacts_or_patch(client, cast, world):
    inc = world["a"]
    h = cast.partner_a.headers
    assert_problem(client.get("/v1/persons", headers=h), 403)
    assert_problem(client.get(f"/v1/persons/{inc['person_id']}", headers=h), 403)
    assert_problem(client.get(f"/v1/incidents/{inc['id']}/contacts", headers=h), 403)
    assert_problem(client.post(f"/v1/incidents/{inc['id']}/contacts", json={}, headers=h), 403)
    assert_problem(client.patch(f"/v1/incidents/{inc['id']}", json={}, headers=h), 403)


def test_outreach_cannot_patch_or_merge(client, cast, world):
    inc = world["a"]
    h = cast.outreach_a.headers
    assert_problem(client.patch(f"/v1/incidents/{inc['id']}", json={"notes": "x"}, headers=h), 403)
    r = client.post(f"/v1/persons/{inc['person_id']}/merge", json={"duplicate_id": "x"}, headers=h)
    assert_problem(r, 403)


def test_unauthenticated_is_401(client, world):
    assert_problem(client.get("/v1/incidents"), 401)
    assert_problem(client.post("/v1/incidents", json={}), 401)
    assert_problem(client.get(f"/v1/persons/{world['a']['person_id']}"), 401)


def test_contacts_only_by_the_assigned_agency(client, cast, world, clock):
    payload = {"attempted_at": iso(clock()), "method": "phone", "outcome": "no_answer"}
    a, b = world["a"]["id"], world["b"]["id"]
    assert (
        client.post(
            f"/v1/incidents/{a}/contacts", json=payload, headers=cast.outreach_a.headers
        ).status_code
        == 201
    )
    assert_problem(
        client.post(f"/v1/incidents/{b}/contacts", json=payload, headers=cast.outreach_a.headers),
        404,
    )
    assert_problem(client.get(f"/v1/incidents/{b}/contacts", headers=cast.outreach_a.headers), 404)
    assert client.get(f"/v1/incidents/{a}/contacts", headers=cast.outreach_a.headers).json()[
        "items"
    ]
    assert (
        client.post(
            f"/v1/incidents/{b}/contacts", json=payload, headers=cast.coordinator.headers
        ).status_code
        == 201
    )


def test_people_behind_assigned_incidents(client, cast, world):
    pa, pb = world["a"]["person_id"], world["b"]["person_id"]
    assert client.get(f"/v1/persons/{pa}", headers=cast.outreach_a.headers).status_code == 200
    assert_problem(client.get(f"/v1/persons/{pb}", headers=cast.outreach_a.headers), 404)
    assert {
        p["id"] for p in client.get("/v1/persons", headers=cast.outreach_a.headers).json()["items"]
    } == {pa}
    assert {
        p["id"] for p in client.get("/v1/persons", headers=cast.coordinator.headers).json()["items"]
    } == {pa, pb}


def test_outreach_sees_the_person_whose_plan_its_agency_leads(client, cast, world, session, clock):
    from models.safety_plan import SafetyPlanVersion

    pb = world["b"]["person_id"]
    session.add(
        SafetyPlanVersion(
            person_id=pb,
            version=1,
            is_current=True,
            risk_level="amber",
            risk_factors=[],
            lead_agency_id=cast.agency_a,
            created_by_id="x",
            created_at=clock(),
        )
    )
    session.commit()
    r = client.get(f"/v1/persons/{pb}", headers=cast.outreach_a.headers)
    assert r.status_code == 200
    person = r.json()
    assert person["safety_plan"] == {
        "version": 1,
        "risk_level": "amber",
        "lead_agency_id": cast.agency_a,
        "review_on": None,
    }
    # the plan gives sight of the person, not of incidents assigned elsewhere
    assert person["incidents"] == [] and person["incident_count"] == 0


def test_reads_and_denials_are_audited(client, cast, world, session):
    a = world["a"]
    client.get(f"/v1/incidents/{a['id']}", headers=cast.outreach_a.headers)
    client.get(f"/v1/incidents/{world['b']['id']}", headers=cast.outreach_a.headers)
    client.get(f"/v1/persons/{a['person_id']}", headers=cast.coordinator.headers)
    client.get(f"/v1/persons/{world['b']['person_id']}", headers=cast.outreach_a.headers)
    entries = session.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars().all()
    session.rollback()
    seen = {(e.actor_id, e.action, e.subject_type, e.subject_id) for e in entries}
    assert (cast.outreach_a.id, "read", "incident", a["id"]) in seen
    assert (cast.outreach_a.id, "denied", "incident", world["b"]["id"]) in seen
    assert (cast.coordinator.id, "read", "person", a["person_id"]) in seen
    assert (cast.coordinator.id, "read", "incident", a["id"]) in seen  # in the person's history
    assert (cast.outreach_a.id, "denied", "person", world["b"]["person_id"]) in seen
    assert (cast.partner_a.id, "create", "incident", a["id"]) in seen
    assert (cast.coordinator.id, "update", "incident", a["id"]) in seen
    for e in entries:  # never personal data in the details
        text = str(e.details or "")
        assert "Reid" not in text and "0101801238" not in text and "07700900123" not in text


def test_list_reads_are_audited_per_incident(client, cast, world, session):
    client.get("/v1/incidents", headers=cast.coordinator.headers)
    reads = (
        session.execute(
            select(AuditEntry.subject_id).where(
                AuditEntry.action == "read", AuditEntry.actor_id == cast.coordinator.id
            )
        )
        .scalars()
        .all()
    )
    session.rollback()
    assert {world["a"]["id"], world["b"]["id"]} <= set(reads)


def test_who_may_create_and_for_which_agency(client, cast, body, session):
    # partners always record for their own agency
    r = client.post(
        "/v1/incidents", json=body(source_agency_id=cast.agency_b), headers=cast.partner_a.headers
    )
    assert_problem(r, 422)
    r = client.post(
        "/v1/incidents", json=body(source_agency_id=cast.agency_a), headers=cast.partner_a.headers
    )
    assert r.status_code == 201 and r.json()["source_agency_id"] == cast.agency_a
    # a coordinator without an agency names one (which must exist)
    assert_problem(client.post("/v1/incidents", json=body(), headers=cast.coordinator.headers), 422)
    r = client.post(
        "/v1/incidents", json=body(source_agency_id="nope"), headers=cast.coordinator.headers
    )
    assert_problem(r, 422)
    r = client.post(
        "/v1/incidents", json=body(source_agency_id=cast.agency_b), headers=cast.coordinator.headers
    )
    assert r.status_code == 201 and r.json()["source_agency_id"] == cast.agency_b
    # outreach records for its agency and holds the follow-up until it is reassigned
    r = client.post("/v1/incidents", json=body(), headers=cast.outreach_a.headers)
    assert r.status_code == 201 and r.json()["source_agency_id"] == cast.agency_a
    assert r.json()["follow_up"]["assigned_agency_id"] == cast.agency_a
    inc = r.json()["id"]
    assert client.get(f"/v1/incidents/{inc}", headers=cast.outreach_a.headers).status_code == 200
    assert_problem(client.get(f"/v1/incidents/{inc}", headers=cast.outreach_b.headers), 404)
    client.patch(
        f"/v1/incidents/{inc}",
        json={"assigned_agency_id": cast.agency_b},
        headers=cast.coordinator.headers,
    )
    assert_problem(client.get(f"/v1/incidents/{inc}", headers=cast.outreach_a.headers), 404)
    assert client.get(f"/v1/incidents/{inc}", headers=cast.outreach_b.headers).status_code == 200


def test_partner_batch_items_are_its_own(client, cast, body):
    r = client.post(
        "/v1/incidents/batch", json={"incidents": [body()]}, headers=cast.partner_b.headers
    )
    assert r.status_code == 207
    inc_id = r.json()["results"][0]["id"]
    assert client.get(f"/v1/incidents/{inc_id}", headers=cast.partner_b.headers).status_code == 200
    assert_problem(client.get(f"/v1/incidents/{inc_id}", headers=cast.partner_a.headers), 404)


def test_merge_denied_for_outreach_even_on_visible_people(client, cast, world):
    pa = world["a"]["person_id"]
    r = client.post(
        f"/v1/persons/{pa}/merge",
        json={"duplicate_id": world["b"]["person_id"]},
        headers=cast.outreach_a.headers,
    )
    assert_problem(r, 403)
