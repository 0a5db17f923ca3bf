"""CSV and printable HTML exports of a held huddle."""

from __future__ import annotations

import csv
import io

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

import models
from services.huddles import csv_cell
from tests.conftest import assert_problem
from tests.huddles.conftest import utc
from tests.huddles.test_agenda import discuss

DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


def _held_huddle(client, clock, cast, data, *, notes='=HYPERLINK("http://evil","x")'):
    src = cast.source_agency_id
    clock.set(utc(2026, 11, 24, 8, 0))
    red = data.person(given="@Sam", family="Reid")
    data_person = data.person(given="Jo", family="<script>alert(1)</script>")
    a = data.incident(
        source_agency_id=src,
        occurred_at=utc(2026, 11, 20, 20, 0),  # overdue at 08:00 on the 24th
        person_id=red,
        substances=("=1+1", "heroin"),
        location="+44 stairwell",
    )
    b = data.incident(
        source_agency_id=src,
        occurred_at=utc(2026, 11, 23, 20, 0),
        person_id=data_person,
        location="-cmd|' /C calc'!A0",
    )
    c = data.incident(
        source_agency_id=src, occurred_at=utc(2026, 11, 23, 21, 0), location="\tTabbed"
    )
    h = cast.coordinator.headers
    assert (
        client.put(
            f"/v1/persons/{red}/safety-plan", json={"risk_level": "red"}, headers=h
        ).status_code
        == 201
    )
    assert (
        client.put(
            f"/v1/persons/{data_person}/safety-plan", json={"risk_level": "green"}, headers=h
        ).status_code
        == 201
    )
    r = client.post(
        "/v1/huddles", json={"date": "2026-11-24", "chair_name": "Chair <b>Person</b>"}, headers=h
    )
    assert r.status_code == 201
    held = r.json()
    discuss(client, cast.coordinator, held["id"], a, notes=notes)
    return held, (a, b, c)


def test_csv_has_a_header_one_row_per_item_and_no_formula_injection(
    client, clock, cast, data, session
):
    held, (a, b, c) = _held_huddle(client, clock, cast, data)
    r = client.get(f"/v1/huddles/{held['id']}/agenda.csv", headers=cast.coordinator.headers)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == 'attachment; filename="huddle-2026-11-24-agenda.csv"'
    rows = list(csv.reader(io.StringIO(r.text)))
    header, body = rows[0], rows[1:]
    assert "incident_id" in header
    assert [row[header.index("incident_id")] for row in body] == [a, b, c]
    for row in rows:
        for cell in row:
            assert not cell.startswith(DANGEROUS), cell
    by_id = {row[header.index("incident_id")]: dict(zip(header, row, strict=True)) for row in body}
    assert by_id[a]["notes"] == '\'=HYPERLINK("http://evil","x")'
    assert by_id[a]["location"] == "'+44 stairwell"
    assert by_id[a]["substances"] == "'=1+1; heroin"
    assert by_id[a]["person_name"] == "'@Sam Reid"
    assert by_id[a]["risk_level"] == "red" and by_id[a]["overdue"] == "true"
    assert by_id[a]["discussed"] == "true" and by_id[b]["discussed"] == "false"
    assert by_id[b]["location"].startswith("'-cmd")
    assert by_id[c]["location"] == "'\tTabbed"
    assert by_id[a]["hours_remaining"] == "'-12.0"  # negative numbers are neutralised too
    exports = (
        session.execute(select(models.AuditEntry).where(models.AuditEntry.action == "export"))
        .scalars()
        .all()
    )
    assert [(e.subject_type, e.subject_id, e.details["format"]) for e in exports] == [
        ("huddle", held["id"], "csv")
    ]


def test_html_is_printable_escaped_and_marks_risk_and_overdue_in_text(
    client, clock, cast, data, session
):
    held, (a, b, c) = _held_huddle(client, clock, cast, data, notes="<img src=x onerror=alert(1)>")
    r = client.get(f"/v1/huddles/{held['id']}/agenda.html", headers=cast.coordinator.headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    html = r.text
    assert "@page" in html and "A4" in html
    assert "2026-11-24" in html
    assert "Chair &lt;b&gt;Person&lt;/b&gt;" in html  # who chaired, escaped
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert "<b>Person</b>" not in html
    for incident_id in (a, b, c):
        assert html.count(f'data-incident-id="{incident_id}"') == 1
    row_a = html.split(f'data-incident-id="{a}"')[1].split("</tr>")[0]
    row_b = html.split(f'data-incident-id="{b}"')[1].split("</tr>")[0]
    row_c = html.split(f'data-incident-id="{c}"')[1].split("</tr>")[0]
    assert "rag-red" in row_a and "RED" in row_a and "OVERDUE" in row_a
    assert "rag-green" in row_b and "GREEN" in row_b and "OVERDUE" not in row_b
    assert "NO PLAN" in row_c
    # Local time (GMT in November): 20:00Z on Friday 20 November.
    assert "Fri 20 Nov 20:00" in row_a
    assert (
        session.execute(
            select(models.AuditEntry).where(
                models.AuditEntry.action == "export", models.AuditEntry.subject_id == held["id"]
            )
        )
        .scalar_one()
        .details["format"]
        == "html"
    )


def test_exports_are_for_coordinators_and_existing_huddles(client, cast):
    for suffix in ("csv", "html"):
        assert_problem(
            client.get(f"/v1/huddles/nope/agenda.{suffix}", headers=cast.coordinator.headers), 404
        )
        assert_problem(
            client.get(f"/v1/huddles/nope/agenda.{suffix}", headers=cast.outreach.headers), 403
        )


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(max_size=30), st.integers(), st.floats(allow_nan=False), st.booleans(), st.none()
    )
)
def test_property_no_csv_cell_can_start_a_formula(value):
    cell = csv_cell(value)
    assert not cell.startswith(DANGEROUS)
    text = (
        ""
        if value is None
        else ("true" if value is True else "false" if value is False else str(value))
    )
    assert cell in (text, "'" + text)
