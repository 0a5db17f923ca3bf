"""Through the public API: partner notifications, a contact, `run_once`, alerts, report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.scheduler import run_once
from tests.conftest import make_settings


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_notifications_to_alerts_and_report(client, factory, clock, db_url):
    t0 = datetime(2026, 11, 16, 8, 0, tzinfo=UTC)
    clock.set(t0 + timedelta(hours=3))
    partner = factory.partner()
    coordinator = factory.user("coordinator")
    person = {
        "chi": "1904851231",
        "given_name": "Sam",
        "family_name": "Reid",
        "date_of_birth": "1985-04-19",
        "sex": "male",
    }
    ids = []
    for n in range(3):
        body = {
            "source_ref": f"SAS-E2E-{n}",
            "occurred_at": iso(t0 + timedelta(hours=n)),
            "location": {"postcode": "DD3 7AA"},
            "substances": ["Heroin"],
            **({"person": person} if n < 2 else {}),
        }
        r = client.post("/v1/incidents", json=body, headers=partner.headers)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    first, second, third = ids
    r = client.post(
        f"/v1/incidents/{second}/contacts",
        json={
            "attempted_at": iso(t0 + timedelta(hours=2, minutes=30)),
            "method": "street",
            "outcome": "contacted",
            "actions": ["naloxone_supplied"],
        },
        headers=coordinator.headers,
    )
    assert r.status_code == 201, r.text

    settings = make_settings(db_url)
    assert run_once(settings, at=t0 + timedelta(hours=3)) == 0
    alerts = client.get("/v1/alerts", headers=coordinator.headers).json()["items"]
    kinds = sorted(a["kind"] for a in alerts)
    assert kinds == ["cluster", "repeat_overdose"]
    repeat = next(a for a in alerts if a["kind"] == "repeat_overdose")
    assert repeat["incident_id"] == second and repeat["person_id"]
    cluster = next(a for a in alerts if a["kind"] == "cluster")
    assert cluster["details"]["postcode_district"] == "DD3"
    assert sorted(cluster["details"]["incident_ids"]) == sorted(ids)

    # The contact on the second incident satisfied the first (same person, earlier overdose).
    assert run_once(settings, at=t0 + timedelta(hours=74, seconds=1)) == 0
    overdue = client.get(
        "/v1/alerts", params={"kind": "contact_overdue"}, headers=coordinator.headers
    )
    assert [a["incident_id"] for a in overdue.json()["items"]] == [third]
    assert run_once(settings, at=t0 + timedelta(hours=80)) == 0
    # The third incident was first swept already overdue: never "due soon".
    assert len(client.get("/v1/alerts", headers=coordinator.headers).json()["items"]) == 3

    clock.set(t0 + timedelta(days=4))
    coordinator = factory.user("coordinator")  # a fresh token at the new time
    report = client.get(
        "/v1/reports/summary?from=2026-11-16&to=2026-11-16", headers=coordinator.headers
    ).json()
    assert (report["incidents"], report["people"], report["people_with_repeat"]) == (3, 1, 1)
    assert report["contacted_within_72h_pct"] == round(100 * 2 / 3, 1)
    assert report["median_hours_to_first_contact"] == 2.0  # 2.5 h and 1.5 h
    assert (report["open_overdue"], report["naloxone_supplied"]) == (1, 1)
    assert report["by_substance"] == {"heroin": 3}
    assert report["by_postcode_district"] == {"DD3": 3}
    assert report["by_sex"]["male"] == 2 and report["by_sex"]["unknown"] == 1
    assert report["by_age_band"]["35-44"] == 2
