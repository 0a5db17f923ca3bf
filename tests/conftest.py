"""Shared fixtures. The suite runs on SQLite by default and on PostgreSQL when
``NFOD_TEST_DATABASE_URL`` is set (a fresh database is created on that server per run).

Feature test modules build on: ``clock`` (a settable clock the app reads), ``client``
(a TestClient), ``session`` (a direct database session), and ``factory`` (agencies,
users with tokens, partner API clients).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

import models
from api.app import create_app
from models.base import Base
from services import migrations
from services.config import Settings
from services.db import make_engine, make_session_factory
from services.security import hash_api_key, hash_password, issue_token, new_api_key

TEST_SECRET = "test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
TEST_PASSWORD = "correct horse battery"
PG_URL = os.environ.get("NFOD_TEST_DATABASE_URL")


def is_postgres() -> bool:
    return bool(PG_URL)


postgres_only = pytest.mark.skipif(
    not PG_URL, reason="runs on PostgreSQL only (set NFOD_TEST_DATABASE_URL)"
)


@pytest.fixture(scope="session")
def db_url():
    if PG_URL:
        base = make_url(PG_URL)
        name = f"nfod_test_{uuid.uuid4().hex[:10]}"
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = base.set(database=name).render_as_string(hide_password=False)
        migrations.upgrade(url)
        yield url
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    else:
        tmp = tempfile.mkdtemp(prefix="nfod-test-")
        url = f"sqlite:///{tmp}/test.db"
        migrations.upgrade(url)
        yield url


@pytest.fixture(scope="session")
def engine(db_url):
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


def _wipe(engine) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(
                text(
                    "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"
                )
            )
        else:
            for t in tables:
                conn.execute(text(f'DELETE FROM "{t}"'))


@pytest.fixture(autouse=True)
def _clean_database(request, engine):
    yield
    _wipe(engine)


class Clock:
    """The time the app sees. Frozen unless moved with ``set`` or ``advance``."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, value: datetime) -> datetime:
        assert value.tzinfo is not None
        self.now = value.astimezone(UTC)
        return self.now

    def advance(self, **delta) -> datetime:
        self.now = self.now + timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC).replace(microsecond=0))


def make_settings(db_url: str, **overrides) -> Settings:
    values = dict(
        env="test",
        database_url=db_url,
        secret_key=TEST_SECRET,
        admin_username=None,
        admin_password=None,
    )
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def settings(db_url) -> Settings:
    return make_settings(db_url)


@pytest.fixture
def app(settings, engine, clock):
    return create_app(settings, engine=engine, clock=clock)


@pytest.fixture
def client(app):
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def session(engine):
    s: Session = make_session_factory(engine)()
    yield s
    s.rollback()
    s.close()


@dataclass
class Actor:
    id: str
    role: str
    agency_id: str | None
    token: str
    username: str | None = None
    password: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


_PASSWORD_HASH: str | None = None


class Factory:
    """Creates agencies, users and partner clients directly in the database (fast),
    and mints their bearer tokens, so feature tests start from a known cast."""

    def __init__(self, engine, settings: Settings, clock: Clock):
        self.session_factory = make_session_factory(engine)
        self.settings = settings
        self.clock = clock
        self._n = 0

    def _seq(self) -> int:
        self._n += 1
        return self._n

    def agency(self, name: str | None = None, kind: str = "statutory") -> str:
        with self.session_factory() as s, s.begin():
            agency = models.Agency(
                name=name or f"Agency {self._seq()} {uuid.uuid4().hex[:6]}",
                kind=kind,
                created_at=self.clock(),
            )
            s.add(agency)
            s.flush()
            return agency.id

    def user(
        self,
        role: str,
        agency_id: str | None = None,
        *,
        username: str | None = None,
        display_name: str | None = None,
    ) -> Actor:
        global _PASSWORD_HASH
        if _PASSWORD_HASH is None:
            _PASSWORD_HASH = hash_password(TEST_PASSWORD)
        if role == "outreach" and agency_id is None:
            agency_id = self.agency()
        username = username or f"{role}{self._seq()}-{uuid.uuid4().hex[:6]}"
        now = self.clock()
        with self.session_factory() as s, s.begin():
            user = models.User(
                username=username,
                password_hash=_PASSWORD_HASH,
                role=role,
                agency_id=agency_id,
                display_name=display_name or username,
                active=True,
                token_version=0,
                created_at=now,
                updated_at=now,
            )
            s.add(user)
            s.flush()
            user_id = user.id
        token = issue_token(
            self.settings.effective_secret_key,
            user_id=user_id,
            version=0,
            now=now,
            ttl=self.settings.token_ttl_seconds,
        )
        return Actor(
            id=user_id,
            role=role,
            agency_id=agency_id,
            token=token,
            username=username,
            password=TEST_PASSWORD,
        )

    def partner(self, agency_id: str | None = None, name: str | None = None) -> Actor:
        agency_id = agency_id or self.agency()
        key = new_api_key()
        with self.session_factory() as s, s.begin():
            client = models.ApiClient(
                name=name or f"Partner {self._seq()}",
                agency_id=agency_id,
                key_hash=hash_api_key(key),
                key_prefix=key[:12],
                created_at=self.clock(),
            )
            s.add(client)
            s.flush()
            client_id = client.id
        return Actor(id=client_id, role="partner", agency_id=agency_id, token=key)


@pytest.fixture
def factory(engine, settings, clock) -> Factory:
    return Factory(engine, settings, clock)


@contextlib.contextmanager
def listening(target, identifier: str, fn: Callable[..., None]) -> Iterator[None]:
    """A SQLAlchemy event listener for the duration of a with-block."""
    event.listen(target, identifier, fn)
    try:
        yield
    finally:
        event.remove(target, identifier, fn)


def assert_problem(response, status: int) -> dict:
    """The response is an RFC 9457 problem with this status; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status
    assert body["title"] and body["type"] and "detail" in body
    return body
