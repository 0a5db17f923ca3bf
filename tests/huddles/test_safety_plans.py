"""Versioned safety plans: ETag / If-Match (428, 412), history, validation, access, races."""

from __future__ import annotations

import threading

from sqlalchemy import select

import models
from tests.conftest import assert_problem, postgres_only
from tests.huddles.conftest import utc

PLAN = {
    "risk_level": "amber",
    "risk_factors": ["repeat_overdose", "no_fixed_address"],
    "actions": [],
    "lead_agency_id": None,
    "review_on": "2026-12-07",
    "notes": "agreed at huddle",
}


def url(pid: str) -> str:
    return f"/v1/persons/{pid}/safety-plan"


def test_first_version_201_then_if_match_required_then_stale_412(
    client, clock, cast, data, factory
):
    clock.set(utc(2026, 11, 24, 9, 0))
    pid = data.person()
    h = cast.coordinator.headers
    assert_problem(client.get(url(pid), headers=h), 404)  # no plan yet
    lead = factory.agency("Hillcrest Futures", kind="third_sector")
    body = {
        **PLAN,
        "lead_agency_id": lead,
        "actions": [
            {
                "description": "Naloxone kit",
                "owner_agency_id": lead,
                "due_on": "2026-11-26",
                "done": False,
            }
        ],
    }
    r = client.put(url(pid), json=body, headers=h)
    assert r.status_code == 201, r.text
    v1 = r.json()
    etag1 = r.headers["etag"]
    assert etag1.startswith('"') and etag1.endswith('"') and not etag1.startswith("W/")
    assert v1["version"] == 1 and v1["is_current"] is True and v1["risk_level"] == "amber"
    assert (
        v1["actions"][0]["description"] == "Naloxone kit"
        and v1["actions"][0]["due_on"] == "2026-11-26"
    )
    assert v1["lead_agency_id"] == lead and v1["review_on"] == "2026-12-07"

    got = client.get(url(pid), headers=h)
    assert got.status_code == 200 and got.headers["etag"] == etag1 and got.json()["id"] == v1["id"]

    # A plan exists: without If-Match -> 428.
    assert_problem(client.put(url(pid), json={**PLAN, "risk_level": "red"}, headers=h), 428)
    # With the current ETag -> 200, version 2.
    clock.advance(hours=1)
    r2 = client.put(url(pid), json={**PLAN, "risk_level": "red"}, headers={**h, "If-Match": etag1})
    assert r2.status_code == 200, r2.text
    etag2 = r2.headers["etag"]
    assert etag2 != etag1 and r2.json()["version"] == 2 and r2.json()["risk_level"] == "red"
    # The old ETag is now stale -> 412, and nothing changes.
    stale = client.put(
        url(pid), json={**PLAN, "risk_level": "green"}, headers={**h, "If-Match": etag1}
    )
    assert_problem(stale, 412)
    weak = client.put(
        url(pid), json={**PLAN, "risk_level": "green"}, headers={**h, "If-Match": f"W/{etag2}"}
    )
    assert_problem(weak, 412)
    cur = client.get(url(pid), headers=h)
    assert cur.json()["risk_level"] == "red" and cur.headers["etag"] == etag2

    # History: every version, newest first; version 1 is unchanged (immutable).
    hist = client.get(f"{url(pid)}/history", headers=h).json()
    assert [v["version"] for v in hist["items"]] == [2, 1]
    assert [v["is_current"] for v in hist["items"]] == [True, False]
    old = hist["items"][1]
    assert old["risk_level"] == "amber" and old["actions"][0]["description"] == "Naloxone kit"
    assert old["created_at"] == "2026-11-24T09:00:00Z"
    page = client.get(f"{url(pid)}/history", params={"limit": 1}, headers=h).json()
    assert [v["version"] for v in page["items"]] == [2] and page["next_cursor"]
    page2 = client.get(
        f"{url(pid)}/history", params={"limit": 1, "cursor": page["next_cursor"]}, headers=h
    ).json()
    assert [v["version"] for v in page2["items"]] == [1] and page2["next_cursor"] is None


def test_if_match_star_and_list_and_no_plan_with_if_match(client, cast, data):
    pid = data.person()
    h = cast.coordinator.headers
    assert_problem(client.put(url(pid), json=PLAN, headers={**h, "If-Match": '"whatever"'}), 412)
    r = client.put(url(pid), json=PLAN, headers=h)
    assert r.status_code == 201
    r = client.put(url(pid), json=PLAN, headers={**h, "If-Match": f'"other", {r.headers["etag"]}'})
    assert r.status_code == 200 and r.json()["version"] == 2
    r = client.put(url(pid), json=PLAN, headers={**h, "If-Match": "*"})
    assert r.status_code == 200 and r.json()["version"] == 3


def test_validation(client, cast, data):
    pid = data.person()
    h = cast.coordinator.headers
    for bad in (
        {**PLAN, "risk_level": "purple"},
        {**PLAN, "risk_level": None},
        {k: v for k, v in PLAN.items() if k != "risk_level"},
        {**PLAN, "risk_factors": ["bad_luck"]},
        {**PLAN, "risk_factors": "injecting"},
        {**PLAN, "review_on": "next week"},
        {**PLAN, "review_on": 20261207},
        {**PLAN, "unknown_field": 1},
        {**PLAN, "actions": [{"description": ""}]},
        {**PLAN, "actions": [{"description": "x", "done": "yes"}]},
        {**PLAN, "actions": [{"description": "x", "due_on": "2026-02-30"}]},
        {**PLAN, "actions": [{"description": "x", "colour": "red"}]},
    ):
        assert_problem(client.put(url(pid), json=bad, headers=h), 422)
    body = assert_problem(
        client.put(url(pid), json={**PLAN, "lead_agency_id": "nope"}, headers=h), 422
    )
    assert body["errors"][0]["loc"] == ["body", "lead_agency_id"]
    bad_owner = {
        **PLAN,
        "actions": [{"description": "x"}, {"description": "y", "owner_agency_id": "nope"}],
    }
    body = assert_problem(client.put(url(pid), json=bad_owner, headers=h), 422)
    assert body["errors"][0]["loc"] == ["body", "actions", 1, "owner_agency_id"]
    assert_problem(client.get(url(pid), headers=h), 404)  # nothing was written
    # Duplicated risk factors are de-duplicated, order kept.
    r = client.put(
        url(pid),
        json={**PLAN, "risk_factors": ["injecting", "lives_alone", "injecting"]},
        headers=h,
    )
    assert r.status_code == 201 and r.json()["risk_factors"] == ["injecting", "lives_alone"]
    assert_problem(client.put(url("no-such-person"), json=PLAN, headers=h), 404)


def test_access_rules(client, clock, cast, data, factory, session):
    clock.set(utc(2026, 11, 24, 9, 0))
    pid = data.person()
    lead_worker = factory.user("outreach")
    h = cast.coordinator.headers
    assert (
        client.put(
            url(pid), json={**PLAN, "lead_agency_id": lead_worker.agency_id}, headers=h
        ).status_code
        == 201
    )
    # Outreach of the lead agency may read the plan and its history, never write it.
    assert client.get(url(pid), headers=lead_worker.headers).status_code == 200
    assert client.get(f"{url(pid)}/history", headers=lead_worker.headers).status_code == 200
    assert_problem(client.put(url(pid), json={"nonsense": True}, headers=lead_worker.headers), 403)
    # Another agency's outreach: not found (and the refusal is audited).
    assert_problem(client.get(url(pid), headers=cast.outreach.headers), 404)
    assert_problem(client.get(f"{url(pid)}/history", headers=cast.outreach.headers), 404)
    denied = (
        session.execute(
            select(models.AuditEntry).where(
                models.AuditEntry.action == "denied", models.AuditEntry.subject_id == pid
            )
        )
        .scalars()
        .all()
    )
    assert len(denied) == 2 and all(e.actor_id == cast.outreach.id for e in denied)
    session.rollback()  # release SQLite's lock before the app writes again
    # Outreach of an agency assigned one of the person's incidents may read it.
    data.incident(
        source_agency_id=cast.source_agency_id,
        occurred_at=utc(2026, 11, 23, 1, 0),
        person_id=pid,
        assigned_agency_id=cast.outreach.agency_id,
    )
    assert client.get(url(pid), headers=cast.outreach.headers).status_code == 200
    # Analysts, partners and admins never see a person's plan.
    for actor in (cast.analyst, cast.partner, factory.user("admin")):
        assert_problem(client.get(url(pid), headers=actor.headers), 403)
        assert_problem(client.put(url(pid), json=PLAN, headers=actor.headers), 403)
    assert_problem(client.get(url(pid)), 401)


def test_merged_person_is_not_found(client, cast, data, factory):
    survivor, dup = data.person(), data.person()
    with factory.session_factory() as s, s.begin():
        s.get(models.Person, dup).merged_into_id = survivor
    assert_problem(client.put(url(dup), json=PLAN, headers=cast.coordinator.headers), 404)


def test_actions_carry_the_person_and_changes_are_audited(client, clock, cast, data, session):
    clock.set(utc(2026, 11, 24, 9, 0))
    pid = data.person()
    h = cast.coordinator.headers
    body = {
        **PLAN,
        "actions": [
            {"description": "Visit", "due_on": "2026-11-20"},
            {"description": "Call", "done": True},
        ],
    }
    r = client.put(url(pid), json=body, headers=h)
    assert r.status_code == 201
    client.put(
        url(pid),
        json={**body, "notes": "Private note about Sam"},
        headers={**h, "If-Match": r.headers["etag"]},
    )
    actions = (
        session.execute(select(models.SafetyPlanAction).order_by(models.SafetyPlanAction.position))
        .scalars()
        .all()
    )
    assert len(actions) == 4 and {a.person_id for a in actions} == {pid}
    versions = (
        session.execute(
            select(models.SafetyPlanVersion).where(models.SafetyPlanVersion.person_id == pid)
        )
        .scalars()
        .all()
    )
    assert sorted((v.version, v.is_current) for v in versions) == [(1, False), (2, True)]
    entries = (
        session.execute(
            select(models.AuditEntry)
            .where(models.AuditEntry.subject_id == pid)
            .order_by(models.AuditEntry.seq)
        )
        .scalars()
        .all()
    )
    assert [e.action for e in entries] == ["create", "update"]
    assert all("Sam" not in str(e.details) for e in entries)
    session.rollback()  # release SQLite's lock before the app writes again
    client.get(url(pid), headers=h)
    assert (
        session.execute(
            select(models.AuditEntry).where(
                models.AuditEntry.subject_id == pid, models.AuditEntry.action == "read"
            )
        )
        .scalar_one()
        .actor_id
        == cast.coordinator.id
    )


def _race(client, pid, headers, n, body):
    barrier = threading.Barrier(n)
    results: list[int] = []

    def attempt(i):
        barrier.wait()
        r = client.put(url(pid), json={**body, "notes": f"writer {i}"}, headers=headers)
        results.append(r.status_code)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(results)


@postgres_only
def test_concurrent_puts_with_the_same_etag_exactly_one_wins(client, cast, data):
    pid = data.person()
    h = cast.coordinator.headers
    # Racing first versions: one 201; the rest 412 (the unique (person, version) refuses
    # them) or, for a racer that starts after the winner committed, 428 (a plan exists now,
    # so If-Match is required). Never a second version 1.
    first = _race(client, pid, h, 5, PLAN)
    assert first[0] == 201 and set(first[1:]) <= {412, 428}, first
    etag = client.get(url(pid), headers=h).headers["etag"]
    assert _race(client, pid, {**h, "If-Match": etag}, 6, PLAN) == [200, 412, 412, 412, 412, 412]
    hist = client.get(f"{url(pid)}/history", headers=h).json()["items"]
    assert [v["version"] for v in hist] == [2, 1]
    assert sum(v["is_current"] for v in hist) == 1


def test_after_a_merge_the_survivor_s_plan_keeps_versioning(client, cast, data):
    """A merge moves the duplicate's versions (non-current) above the survivor's; the next
    PUT must number after all of them instead of colliding (which would 412 forever)."""
    survivor, duplicate = data.person(), data.person(given="Sammy")
    h = cast.coordinator.headers
    assert client.put(url(survivor), json=PLAN, headers=h).status_code == 201
    r = client.put(url(duplicate), json=PLAN, headers=h)
    client.put(
        url(duplicate),
        json={**PLAN, "risk_level": "red"},
        headers={**h, "If-Match": r.headers["etag"]},
    )
    merged = client.post(
        f"/v1/persons/{survivor}/merge", json={"duplicate_id": duplicate}, headers=h
    )
    assert merged.status_code == 200, merged.text
    current = client.get(url(survivor), headers=h)
    assert current.status_code == 200 and current.json()["version"] == 1
    r = client.put(
        url(survivor),
        json={**PLAN, "risk_level": "green"},
        headers={**h, "If-Match": current.headers["etag"]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 4 and r.json()["is_current"] is True
    hist = client.get(f"{url(survivor)}/history", headers=h).json()["items"]
    assert [v["version"] for v in hist] == [4, 3, 2, 1]
    assert [v["is_current"] for v in hist] == [True, False, False, False]
    assert_problem(client.get(url(duplicate), headers=h), 404)
