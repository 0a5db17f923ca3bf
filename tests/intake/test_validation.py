"""Every validation rule on POST /v1/incidents: 422 problem details and nothing stored."""

from __future__ import annotations

from datetime import timedelta

import pytest

from models.idempotency import IdempotencyRecord
from models.incident import Incident
from models.person import Person
from tests.conftest import assert_problem
from tests.intake.conftest import count, iso, make_chi


def _later(clock, **delta):
    return iso(clock() + timedelta(**delta))


BAD_CASES = [
    # (name, overrides, expected loc)
    ("missing occurred_at", {"occurred_at": ...}, ["body", "occurred_at"]),
    ("naive occurred_at", {"occurred_at": "2026-01-01T10:00:00"}, ["body", "occurred_at"]),
    ("date-only occurred_at", {"occurred_at": "2026-01-01"}, ["body", "occurred_at"]),
    ("numeric occurred_at", {"occurred_at": 1767261600}, ["body", "occurred_at"]),
    ("garbage occurred_at", {"occurred_at": "yesterday"}, ["body", "occurred_at"]),
    ("naive reported_at", {"reported_at": "2026-01-01T10:00:00"}, ["body", "reported_at"]),
    ("unknown field", {"colour": "red"}, ["body", "colour"]),
    ("typo field", {"substance": ["heroin"]}, ["body", "substance"]),
    ("bad hospital", {"hospital": "maybe"}, ["body", "hospital"]),
    (
        "bad naloxone_by",
        {"naloxone_administered_by": "nurse"},
        ["body", "naloxone_administered_by"],
    ),
    ("string naloxone flag", {"naloxone_administered": "yes"}, ["body", "naloxone_administered"]),
    ("int naloxone flag", {"naloxone_administered": 1}, ["body", "naloxone_administered"]),
    ("substances not a list", {"substances": "heroin"}, ["body", "substances"]),
    ("substance not a string", {"substances": [1]}, ["body", "substances", 0]),
    ("empty substance", {"substances": ["  "]}, ["body", "substances", 0]),
    (
        "bad location postcode",
        {"location": {"postcode": "NOT A CODE"}},
        ["body", "location", "postcode"],
    ),
    ("unknown location field", {"location": {"town": "Dundee"}}, ["body", "location", "town"]),
    ("bad sex", {"person": {"family_name": "Reid", "sex": "m"}}, ["body", "person", "sex"]),
    ("unknown person field", {"person": {"surname": "Reid"}}, ["body", "person", "surname"]),
    (
        "bad person postcode",
        {"person": {"family_name": "Reid", "postcode": "DD"}},
        ["body", "person", "postcode"],
    ),
    ("chi too short", {"person": {"chi": "010180123"}}, ["body", "person", "chi"]),
    ("chi too long", {"person": {"chi": "01018012380"}}, ["body", "person", "chi"]),
    ("chi not digits", {"person": {"chi": "01018O1238"}}, ["body", "person", "chi"]),
    ("chi number type", {"person": {"chi": 101801238}}, ["body", "person", "chi"]),
    ("chi bad check digit", {"person": {"chi": "0101801239"}}, ["body", "person", "chi"]),
    (
        "chi dob mismatch",
        {"person": {"chi": "0101801238", "date_of_birth": "1980-01-02"}},
        ["body", "person", "chi"],
    ),
    (
        "future dob",
        {"person": {"family_name": "Reid", "date_of_birth": "2099-01-01"}},
        ["body", "person", "date_of_birth"],
    ),
    (
        "bad dob",
        {"person": {"family_name": "Reid", "date_of_birth": "1980-02-30"}},
        ["body", "person", "date_of_birth"],
    ),
    (
        "bad phone",
        {"person": {"family_name": "Reid", "phone": "call me"}},
        ["body", "person", "phone"],
    ),
    ("long source_ref", {"source_ref": "x" * 101}, ["body", "source_ref"]),
    ("empty source_ref", {"source_ref": ""}, ["body", "source_ref"]),
    ("person not an object", {"person": "Sam Reid"}, ["body", "person"]),
]


@pytest.mark.parametrize(("name", "overrides", "loc"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_is_422_and_stores_nothing(client, cast, body, session, name, overrides, loc):
    data = body(**overrides)
    r = client.post(
        "/v1/incidents",
        json=data,
        headers=cast.partner_a.headers | {"Idempotency-Key": "k-" + name},
    )
    problem = assert_problem(r, 422)
    assert any(e["loc"][: len(loc)] == loc for e in problem["errors"]), problem["errors"]
    assert count(session, Incident) == 0
    assert count(session, Person) == 0
    assert count(session, IdempotencyRecord) == 0


def test_time_rules(client, cast, body, clock, session):
    h = cast.partner_a.headers
    # more than five minutes in the future
    r = client.post(
        "/v1/incidents", json=body(occurred_at=_later(clock, minutes=6), reported_at=...), headers=h
    )
    assert assert_problem(r, 422)["errors"][0]["loc"] == ["body", "occurred_at"]
    # after reported_at
    r = client.post(
        "/v1/incidents",
        json=body(occurred_at=_later(clock, hours=-1), reported_at=_later(clock, hours=-2)),
        headers=h,
    )
    assert assert_problem(r, 422)["errors"][0]["loc"] == ["body", "occurred_at"]
    assert count(session, Incident) == 0
    # within the five minutes of clock skew is accepted
    soon = _later(clock, minutes=4)
    r = client.post("/v1/incidents", json=body(occurred_at=soon, reported_at=soon), headers=h)
    assert r.status_code == 201, r.text
    # without reported_at (defaults to now) a slightly-future occurred_at is after it
    r = client.post("/v1/incidents", json=body(occurred_at=soon, reported_at=...), headers=h)
    assert assert_problem(r, 422)["errors"][0]["loc"] == ["body", "occurred_at"]
    # an offset other than Z is converted to UTC
    r = client.post(
        "/v1/incidents",
        json=body(occurred_at="2026-03-29T01:30:00+01:00", reported_at="2026-03-29T03:00:00+01:00"),
        headers=h,
    )
    assert r.status_code == 201 and r.json()["occurred_at"] == "2026-03-29T00:30:00Z"


def test_several_errors_are_reported_together(client, cast, body):
    data = body(
        location={"postcode": "ZZZ"}, person={"chi": "0101801239", "date_of_birth": "2099-01-01"}
    )
    problem = assert_problem(
        client.post("/v1/incidents", json=data, headers=cast.partner_a.headers), 422
    )
    locs = {tuple(e["loc"]) for e in problem["errors"]}
    assert ("body", "location", "postcode") in locs and ("body", "person", "chi") in locs
    assert ("body", "person", "date_of_birth") in locs


def test_valid_chis_of_both_schemes_are_accepted(client, cast, body):
    for scheme in ("mod11", "mod10"):
        chi = make_chi("1980-01-01", 200, scheme)
        data = body(person={"chi": chi, "date_of_birth": "1980-01-01"})
        r = client.post("/v1/incidents", json=data, headers=cast.partner_a.headers)
        assert r.status_code == 201, (scheme, r.text)


def test_postcodes_are_normalised(client, cast, body):
    for raw, norm in [
        ("dd37aa", "DD3 7AA"),
        (" DD1  4HN ", "DD1 4HN"),
        ("ec1a1bb", "EC1A 1BB"),
        ("w1a 0ax", "W1A 0AX"),
    ]:
        r = client.post(
            "/v1/incidents", json=body(location={"postcode": raw}), headers=cast.partner_a.headers
        )
        assert r.status_code == 201, r.text
        assert r.json()["location"]["postcode"] == norm
        assert r.json()["location"]["postcode_district"] == norm.split()[0]


def test_body_must_be_json_object(client, cast):
    r = client.post(
        "/v1/incidents",
        content=b"{not json",
        headers=cast.partner_a.headers | {"content-type": "application/json"},
    )
    assert r.status_code in (400, 422)
    assert r.headers["content-type"].startswith("application/problem+json")
