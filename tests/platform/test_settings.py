"""Settings: a clear start-up error for a missing or weak secret outside development,
and the first administrator from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.config import DEV_SECRET_KEY, ConfigError, load_settings
from tests.conftest import TEST_SECRET
from tests.platform.conftest import login

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_nfod_environment(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.startswith("NFOD_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no .env file here


def test_production_needs_a_secret_key():
    with pytest.raises(ConfigError, match="NFOD_SECRET_KEY is required"):
        load_settings(env="production")
    with pytest.raises(ConfigError, match="NFOD_SECRET_KEY is too weak"):
        load_settings(env="production", secret_key="short")
    with pytest.raises(ConfigError, match="too weak"):
        load_settings(env="production", secret_key=DEV_SECRET_KEY)
    assert load_settings(env="production", secret_key=TEST_SECRET).secret_key == TEST_SECRET


def test_development_runs_without_a_secret_key():
    s = load_settings()
    assert s.env == "development" and s.effective_secret_key == DEV_SECRET_KEY
    assert s.database_url.startswith("sqlite")


def test_settings_come_from_nfod_variables_and_errors_name_them(monkeypatch):
    monkeypatch.setenv("NFOD_CONTACT_WINDOW_HOURS", "48")
    monkeypatch.setenv("NFOD_TIMEZONE", "Europe/London")
    assert load_settings().contact_window_hours == 48
    monkeypatch.setenv("NFOD_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ConfigError, match="NFOD_TIMEZONE"):
        load_settings()


def test_settings_read_a_dotenv_file(tmp_path):
    (tmp_path / ".env").write_text("NFOD_DUE_SOON_HOURS=12\n")
    assert load_settings().due_soon_hours == 12


def test_config_error_never_echoes_the_value(monkeypatch):
    monkeypatch.setenv("NFOD_ENV", "production")
    monkeypatch.setenv("NFOD_SECRET_KEY", "hunter2-weak")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "hunter2" not in str(info.value)


def test_nfod_serve_exits_non_zero_with_the_message(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NFOD_")}
    env.update(NFOD_ENV="production", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "api.cli", "serve", "--port", "1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "NFOD_SECRET_KEY is required" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_first_admin_from_the_environment(make_client, factory):
    c = make_client(admin_username="chief", admin_password="first admin password")
    r = login(c, "chief", "first admin password")
    assert r.status_code == 200
    token = {"Authorization": f"Bearer {r.json()['access_token']}"}
    me = c.get("/v1/users/me", headers=token).json()
    assert me["role"] == "admin" and me["username"] == "chief"
    # once users exist, the variables create nobody else
    c2 = make_client(admin_username="second", admin_password="another admin password")
    assert login(c2, "second", "another admin password").status_code == 401
    assert [u["username"] for u in c2.get("/v1/users", headers=token).json()["items"]] == ["chief"]


def test_no_first_admin_when_users_exist(make_client, factory):
    factory.user("coordinator")
    c = make_client(admin_username="late", admin_password="late admin password")
    assert login(c, "late", "late admin password").status_code == 401


def test_readme_configuration_table_lists_every_setting():
    from services.config import Settings

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("<!-- section:platform") : readme.index("<!-- section:intake")]
    missing = [
        f"NFOD_{name.upper()}"
        for name in Settings.model_fields
        if f"`NFOD_{name.upper()}`" not in section
    ]
    assert missing == []


def test_fastapi_opentelemetry_is_off_unless_asked_for(make_client, monkeypatch):
    """NFOD_OPENTELEMETRY=false (the default) keeps FastAPI from consulting the global
    OpenTelemetry providers on every request; true hands requests to FastAPI's telemetry."""
    from opentelemetry import trace

    asked = []
    real = trace.get_tracer_provider
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: asked.append(1) or real())
    assert make_client().get("/healthz").status_code == 200
    assert asked == []
    assert make_client(opentelemetry=True).get("/healthz").status_code == 200
    assert asked, "with NFOD_OPENTELEMETRY=true FastAPI's telemetry looks for a provider"
