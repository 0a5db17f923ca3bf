"""Health, readiness, Prometheus metrics and JSON logs."""

from __future__ import annotations

import tempfile

from fastapi.testclient import TestClient

from api.app import create_app
from services.db import make_engine
from tests.conftest import PG_URL, assert_problem, make_settings
from tests.platform.conftest import captured_json_logs


def test_operational_endpoints_need_no_authentication(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_ready_at_head(client):
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["status"] == "ready" and r.json()["revision"]


def _client_on(url: str) -> TestClient:
    engine = make_engine(url)
    app = create_app(make_settings(url), engine=engine)
    return TestClient(app, raise_server_exceptions=False)


def test_not_ready_when_not_migrated():
    url = f"sqlite:///{tempfile.mkdtemp(prefix='nfod-empty-')}/empty.db"
    c = _client_on(url)
    body = assert_problem(c.get("/readyz"), 503)
    assert "nfod migrate" in body["detail"]
    assert c.get("/healthz").status_code == 200  # the process itself is up


def test_not_ready_when_the_database_is_unreachable():
    if PG_URL:
        url = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"
    else:
        url = "sqlite:////nonexistent-dir-nfod/sub/db.sqlite"
    c = _client_on(url)
    body = assert_problem(c.get("/readyz"), 503)
    assert "not reachable" in body["detail"]
    assert "127.0.0.1" not in body["detail"] and "nonexistent" not in body["detail"]


def _metric(text: str, name: str, **labels) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    assert want  # labels given
    return total


def test_metrics_count_and_time_by_route_template(client, admin, factory):
    target = factory.user("analyst")
    before = client.get("/metrics").text
    n0 = _metric(before, "nfod_http_requests_total", route="/v1/users/{user_id}", status="200")
    h0 = _metric(before, "nfod_http_request_duration_seconds_count", route="/v1/users/{user_id}")
    for _ in range(3):
        assert client.get(f"/v1/users/{target.id}", headers=admin.headers).status_code == 200
    client.get("/v1/users/00000000-0000-4000-8000-000000000000", headers=admin.headers)
    client.get("/no/such/path/123")

    after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    assert (
        _metric(text, "nfod_http_requests_total", route="/v1/users/{user_id}", status="200")
        == n0 + 3
    )
    assert _metric(text, "nfod_http_requests_total", route="/v1/users/{user_id}", status="404") >= 1
    assert (
        _metric(text, "nfod_http_request_duration_seconds_count", route="/v1/users/{user_id}")
        == h0 + 4
    )
    buckets = [
        line
        for line in text.splitlines()
        if line.startswith("nfod_http_request_duration_seconds_bucket{")
        and 'route="/v1/users/{user_id}"' in line
        and 'status="200"' in line
    ]
    assert len(buckets) >= 10 and any('le="+Inf"' in b for b in buckets)
    # raw paths never become labels (unbounded cardinality, ids in metrics)
    assert target.id not in text and "/no/such/path" not in text
    assert _metric(text, "nfod_http_requests_total", route="unmatched", status="404") >= 1


def test_logs_are_json_with_request_id_and_no_query_string(client, factory):
    coordinator = factory.user("coordinator")
    with captured_json_logs("nfod.access") as logs:
        r = client.get(
            "/v1/agencies?limit=5&cursor=U2FtIFJlaWQ",
            headers={**coordinator.headers, "X-Request-ID": "log-test-1"},
        )
        client.get("/v1/users/me?q=Sam+Reid+0101801238", headers=coordinator.headers)
    assert r.status_code in (200, 422)
    assert len(logs) == 2
    first = logs[0]
    assert first["request_id"] == "log-test-1"
    assert first["route"] == "/v1/agencies" and first["method"] == "GET"
    assert isinstance(first["duration_ms"], float) and first["status"] == r.status_code
    assert first["ts"].endswith("Z") and first["level"] == "info"
    for entry in logs:
        line = str(entry)
        assert "?" not in line and "Sam" not in line and "0101801238" not in line
        assert "U2FtIFJlaWQ" not in line
