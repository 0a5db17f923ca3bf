"""GET /v1/alerts (scoping, filters, keyset paging) and POST /v1/alerts/{id}/acknowledge."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from models.audit import AuditEntry
from services.sweep import sweep
from tests.alerts.helpers import T0
from tests.conftest import assert_problem


@pytest.fixture
def world(data, sf, settings, factory):
    """Two outreach agencies, one overdue incident each, a repeat, a cluster, an action."""
    src = data.agency()
    north, south = data.agency(), data.agency()
    p_north, p_south = data.person(), data.person()
    i_north = data.incident(
        occurred_at=T0,
        source_agency_id=src,
        person_id=p_north,
        assigned_agency_id=north,
        district="DD1",
    )
    i_south = data.incident(
        occurred_at=T0 + timedelta(minutes=5),
        source_agency_id=src,
        person_id=p_south,
        assigned_agency_id=south,
        district="DD1",
    )
    i_south2 = data.incident(
        occurred_at=T0 + timedelta(minutes=10),
        source_agency_id=src,
        person_id=p_south,
        assigned_agency_id=south,
        district="DD1",
    )
    data.plan(
        p_north, actions=[{"description": "Call GP", "due_on": T0.date()}], lead_agency_id=north
    )
    with sf() as s:
        sweep(s, at=T0 + timedelta(hours=1), settings=settings)  # cluster + repeat
        s.commit()
    with sf() as s:
        sweep(s, at=T0 + timedelta(hours=73), settings=settings)  # overdue x3, action
        s.commit()
    return {
        "north": factory.user("outreach", north),
        "south": factory.user("outreach", south),
        "coordinator": factory.user("coordinator"),
        "i_north": i_north,
        "i_south": i_south,
        "i_south2": i_south2,
        "p_north": p_north,
        "p_south": p_south,
    }


def all_items(client, url, headers, limit=2):
    items, cursor = [], None
    while True:
        r = client.get(
            url, params={"limit": limit, **({"cursor": cursor} if cursor else {})}, headers=headers
        )
        assert r.status_code == 200, r.text
        page = r.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items


def test_coordinator_sees_every_alert_newest_first_paged(client, world):
    items = all_items(client, "/v1/alerts", world["coordinator"].headers)
    kinds = sorted(a["kind"] for a in items)
    assert kinds == [
        "action_overdue",
        "cluster",
        "contact_overdue",
        "contact_overdue",
        "contact_overdue",
        "repeat_overdose",
    ]
    assert len({a["id"] for a in items}) == 6
    keys = [(a["raised_at"], a["id"]) for a in items]
    assert keys == sorted(keys, reverse=True)
    assert all(a["raised_at"].endswith("Z") for a in items)
    assert set(items[0]) >= {
        "id",
        "kind",
        "state",
        "raised_at",
        "incident_id",
        "person_id",
        "details",
    }
    cluster = next(a for a in items if a["kind"] == "cluster")
    assert cluster["incident_id"] is None and cluster["person_id"] is None
    assert cluster["details"]["postcode_district"] == "DD1"
    assert sorted(cluster["details"]["incident_ids"]) == sorted(
        [world["i_north"], world["i_south"], world["i_south2"]]
    )
    repeat = next(a for a in items if a["kind"] == "repeat_overdose")
    assert (repeat["person_id"], repeat["incident_id"]) == (world["p_south"], world["i_south2"])


def test_filters(client, world):
    h = world["coordinator"].headers
    r = client.get(
        "/v1/alerts", params={"kind": "contact_overdue", "incident_id": world["i_north"]}, headers=h
    )
    [a] = r.json()["items"]
    assert (a["kind"], a["incident_id"], a["person_id"]) == (
        "contact_overdue",
        world["i_north"],
        world["p_north"],
    )
    assert (
        client.get("/v1/alerts", params={"state": "acknowledged"}, headers=h).json()["items"] == []
    )
    assert len(client.get("/v1/alerts", params={"state": "open"}, headers=h).json()["items"]) == 6
    assert_problem(client.get("/v1/alerts", params={"kind": "bogus"}, headers=h), 422)
    assert_problem(client.get("/v1/alerts", params={"state": "closed"}, headers=h), 422)
    assert_problem(client.get("/v1/alerts", params={"limit": 0}, headers=h), 422)
    assert_problem(client.get("/v1/alerts", params={"limit": 501}, headers=h), 422)
    assert_problem(client.get("/v1/alerts", params={"cursor": "garbage"}, headers=h), 422)


def test_outreach_sees_only_alerts_within_reach(client, world):
    north = client.get("/v1/alerts", headers=world["north"].headers).json()["items"]
    assert sorted(a["kind"] for a in north) == ["action_overdue", "contact_overdue"]
    assert {a["person_id"] for a in north} == {world["p_north"]}
    south = client.get("/v1/alerts", headers=world["south"].headers).json()["items"]
    assert sorted(a["kind"] for a in south) == [
        "contact_overdue",
        "contact_overdue",
        "repeat_overdose",
    ]
    assert all(a["kind"] != "cluster" for a in north + south)


def test_other_roles_may_not_read_alerts(client, factory, world):
    for role in ("analyst", "admin"):
        assert_problem(client.get("/v1/alerts", headers=factory.user(role).headers), 403)
    assert_problem(client.get("/v1/alerts", headers=factory.partner().headers), 403)
    assert_problem(client.get("/v1/alerts"), 401)


def test_acknowledge_is_idempotent_audited_and_coordinator_only(client, clock, world, session):
    h = world["coordinator"].headers
    alert = client.get("/v1/alerts", params={"incident_id": world["i_south"]}, headers=h).json()[
        "items"
    ][0]
    assert_problem(
        client.post(f"/v1/alerts/{alert['id']}/acknowledge", headers=world["south"].headers), 403
    )
    first = client.post(f"/v1/alerts/{alert['id']}/acknowledge", headers=h)
    assert first.status_code == 200, first.text
    assert first.json()["state"] == "acknowledged" and first.json()["id"] == alert["id"]
    clock.advance(minutes=5)
    second = client.post(f"/v1/alerts/{alert['id']}/acknowledge", headers=h)
    assert second.status_code == 200 and second.json() == first.json()
    assert_problem(client.post("/v1/alerts/does-not-exist/acknowledge", headers=h), 404)
    states = client.get("/v1/alerts", params={"state": "acknowledged"}, headers=h).json()["items"]
    assert [a["id"] for a in states] == [alert["id"]]
    entries = (
        session.execute(
            select(AuditEntry.action).where(
                AuditEntry.subject_id == alert["id"], AuditEntry.subject_type == "alert"
            )
        )
        .scalars()
        .all()
    )
    assert entries == ["acknowledge"]
