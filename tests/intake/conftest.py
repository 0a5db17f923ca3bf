"""Fixtures for intake tests: a cast of actors and helpers to post incidents."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from tests.conftest import Actor


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Cast:
    agency_a: str
    agency_b: str
    coordinator: Actor
    outreach_a: Actor
    outreach_b: Actor
    partner_a: Actor
    partner_b: Actor
    analyst: Actor
    admin: Actor


@pytest.fixture
def cast(factory) -> Cast:
    a = factory.agency("Scottish Ambulance Service")
    b = factory.agency("Hillcrest Futures", kind="third_sector")
    return Cast(
        agency_a=a,
        agency_b=b,
        coordinator=factory.user("coordinator"),
        outreach_a=factory.user("outreach", a),
        outreach_b=factory.user("outreach", b),
        partner_a=factory.partner(a),
        partner_b=factory.partner(b),
        analyst=factory.user("analyst"),
        admin=factory.user("admin"),
    )


@pytest.fixture
def body(clock):
    """A factory of valid incident bodies relative to the test clock."""

    def make(**overrides):
        now = clock()
        data = {
            "source_ref": f"SAS-{now.timestamp():.0f}-{make.n}",
            "occurred_at": iso(now - timedelta(hours=3)),
            "reported_at": iso(now - timedelta(hours=2)),
            "location": {"description": "Hilltown flats stairwell", "postcode": "dd3 7aa"},
            "substances": [" Heroin ", "Street  Benzodiazepine"],
            "naloxone_administered": True,
            "naloxone_administered_by": "ambulance",
            "hospital": "declined",
            "person": {
                "chi": "0101801238",
                "given_name": "Sam",
                "family_name": "Reid",
                "date_of_birth": "1980-01-01",
                "sex": "male",
                "postcode": "DD3 7AA",
                "phone": "07700900123",
            },
            "notes": "found by neighbour",
        }
        make.n += 1
        for key, value in overrides.items():
            if value is ... and key in data:
                del data[key]
            else:
                data[key] = value
        return data

    make.n = 0
    return make


def make_chi(dob: str, serial: int = 123, scheme: str = "mod11") -> str:
    """A valid CHI for a date of birth (YYYY-MM-DD): DDMMYY + a 3-digit serial + check digit."""
    y, m, d = dob.split("-")
    for s in range(serial, serial + 20):
        stem = f"{d}{m}{y[2:]}{s % 1000:03d}"
        digits = [int(c) for c in stem]
        if scheme == "mod11":
            check = 11 - sum(x * w for x, w in zip(digits, range(10, 1, -1), strict=True)) % 11
            if check == 11:
                check = 0
            if check == 10:
                continue
        else:
            total = sum(
                (x * 2 - 9 if x * 2 > 9 else x * 2) if i % 2 == 0 else x
                for i, x in enumerate(digits)
            )
            check = (10 - total % 10) % 10
        return f"{stem}{check}"
    raise AssertionError("no CHI found")


def count(session, model, *where) -> int:
    """Count rows, then end the transaction (SQLite: release the write lock for the app)."""
    from sqlalchemy import func, select

    try:
        return session.scalar(select(func.count()).select_from(model).where(*where))
    finally:
        session.rollback()


def encode(values) -> str:
    from services.pagination import encode_cursor

    return encode_cursor(values)
