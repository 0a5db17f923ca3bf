"""The sweep: raise every alert kind once, set-based, and write its webhook outbox rows.

``sweep(session, at=..., settings=...)`` runs one pass at the time ``at``. Every alert is
inserted with ``INSERT ... SELECT ... ON CONFLICT (dedupe_key) DO NOTHING RETURNING``, so
the unique ``dedupe_key`` makes each alert exactly-once even with several sweeps running
in parallel (the loser of a race inserts nothing and gets nothing back). The outbox rows
(one per active webhook subscribed to the alert's kind) are written in the same
transaction from the rows the insert returned, so an alert and its deliveries commit or
roll back together. Incidents are never loaded into Python; only the newly raised alerts
(and, for clusters, the incidents of the current window) come back.

Rules (``at`` is the sweep's clock):

- ``contact_overdue``: awaiting contact and ``at > contact_due_at``.
- ``contact_due_soon``: awaiting contact and ``at < contact_due_at < at + due_soon_hours``
  (an incident first seen already overdue gets only ``contact_overdue``).
- ``repeat_overdose``: an incident (``at - 60 days < occurred_at <= at``) whose person had
  another incident in the 30 days before it (inclusive); one alert per such incident,
  carrying the person and that (newest) incident. The 60-day look-back keeps the sweep
  off the whole history (measured in bench/: 5.7 s of a 12 s sweep at 1 M incidents).
- ``action_overdue``: an action of the person's current plan, not done, ``due_on`` before
  the local date of ``at``. Its identity is person + md5(lower(trim(description))) + owner
  + due_on, so a new plan version copying the action does not raise it again.
- ``cluster``: at least ``cluster_min`` incidents in one postcode district with
  ``at - cluster_hours < occurred_at <= at``, counting only incidents that occurred after
  the latest incident listed by that district's previous cluster alert. So every incident
  is listed by at most one cluster alert, overlapping sweeps and sliding windows never
  repeat one, and a cluster that keeps going raises a new alert at most once per window.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    cast,
    exists,
    func,
    literal,
    literal_column,
    select,
    text,
)
from sqlalchemy.orm import Session, aliased

from models.alert import ALERT_KINDS, Alert
from models.base import new_id
from models.incident import Incident
from models.safety_plan import SafetyPlanAction, SafetyPlanVersion
from services import webhooks
from services.config import Settings
from services.db import insert_for

log = logging.getLogger("nfod.sweep")

REPEAT_WINDOW = timedelta(days=30)
# How far back a sweep looks for new repeat overdoses: an incident notified up to this long
# after it happened is still alerted; older history was settled by earlier sweeps.
REPEAT_LOOKBACK = timedelta(days=60)
_CLUSTER_LOCK_KEY = 7_362_005  # PostgreSQL advisory lock serialising the cluster step

_ALERT_COLUMNS = [
    "id",
    "kind",
    "state",
    "dedupe_key",
    "raised_at",
    "incident_id",
    "person_id",
    "details",
]
_SQLITE_UUID = (
    "lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || "
    "substr(lower(hex(randomblob(2))), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || "
    "substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6)))"
)


@dataclass
class SweepResult:
    at: datetime
    raised: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ALERT_KINDS, 0))
    deliveries_queued: int = 0

    @property
    def total(self) -> int:
        return sum(self.raised.values())


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _sql_id(dialect: str) -> ColumnElement[str]:
    """An id made by the database for each row of a set-based insert (the sweep's alerts):
    random, not time-ordered like models.base.new_id; the sweep raises a few at a time, so
    where their index entries go does not count (PostgreSQL 15 has no uuidv7())."""
    if dialect == "postgresql":
        return literal_column("gen_random_uuid()::text", String)
    return literal_column(f"({_SQLITE_UUID})", String)


def _json_object(dialect: str, **pairs: Any) -> ColumnElement[Any]:
    args: list[Any] = []
    for key, value in pairs.items():
        args.extend([literal(key, String), value])
    if dialect == "postgresql":
        return func.json_build_object(*args)
    return func.json_object(*args)


def _md5(dialect: str, session: Session, value: ColumnElement[str]) -> ColumnElement[str]:
    if dialect != "postgresql":
        # SQLite has no md5(); register the same function on this connection.
        raw = session.connection().connection.dbapi_connection
        raw.create_function(
            "md5",
            1,
            lambda v: None if v is None else hashlib.md5(v.encode()).hexdigest(),
            deterministic=True,
        )
    return func.md5(value)


def _returned(full: bool) -> list[Any]:
    """What an alert INSERT returns: the whole new alert when a webhook will be told about
    it, else only its id (10 k new alerts' rows cost 100-200 ms to fetch and convert)."""
    table = Alert.__table__
    if not full:
        return [table.c.id]
    return [*(table.c[name] for name in _ALERT_COLUMNS if name != "dedupe_key"), table.c.state]


def _raise(session: Session, dialect: str, source, full: bool) -> list[Any]:
    """INSERT the alerts ``source`` selects unless their dedupe key exists; return new ones
    (see :func:`_returned`)."""
    table = Alert.__table__
    # In dedupe-key order, so parallel sweeps take the unique-index locks in one order
    # (no deadlocks between them).
    source = source.order_by(text("4"))
    stmt = (
        insert_for(dialect)(table)
        .from_select(_ALERT_COLUMNS, source)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(*_returned(full))
    )
    return list(session.execute(stmt).all())


def _alert_select(
    dialect: str, kind: str, at: datetime, key_suffix, incident_id, person_id, details
):
    key = literal(f"{kind}:", String) + key_suffix
    already = aliased(Alert)
    return select(
        _sql_id(dialect),
        literal(kind, String),
        literal("open", String),
        key,
        literal(at, Alert.__table__.c.raised_at.type),
        incident_id,
        person_id,
        details,
    ).where(
        # Skip what is already raised (cheap, through the unique index); the ON CONFLICT
        # clause still settles races with a parallel sweep.
        ~exists(select(already.id).where(already.dedupe_key == key))
    )


def _contact_overdue(
    session: Session, dialect: str, at: datetime, settings: Settings, full: bool
) -> list[Any]:
    i = Incident
    source = _alert_select(
        dialect,
        "contact_overdue",
        at,
        i.id,
        i.id,
        i.person_id,
        _json_object(
            dialect, assigned_agency_id=i.assigned_agency_id, source_agency_id=i.source_agency_id
        ),
    ).where(i.fu_status == "awaiting_contact", i.contact_due_at < at)
    return _raise(session, dialect, source, full)


def _contact_due_soon(
    session: Session, dialect: str, at: datetime, settings: Settings, full: bool
) -> list[Any]:
    i = Incident
    horizon = at + timedelta(hours=settings.due_soon_hours)
    source = _alert_select(
        dialect,
        "contact_due_soon",
        at,
        i.id,
        i.id,
        i.person_id,
        _json_object(
            dialect, assigned_agency_id=i.assigned_agency_id, source_agency_id=i.source_agency_id
        ),
    ).where(i.fu_status == "awaiting_contact", i.contact_due_at > at, i.contact_due_at < horizon)
    return _raise(session, dialect, source, full)


def _repeat_overdose(
    session: Session, dialect: str, at: datetime, settings: Settings, full: bool
) -> list[Any]:
    # Each incident's predecessor (same person, ordered by occurred_at then id) in one
    # window pass over the look-back plus the repeat window: an incident is a repeat when
    # its predecessor occurred within 30 days before it, and that predecessor is the newest
    # earlier incident the alert names. One sorted pass instead of one index probe per
    # recent incident (bench/sweep_followup.py). The scan starts a day early so that a
    # predecessor 30 calendar days back is in it even across a clock change.
    i = Incident
    since = at - REPEAT_LOOKBACK
    order = (i.occurred_at, i.id)
    ranked = (
        select(
            i.id.label("id"),
            i.person_id.label("person_id"),
            i.occurred_at.label("occurred_at"),
            func.lag(i.id).over(partition_by=i.person_id, order_by=order).label("previous_id"),
            func.lag(i.occurred_at)
            .over(partition_by=i.person_id, order_by=order)
            .label("previous_at"),
        )
        .where(
            i.person_id.is_not(None),
            # Only recent incidents can still need the alert (bench/: at 1 M incidents the
            # unbounded scan cost 5.7 s a sweep); the range uses ix_incidents_occurred_at_id.
            i.occurred_at > since - REPEAT_WINDOW - timedelta(days=1),
            i.occurred_at <= at,
        )
        .subquery("ranked")
    )
    r = ranked.c
    within = (
        r.previous_at >= r.occurred_at - literal_column(f"interval '{REPEAT_WINDOW.days} days'")
        if dialect == "postgresql"
        else func.julianday(r.previous_at) >= func.julianday(r.occurred_at) - REPEAT_WINDOW.days
    )
    source = _alert_select(
        dialect,
        "repeat_overdose",
        at,
        r.id,
        r.id,
        r.person_id,
        _json_object(dialect, previous_incident_id=r.previous_id),
    ).where(r.occurred_at > since, r.previous_id.is_not(None), within)
    return _raise(session, dialect, source, full)


def _action_overdue(
    session: Session, dialect: str, at: datetime, settings: Settings, full: bool
) -> list[Any]:
    a, v = SafetyPlanAction, SafetyPlanVersion
    local_today = at.astimezone(settings.tz).date()
    identity = (
        cast(a.person_id, String)
        + literal(":", String)
        + _md5(dialect, session, func.lower(func.trim(a.description)))
        + literal(":", String)
        + func.coalesce(a.owner_agency_id, literal("-", String))
        + literal(":", String)
        + cast(a.due_on, String)
    )
    source = (
        _alert_select(
            dialect,
            "action_overdue",
            at,
            identity,
            literal(None, String),
            a.person_id,
            _json_object(
                dialect,
                action_id=a.id,
                plan_version_id=a.plan_version_id,
                owner_agency_id=a.owner_agency_id,
                due_on=cast(a.due_on, String),
            ),
        )
        .join_from(a, v, v.id == a.plan_version_id)
        .where(
            v.is_current.is_(True), a.done.is_(False), a.due_on.is_not(None), a.due_on < local_today
        )
    )
    return _raise(session, dialect, source, full)


def _cluster(
    session: Session, dialect: str, at: datetime, settings: Settings, full: bool
) -> list[Any]:
    if dialect == "postgresql":
        # Parallel sweeps at different clocks could see different windows; take turns here
        # (held until commit) so each sees the other's cluster alerts.
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CLUSTER_LOCK_KEY})
    start = at - timedelta(hours=settings.cluster_hours)
    i = Incident
    counts = (
        select(i.postcode_district)
        .where(i.postcode_district.is_not(None), i.occurred_at > start, i.occurred_at <= at)
        .group_by(i.postcode_district)
        .having(func.count() >= settings.cluster_min)
    )
    districts = list(session.execute(counts).scalars())
    if not districts:
        return []
    # The latest incident already listed by each district's cluster alerts (details
    # last_occurred_at); found through the unique dedupe_key "cluster:<district>:...".
    covered: dict[str, datetime] = {}
    for district in districts:
        for details in session.execute(
            select(Alert.details).where(
                Alert.kind == "cluster", Alert.dedupe_key.like(f"cluster:{district}:%")
            )
        ).scalars():
            last = datetime.fromisoformat(details["last_occurred_at"].replace("Z", "+00:00"))
            if district not in covered or last > covered[district]:
                covered[district] = last
    window = session.execute(
        select(i.postcode_district, i.id, i.occurred_at)
        .where(i.postcode_district.in_(districts), i.occurred_at > start, i.occurred_at <= at)
        .order_by(i.postcode_district, i.occurred_at, i.id)
    ).all()
    by_district: dict[str, list[tuple[str, datetime]]] = {}
    for district, incident_id, occurred_at in window:
        if district in covered and occurred_at <= covered[district]:
            continue
        by_district.setdefault(district, []).append((incident_id, occurred_at))
    values = []
    for district, members in sorted(by_district.items()):
        if len(members) < settings.cluster_min:
            continue
        first_id = members[0][0]
        values.append(
            {
                "id": new_id(),
                "kind": "cluster",
                "state": "open",
                "dedupe_key": f"cluster:{district}:{first_id}",
                "raised_at": at,
                "incident_id": None,
                "person_id": None,
                "details": {
                    "postcode_district": district,
                    "incident_ids": [m[0] for m in members],
                    "window_hours": settings.cluster_hours,
                    "first_occurred_at": _iso(members[0][1]),
                    "last_occurred_at": _iso(members[-1][1]),
                },
            }
        )
    if not values:
        return []
    table = Alert.__table__
    stmt = (
        insert_for(dialect)(table)
        .values(values)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(*_returned(full))
    )
    return list(session.execute(stmt).all())


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


_STEPS = (
    ("contact_overdue", _contact_overdue),
    ("contact_due_soon", _contact_due_soon),
    ("repeat_overdose", _repeat_overdose),
    ("action_overdue", _action_overdue),
    ("cluster", _cluster),
)


def sweep(session: Session, *, at: datetime, settings: Settings) -> SweepResult:
    """One sweep at ``at``: raise new alerts and queue their webhook deliveries (flushes only)."""
    if at.tzinfo is None:
        raise ValueError("the sweep needs an aware datetime")
    at = at.astimezone(UTC)
    dialect = _dialect(session)
    if dialect == "postgresql":
        # For this transaction only: JIT compiling costs 15-25 ms per statement whose estimate
        # crosses jit_above_cost and saves nothing on these sub-second statements, and the
        # repeat step's window sort (tens of thousands of rows at 1 M) fits in 16 MB instead of
        # spilling to disk (EXPLAIN in bench/sweep_followup.py).
        session.execute(text("SET LOCAL jit = off"))
        session.execute(text("SET LOCAL work_mem = '16MB'"))
    result = SweepResult(at=at)
    hooks = webhooks.active_hooks(session)
    subscribed = {kind for _, kinds in hooks for kind in kinds or []}
    new_alerts: list[dict[str, Any]] = []
    for kind, step in _STEPS:
        full = kind in subscribed  # the whole alert comes back only for the outbox
        rows = step(session, dialect, at, settings, full)
        result.raised[kind] = len(rows)
        if full:
            new_alerts.extend(alert_resource_from_row(row._mapping) for row in rows)
    if new_alerts:
        result.deliveries_queued = webhooks.enqueue(session, alerts=new_alerts, now=at, hooks=hooks)
    session.flush()
    if result.total:
        log.info(
            "sweep raised alerts", extra={"raised": {k: v for k, v in result.raised.items() if v}}
        )
    return result


def alert_resource_from_row(row) -> dict[str, Any]:
    """The public alert resource (API.md) as plain JSON values: ids, kinds and codes only."""
    raised_at = row["raised_at"]
    if isinstance(raised_at, str):  # pragma: no cover - defensive: RETURNING type on SQLite
        raised_at = datetime.fromisoformat(raised_at)
    if raised_at.tzinfo is None:
        raised_at = raised_at.replace(tzinfo=UTC)
    details = row["details"]
    return {
        "id": row["id"],
        "kind": row["kind"],
        "state": row["state"],
        "raised_at": _iso(raised_at),
        "incident_id": row["incident_id"],
        "person_id": row["person_id"],
        "details": details if isinstance(details, dict) else {},
    }
