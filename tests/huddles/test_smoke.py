from __future__ import annotations

from tests.huddles.conftest import utc


def test_agenda_hold_discuss_and_plan_smoke(client, clock, cast, data):
    clock.set(utc(2026, 11, 24, 8, 0))
    pid = data.person()
    inc = data.incident(
        source_agency_id=cast.source_agency_id,
        occurred_at=utc(2026, 11, 23, 22, 0),
        person_id=pid,
        substances=("heroin", "street benzodiazepine"),
    )
    h = cast.coordinator.headers
    r = client.get("/v1/huddles/2026-11-24/agenda", headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [i["incident_id"] for i in body["new"]] == [inc]
    r = client.post("/v1/huddles", json={"date": "2026-11-24"}, headers=h)
    assert r.status_code == 201, r.text
    hid = r.json()["id"]
    r = client.post(
        f"/v1/huddles/{hid}/items/{inc}",
        json={"discussed": True, "assigned_agency_id": cast.outreach.agency_id, "notes": "x"},
        headers=h,
    )
    assert r.status_code == 200, r.text
    r = client.get(f"/v1/huddles/{hid}/agenda.csv", headers=h)
    assert r.status_code == 200, r.text
    r = client.get(f"/v1/huddles/{hid}/agenda.html", headers=h)
    assert r.status_code == 200, r.text
    r = client.put(f"/v1/persons/{pid}/safety-plan", json={"risk_level": "red"}, headers=h)
    assert r.status_code == 201, r.text
    r = client.get(f"/v1/persons/{pid}/safety-plan", headers=cast.outreach.headers)
    assert r.status_code == 200, r.text
    assert r.headers["etag"]
