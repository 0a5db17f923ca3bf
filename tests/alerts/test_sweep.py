"""The sweep: every alert kind at its boundary, exactly once, set-based."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from models.alert import Alert
from models.webhook import WebhookDelivery
from services.sweep import sweep
from tests.alerts.helpers import T0
from tests.conftest import make_settings, postgres_only

S = timedelta(seconds=1)


@pytest.fixture
def run(sf, settings):
    def _run(at: datetime, **overrides):
        s = make_settings(settings.database_url, **overrides) if overrides else settings
        with sf() as session:
            result = sweep(session, at=at, settings=s)
            session.commit()
        return result

    return _run


def alerts(sf, kind: str | None = None) -> list[Alert]:
    with sf() as s:
        stmt = select(Alert).order_by(Alert.raised_at, Alert.id)
        if kind:
            stmt = stmt.where(Alert.kind == kind)
        return list(s.execute(stmt).scalars())


def test_contact_overdue_one_second_after_the_deadline(data, run, sf):
    agency = data.agency()
    person = data.person()
    inc = data.incident(occurred_at=T0, source_agency_id=agency, person_id=person)
    due = T0 + timedelta(hours=72)
    run(due - S)
    run(due)  # exactly at the deadline: not yet overdue
    assert alerts(sf, "contact_overdue") == []
    result = run(due + S)
    assert result.raised["contact_overdue"] == 1
    [a] = alerts(sf, "contact_overdue")
    assert (a.incident_id, a.person_id, a.state, a.raised_at) == (inc, person, "open", due + S)


def test_contact_due_soon_boundary_and_not_when_first_seen_overdue(data, run, sf):
    agency = data.agency()
    inc = data.incident(occurred_at=T0, source_agency_id=agency)
    late = data.incident(occurred_at=T0 - timedelta(hours=48), source_agency_id=agency)
    due = T0 + timedelta(hours=72)
    run(due - timedelta(hours=24))  # exactly 24 h remain: not "fewer than 24"
    assert [a.incident_id for a in alerts(sf, "contact_due_soon")] == []
    run(due - timedelta(hours=24) + S)
    [soon] = alerts(sf, "contact_due_soon")
    assert soon.incident_id == inc and soon.person_id is None
    # "late" was already overdue at both sweeps: overdue only, never due-soon.
    assert {a.incident_id for a in alerts(sf, "contact_overdue")} == {late}
    run(due + S)
    assert len(alerts(sf, "contact_due_soon")) == 1
    assert {a.incident_id for a in alerts(sf, "contact_overdue")} == {late, inc}


def test_a_timely_contact_means_no_overdue_alert_ever(data, run, sf):
    agency = data.agency()
    inc = data.incident(occurred_at=T0, source_agency_id=agency)
    closed = data.incident(occurred_at=T0, source_agency_id=agency)
    due = T0 + timedelta(hours=72)
    data.contact(inc, at=due - S)
    data.close(closed, at=T0 + timedelta(hours=1))
    for at in (due + S, due + timedelta(days=3), due + timedelta(days=40)):
        run(at)
    assert alerts(sf, "contact_overdue") == []
    assert alerts(sf, "contact_due_soon") == []


def test_a_failed_attempt_does_not_stop_the_overdue_alert(data, run, sf):
    agency = data.agency()
    inc = data.incident(occurred_at=T0, source_agency_id=agency)
    data.contact(inc, at=T0 + timedelta(hours=2), outcome="no_answer")
    run(T0 + timedelta(hours=72) + S)
    assert [a.incident_id for a in alerts(sf, "contact_overdue")] == [inc]


def test_repeat_overdose_boundaries(data, run, sf):
    agency = data.agency()
    p = data.person()
    q = data.person()
    first = data.incident(occurred_at=T0, source_agency_id=agency, person_id=p)
    second = data.incident(
        occurred_at=T0 + timedelta(days=30), source_agency_id=agency, person_id=p
    )
    data.incident(occurred_at=T0, source_agency_id=agency, person_id=q)
    q2 = data.incident(
        occurred_at=T0 + timedelta(days=30) + S, source_agency_id=agency, person_id=q
    )
    run(T0 + timedelta(days=30) - S)  # p's second incident has not happened yet
    assert alerts(sf, "repeat_overdose") == []
    run(T0 + timedelta(days=30) + timedelta(minutes=1))
    [a] = alerts(sf, "repeat_overdose")  # q's is 30 days + 1 s apart: not a repeat
    assert (a.person_id, a.incident_id, a.details["previous_incident_id"]) == (p, second, first)
    # A third incident within 30 days of the second raises a new one (the newest incident).
    third = data.incident(occurred_at=T0 + timedelta(days=31), source_agency_id=agency, person_id=p)
    run(T0 + timedelta(days=31, hours=1))
    assert [a.incident_id for a in alerts(sf, "repeat_overdose")] == [second, third]
    assert q2 not in {a.incident_id for a in alerts(sf)} or all(
        a.kind != "repeat_overdose" for a in alerts(sf) if a.incident_id == q2
    )


def test_repeat_overdose_names_the_newest_earlier_incident_and_late_notified_ones(data, run, sf):
    agency = data.agency()
    p = data.person()
    oldest = data.incident(
        occurred_at=T0 - timedelta(days=40), source_agency_id=agency, person_id=p
    )
    newest = data.incident(occurred_at=T0, source_agency_id=agency, person_id=p)
    run(T0 + timedelta(hours=1))
    assert alerts(sf, "repeat_overdose") == []  # 40 days apart
    # Notified late: 5 days after the oldest, but still 35 days before the newest.
    middle = data.incident(
        occurred_at=T0 - timedelta(days=35), source_agency_id=agency, person_id=p
    )
    run(T0 + timedelta(hours=2))
    [a] = alerts(sf, "repeat_overdose")
    assert (a.incident_id, a.details["previous_incident_id"]) == (middle, oldest)
    # Another late one 29 days before the newest: the newest is now a repeat of it (not of
    # the older ones), and the late one itself a repeat of ``middle``.
    late = data.incident(occurred_at=T0 - timedelta(days=29), source_agency_id=agency, person_id=p)
    run(T0 + timedelta(hours=3))
    raised = {
        a.incident_id: a.details["previous_incident_id"] for a in alerts(sf, "repeat_overdose")
    }
    assert raised == {middle: oldest, late: middle, newest: late}
    assert all(a.person_id == p for a in alerts(sf, "repeat_overdose"))


def test_repeat_overdose_of_two_incidents_at_the_same_instant(data, run, sf):
    agency = data.agency()
    p = data.person()
    ids = sorted(
        data.incident(occurred_at=T0, source_agency_id=agency, person_id=p) for _ in range(2)
    )
    run(T0 + S)
    [a] = alerts(sf, "repeat_overdose")  # one alert: the second by id repeats the first
    assert (a.incident_id, a.details["previous_incident_id"]) == (ids[1], ids[0])


def test_unidentified_incidents_are_never_repeats(data, run, sf):
    agency = data.agency()
    data.incident(occurred_at=T0, source_agency_id=agency)
    data.incident(occurred_at=T0 + timedelta(hours=1), source_agency_id=agency)
    run(T0 + timedelta(hours=2))
    assert alerts(sf, "repeat_overdose") == []


def test_action_overdue_by_local_date_and_survives_a_copied_plan(data, run, sf, settings):
    agency = data.agency()
    p = data.person()
    due_on = date(2026, 11, 20)
    data.plan(
        p,
        actions=[
            {"description": "Housing referral", "owner_agency_id": agency, "due_on": due_on},
            {
                "description": "Done already",
                "owner_agency_id": agency,
                "due_on": due_on,
                "done": True,
            },
            {"description": "Not due yet", "owner_agency_id": agency, "due_on": date(2026, 11, 21)},
        ],
    )
    # Europe/London is UTC+0 in November: the 21st starts at 00:00Z.
    run(datetime.fromisoformat("2026-11-20T23:59:59+00:00"))
    assert alerts(sf, "action_overdue") == []
    run(datetime.fromisoformat("2026-11-21T00:00:01+00:00"))
    [a] = alerts(sf, "action_overdue")
    assert a.person_id == p and a.incident_id is None and a.details["due_on"] == "2026-11-20"
    # The next plan version copies the same action (different whitespace/case): no new alert.
    data.plan(
        p,
        actions=[
            {"description": "  housing REFERRAL ", "owner_agency_id": agency, "due_on": due_on},
            {"description": "Not due yet", "owner_agency_id": agency, "due_on": date(2026, 11, 21)},
        ],
    )
    run(datetime.fromisoformat("2026-11-22T00:00:01+00:00"))
    kinds = [(x.details["due_on"]) for x in alerts(sf, "action_overdue")]
    assert kinds == ["2026-11-20", "2026-11-21"]


def test_action_overdue_uses_the_service_time_zone(data, run, sf):
    p = data.person()
    data.plan(p, actions=[{"description": "Call back", "due_on": date(2026, 7, 1)}])
    # 23:30Z on 1 July is 00:30 on 2 July in London (BST): already overdue there.
    run(datetime.fromisoformat("2026-07-01T23:30:00+00:00"))
    assert len(alerts(sf, "action_overdue")) == 1
    with sf() as s:
        s.query(Alert).delete()
        s.commit()
    run(datetime.fromisoformat("2026-07-01T23:30:00+00:00"), timezone="UTC")
    assert alerts(sf, "action_overdue") == []


def test_actions_of_an_old_plan_version_do_not_alert(data, run, sf):
    p = data.person()
    data.plan(p, actions=[{"description": "Old action", "due_on": date(2026, 11, 1)}])
    data.plan(p, actions=[])
    run(datetime.fromisoformat("2026-11-10T12:00:00+00:00"))
    assert alerts(sf, "action_overdue") == []


def test_cluster_boundary_one_alert_per_district_and_window(data, run, sf):
    agency = data.agency()
    a = data.incident(occurred_at=T0, source_agency_id=agency, district="DD1")
    b = data.incident(occurred_at=T0 + timedelta(hours=5), source_agency_id=agency, district="DD1")
    data.incident(occurred_at=T0 + timedelta(hours=6), source_agency_id=agency, district="DD2")
    c = data.incident(occurred_at=T0 + timedelta(hours=24), source_agency_id=agency, district="DD1")
    run(T0 + timedelta(hours=24) - S)  # c has not happened yet
    assert alerts(sf, "cluster") == []
    run(T0 + timedelta(hours=24))  # window (at-24h, at]: a at exactly at-24h is outside
    assert alerts(sf, "cluster") == []
    d = data.incident(occurred_at=T0 + timedelta(hours=23), source_agency_id=agency, district="DD1")
    run(T0 + timedelta(hours=24))
    [alert] = alerts(sf, "cluster")
    assert alert.details["postcode_district"] == "DD1"
    assert alert.details["incident_ids"] == [b, d, c]
    assert alert.incident_id is None and alert.person_id is None
    # Overlapping sweeps and a sliding window never repeat it; a 4th incident joins it silently.
    data.incident(occurred_at=T0 + timedelta(hours=25), source_agency_id=agency, district="DD1")
    for hours in (24.5, 25, 26, 30, 47):
        run(T0 + timedelta(hours=hours))
    assert len(alerts(sf, "cluster")) == 1
    assert a not in alert.details["incident_ids"]


def test_a_later_separate_cluster_raises_a_second_alert(data, run, sf):
    agency = data.agency()
    first = [
        data.incident(occurred_at=T0 + timedelta(hours=h), source_agency_id=agency, district="DD3")
        for h in (0, 1, 2)
    ]
    run(T0 + timedelta(hours=3))
    later = [
        data.incident(
            occurred_at=T0 + timedelta(days=3, hours=h), source_agency_id=agency, district="DD3"
        )
        for h in (0, 1, 2)
    ]
    run(T0 + timedelta(days=3, hours=3))
    clusters = alerts(sf, "cluster")
    assert [c.details["incident_ids"] for c in clusters] == [first, later]


def test_cluster_thresholds_come_from_settings(data, run, sf):
    agency = data.agency()
    for h in (0, 1):
        data.incident(occurred_at=T0 + timedelta(hours=h), source_agency_id=agency, district="DD4")
    run(T0 + timedelta(hours=2))
    assert alerts(sf, "cluster") == []
    run(T0 + timedelta(hours=2), cluster_min=2)
    assert len(alerts(sf, "cluster")) == 1


def test_repeated_sweeps_raise_each_alert_once(data, run, sf):
    agency = data.agency()
    p = data.person()
    for h in (0, 1, 2):
        data.incident(
            occurred_at=T0 + timedelta(hours=h),
            source_agency_id=agency,
            person_id=p,
            district="DD1",
        )
    data.plan(p, actions=[{"description": "x", "due_on": date(2026, 11, 1)}])
    at = T0 + timedelta(days=4)
    for m in (10, 20, 30):
        data.incident(
            occurred_at=at - timedelta(minutes=m), source_agency_id=agency, district="DD5"
        )
    first = run(at)
    assert first.total == 3 + 2 + 1 + 1  # overdue x3, repeat x2, action, cluster
    for k in range(5):
        assert run(at + timedelta(minutes=k)).total == 0
    with sf() as s:
        keys = s.execute(select(Alert.dedupe_key, func.count()).group_by(Alert.dedupe_key)).all()
    assert len(keys) == 7 and all(n == 1 for _, n in keys)


def test_alerts_and_their_outbox_rows_commit_or_roll_back_together(data, sf, settings):
    from tests.alerts.helpers import new_webhook_row

    new_webhook_row(sf, url="https://hooks.example.org/a")
    new_webhook_row(sf, url="https://hooks.example.org/b", kinds=["cluster"])
    agency = data.agency()
    data.incident(occurred_at=T0, source_agency_id=agency)

    def outbox() -> int:
        with sf() as s:
            return s.execute(select(func.count()).select_from(WebhookDelivery)).scalar_one()

    with sf() as s:
        result = sweep(s, at=T0 + timedelta(days=4), settings=settings)
        assert (result.total, result.deliveries_queued) == (1, 1)
        s.rollback()
    assert alerts(sf) == [] and outbox() == 0
    with sf() as s:
        assert sweep(s, at=T0 + timedelta(days=4), settings=settings).total == 1
        s.commit()
    [alert] = alerts(sf)
    assert outbox() == 1
    with sf() as s:
        [d] = s.execute(select(WebhookDelivery)).scalars().all()
    assert d.alert_id == alert.id and d.status == "pending" and d.payload["data"]["id"] == alert.id


@postgres_only
def test_parallel_sweeps_on_postgres_raise_each_alert_once(data, sf, settings):
    agency = data.agency()
    people = [data.person() for _ in range(10)]
    for n in range(60):
        data.incident(
            occurred_at=T0 + timedelta(hours=n % 20 + (60 if n >= 30 else 0)),
            source_agency_id=agency,
            person_id=people[n % 10],
            district=f"DD{n % 3 + 1}",
        )
    from tests.alerts.helpers import new_webhook_row

    new_webhook_row(sf, url="http://127.0.0.1:9/none")
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []
    totals: list[int] = []

    def worker(offset: int):
        try:
            with sf() as s:
                barrier.wait()
                r = sweep(s, at=T0 + timedelta(hours=80, seconds=offset % 2), settings=settings)
                s.commit()
                totals.append(r.total)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with sf() as s:
        n_alerts = s.execute(select(func.count()).select_from(Alert)).scalar_one()
        n_keys = s.execute(select(func.count(func.distinct(Alert.dedupe_key)))).scalar_one()
        n_clusters = s.execute(select(func.count()).where(Alert.kind == "cluster")).scalar_one()
        n_deliveries = s.execute(select(func.count()).select_from(WebhookDelivery)).scalar_one()
        per_alert = (
            s.execute(
                select(func.count()).select_from(WebhookDelivery).group_by(WebhookDelivery.alert_id)
            )
            .scalars()
            .all()
        )
    assert sum(totals) == n_alerts == n_keys
    assert n_clusters == 3  # one per district
    assert n_deliveries == n_alerts and set(per_alert) == {1}


@postgres_only
def test_parallel_sweeps_at_different_clocks_raise_one_cluster(data, sf, settings):
    agency = data.agency()
    ids = [
        data.incident(occurred_at=T0 + timedelta(hours=h), source_agency_id=agency, district="DD1")
        for h in range(5)
    ]
    clocks = [T0 + timedelta(hours=3), T0 + timedelta(hours=24, minutes=30)] * 4  # windows differ
    barrier = threading.Barrier(len(clocks))
    errors: list[BaseException] = []

    def worker(at):
        try:
            with sf() as s:
                barrier.wait()
                sweep(s, at=at, settings=settings)
                s.commit()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(at,)) for at in clocks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    [cluster] = alerts(sf, "cluster")
    assert cluster.details["incident_ids"] in (ids[:4], ids[1:])  # at 3 h: 0-3 h; at 24.5 h: 1-4 h
