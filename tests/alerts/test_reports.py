"""The summary report against a hand-computed fixture, and small-number suppression."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import literal, select

from models.audit import AuditEntry
from models.incident import Incident
from services.reports import SECONDARY, SMALL, _hours, _suppress_cells
from tests.conftest import assert_problem

H = timedelta(hours=1)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def fixture(data, clock):
    """Hand-computed: see the expected figures in test_coordinator_sees_the_exact_figures."""
    clock.set(utc("2026-11-10T12:00:00"))
    amb = data.agency("Scottish Ambulance Service")
    pol = data.agency("Police Scotland")
    p1 = data.person(sex="male", dob=date(1980, 1, 1))
    p2 = data.person(sex="female", dob=date(2000, 6, 15))
    p3 = data.person()
    i1 = data.incident(
        occurred_at=utc("2026-11-02T10:00"),
        source_agency_id=amb,
        person_id=p1,
        district="DD1",
        substances=("heroin", "street benzodiazepine"),
    )
    data.contact(
        i1,
        at=utc("2026-11-02T20:00"),
        actions=("naloxone_supplied",),
        referrals=("drug_treatment", "housing"),
    )
    i2 = data.incident(
        occurred_at=utc("2026-11-03T10:00"),
        source_agency_id=amb,
        person_id=p1,
        district="DD1",
        substances=("heroin",),
    )
    data.contact(i2, at=utc("2026-11-06T18:00"))  # 80 h: outside the window
    i3 = data.incident(
        occurred_at=utc("2026-11-04T10:00"),
        source_agency_id=pol,
        person_id=p2,
        district="DD2",
        substances=("cocaine",),
    )
    data.contact(
        i3, at=utc("2026-11-04T12:00"), outcome="no_answer", actions=("naloxone_supplied",)
    )
    data.contact(i3, at=utc("2026-11-05T16:00"))  # 30 h
    data.incident(occurred_at=utc("2026-11-05T10:00"), source_agency_id=amb)  # overdue, unknown
    data.incident(
        occurred_at=utc("2026-11-08T23:30"), source_agency_id=pol, person_id=p3, district="DD1"
    )
    # Outside the period (local dates 1 and 9 November, GMT).
    data.incident(
        occurred_at=utc("2026-11-01T23:59"), source_agency_id=amb, person_id=p1, district="DD1"
    )
    data.incident(
        occurred_at=utc("2026-11-09T00:00"), source_agency_id=amb, person_id=p1, district="DD1"
    )
    return {"amb": amb, "pol": pol}


EXPECTED = {
    "from": "2026-11-02",
    "to": "2026-11-08",
    "incidents": 5,
    "people": 3,
    "people_with_repeat": 1,
    "contacted_within_72h_pct": 50.0,  # within: i1, i3 / base: i1, i2, i3 contacted + i4 ended
    "median_hours_to_first_contact": 30.0,  # 10, 30, 80
    "open_overdue": 1,
    "naloxone_supplied": 2,
    "referrals": {
        "total": 2,
        "by_code": {
            "drug_treatment": 1,
            "same_day_prescribing": 0,
            "housing": 1,
            "mental_health": 0,
            "womens_services": 0,
            "children_and_families": 0,
            "adult_protection": 0,
        },
    },
    "by_source": {"Police Scotland": 2, "Scottish Ambulance Service": 3},
    "by_sex": {"male": 2, "female": 1, "other": 0, "unknown": 2},
    "by_age_band": {
        "under 18": 0,
        "18-24": 0,
        "25-34": 1,
        "35-44": 0,
        "45-54": 2,
        "55-64": 0,
        "65+": 0,
        "unknown": 2,
    },
    "by_substance": {"cocaine": 1, "heroin": 2, "street benzodiazepine": 1},
    "by_postcode_district": {"DD1": 3, "DD2": 1, "unknown": 1},
    "suppressed": False,
}


def test_coordinator_sees_the_exact_figures(client, factory, fixture):
    coordinator = factory.user("coordinator")
    r = client.get("/v1/reports/summary?from=2026-11-02&to=2026-11-08", headers=coordinator.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    for key, value in EXPECTED.items():
        assert body[key] == value, key


def test_analyst_sees_small_numbers_suppressed(client, factory, fixture):
    analyst = factory.user("analyst")
    r = client.get("/v1/reports/summary?from=2026-11-02&to=2026-11-08", headers=analyst.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["incidents"] == 5 and body["suppressed"] is True
    for key in (
        "people",
        "people_with_repeat",
        "open_overdue",
        "naloxone_supplied",
        "contacted_within_72h_pct",
        "median_hours_to_first_contact",
    ):
        assert body[key] == SMALL, key
    assert body["referrals"]["total"] == SMALL
    assert body["referrals"]["by_code"]["drug_treatment"] == SMALL
    assert body["referrals"]["by_code"]["mental_health"] == 0
    assert body["by_sex"] == {"male": SMALL, "female": SMALL, "other": 0, "unknown": SMALL}
    assert body["by_source"] == {"Police Scotland": SMALL, "Scottish Ambulance Service": SMALL}
    assert body["by_postcode_district"] == {"DD1": SMALL, "DD2": SMALL, "unknown": SMALL}
    every = [
        v for k in ("by_sex", "by_age_band", "by_substance", "by_source") for v in body[k].values()
    ]
    assert all(v == 0 or v == SMALL for v in every)


def test_a_single_small_cell_is_protected_from_subtraction(client, factory, data, clock):
    clock.set(utc("2026-11-20T12:00:00"))
    src = data.agency("SAS")
    for n in range(6):
        data.incident(
            occurred_at=utc("2026-11-10T10:00") + n * H, source_agency_id=src, district="DD1"
        )
    data.incident(occurred_at=utc("2026-11-11T10:00"), source_agency_id=src, district="DD4")
    analyst = factory.user("analyst")
    body = client.get(
        "/v1/reports/summary?from=2026-11-10&to=2026-11-11", headers=analyst.headers
    ).json()
    assert body["incidents"] == 7
    # DD4 = 1 is "<5"; DD1 = 6 alone would give it back as 7 - 6, so it is hidden too.
    assert body["by_postcode_district"] == {"DD1": SECONDARY, "DD4": SMALL}
    assert body["by_source"] == {"SAS": 7}
    # 7 incidents, all with ended windows, none contacted: 0 % of 7 reveals nothing small.
    assert body["contacted_within_72h_pct"] == 0.0
    assert body["median_hours_to_first_contact"] is None
    coordinator = factory.user("coordinator")
    full = client.get(
        "/v1/reports/summary?from=2026-11-10&to=2026-11-11", headers=coordinator.headers
    ).json()
    assert full["by_postcode_district"] == {"DD1": 6, "DD4": 1}


def _pinned_only_at_extreme(named, hidden) -> bool:
    """Residual risk accepted (documented): a secondary cell of exactly 5 next to a 1."""
    return any(named[o] == 5 for o in hidden)


def test_a_total_that_would_pin_small_cells_is_hidden_everywhere(client, factory, data, clock):
    clock.set(utc("2026-11-20T12:00:00"))
    src = data.agency("SAS")
    for n in range(8):
        district = "DD1" if n < 4 else "DD2"
        data.incident(
            occurred_at=utc("2026-11-10T10:00") + n * H, source_agency_id=src, district=district
        )
    analyst = factory.user("analyst")
    body = client.get(
        "/v1/reports/summary?from=2026-11-10&to=2026-11-10", headers=analyst.headers
    ).json()
    # 8 = 4 + 4: with the total shown, both "<5" cells would be known to be 4.
    assert body["by_postcode_district"] == {"DD1": SMALL, "DD2": SMALL}
    assert body["incidents"] == SECONDARY
    # ...and no other breakdown adds the total back up.
    assert body["by_source"] == {"SAS": SECONDARY}
    assert body["by_sex"]["unknown"] == SECONDARY
    assert body["by_age_band"]["unknown"] == SECONDARY


@hsettings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=8))
def test_suppressed_breakdowns_never_let_subtraction_pin_down_a_small_cell(cells):
    named = {f"c{i}": n for i, n in enumerate(cells)}
    total = sum(cells)
    out, safe = _suppress_cells(named, total)
    if not safe:
        # No other cell to hide: the caller hides the total. Then nothing is known.
        assert {named[k] for k in named if 1 <= named[k] <= 4} <= {1, 4}
        assert all(v == 0 or 1 <= v <= 4 for v in named.values())
        return
    hidden = [k for k, v in out.items() if not isinstance(v, int)]
    assert all(out[k] == SMALL for k, v in named.items() if 1 <= v <= 4)
    assert all(out[k] == v for k, v in named.items() if k not in hidden)
    assert all(out[k] == SECONDARY for k in hidden if named[k] > 4)
    if hidden and not 1 <= total <= 4:
        # The hidden cells' sum is known (total - visible cells). Enumerate every
        # assignment consistent with what is shown ("<5" = 1..4, "suppressed" = 5..total):
        # no small cell may have only one possible value.
        hidden_sum = sum(named[k] for k in hidden)
        for k in hidden:
            if named[k] > 4:
                continue
            others_min = sum(1 if out[o] == SMALL else 5 for o in hidden if o != k)
            others_max = sum(4 if out[o] == SMALL else hidden_sum for o in hidden if o != k)
            possible = [v for v in range(1, 5) if others_min <= hidden_sum - v <= others_max]
            if any(out[o] == SECONDARY for o in hidden) or len(hidden) > 1:
                assert len(possible) > 1 or _pinned_only_at_extreme(named, hidden), (named, out)
            else:
                raise AssertionError(f"a lone hidden cell is recoverable: {named} -> {out}")


def test_local_dates_follow_the_service_time_zone(client, factory, data, clock):
    clock.set(utc("2026-07-10T12:00:00"))
    src = data.agency()
    data.incident(occurred_at=utc("2026-07-01T23:30"), source_agency_id=src)  # 2 July, 00:30 BST
    coordinator = factory.user("coordinator")
    first = client.get(
        "/v1/reports/summary?from=2026-07-01&to=2026-07-01", headers=coordinator.headers
    )
    second = client.get(
        "/v1/reports/summary?from=2026-07-02&to=2026-07-02", headers=coordinator.headers
    )
    assert (first.json()["incidents"], second.json()["incidents"]) == (0, 1)
    assert first.json()["contacted_within_72h_pct"] is None


def test_from_after_to_is_422_and_other_roles_are_403(client, factory):
    coordinator = factory.user("coordinator")
    body = assert_problem(
        client.get(
            "/v1/reports/summary?from=2026-11-09&to=2026-11-08", headers=coordinator.headers
        ),
        422,
    )
    assert body["errors"][0]["loc"] == ["query", "from"]
    assert_problem(
        client.get("/v1/reports/summary?from=2026-11-xx", headers=coordinator.headers), 422
    )
    for query in (
        "from=9999-12-30&to=9999-12-31",
        "from=0001-01-01&to=0001-01-02",
        "from=2000-01-01&to=2026-01-01",
    ):
        assert_problem(client.get(f"/v1/reports/summary?{query}", headers=coordinator.headers), 422)
    for role in ("outreach", "admin"):
        actor = factory.user(role)
        assert_problem(client.get("/v1/reports/summary", headers=actor.headers), 403)
        assert_problem(client.get("/v1/reports/summary.csv", headers=actor.headers), 403)
    partner = factory.partner()
    assert_problem(client.get("/v1/reports/summary", headers=partner.headers), 403)
    assert_problem(client.get("/v1/reports/summary"), 401)


def test_csv_gives_the_same_figures_and_reads_are_audited(client, factory, fixture, session):
    analyst = factory.user("analyst")
    r = client.get("/v1/reports/summary.csv?from=2026-11-02&to=2026-11-08", headers=analyst.headers)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["figure", "category", "value"]
    table = {(f, c): v for f, c, v in rows[1:]}
    assert table[("incidents", "")] == "5"
    assert table[("people", "")] == SMALL
    assert table[("by_postcode_district", "DD1")] == SMALL
    assert table[("referrals", "housing")] == SMALL
    client.get("/v1/reports/summary?from=2026-11-02&to=2026-11-08", headers=analyst.headers)
    actions = (
        session.execute(
            select(AuditEntry.action).where(
                AuditEntry.subject_type == "report", AuditEntry.actor_id == analyst.id
            )
        )
        .scalars()
        .all()
    )
    assert sorted(actions) == ["export", "read"]


def _day(client, headers, day: str) -> dict:
    r = client.get(f"/v1/reports/summary?from={day}&to={day}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_contacts_and_corrections_show_at_once(client, factory, data, clock):
    """Codes and substances are counted by their incident's occurred_at (a copy the database
    keeps on the rows): a new contact counts at once, and a corrected occurred_at or
    substance list moves them with the incident."""
    clock.set(utc("2026-11-20T12:00:00"))
    coordinator = factory.user("coordinator")
    src = data.agency("SAS")
    incident = data.incident(
        occurred_at=utc("2026-11-10T10:00"),
        source_agency_id=src,
        substances=("heroin", "heroin", "cocaine"),
    )
    data.incident(occurred_at=utc("2026-11-08T09:00"), source_agency_id=src, substances=("heroin",))
    r = client.post(
        f"/v1/incidents/{incident}/contacts",
        json={
            "attempted_at": "2026-11-11T10:00:00Z",
            "method": "phone",
            "outcome": "contacted",
            "actions": ["naloxone_supplied", "wound_care"],
            "referrals": ["housing", "drug_treatment"],
        },
        headers=coordinator.headers,
    )
    assert r.status_code == 201, r.text
    day = _day(client, coordinator.headers, "2026-11-10")
    assert day["naloxone_supplied"] == 1
    assert day["referrals"]["total"] == 2
    assert day["referrals"]["by_code"]["housing"] == 1
    assert day["by_substance"] == {"cocaine": 1, "heroin": 1}

    r = client.patch(
        f"/v1/incidents/{incident}",
        json={"occurred_at": "2026-11-08T08:00:00Z"},
        headers=coordinator.headers,
    )
    assert r.status_code == 200, r.text
    before = _day(client, coordinator.headers, "2026-11-10")
    assert before["incidents"] == 0
    assert (before["naloxone_supplied"], before["referrals"]["total"]) == (0, 0)
    assert before["by_substance"] == {}
    after = _day(client, coordinator.headers, "2026-11-08")
    assert after["incidents"] == 2
    assert after["naloxone_supplied"] == 1
    assert after["referrals"]["by_code"]["drug_treatment"] == 1
    assert after["by_substance"] == {"cocaine": 1, "heroin": 2}

    r = client.patch(
        f"/v1/incidents/{incident}", json={"substances": ["Crack"]}, headers=coordinator.headers
    )
    assert r.status_code == 200, r.text
    after = _day(client, coordinator.headers, "2026-11-08")
    assert after["by_substance"] == {"crack": 1, "heroin": 1}


def test_the_copied_occurred_at_cannot_be_set_wrong(client, factory, data, clock, sf):
    """A writer that sets another occurred_at on a code or substance row is overruled: the
    row takes its incident's."""
    from models.contact import ContactCode
    from models.incident import IncidentSubstance

    clock.set(utc("2026-11-20T12:00:00"))
    src = data.agency("SAS")
    incident = data.incident(occurred_at=utc("2026-11-10T10:00"), source_agency_id=src)
    contact = data.contact(incident, at=utc("2026-11-10T12:00"))
    elsewhere = utc("2026-11-15T10:00")
    with sf() as s, s.begin():
        s.add(IncidentSubstance(incident_id=incident, position=0, substance="heroin"))
        s.add(ContactCode(contact_id=contact, kind="referral", code="housing"))
    with sf() as s, s.begin():
        s.add(
            IncidentSubstance(
                incident_id=incident, position=1, substance="cocaine", occurred_at=elsewhere
            )
        )
        s.add(
            ContactCode(
                contact_id=contact, kind="action", code="naloxone_supplied", occurred_at=elsewhere
            )
        )
    coordinator = factory.user("coordinator")
    day = _day(client, coordinator.headers, "2026-11-10")
    assert day["by_substance"] == {"cocaine": 1, "heroin": 1}
    assert (day["naloxone_supplied"], day["referrals"]["total"]) == (1, 1)
    assert _day(client, coordinator.headers, "2026-11-15")["by_substance"] == {}


@pytest.fixture
def fresh_url():
    """An empty database of the dialect under test (created and dropped here)."""
    import tempfile
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from tests.conftest import PG_URL

    if not PG_URL:
        yield f"sqlite:///{tempfile.mkdtemp(prefix='nfod-rep-')}/fresh.db"
        return
    base = make_url(PG_URL)
    name = f"nfod_rep_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield base.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_the_migration_fills_the_copies_of_existing_rows(fresh_url):
    """Rows written before migration 0002 get their incident's occurred_at."""
    from sqlalchemy import create_engine, text

    from services import migrations

    migrations.upgrade(fresh_url, "0001")
    engine = create_engine(fresh_url)
    at = {"a": "2026-11-10 10:00:00", "b": "2026-11-12 09:30:00"}
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO agencies (id, name, kind, created_at) VALUES ('ag', 'SAS', 's', :t)"),
            {"t": at["a"]},
        )
        for inc, when in at.items():
            conn.execute(
                text(
                    "INSERT INTO incidents (id, source_agency_id, created_by_type, created_by_id,"
                    " occurred_at, reported_at, contact_due_at, fu_status, created_at, updated_at)"
                    " VALUES (:i, 'ag', 'user', 'u', :t, :t, :t, 'awaiting_contact', :t, :t)"
                ),
                {"i": inc, "t": when},
            )
            conn.execute(
                text(
                    "INSERT INTO incident_substances (incident_id, position, substance)"
                    " VALUES (:i, 0, 'heroin')"
                ),
                {"i": inc},
            )
            conn.execute(
                text(
                    "INSERT INTO contact_attempts (id, incident_id, attempted_at, method, outcome,"
                    " recorded_by_type, recorded_by_id, created_at)"
                    " VALUES (:c, :i, :t, 'phone', 'contacted', 'user', 'u', :t)"
                ),
                {"c": f"c{inc}", "i": inc, "t": when},
            )
            conn.execute(
                text(
                    "INSERT INTO contact_codes (contact_id, kind, code)"
                    " VALUES (:c, 'referral', 'housing')"
                ),
                {"c": f"c{inc}"},
            )
    migrations.upgrade(fresh_url)
    with engine.connect() as conn:
        copied = conn.execute(
            text(
                "SELECT count(*) FROM incident_substances s JOIN incidents i"
                " ON i.id = s.incident_id WHERE s.occurred_at = i.occurred_at"
            )
        ).scalar_one()
        codes = conn.execute(
            text(
                "SELECT count(*) FROM contact_codes c"
                " JOIN contact_attempts a ON a.id = c.contact_id"
                " JOIN incidents i ON i.id = a.incident_id WHERE c.occurred_at = i.occurred_at"
            )
        ).scalar_one()
    engine.dispose()
    assert (copied, codes) == (2, 2)


# The report's hours arithmetic, in SQL on the database under test, against Python's (the
# age at the overdose is the incident's copy: tests/intake/test_report_copies.py).
_MOMENTS = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2199, 12, 31, 23, 59, 59, 999999)
).map(lambda d: d.replace(tzinfo=UTC))


def _sql_value(engine, expression):
    with engine.connect() as conn:
        return conn.execute(select(expression)).scalar_one()


@hsettings(max_examples=100, deadline=None)
@given(earlier=_MOMENTS, seconds=st.integers(min_value=0, max_value=400 * 24 * 3600 * 10**6))
def test_the_hours_to_first_contact_are_exact(engine, earlier, seconds):
    later = earlier + timedelta(microseconds=seconds)
    kind = Incident.__table__.c.occurred_at.type
    hours = _hours(engine.dialect.name, literal(later, kind), literal(earlier, kind))
    # SQLite's julian days keep about a millisecond; PostgreSQL's intervals the microsecond.
    tolerance = 1e-9 if engine.dialect.name == "postgresql" else 1e-6
    assert float(_sql_value(engine, hours)) == pytest.approx(seconds / 3.6e9, abs=tolerance)
