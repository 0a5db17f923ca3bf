"""Fixtures for the platform tests: an admin, app instances with their own settings,
signing in through the API, and running the ``nfod`` CLI in-process."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.logging_setup import JsonFormatter
from services.config import get_settings
from tests.conftest import make_settings


@pytest.fixture
def admin(factory):
    return factory.user("admin")


@pytest.fixture
def make_client(db_url, engine, clock):
    """A TestClient over an app built with settings overrides (same database and clock)."""
    opened: list[TestClient] = []

    def build(**overrides) -> TestClient:
        settings = make_settings(db_url, **overrides)
        app = create_app(settings, engine=engine, clock=clock)
        c = TestClient(app, raise_server_exceptions=False)
        c.__enter__()
        opened.append(c)
        return c

    yield build
    for c in opened:
        c.__exit__(None, None, None)


def login(client: TestClient, username: str, password: str, **extra):
    return client.post("/v1/auth/token", data={"username": username, "password": password, **extra})


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Run ``nfod ...`` in-process against a database URL: (exit code, stdout, stderr)."""
    from api.cli import main

    def run(url: str, *argv: str, **env: str) -> tuple[int, str, str]:
        monkeypatch.setenv("NFOD_DATABASE_URL", url)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        capsys.readouterr()
        try:
            code = main(list(argv))
        finally:
            get_settings.cache_clear()
        out = capsys.readouterr()
        return code, out.out, out.err

    yield run
    get_settings.cache_clear()


@contextmanager
def captured_json_logs(*names: str) -> Iterator[list[dict]]:
    """Collect what the named loggers write, formatted by the service's JSON formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    loggers = [logging.getLogger(n) for n in names]
    previous = [(lg.level, lg.disabled) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
        lg.disabled = False
    records: list[dict] = []
    try:
        yield records
    finally:
        for lg, (level, disabled) in zip(loggers, previous, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.disabled = disabled
        records.extend(json.loads(line) for line in stream.getvalue().splitlines() if line)
