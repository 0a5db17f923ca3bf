"""Who an outreach worker finds by name or CHI: the people of incidents assigned to their
agency and the people whose current safety plan their agency leads - and no one else.

Person search checks that rule per candidate (services.access.person_scope(per_candidate=True));
these tests pin it to the same answers as the set form every other query uses."""

from __future__ import annotations

from sqlalchemy import select, update

from models.person import Person
from models.safety_plan import SafetyPlanVersion
from services.access import person_scope
from services.principal import Principal


def _incident(client, cast, body, given, family, dob, chi=None, assign_to=None):
    person = {"given_name": given, "family_name": family, "date_of_birth": dob}
    if chi:
        person["chi"] = chi
    r = client.post("/v1/incidents", json=body(person=person), headers=cast.partner_a.headers)
    assert r.status_code == 201, r.text
    inc = r.json()
    if assign_to:
        r = client.patch(
            f"/v1/incidents/{inc['id']}",
            json={"assigned_agency_id": assign_to},
            headers=cast.coordinator.headers,
        )
        assert r.status_code == 200, r.text
    return inc["person_id"]


def _plan(session, person_id, version, *, current, lead, now):
    session.add(
        SafetyPlanVersion(
            person_id=person_id,
            version=version,
            is_current=current,
            risk_level="red",
            risk_factors=["repeat_overdose"],
            lead_agency_id=lead,
            created_by_id="x",
            created_at=now,
        )
    )


def _world(client, cast, body, session, clock):
    a, b = cast.agency_a, cast.agency_b
    people = {
        "assigned_a": _incident(
            client, cast, body, "Sam", "Reid", "1980-01-01", chi="0101801238", assign_to=a
        ),
        "plan_led_by_a": _incident(client, cast, body, "Sam", "Brown", "1981-02-03", assign_to=b),
        "other_agency": _incident(client, cast, body, "Sam", "Grant", "1982-03-04", assign_to=b),
        "old_plan_led_by_a": _incident(
            client, cast, body, "Sam", "Innes", "1983-04-05", assign_to=b
        ),
        "unassigned": _incident(client, cast, body, "Sam", "Kerr", "1984-05-06"),
        "merged": _incident(client, cast, body, "Sam", "Lamb", "1985-06-07", assign_to=a),
    }
    now = clock()
    _plan(session, people["plan_led_by_a"], 1, current=True, lead=a, now=now)
    _plan(session, people["old_plan_led_by_a"], 1, current=False, lead=a, now=now)
    _plan(session, people["old_plan_led_by_a"], 2, current=True, lead=b, now=now)
    session.execute(
        update(Person)
        .where(Person.id == people["merged"])
        .values(merged_into_id=people["assigned_a"])
    )
    session.commit()
    return people


def _search(client, actor, **params):
    r = client.get("/v1/persons", params=params, headers=actor.headers)
    assert r.status_code == 200, r.text
    return {p["id"] for p in r.json()["items"]}


def test_outreach_finds_by_name_only_the_people_in_reach(client, cast, body, session, clock):
    people = _world(client, cast, body, session, clock)
    assert _search(client, cast.outreach_a, q="sam") == {
        people["assigned_a"],
        people["plan_led_by_a"],
    }
    assert _search(client, cast.outreach_b, q="sam") == {
        people["plan_led_by_a"],
        people["other_agency"],
        people["old_plan_led_by_a"],
    }
    assert _search(client, cast.outreach_a, q="sam brown") == {people["plan_led_by_a"]}
    assert _search(client, cast.outreach_a, q="grant") == set()
    assert _search(client, cast.outreach_a, q="lamb") == set()  # merged: invisible to all
    assert _search(client, cast.coordinator, q="sam") == set(people.values()) - {people["merged"]}


def test_outreach_finds_by_chi_only_the_people_in_reach(client, cast, body, session, clock):
    people = _world(client, cast, body, session, clock)
    assert _search(client, cast.outreach_a, chi="0101801238") == {people["assigned_a"]}
    assert _search(client, cast.outreach_b, chi="0101801238") == set()


def test_both_forms_of_the_person_scope_agree(client, cast, body, session, clock):
    _world(client, cast, body, session, clock)
    principals = [
        Principal(kind="user", id="c", role="coordinator", agency_id=None),
        Principal(kind="user", id="a", role="outreach", agency_id=cast.agency_a),
        Principal(kind="user", id="b", role="outreach", agency_id=cast.agency_b),
        Principal(kind="user", id="n", role="outreach", agency_id=None),
        Principal(kind="client", id="p", role="partner", agency_id=cast.agency_a),
    ]
    for principal in principals:
        sets = [
            set(session.scalars(select(Person.id).where(person_scope(principal, per_candidate=f))))
            for f in (False, True)
        ]
        assert sets[0] == sets[1], principal.role
    session.rollback()
