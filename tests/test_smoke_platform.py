from tests.conftest import assert_problem


def test_admin_creates_agency_and_user(client, factory):
    admin = factory.user("admin")
    r = client.post(
        "/v1/agencies",
        json={"name": "Scottish Ambulance Service", "kind": "statutory"},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    agency_id = r.json()["id"]
    r = client.post(
        "/v1/users",
        json={
            "username": "jo",
            "password": "long enough password",
            "role": "outreach",
            "agency_id": agency_id,
            "display_name": "Jo",
        },
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    r = client.post("/v1/auth/token", data={"username": "jo", "password": "long enough password"})
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    me = client.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["role"] == "outreach"
    assert "x-request-id" in me.headers


def test_unknown_path_is_problem(client):
    assert_problem(client.get("/nope"), 404)
