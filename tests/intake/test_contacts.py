"""Contact attempts and the follow-up state machine."""

from __future__ import annotations

from datetime import timedelta

from models.contact import ContactAttempt
from tests.conftest import assert_problem
from tests.intake.conftest import count, iso


def _incident(client, cast, body, **kw):
    r = client.post("/v1/incidents", json=body(**kw), headers=cast.partner_a.headers)
    assert r.status_code == 201, r.text
    inc = r.json()
    r = client.patch(
        f"/v1/incidents/{inc['id']}",
        json={"assigned_agency_id": cast.agency_b},
        headers=cast.coordinator.headers,
    )
    assert r.status_code == 200, r.text
    return r.json()


def _contact(client, actor, incident_id, at, outcome="contacted", **kw):
    payload = {"attempted_at": iso(at), "method": "phone", "outcome": outcome, **kw}
    return client.post(f"/v1/incidents/{incident_id}/contacts", json=payload, headers=actor.headers)


def test_first_successful_contact_sets_contacted_within_window(client, cast, body, clock):
    inc = _incident(client, cast, body)
    now = clock()
    r = _contact(
        client, cast.outreach_b, inc["id"], now - timedelta(minutes=30), outcome="no_answer"
    )
    assert r.status_code == 201, r.text
    r = _contact(
        client,
        cast.outreach_b,
        inc["id"],
        now - timedelta(minutes=10),
        actions=["naloxone_supplied", "harm_reduction_advice"],
        referrals=["drug_treatment"],
    )
    assert r.status_code == 201, r.text
    c = r.json()
    assert sorted(c["actions"]) == ["harm_reduction_advice", "naloxone_supplied"]
    assert c["referrals"] == ["drug_treatment"]
    got = client.get(f"/v1/incidents/{inc['id']}", headers=cast.outreach_b.headers).json()
    assert got["follow_up"]["status"] == "contacted"
    assert got["follow_up"]["first_contact_at"] == iso(now - timedelta(minutes=10))
    assert got["follow_up"]["within_window"] is True
    # A later contact never moves first_contact_at
    clock.advance(hours=1)
    assert (
        _contact(client, cast.outreach_b, inc["id"], clock() - timedelta(minutes=1)).status_code
        == 201
    )
    got = client.get(f"/v1/incidents/{inc['id']}", headers=cast.outreach_b.headers).json()
    assert got["follow_up"]["first_contact_at"] == iso(now - timedelta(minutes=10))
    listed = client.get(
        f"/v1/incidents/{inc['id']}/contacts", headers=cast.coordinator.headers
    ).json()
    assert [x["outcome"] for x in listed["items"]] == ["no_answer", "contacted", "contacted"]


def test_contact_after_the_window_is_not_within_window(client, cast, body, clock):
    inc = _incident(
        client,
        cast,
        body,
        occurred_at=iso(clock() - timedelta(hours=80)),
        reported_at=iso(clock() - timedelta(hours=79)),
    )
    assert client.get(f"/v1/incidents/{inc['id']}", headers=cast.coordinator.headers).json()[
        "follow_up"
    ]["overdue"]
    assert _contact(client, cast.coordinator, inc["id"], clock()).status_code == 201
    fu = client.get(f"/v1/incidents/{inc['id']}", headers=cast.coordinator.headers).json()[
        "follow_up"
    ]
    assert fu["status"] == "contacted" and fu["within_window"] is False and fu["overdue"] is False


def test_attempt_time_rules(client, cast, body, clock, session):
    inc = _incident(client, cast, body)
    before = clock() - timedelta(hours=4)
    assert_problem(_contact(client, cast.outreach_b, inc["id"], before), 422)
    assert_problem(
        _contact(client, cast.outreach_b, inc["id"], clock() + timedelta(minutes=6)), 422
    )
    r = client.post(
        f"/v1/incidents/{inc['id']}/contacts",
        json={"attempted_at": "2026-01-01T10:00:00", "method": "phone", "outcome": "contacted"},
        headers=cast.outreach_b.headers,
    )
    assert_problem(r, 422)
    for bad in (
        {"method": "pigeon"},
        {"outcome": "maybe"},
        {"actions": ["hug"]},
        {"referrals": ["x"]},
        {"colour": "red"},
    ):
        payload = {"attempted_at": iso(clock()), "method": "phone", "outcome": "contacted", **bad}
        r = client.post(
            f"/v1/incidents/{inc['id']}/contacts", json=payload, headers=cast.outreach_b.headers
        )
        assert_problem(r, 422)
    assert count(session, ContactAttempt) == 0


def test_a_contact_satisfies_the_same_persons_earlier_open_follow_ups(client, cast, body, clock):
    now = clock()
    first = _incident(
        client,
        cast,
        body,
        occurred_at=iso(now - timedelta(hours=100)),
        reported_at=iso(now - timedelta(hours=99)),
    )
    second = _incident(
        client,
        cast,
        body,
        occurred_at=iso(now - timedelta(hours=5)),
        reported_at=iso(now - timedelta(hours=4)),
    )
    assert first["person_id"] == second["person_id"]
    # a third overdose AFTER the contact is not satisfied by it
    later = _incident(
        client,
        cast,
        body,
        occurred_at=iso(now - timedelta(minutes=30)),
        reported_at=iso(now - timedelta(minutes=20)),
    )
    contact_at = now - timedelta(hours=1)
    assert _contact(client, cast.outreach_b, second["id"], contact_at).status_code == 201
    h = cast.coordinator.headers
    fu1 = client.get(f"/v1/incidents/{first['id']}", headers=h).json()["follow_up"]
    fu2 = client.get(f"/v1/incidents/{second['id']}", headers=h).json()["follow_up"]
    fu3 = client.get(f"/v1/incidents/{later['id']}", headers=h).json()["follow_up"]
    assert fu2["status"] == "contacted" and fu2["within_window"] is True
    assert fu1["status"] == "contacted" and fu1["first_contact_at"] == iso(contact_at)
    assert fu1["within_window"] is False  # its 72 hours had run out
    assert fu3["status"] == "awaiting_contact"


def test_closed_follow_up_stays_closed_after_a_contact(client, cast, body, clock):
    inc = _incident(client, cast, body)
    r = client.patch(
        f"/v1/incidents/{inc['id']}",
        json={"follow_up": {"status": "closed", "closed_reason": "in_custody"}},
        headers=cast.coordinator.headers,
    )
    assert r.status_code == 200
    assert _contact(client, cast.outreach_b, inc["id"], clock()).status_code == 201
    fu = client.get(f"/v1/incidents/{inc['id']}", headers=cast.coordinator.headers).json()[
        "follow_up"
    ]
    assert fu["status"] == "closed" and fu["closed_reason"] == "in_custody"
    assert fu["first_contact_at"] == iso(clock())


def test_contacts_on_unknown_incident_are_404(client, cast, clock):
    payload = {"attempted_at": iso(clock()), "method": "phone", "outcome": "contacted"}
    assert_problem(
        client.post("/v1/incidents/nope/contacts", json=payload, headers=cast.coordinator.headers),
        404,
    )
    assert_problem(client.get("/v1/incidents/nope/contacts", headers=cast.coordinator.headers), 404)


def test_parallel_contacts_keep_the_earliest_first_contact(client, cast, body, clock):
    import threading

    inc = _incident(client, cast, body)
    now = clock()
    times = [now - timedelta(minutes=m) for m in range(1, 9)]
    barrier = threading.Barrier(len(times))
    statuses = []

    def go(at):
        barrier.wait()
        statuses.append(_contact(client, cast.outreach_b, inc["id"], at).status_code)

    threads = [threading.Thread(target=go, args=(t,)) for t in times]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [201] * len(times)
    fu = client.get(f"/v1/incidents/{inc['id']}", headers=cast.coordinator.headers).json()[
        "follow_up"
    ]
    assert fu["status"] == "contacted" and fu["first_contact_at"] == iso(min(times))
