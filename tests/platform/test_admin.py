"""Administration: only admins, every change audited without personal data."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute

from api.routes import ROUTERS
from tests.conftest import assert_problem

PLACEHOLDER_ID = "00000000-0000-4000-8000-000000000000"
KNOWN_ADMIN_ENDPOINTS = {
    ("POST", "/v1/agencies"),
    ("POST", "/v1/users"),
    ("GET", "/v1/users"),
    ("GET", "/v1/users/{user_id}"),
    ("PATCH", "/v1/users/{user_id}"),
    ("POST", "/v1/clients"),
    ("GET", "/v1/clients"),
    ("DELETE", "/v1/clients/{client_id}"),
    ("GET", "/v1/audit"),
}


def _dependency_names(dependant) -> set[str]:
    names = set()
    for dep in dependant.dependencies:
        names.add(getattr(dep.call, "__name__", ""))
        names |= _dependency_names(dep)
    return names


def admin_only_endpoints(app=None) -> list[tuple[str, str]]:
    """Every route guarded by require("admin") alone, found in the routers the app serves
    (so admin endpoints other features add are covered too)."""
    found = []
    for router in ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute) and "require_admin" in _dependency_names(
                route.dependant
            ):
                found += [(method, route.path) for method in route.methods]
    return sorted(found)


def test_the_known_admin_endpoints_are_admin_only(app):
    assert set(admin_only_endpoints(app)) >= KNOWN_ADMIN_ENDPOINTS


@pytest.mark.parametrize("role", ["coordinator", "outreach", "analyst", "partner"])
def test_every_other_role_gets_403_on_every_admin_endpoint(app, client, factory, role):
    actor = factory.partner() if role == "partner" else factory.user(role)
    target = factory.user("analyst")
    endpoints = admin_only_endpoints(app)
    assert endpoints
    for method, template in endpoints:
        path = re.sub(r"\{[^}]+\}", PLACEHOLDER_ID, template.replace("{user_id}", target.id))
        body = {"username": "x", "role": "admin"} if method in ("POST", "PATCH", "PUT") else None
        r = client.request(method, path, json=body, headers=actor.headers)
        assert r.status_code == 403, (method, template, r.text)
        assert_problem(r, 403)


def test_admin_manages_agencies_users_and_clients(client, admin):
    r = client.post(
        "/v1/agencies",
        json={"name": "Hillcrest Outreach", "kind": "third_sector"},
        headers=admin.headers,
    )
    assert r.status_code == 201
    agency = r.json()
    assert agency["kind"] == "third_sector" and agency["created_at"].endswith("Z")
    assert_problem(
        client.post(
            "/v1/agencies",
            json={"name": "Hillcrest Outreach", "kind": "other"},
            headers=admin.headers,
        ),
        409,
    )
    user = {
        "username": "jo.w",
        "password": "long enough pw",
        "role": "outreach",
        "agency_id": agency["id"],
        "display_name": "Jo W",
    }
    r = client.post("/v1/users", json=user, headers=admin.headers)
    assert r.status_code == 201, r.text
    created = r.json()
    assert "password" not in created and "password_hash" not in created
    assert created["active"] is True and created["agency_id"] == agency["id"]
    assert_problem(client.post("/v1/users", json=user, headers=admin.headers), 409)
    r = client.get(f"/v1/users/{created['id']}", headers=admin.headers)
    assert r.json()["username"] == "jo.w"


@pytest.mark.parametrize(
    "change",
    [
        {"password": "short"},
        {"role": "superuser"},
        {"role": "partner"},
        {"active": "no"},
        {"agency_id": "00000000-0000-4000-8000-000000000000"},
        {"username": "rename"},
    ],
)
def test_invalid_user_updates_are_422(client, admin, factory, change):
    user = factory.user("analyst")
    assert_problem(client.patch(f"/v1/users/{user.id}", json=change, headers=admin.headers), 422)


def test_outreach_worker_needs_an_agency(client, admin):
    body = {"username": "nobody.agency", "password": "long enough pw", "role": "outreach"}
    r = assert_problem(client.post("/v1/users", json=body, headers=admin.headers), 422)
    assert r["errors"][0]["loc"] == ["body", "agency_id"]


def test_any_user_may_list_agencies_with_keyset_paging(client, factory, admin):
    ids = {factory.agency(name=f"Agency {n:02d}") for n in range(7)}
    analyst = factory.user("analyst")
    seen, cursor = [], None
    while True:
        url = "/v1/agencies?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=analyst.headers).json()
        seen += [a["name"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"Agency {n:02d}" for n in range(7)] and len(ids) == 7


def test_admin_changes_are_audited_without_personal_data(client, admin):
    h = admin.headers
    agency = client.post(
        "/v1/agencies", json={"name": "Tayside Police", "kind": "statutory"}, headers=h
    ).json()
    body = {
        "username": "sam.reid",
        "password": "secret password 1",
        "role": "coordinator",
        "display_name": "Sam Reid",
    }
    user = client.post("/v1/users", json=body, headers=h).json()
    client.patch(
        f"/v1/users/{user['id']}", json={"display_name": "Samuel Reid", "active": False}, headers=h
    )
    c = client.post(
        "/v1/clients", json={"name": "Police feed", "agency_id": agency["id"]}, headers=h
    ).json()
    client.delete(f"/v1/clients/{c['id']}", headers=h)

    entries = client.get(f"/v1/audit?actor_id={admin.id}&limit=500", headers=h).json()["items"]
    got = [(e["action"], e["subject_type"], e["subject_id"]) for e in reversed(entries)]
    assert got == [
        ("create", "agency", agency["id"]),
        ("create", "user", user["id"]),
        ("update", "user", user["id"]),
        ("create", "api_client", c["id"]),
        ("delete", "api_client", c["id"]),
    ]
    update = entries[2]
    assert sorted(update["details"]["fields"]) == ["active", "display_name"]
    text = str(entries)
    for personal in ("Sam", "Reid", "sam.reid", "secret password", c["api_key"]):
        assert personal not in text
    assert all(e["actor_type"] == "user" and e["at"].endswith("Z") for e in entries)
