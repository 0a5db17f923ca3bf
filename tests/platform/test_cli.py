"""Operator bootstrap commands: `nfod agencies create`, `nfod users create`."""

from __future__ import annotations

import re

from sqlalchemy import select

from models.user import User
from tests.platform.conftest import login


def test_operator_creates_an_agency_and_users(db_url, run_cli, client, session):
    code, out, err = run_cli(
        db_url, "agencies", "create", "Dundee Outreach", "--kind", "third_sector"
    )
    assert code == 0, err
    agency_id = re.search(r"\(([0-9a-f-]{36})\)", out).group(1)

    code, out, err = run_cli(
        db_url, "users", "create", "ops.admin", "--role", "admin", "--password", "operator password"
    )
    assert code == 0, err
    assert "created admin ops.admin" in out
    code, out, err = run_cli(
        db_url,
        "users",
        "create",
        "walker",
        "--role",
        "outreach",
        "--agency-id",
        agency_id,
        "--password",
        "outreach password",
    )
    assert code == 0, err
    assert login(client, "ops.admin", "operator password").status_code == 200
    walker = session.execute(select(User).where(User.username == "walker")).scalar_one()
    assert walker.agency_id == agency_id and walker.password_hash.startswith("$argon2id$")


def test_operator_mistakes_exit_non_zero_with_a_message(db_url, run_cli):
    code, out, err = run_cli(
        db_url, "users", "create", "w2", "--role", "outreach", "--password", "long enough pw"
    )
    assert code == 1 and "agency" in err
    code, out, err = run_cli(
        db_url, "users", "create", "w3", "--role", "analyst", "--password", "short"
    )
    assert code == 1 and "10 characters" in err
    assert (
        run_cli(
            db_url, "users", "create", "dup", "--role", "analyst", "--password", "long enough pw"
        )[0]
        == 0
    )
    code, out, err = run_cli(
        db_url, "users", "create", "dup", "--role", "analyst", "--password", "long enough pw"
    )
    assert code == 1 and "already exists" in err
