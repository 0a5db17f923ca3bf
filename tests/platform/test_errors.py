"""Every error is RFC 9457 problem+json with X-Request-ID; a 500 leaks nothing."""

from __future__ import annotations

import re
import uuid

from fastapi.testclient import TestClient
from sqlalchemy import text

from api.schemas.common import Problem
from tests.conftest import assert_problem
from tests.platform.conftest import captured_json_logs

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def problem(response, status: int) -> dict:
    body = assert_problem(response, status)
    Problem.model_validate(body)  # the declared schema
    assert response.headers.get("x-request-id")
    return body


def test_malformed_json_is_400(client, admin):
    r = client.post(
        "/v1/agencies",
        content=b'{"name": "A", "kind": ',
        headers={**admin.headers, "content-type": "application/json"},
    )
    body = problem(r, 400)
    assert "JSON" in body["detail"]


def test_missing_or_bad_credentials_are_401(client, admin):
    body = problem(client.get("/v1/users/me"), 401)
    assert "Bearer" in body["detail"]
    r = client.get("/v1/users/me", headers={"Authorization": "Bearer v1.not.a-token"})
    problem(r, 401)
    assert r.headers["www-authenticate"] == "Bearer"
    problem(client.get("/v1/users/me", headers={"Authorization": "Basic YWRtaW46eA=="}), 401)
    problem(client.get("/v1/users/me", headers={"Authorization": "Bearer nfod_unknownkey"}), 401)
    # a token signed with another key
    forged = admin.token[:-4] + ("AAAA" if not admin.token.endswith("AAAA") else "BBBB")
    problem(client.get("/v1/users/me", headers={"Authorization": f"Bearer {forged}"}), 401)


def test_forbidden_role_is_403(client, factory):
    analyst = factory.user("analyst")
    body = problem(client.get("/v1/users", headers=analyst.headers), 403)
    assert "analyst" in body["detail"]


def test_unknown_path_is_404(client):
    problem(client.get("/no/such/thing"), 404)
    problem(client.get("/v1/nothing-here"), 404)


def test_unknown_record_is_404(client, admin):
    problem(client.get(f"/v1/users/{uuid.uuid4()}", headers=admin.headers), 404)
    problem(client.delete(f"/v1/clients/{uuid.uuid4()}", headers=admin.headers), 404)


def test_wrong_method_is_405(client, admin):
    r = client.delete("/v1/agencies", headers=admin.headers)
    problem(r, 405)
    assert "POST" in r.headers["allow"]


def test_body_over_one_mebibyte_is_413(client, admin):
    big = b'{"name": "' + b"x" * (1024 * 1024) + b'", "kind": "other"}'
    headers = {**admin.headers, "content-type": "application/json"}
    problem(client.post("/v1/agencies", content=big, headers=headers), 413)


def test_chunked_body_over_one_mebibyte_is_413(client, admin):
    def chunks():
        yield b'{"name": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'", "kind": "other"}'

    headers = {**admin.headers, "content-type": "application/json"}
    r = client.post("/v1/agencies", content=chunks(), headers=headers)
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in r.request.headers
    problem(r, 413)
    # nothing was created
    assert client.get("/v1/agencies", headers=admin.headers).json()["items"] == []


def test_body_just_under_the_limit_is_read(client, admin):
    name = "x" * (1024 * 1024 - 100)
    r = client.post("/v1/agencies", json={"name": name, "kind": "other"}, headers=admin.headers)
    problem(r, 422)  # read and validated (name too long), not refused for size


def test_unsupported_media_type_is_415(client, admin):
    r = client.post(
        "/v1/agencies",
        content=b"<agency/>",
        headers={**admin.headers, "content-type": "application/xml"},
    )
    problem(r, 415)


def test_validation_errors_are_422_with_locations(client, admin):
    r = client.post("/v1/agencies", json={"name": "A", "kind": "ministry"}, headers=admin.headers)
    body = problem(r, 422)
    assert any(e["loc"] == ["body", "kind"] for e in body["errors"])
    # unknown fields are refused, not dropped
    r = client.post(
        "/v1/agencies", json={"name": "A", "kind": "other", "knd": "x"}, headers=admin.headers
    )
    body = problem(r, 422)
    assert any(e["loc"] == ["body", "knd"] for e in body["errors"])
    # lax coercion refused
    r = client.post("/v1/agencies", json={"name": 5, "kind": "other"}, headers=admin.headers)
    problem(r, 422)


def test_limit_outside_1_to_500_is_422(client, admin):
    for limit in ("0", "501", "-1", "abc"):
        body = problem(client.get(f"/v1/users?limit={limit}", headers=admin.headers), 422)
        assert body["errors"][0]["loc"] == ["query", "limit"]
    assert client.get("/v1/users?limit=500", headers=admin.headers).status_code == 200
    assert client.get("/v1/users?limit=1", headers=admin.headers).status_code == 200
    body = problem(client.get("/v1/users?cursor=%%%garbage", headers=admin.headers), 422)
    assert body["errors"][0]["loc"] == ["query", "cursor"]


def test_authorization_is_decided_before_the_body(client, factory):
    coordinator = factory.user("coordinator")
    r = client.post("/v1/users", json={"nonsense": True}, headers=coordinator.headers)
    problem(r, 403)
    r = client.post("/v1/agencies", json={"kind": 42, "extra": 1}, headers=coordinator.headers)
    problem(r, 403)
    # and authentication before anything else
    problem(client.post("/v1/users", json={"nonsense": True}), 401)
    problem(client.get("/v1/users?limit=0"), 401)


def test_request_id_is_generated_and_echoed(client, admin):
    r = client.get("/healthz")
    assert UUID_RE.match(r.headers["x-request-id"])
    assert client.get("/healthz").headers["x-request-id"] != r.headers["x-request-id"]
    r = client.get("/v1/users/me", headers={**admin.headers, "X-Request-ID": "trace-abc.123"})
    assert r.headers["x-request-id"] == "trace-abc.123"
    # errors too
    r = client.get("/nowhere", headers={"X-Request-ID": "trace-404"})
    assert r.headers["x-request-id"] == "trace-404"
    # an unusable one (header injection, absurd length) is replaced
    r = client.get("/healthz", headers={"X-Request-ID": "x" * 500})
    assert UUID_RE.match(r.headers["x-request-id"])
    r = client.get("/healthz", headers={"X-Request-ID": "a b<script>"})
    assert UUID_RE.match(r.headers["x-request-id"])


def test_request_id_is_audited(client, admin):
    r = client.post(
        "/v1/agencies",
        json={"name": "Traced", "kind": "other"},
        headers={**admin.headers, "X-Request-ID": "req-audit-1"},
    )
    assert r.status_code == 201
    entries = client.get(f"/v1/audit?subject_id={r.json()['id']}", headers=admin.headers).json()
    assert [e["request_id"] for e in entries["items"]] == ["req-audit-1"]


def test_500_is_a_problem_without_trace_or_sql(app, admin):
    secret = "0101801238 Sam Reid"

    @app.get("/v1/test-only/boom")
    def boom():
        raise RuntimeError(f"SELECT * FROM persons WHERE chi = '{secret}'")

    @app.get("/v1/test-only/sql")
    def bad_sql():
        with app.state.engine.connect() as conn:
            conn.execute(text("SELECT no_such_column FROM persons WHERE family_name = 'Reid'"))

    with (
        TestClient(app, raise_server_exceptions=False) as c,
        captured_json_logs("nfod.errors", "nfod.access") as logs,
    ):
        for path in ("/v1/test-only/boom", "/v1/test-only/sql"):
            r = c.get(path, headers={"X-Request-ID": "boom-1"})
            body = problem(r, 500)
            assert r.headers["x-request-id"] == "boom-1"
            for leak in ("SELECT", "Traceback", "persons", "Reid", "0101801238", "File "):
                assert leak not in r.text
            assert set(body) == {"type", "title", "status", "detail"}
    errors = [rec for rec in logs if rec["logger"] == "nfod.errors"]
    assert len(errors) == 2
    assert {e["error_type"] for e in errors} in (
        {"RuntimeError", "ProgrammingError"},
        {"RuntimeError", "OperationalError"},
    )
    assert any("test_errors.py" in frame for frame in errors[0]["frames"])
    for rec in logs:
        assert secret not in str(rec) and "Reid" not in str(rec)
        assert rec["request_id"] == "boom-1"


def test_database_outage_is_503_with_retry_after(app):
    """A database that cannot be reached is retryable (503), unlike a bug (500)."""
    from sqlalchemy import create_engine

    down = (
        "postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=2"
        if app.state.engine.dialect.name == "postgresql"
        else "sqlite:////nonexistent-dir-nfod/sub/db.sqlite"
    )

    @app.get("/v1/test-only/outage")
    def outage():
        with create_engine(down).connect() as conn:
            conn.execute(text("SELECT 1"))

    with (
        TestClient(app, raise_server_exceptions=False) as c,
        captured_json_logs("nfod.errors") as logs,
    ):
        r = c.get("/v1/test-only/outage")
    body = problem(r, 503)
    assert r.headers["retry-after"] == "1"
    assert "nowhere" not in body["detail"] and "nonexistent" not in body["detail"]
    # An outage fails every request while it lasts: each is one warning by type, not an
    # "unhandled error" with its frames (those are for faults of the code, as above).
    assert [(rec["level"], rec["msg"], rec["error_type"]) for rec in logs] == [
        ("warning", "database unavailable", "OperationalError")
    ]
    assert "frames" not in logs[0]
    assert "nowhere" not in str(logs[0]) and "nonexistent" not in str(logs[0])
