"""nfod demo: loads into an empty database, refuses one with data, deterministic by seed."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from models.contact import ContactAttempt
from models.incident import Incident
from models.person import Person
from models.user import User
from services import accounts, demo
from services.errors import Conflict


def _count(session, model, *where):
    return session.scalar(select(func.count()).select_from(model).where(*where))


def test_demo_loads_a_living_system_and_then_refuses(session, settings, clock, client):
    accounts.ensure_bootstrap_admin(
        session, now=clock(), username="root", password="bootstrap-password"
    )
    summary = demo.load_demo(session, now=clock(), seed=7, settings=settings)
    session.commit()
    assert "demo-coordinator" in summary and "demo-coordinator-pass" in summary
    incidents = _count(session, Incident)
    assert 200 <= incidents <= 500
    assert _count(session, Incident, Incident.person_id.is_(None)) > 0  # unidentified people
    people = _count(session, Person)
    assert people < incidents  # repeat overdoses
    assert _count(session, ContactAttempt) > 100
    districts = set(session.scalars(select(Incident.postcode_district).distinct()))
    assert districts <= {"DD1", "DD2", "DD3", "DD4", "DD5"} and len(districts) == 5
    assert {u.role for u in session.scalars(select(User))} == {
        "admin",
        "coordinator",
        "outreach",
        "analyst",
    }
    session.rollback()
    # the demo users can sign in and see data
    r = client.post(
        "/v1/auth/token", data={"username": "demo-coordinator", "password": "demo-coordinator-pass"}
    )
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    listed = client.get(
        "/v1/incidents", params={"overdue": "true"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert listed.status_code == 200 and listed.json()["items"]
    with pytest.raises(Conflict, match="empty database"):
        demo.load_demo(session, now=clock(), seed=7, settings=settings)
    session.rollback()
    assert _count(session, Incident) == incidents


def test_demo_refuses_when_users_exist(session, settings, clock, factory):
    factory.user("coordinator")
    with pytest.raises(Conflict):
        demo.load_demo(session, now=clock(), seed=1, settings=settings)
    session.rollback()
    assert _count(session, Incident) == 0
