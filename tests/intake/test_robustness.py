"""Nonsense that must be refused cleanly (never a 500): NUL bytes, absurd dates, bad cursors."""

from __future__ import annotations

from tests.conftest import assert_problem
from tests.intake.conftest import count, encode


def test_nul_bytes_are_refused(client, cast, body, session):
    from models.incident import Incident

    for data in (
        body(notes="a\u0000b"),
        body(source_ref="x\u0000"),
        body(substances=["hero\u0000in"]),
        body(person={"family_name": "Re\u0000id"}),
        body(location={"description": "\u0000"}),
    ):
        assert_problem(client.post("/v1/incidents", json=data, headers=cast.partner_a.headers), 422)
    assert count(session, Incident) == 0
    h = cast.coordinator.headers
    assert_problem(client.get("/v1/persons", params={"q": "a\u0000"}, headers=h), 422)
    assert_problem(client.get("/v1/persons", params={"chi": "\u0000"}, headers=h), 422)
    assert_problem(client.get("/v1/incidents", params={"person_id": "\u0000"}, headers=h), 422)
    assert_problem(client.get("/v1/incidents/%00", headers=h), 404)
    assert_problem(client.get("/v1/persons/%00", headers=h), 404)


def test_absurd_dates_are_refused(client, cast, body):
    for bad in (
        body(occurred_at="0001-01-01T00:00:00+01:00", reported_at=...),
        body(occurred_at="1899-12-31T00:00:00Z"),
        body(person={"family_name": "Reid", "date_of_birth": "1850-01-01"}),
        body(occurred_at="9999-12-31T23:00:00-05:00"),
    ):
        assert_problem(client.post("/v1/incidents", json=bad, headers=cast.partner_a.headers), 422)


def test_cursors_of_the_wrong_shape_are_422(client, cast):
    h = cast.coordinator.headers
    for cursor in (encode([1, 2]), encode(["a", "b"]), encode([1]), "!!!"):
        assert_problem(client.get("/v1/incidents", params={"cursor": cursor}, headers=h), 422)
        assert_problem(client.get("/v1/persons", params={"cursor": encode([1, 2])}, headers=h), 422)


def test_absurd_query_dates_are_refused(client, cast):
    h = cast.coordinator.headers
    for value in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00", "12345"):
        assert_problem(client.get("/v1/incidents", params={"occurred_from": value}, headers=h), 422)
