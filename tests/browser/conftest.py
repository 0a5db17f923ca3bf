"""Browser tests: Playwright for Python driving Debian's Chromium against a live server.

The server runs in a background thread on a free 127.0.0.1 port with its own temporary
SQLite database (migrated with Alembic) and real time; data is seeded through the public
API. Every test here is marked ``browser`` and skipped, with the reason, when
/usr/bin/chromium or Playwright is missing.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from services import migrations
from services.config import Settings

CHROMIUM = os.environ.get(
    "NFOD_TEST_CHROMIUM", "/usr/bin/chromium"
)  # override only to test the skip
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "screenshots"
ADMIN_PASSWORD = "browser-admin-password-1"
PASSWORD = "browser-user-password-1"
PHONE = {"width": 360, "height": 740}
LAPTOP = {"width": 1280, "height": 800}

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None


def _skip_reason() -> str | None:
    if not os.path.exists(CHROMIUM):
        return f"browser tests skipped: {CHROMIUM} is not installed (apt-get install chromium)"
    if sync_playwright is None:
        return "browser tests skipped: the playwright package is not installed (make install)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _skip_reason()
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.browser)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def pytest_terminal_summary(terminalreporter):
    """Say plainly at the end of `make test` when the browser tests did not run."""
    reason = _skip_reason()
    if reason and any(
        "tests/browser" in str(r.nodeid) for r in terminalreporter.stats.get("skipped", [])
    ):
        terminalreporter.write_line(reason, yellow=True, bold=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    admin_token: str
    settings: Settings

    def sweep(self) -> None:
        """One scheduler sweep now, on the live server's database (raises alerts)."""
        from services.db import make_engine, make_session_factory
        from services.sweep import sweep

        engine = make_engine(self.settings.database_url)
        try:
            with make_session_factory(engine)() as session:
                sweep(session, at=datetime.now(UTC), settings=self.settings)
                session.commit()
        finally:
            engine.dispose()

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def token(self, username: str, password: str = PASSWORD) -> str:
        r = httpx.post(
            f"{self.url}/v1/auth/token",
            data={"username": username, "password": password},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        return r.json()["access_token"]


@pytest.fixture(scope="session")
def live_server():
    import uvicorn

    tmp = tempfile.mkdtemp(prefix="nfod-browser-")
    url = f"sqlite:///{tmp}/browser.db"
    migrations.upgrade(url)
    settings = Settings(
        _env_file=None,
        env="test",
        database_url=url,
        secret_key="browser-test-secret-" + "x" * 32,
        admin_username="admin",
        admin_password=ADMIN_PASSWORD,
        log_level="WARNING",
    )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the live server did not start"
        time.sleep(0.05)
    r = httpx.post(
        f"{base}/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD}, timeout=10
    )
    assert r.status_code == 200, r.text
    yield LiveServer(url=base, admin_token=r.json()["access_token"], settings=settings)
    server.should_exit = True
    thread.join(timeout=10)


@dataclass
class Cast:
    """The people of one test: a fresh outreach agency and worker (so "My follow-ups" holds
    only this test's incidents) and the coordinator shared by the session."""

    outreach_agency: str
    outreach: str  # username
    coordinator: str
    coordinator_token: str  # also used to check what the server recorded (sees every case)


def _create(admin: httpx.Client, path: str, body: dict) -> dict:
    r = admin.post(path, json=body)
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture(scope="session")
def coordinator(live_server) -> tuple[str, str]:
    """(username, token): made once; password hashing is deliberately slow."""
    with live_server.client(live_server.admin_token) as admin:
        hospital = _create(admin, "/v1/agencies", {"name": "NHS Tayside", "kind": "statutory"})
        _create(
            admin,
            "/v1/users",
            {
                "username": "kim",
                "password": PASSWORD,
                "role": "coordinator",
                "agency_id": hospital["id"],
                "display_name": "Kim Coordinator",
            },
        )
    return "kim", live_server.token("kim")


@pytest.fixture
def cast(live_server, coordinator) -> Cast:
    tag = uuid.uuid4().hex[:6]
    with live_server.client(live_server.admin_token) as admin:
        agency = _create(
            admin, "/v1/agencies", {"name": f"Hillcrest Futures {tag}", "kind": "third_sector"}
        )
        username = f"outreach-{tag}"
        _create(
            admin,
            "/v1/users",
            {
                "username": username,
                "password": PASSWORD,
                "role": "outreach",
                "agency_id": agency["id"],
                "display_name": "Jo Outreach",
            },
        )
    return Cast(
        outreach_agency=agency["id"],
        outreach=username,
        coordinator=coordinator[0],
        coordinator_token=coordinator[1],
    )


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture
def seed(live_server, cast):
    """seed(given, family, hours_ago=..., assign=True) -> incident: created by the coordinator
    through the API and, when assign, assigned to the outreach worker's agency."""

    def make(
        given: str | None,
        family: str | None,
        *,
        chi: str | None = None,
        hours_ago: float = 20,
        reported_hours_ago: float | None = None,
        assign: bool = True,
        dob: str | None = "1984-03-02",
        postcode: str = "DD3 7AA",
    ) -> dict:
        now = datetime.now(UTC)
        reported = hours_ago - 0.5 if reported_hours_ago is None else reported_hours_ago
        body = {
            "occurred_at": rfc3339(now - timedelta(hours=hours_ago)),
            "reported_at": rfc3339(now - timedelta(hours=reported)),
            "location": {"description": "Hilltown flats stairwell", "postcode": postcode},
            "substances": ["heroin", "street benzodiazepine"],
            "naloxone_administered": True,
            "naloxone_administered_by": "ambulance",
            "hospital": "declined",
            "person": {
                "given_name": given,
                "family_name": family,
                "date_of_birth": dob,
                "chi": chi,
                "sex": "male",
                "phone": "07700900123",
            },
        }
        body["person"] = {k: v for k, v in body["person"].items() if v is not None}
        with live_server.client(cast.coordinator_token) as c:
            r = c.post("/v1/incidents", json=body)
            assert r.status_code == 201, r.text
            incident = r.json()
            if assign:
                r = c.patch(
                    f"/v1/incidents/{incident['id']}",
                    json={"assigned_agency_id": cast.outreach_agency},
                )
                assert r.status_code == 200, r.text
                incident = r.json()
        return incident

    return make


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def context(browser, live_server):
    # Service workers off by default (page.route cannot see requests a worker handles);
    # the offline-reload test turns it on in its own context.
    ctx = browser.new_context(base_url=live_server.url, viewport=PHONE, service_workers="block")
    ctx.set_default_timeout(8000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context):
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    assert not errors, f"JavaScript errors in the page: {errors}"


def sign_in(page, username: str, password: str = PASSWORD) -> None:
    page.goto("/app/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()


def screenshot(page, name: str) -> None:
    """The current screen at phone and laptop sizes into test-artifacts/screenshots/."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for label, size in (("phone", PHONE), ("laptop", LAPTOP)):
        page.set_viewport_size(size)
        page.screenshot(path=str(SHOTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(PHONE)


def no_sideways_scroll(page) -> bool:
    return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")


def unlabelled_controls(page) -> list[str]:
    """Visible form controls with no accessible name (label, aria-label or aria-labelledby)."""
    return page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
            .filter((el) => el.type !== 'hidden')
            .filter((el) => !(el.labels && el.labels.length))
            .filter((el) => !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
            .map((el) => el.outerHTML)"""
    )
