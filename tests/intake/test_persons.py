"""Person matching across incidents, search, the person resource and merge."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import func, select

from models.alert import Alert
from models.audit import AuditEntry
from models.person import Person, PossibleDuplicate
from models.safety_plan import SafetyPlanAction, SafetyPlanVersion
from tests.conftest import assert_problem
from tests.intake.conftest import iso


def post(client, actor, data):
    r = client.post("/v1/incidents", json=data, headers=actor.headers)
    assert r.status_code == 201, r.text
    return r.json()


def person(**kw):
    return {k: v for k, v in kw.items() if v is not None}


def test_same_chi_is_the_same_person(client, cast, body):
    a = post(client, cast.partner_a, body())
    b = post(client, cast.partner_b, body(person=person(chi="0101801238", given_name="Samuel")))
    assert a["person_id"] == b["person_id"]


def test_name_and_dob_match_ignores_case_spacing_and_accents(client, cast, body, session):
    p1 = {"given_name": "Seán", "family_name": "O'Neil-Smith", "date_of_birth": "1985-03-04"}
    p2 = {"given_name": "SEAN ", "family_name": "oneil smith", "date_of_birth": "1985-03-04"}
    a = post(client, cast.partner_a, body(person=p1))
    b = post(client, cast.partner_a, body(person=p2))
    assert a["person_id"] == b["person_id"]
    # the later incident brings a CHI: it is filled in on the matched person
    c = post(client, cast.partner_a, body(person={**p2, "chi": "0403851238"}))
    assert c["person_id"] == a["person_id"]
    session.expire_all()
    assert session.get(Person, a["person_id"]).chi == "0403851238"


def test_weaker_matches_create_a_new_person_with_possible_duplicates(client, cast, body, session):
    base = post(
        client,
        cast.partner_a,
        body(person={"given_name": "Sam", "family_name": "Reid", "date_of_birth": "1980-02-03"}),
    )
    similar = post(
        client,
        cast.partner_a,
        body(person={"given_name": "Samm", "family_name": "Reid", "date_of_birth": "1980-02-03"}),
    )
    swapped = post(
        client,
        cast.partner_a,
        body(person={"given_name": "Sam", "family_name": "Reid", "date_of_birth": "1980-03-02"}),
    )
    other = post(
        client,
        cast.partner_a,
        body(person={"given_name": "Alex", "family_name": "Brown", "date_of_birth": "1990-05-06"}),
    )
    ids = {base["person_id"], similar["person_id"], swapped["person_id"], other["person_id"]}
    assert len(ids) == 4
    pairs = {
        (p.person_id, p.candidate_id, p.reason)
        for p in session.execute(select(PossibleDuplicate)).scalars()
    }
    assert (similar["person_id"], base["person_id"], "same_date_of_birth_similar_name") in pairs
    assert (swapped["person_id"], base["person_id"], "date_of_birth_day_month_swapped") in pairs
    assert not any(other["person_id"] in (a, b) for a, b, _ in pairs)
    session.rollback()  # release SQLite's write lock before the next request
    got = client.get(f"/v1/persons/{base['person_id']}", headers=cast.coordinator.headers).json()
    assert {d["id"] for d in got["possible_duplicates"]} == {
        similar["person_id"],
        swapped["person_id"],
    }


def test_different_chi_same_name_and_dob_are_different_people(client, cast, body):
    a = post(client, cast.partner_a, body())
    b = post(
        client,
        cast.partner_a,
        body(
            person={
                "chi": "0101801246",
                "given_name": "Sam",
                "family_name": "Reid",
                "date_of_birth": "1980-01-01",
            }
        ),
    )
    assert a["person_id"] != b["person_id"]


def test_unidentified_incident_has_no_person(client, cast, body, session):
    r = post(client, cast.partner_a, body(person={"sex": "male"}))
    assert r["person_id"] is None
    assert session.scalar(select(func.count()).select_from(Person)) == 0


def test_person_resource_lists_incidents_newest_first(client, cast, body, clock):
    now = clock()
    old = post(
        client,
        cast.partner_a,
        body(occurred_at=iso(now - timedelta(days=10)), reported_at=iso(now - timedelta(days=10))),
    )
    new = post(
        client,
        cast.partner_a,
        body(occurred_at=iso(now - timedelta(hours=1)), reported_at=iso(now)),
    )
    r = client.get(f"/v1/persons/{old['person_id']}", headers=cast.coordinator.headers)
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["incident_count"] == 2
    assert [i["id"] for i in p["incidents"]] == [new["id"], old["id"]]
    assert p["incidents"][1]["follow_up"]["overdue"] is True
    assert p["chi"] == "0101801238" and p["date_of_birth"] == "1980-01-01"
    assert p["safety_plan"] is None and p["possible_duplicates"] == []


def test_search_by_name_fragment_and_chi(client, cast, body):
    a = post(client, cast.partner_a, body())
    post(client, cast.partner_a, body(person={"given_name": "Alex", "family_name": "Brown"}))
    h = cast.coordinator.headers
    assert [
        p["id"] for p in client.get("/v1/persons", params={"q": "reid"}, headers=h).json()["items"]
    ] == [a["person_id"]]
    assert [
        p["id"]
        for p in client.get("/v1/persons", params={"q": "SAM RE"}, headers=h).json()["items"]
    ] == [a["person_id"]]
    got = client.get("/v1/persons", params={"chi": "0101801238"}, headers=h).json()["items"]
    assert [p["id"] for p in got] == [a["person_id"]] and got[0]["incident_count"] == 1
    assert client.get("/v1/persons", params={"q": "zzz"}, headers=h).json()["items"] == []
    assert len(client.get("/v1/persons", headers=h).json()["items"]) == 2
    page = client.get("/v1/persons", params={"limit": 1}, headers=h).json()
    assert page["next_cursor"]
    rest = client.get(
        "/v1/persons", params={"limit": 1, "cursor": page["next_cursor"]}, headers=h
    ).json()
    assert rest["items"][0]["id"] != page["items"][0]["id"] and rest["next_cursor"] is None
    assert_problem(client.get("/v1/persons", params={"limit": 501}, headers=h), 422)


def _plan(session, person_id, version, *, current, risk="red", now):
    v = SafetyPlanVersion(
        person_id=person_id,
        version=version,
        is_current=current,
        risk_level=risk,
        risk_factors=["repeat_overdose"],
        lead_agency_id=None,
        created_by_id="x",
        created_at=now,
    )
    session.add(v)
    session.flush()
    session.add(
        SafetyPlanAction(
            plan_version_id=v.id, person_id=person_id, position=0, description="call", done=False
        )
    )
    return v


def test_merge_moves_everything_and_the_duplicate_disappears(client, cast, body, session, clock):
    keep = post(
        client,
        cast.partner_a,
        body(person={"given_name": "Sam", "family_name": "Reid", "date_of_birth": "1980-02-03"}),
    )
    dup = post(
        client,
        cast.partner_a,
        body(
            person={
                "given_name": "Samm",
                "family_name": "Reid",
                "date_of_birth": "1980-02-03",
                "chi": "0302801235",
            }
        ),
    )
    dup2 = post(client, cast.partner_a, body(person={"chi": "0302801235"}))
    assert dup2["person_id"] == dup["person_id"]
    keep_id, dup_id = keep["person_id"], dup["person_id"]
    now = clock()
    _plan(session, keep_id, 1, current=False, now=now)
    _plan(session, keep_id, 2, current=True, now=now)
    _plan(session, dup_id, 1, current=True, risk="amber", now=now)
    session.add(
        Alert(
            kind="repeat_overdose",
            dedupe_key=f"r:{dup_id}",
            raised_at=now,
            person_id=dup_id,
            incident_id=dup["id"],
            details={},
        )
    )
    session.commit()

    r = client.post(
        f"/v1/persons/{keep_id}/merge",
        json={"duplicate_id": dup_id},
        headers=cast.coordinator.headers,
    )
    assert r.status_code == 200, r.text
    merged = r.json()
    assert merged["id"] == keep_id and merged["incident_count"] == 3
    assert {i["id"] for i in merged["incidents"]} == {keep["id"], dup["id"], dup2["id"]}
    assert merged["chi"] == "0302801235"  # the survivor had none: it moved
    assert merged["possible_duplicates"] == []
    assert merged["safety_plan"]["version"] == 2 and merged["safety_plan"]["risk_level"] == "red"
    session.expire_all()
    versions = session.execute(
        select(SafetyPlanVersion.version, SafetyPlanVersion.is_current)
        .where(SafetyPlanVersion.person_id == keep_id)
        .order_by(SafetyPlanVersion.version)
    ).all()
    assert versions == [(1, False), (2, True), (3, False)]
    assert (
        session.scalar(
            select(func.count())
            .select_from(SafetyPlanAction)
            .where(SafetyPlanAction.person_id == keep_id)
        )
        == 3
    )
    assert session.execute(select(Alert.person_id)).scalar_one() == keep_id
    assert session.get(Person, dup_id).merged_into_id == keep_id
    session.rollback()
    assert_problem(client.get(f"/v1/persons/{dup_id}", headers=cast.coordinator.headers), 404)
    # a new incident with the duplicate's CHI lands on the survivor
    again = post(client, cast.partner_a, body(person={"chi": "0302801235"}))
    assert again["person_id"] == keep_id
    entry = session.execute(
        select(AuditEntry).where(AuditEntry.action == "merge", AuditEntry.subject_id == keep_id)
    ).scalar_one()
    assert entry.details["moved"]["incidents"] == 2 and entry.details["duplicate_id"] == dup_id
    assert "Reid" not in str(entry.details) and "0302801235" not in str(entry.details)
    session.rollback()
    # merging again, or into itself
    assert_problem(
        client.post(
            f"/v1/persons/{keep_id}/merge",
            json={"duplicate_id": dup_id},
            headers=cast.coordinator.headers,
        ),
        404,
    )
    assert_problem(
        client.post(
            f"/v1/persons/{keep_id}/merge",
            json={"duplicate_id": keep_id},
            headers=cast.coordinator.headers,
        ),
        422,
    )
    assert_problem(
        client.post(
            f"/v1/persons/{dup_id}/merge",
            json={"duplicate_id": keep_id},
            headers=cast.coordinator.headers,
        ),
        404,
    )


def test_merge_into_person_without_plan_keeps_numbering(client, cast, body, session, clock):
    keep = post(client, cast.partner_a, body(person={"given_name": "A", "family_name": "One"}))
    dup = post(client, cast.partner_a, body(person={"given_name": "B", "family_name": "Two"}))
    _plan(session, dup["person_id"], 1, current=False, now=clock())
    _plan(session, dup["person_id"], 2, current=True, now=clock())
    session.commit()
    r = client.post(
        f"/v1/persons/{keep['person_id']}/merge",
        json={"duplicate_id": dup["person_id"]},
        headers=cast.coordinator.headers,
    )
    assert r.status_code == 200
    assert r.json()["safety_plan"]["version"] == 2


def test_dismissed_duplicate_leaves_the_list(client, cast, body):
    a = post(
        client,
        cast.partner_a,
        body(person={"given_name": "Sam", "family_name": "Reid", "date_of_birth": "1980-02-03"}),
    )
    b = post(
        client,
        cast.partner_a,
        body(person={"given_name": "Samm", "family_name": "Reid", "date_of_birth": "1980-02-03"}),
    )
    h = cast.coordinator.headers
    r = client.post(
        f"/v1/persons/{a['person_id']}/possible-duplicates/dismiss",
        json={"candidate_id": b["person_id"]},
        headers=h,
    )
    assert r.status_code == 204
    assert (
        client.get(f"/v1/persons/{a['person_id']}", headers=h).json()["possible_duplicates"] == []
    )
    assert date.today()  # keep imports honest
