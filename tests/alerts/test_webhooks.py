"""Webhook delivery to a real local HTTP server, verified with an independent
implementation of the Standard Webhooks signature scheme; SSRF refusals."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.scheduler import run_deliveries, tick
from models.webhook import WebhookDelivery
from tests.alerts.helpers import T0, new_webhook_row
from tests.conftest import assert_problem, make_settings

AT = T0 + timedelta(hours=72, seconds=1)  # one incident overdue


class Receiver:
    """A real HTTP server on 127.0.0.1. ``script`` is the status codes to answer, in order
    (then 200); ``delay`` seconds of server-side sleep before answering."""

    def __init__(self, script: list[int] | None = None, delay: float = 0.0):
        self.script = list(script or [])
        self.delay = delay
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
                receiver.requests.append(
                    {"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                )
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = receiver.script.pop(0) if receiver.script else 200
                try:
                    self.send_response(status)
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(**kw) -> Receiver:
        r = Receiver(**kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


@pytest.fixture
def local(db_url):
    return make_settings(
        db_url, webhook_allow_private=True, webhook_timeout_seconds=0.5, webhook_max_attempts=3
    )


def verify_standard_webhook(
    secret: str, headers: dict, body: str, *, now: datetime, tolerance: int = 300
) -> bool:
    """Independent of services.webhooks: the Standard Webhooks spec, from its text."""
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(now.timestamp() - int(timestamp)) > tolerance:
        return False
    key = base64.b64decode(secret.split("_", 1)[1])
    expected = base64.b64encode(
        hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    )
    for candidate in headers["webhook-signature"].split(" "):
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            return True
    return False


def deliveries(sf) -> list[WebhookDelivery]:
    with sf() as s:
        return list(
            s.execute(select(WebhookDelivery).order_by(WebhookDelivery.created_at)).scalars()
        )


def test_registered_webhook_receives_a_signed_alert_once(
    db_url, engine, clock, factory, data, sf, local, receivers
):
    clock.set(AT)
    rx = receivers()
    app = create_app(local, engine=engine, clock=clock)
    admin = factory.user("admin")
    with TestClient(app) as c:
        r = c.post(
            "/v1/webhooks",
            json={"url": rx.url, "kinds": ["contact_overdue"]},
            headers=admin.headers,
        )
    assert r.status_code == 201, r.text
    hook = r.json()
    assert hook["secret"].startswith("whsec_") and len(base64.b64decode(hook["secret"][6:])) >= 24
    agency = data.agency()
    incident = data.incident(
        occurred_at=T0, source_agency_id=agency, person_id=data.person(), district="DD1"
    )
    result = tick(sf, settings=local, at=AT)
    assert result.sweep.raised["contact_overdue"] == 1
    assert result.deliveries == {"delivered": 1, "retry": 0, "failed": 0, "skipped": 0}
    [req] = rx.requests
    assert verify_standard_webhook(hook["secret"], req["headers"], req["body"], now=AT)
    assert not verify_standard_webhook(
        "whsec_" + base64.b64encode(b"x" * 32).decode(), req["headers"], req["body"], now=AT
    )
    body = json.loads(req["body"])
    assert body["type"] == "alert.raised" and body["timestamp"]
    alert = body["data"]
    assert set(alert) == {"id", "kind", "state", "raised_at", "incident_id", "person_id", "details"}
    assert (alert["kind"], alert["incident_id"], alert["state"]) == (
        "contact_overdue",
        incident,
        "open",
    )
    [d] = deliveries(sf)
    assert req["headers"]["webhook-id"] == d.id and d.status == "delivered" and d.attempts == 1
    # Never sent again, whatever the later passes.
    for hours in (0, 1, 24):
        tick(sf, settings=local, at=AT + timedelta(hours=hours))
    assert len(rx.requests) == 1


def test_a_500_is_retried_with_the_same_webhook_id_within_30_seconds(data, sf, local, receivers):
    rx = receivers(script=[500])
    _, secret = new_webhook_row(sf, url=rx.url)
    data.incident(occurred_at=T0, source_agency_id=data.agency())
    assert tick(sf, settings=local, at=AT).deliveries["retry"] == 1
    [d] = deliveries(sf)
    assert d.status == "pending" and d.attempts == 1 and d.last_status_code == 500
    assert AT < d.next_attempt_at <= AT + timedelta(seconds=30)
    assert (
        run_deliveries(sf, settings=local, now=AT + timedelta(seconds=1))["delivered"] == 0
    )  # not due yet
    assert len(rx.requests) == 1
    assert run_deliveries(sf, settings=local, now=AT + timedelta(seconds=30))["delivered"] == 1
    first, second = rx.requests
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"] == d.id
    assert first["body"] == second["body"]
    assert verify_standard_webhook(
        secret, second["headers"], second["body"], now=AT + timedelta(seconds=30)
    )
    run_deliveries(sf, settings=local, now=AT + timedelta(hours=5))
    assert len(rx.requests) == 2


def test_a_receiver_that_times_out_does_not_block_the_others(data, sf, local, receivers):
    slow = receivers(delay=3.0)
    fast = receivers()
    new_webhook_row(sf, url=slow.url)
    new_webhook_row(sf, url=fast.url)
    data.incident(occurred_at=T0, source_agency_id=data.agency())
    started = time.monotonic()
    result = tick(sf, settings=local, at=AT)
    elapsed = time.monotonic() - started
    assert elapsed < 2.5, elapsed  # bounded by the 0.5 s timeout, not the 3 s receiver
    assert result.deliveries == {"delivered": 1, "retry": 1, "failed": 0, "skipped": 0}
    assert len(fast.requests) == 1 and len(slow.requests) == 1
    by_url = {d.webhook_id: d for d in deliveries(sf)}
    assert sorted(d.status for d in by_url.values()) == ["delivered", "pending"]
    assert any(d.last_error == "timed out" for d in by_url.values())


def test_a_dead_receiver_costs_one_timeout_per_pass(data, sf, local, receivers):
    slow = receivers(delay=3.0)
    fast = receivers()
    slow_id, _ = new_webhook_row(sf, url=slow.url)
    new_webhook_row(sf, url=fast.url)
    agency = data.agency()
    for n in range(4):
        data.incident(occurred_at=T0 + timedelta(minutes=n), source_agency_id=agency)
    started = time.monotonic()
    result = tick(sf, settings=local, at=AT + timedelta(minutes=5))
    assert time.monotonic() - started < 2.5
    assert result.deliveries == {"delivered": 4, "retry": 1, "failed": 0, "skipped": 3}
    assert len(fast.requests) == 4 and len(slow.requests) == 1
    waiting = [d for d in deliveries(sf) if d.webhook_id == slow_id]
    assert sorted(d.attempts for d in waiting) == [0, 0, 0, 1]
    assert all(d.status == "pending" and d.locked_until is None for d in waiting)


def test_gives_up_after_max_attempts_and_records_why(data, sf, local, receivers):
    rx = receivers(script=[500] * 10)
    new_webhook_row(sf, url=rx.url)
    data.incident(occurred_at=T0, source_agency_id=data.agency())
    tick(sf, settings=local, at=AT)
    run_deliveries(sf, settings=local, now=AT + timedelta(hours=1))
    counts = run_deliveries(sf, settings=local, now=AT + timedelta(hours=3))
    assert counts["failed"] == 1
    [d] = deliveries(sf)
    assert (d.status, d.attempts, d.last_error, d.last_status_code) == (
        "failed",
        3,
        "HTTP 500",
        500,
    )
    run_deliveries(sf, settings=local, now=AT + timedelta(days=2))
    assert len(rx.requests) == 3


def test_only_subscribed_kinds_are_queued_and_deleted_webhooks_stop(
    client, factory, data, sf, local, receivers
):
    rx = receivers()
    hook_id, _ = new_webhook_row(sf, url=rx.url, kinds=["cluster"])
    data.incident(occurred_at=T0, source_agency_id=data.agency())
    tick(sf, settings=local, at=AT)
    assert rx.requests == [] and deliveries(sf) == []
    admin = factory.user("admin")
    assert client.delete(f"/v1/webhooks/{hook_id}", headers=admin.headers).status_code == 204
    assert_problem(client.delete(f"/v1/webhooks/{hook_id}", headers=admin.headers), 404)
    agency = data.agency()
    for h in (0, 1, 2):
        data.incident(occurred_at=AT + timedelta(hours=h), source_agency_id=agency, district="DD2")
    tick(sf, settings=local, at=AT + timedelta(hours=3))
    assert rx.requests == []


def test_delivery_rechecks_the_address_when_private_targets_are_not_allowed(
    data, sf, db_url, receivers
):
    rx = receivers()
    new_webhook_row(sf, url=rx.url)  # e.g. a host that later resolves to a private address
    strict = make_settings(db_url, webhook_timeout_seconds=0.5, webhook_max_attempts=2)
    data.incident(occurred_at=T0, source_agency_id=data.agency())
    assert tick(sf, settings=strict, at=AT).deliveries["retry"] == 1
    assert rx.requests == []
    [d] = deliveries(sf)
    assert d.last_error.startswith("refused")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.1.10/hook",
        "http://172.16.0.5/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://0.0.0.0/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "ftp://example.org/hook",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "not a url",
    ],
)
def test_unsafe_urls_are_refused(client, factory, url):
    admin = factory.user("admin")
    body = assert_problem(
        client.post("/v1/webhooks", json={"url": url, "kinds": ["cluster"]}, headers=admin.headers),
        422,
    )
    assert body["errors"][0]["loc"][-1] == "url"


def test_webhook_endpoints_are_admin_only_and_validated(client, factory):
    admin = factory.user("admin")
    coordinator = factory.user("coordinator")
    assert_problem(
        client.post(
            "/v1/webhooks", json={"url": "https://203.0.113.9/x"}, headers=coordinator.headers
        ),
        403,
    )
    assert_problem(client.get("/v1/webhooks", headers=coordinator.headers), 403)
    assert_problem(
        client.post(
            "/v1/webhooks",
            json={"url": "https://8.8.8.8/x", "kinds": ["nope"]},
            headers=admin.headers,
        ),
        422,
    )
    assert_problem(
        client.post(
            "/v1/webhooks", json={"url": "https://8.8.8.8/x", "extra": 1}, headers=admin.headers
        ),
        422,
    )
    assert_problem(
        client.post(
            "/v1/webhooks",
            json={"url": "https://8.8.8.8/x", "agency_id": "nope"},
            headers=admin.headers,
        ),
        422,
    )
    r = client.post("/v1/webhooks", json={"url": "https://8.8.8.8/x"}, headers=admin.headers)
    assert r.status_code == 201, r.text
    assert r.json()["kinds"] == [
        "contact_overdue",
        "contact_due_soon",
        "repeat_overdose",
        "action_overdue",
        "cluster",
    ]
    listed = client.get("/v1/webhooks", headers=admin.headers).json()
    assert [w["id"] for w in listed["items"]] == [r.json()["id"]]
    assert "secret" not in listed["items"][0]


def test_backoff_is_exponential_with_jitter_and_capped():
    import random

    from services.webhooks import backoff_seconds

    rng = random.Random(7)
    firsts = [backoff_seconds(1, rng) for _ in range(200)]
    assert min(firsts) >= 5 and max(firsts) <= 10 and len(set(firsts)) > 100
    assert all(40 <= backoff_seconds(4, rng) <= 80 for _ in range(50))
    assert all(backoff_seconds(30, rng) <= 3600 for _ in range(50))
