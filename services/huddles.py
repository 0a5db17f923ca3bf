"""The daily huddle: the generated agenda, holding the meeting, its outcomes and exports.

The agenda of a local date has two sections:

- ``new``: every incident never discussed at any huddle and reported before the date's
  cut-off, oldest ``occurred_at`` first. There is no lower bound, so a late notification
  (an overdose from last week reported yesterday) is on the next agenda: nothing falls off.
- ``follow_ups``: incidents already discussed whose follow-up still awaits contact,
  overdue first, then by ``contact_due_at``.

It is computed live (``hours_remaining`` and ``overdue`` from the request's ``now``) until
the huddle for that date is held; holding freezes every item into a ``HuddleItem``
snapshot, and from then on the frozen agenda (values of the moment it was held) is served.

Every agenda is computed in a fixed number of queries whatever its length (up to
``services.db.IN_BATCH`` incidents; one more round per batch beyond): the incidents (with
their source agency), their substances, the people (with the current safety plan's risk
level) and the people's 30/365-day incident counts (one ``GROUP BY``).

Dates that are not working days (weekends, Scottish public holidays, closed dates) are
served too (``working_day: false``): an extraordinary meeting can still be held and its
agenda printed; ``previous_huddle_date``/``next_huddle_date`` are always working days.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, case, func, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.agency import Agency
from models.huddle import Huddle, HuddleItem
from models.incident import Incident
from models.person import Person
from models.safety_plan import SafetyPlanVersion
from services import audit, intake, reports
from services.access import incident_scope, person_scope
from services.calendar import WorkingCalendar
from services.config import Settings
from services.db import among, among_batches
from services.errors import Conflict, Invalid, NotFound
from services.pagination import Page, keyset_page
from services.principal import Principal

SECTIONS = ("new", "follow_ups", "late")
AWAITING = "awaiting_contact"


# --- small helpers --------------------------------------------------------------------


def iso(value: datetime | None) -> str | None:
    """RFC 3339 UTC with a ``Z`` (the form every response uses)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _iso_date(value: date | None) -> str | None:
    return value.isoformat() if value else None


def _display_name(person: Person | Row) -> str | None:
    name = " ".join(p for p in (person.given_name, person.family_name) if p)
    return name or None


def follow_up_view(incident: Incident | Row, now: datetime) -> dict[str, Any]:
    """The follow-up block, the same shape as on the incident resource."""
    return {
        "status": incident.fu_status,
        "overdue": incident.fu_status == AWAITING and incident.contact_due_at < now,
        "first_contact_at": iso(incident.first_contact_at),
        "within_window": incident.within_window,
        "assigned_agency_id": incident.assigned_agency_id,
        "closed_reason": incident.closed_reason,
    }


# --- agenda computation (fixed number of queries) -------------------------------------


# What an agenda item shows of an incident (and sorts by).
_ITEM_COLUMNS = (
    Incident.id,
    Incident.source_agency_id,
    Incident.occurred_at,
    Incident.reported_at,
    Incident.contact_due_at,
    Incident.location_description,
    Incident.postcode,
    Incident.postcode_district,
    Incident.person_id,
    Incident.fu_status,
    Incident.first_contact_at,
    Incident.within_window,
    Incident.assigned_agency_id,
    Incident.closed_reason,
    Incident.discussed_at_huddle_id,
)


def _build_items(
    session: Session,
    *,
    principal: Principal,
    now: datetime,
    cal: WorkingCalendar,
    day: date,
    condition: ColumnElement[bool],
) -> list[tuple[Row, dict[str, Any]]]:
    """Agenda items for every visible incident matching ``condition``, in 3 queries on
    PostgreSQL (4 on SQLite).

    Returns (incident, item) pairs in no particular order; callers sort and split.
    """
    cutoff = cal.cutoff_at(day)
    next_cutoff = cal.cutoff_at(cal.next_working_day(day))
    where = and_(condition, incident_scope(principal))
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        # Plans for this day's dates, for this transaction only: once the driver prepares
        # these statements (from their sixth run on a connection) PostgreSQL would settle on
        # a generic plan, which for the 30- and 365-day counts below reads the whole year's
        # incidents (14 ms instead of 1.7 ms on the 10 k bench data set).
        session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))

    # 1. The incidents with their source agency: plain rows of the columns an item shows
    # (no ORM entities - an agenda is read-only and building ~100 entities cost more than
    # the SQL); on PostgreSQL their substances too, as a column (intake.substances_column).
    named = intake.substances_column(dialect)
    columns = [*_ITEM_COLUMNS, Agency.name.label("agency_name")]
    if named is not None:
        columns.append(named.label("substances"))
    rows = session.execute(
        select(*columns).join(Agency, Agency.id == Incident.source_agency_id).where(where)
    ).all()
    if not rows:
        return []
    # The later queries name the incidents and people found here explicitly. (Re-running
    # the agenda's condition as a subquery in each left them to the planner's estimate of
    # it, which a partner's back-fill of undiscussed incidents reported after the cut-off
    # can make a thousand times too large - on stale statistics the 1 M bench data set then
    # hash-joined a year of incidents: 600 ms instead of 30.)
    person_ids = list(dict.fromkeys(r.person_id for r in rows if r.person_id is not None))

    # 2. Substances: from the rows on PostgreSQL, else intake.substances_for by the ids found.
    if named is not None:
        substances = {r.id: r.substances or [] for r in rows}
    else:
        substances = intake.substances_for(session, [r.id for r in rows])

    # 3. People with the current safety plan's risk level.
    people: dict[str, tuple[Row, str | None]] = {}
    for batch in among_batches(dialect, person_ids):
        for person in session.execute(
            select(
                Person.id,
                Person.given_name,
                Person.family_name,
                Person.date_of_birth,
                SafetyPlanVersion.risk_level,
            )
            .outerjoin(
                SafetyPlanVersion,
                and_(
                    SafetyPlanVersion.person_id == Person.id, SafetyPlanVersion.is_current.is_(True)
                ),
            )
            .where(among(dialect, Person.id, batch), person_scope(principal))
        ):
            people[person.id] = (person, person.risk_level)

    # 4. Each person's incidents in the 30 and 365 days before the cut-off (one GROUP BY).
    counts: dict[str, tuple[int, int]] = {}
    since_30 = cutoff - timedelta(days=30)
    for batch in among_batches(dialect, list(people)):
        for person_id, n30, n365 in session.execute(
            select(
                Incident.person_id,
                func.sum(case((Incident.occurred_at >= since_30, 1), else_=0)),
                func.count(Incident.id),
            )
            .where(
                among(dialect, Incident.person_id, batch),
                Incident.occurred_at >= cutoff - timedelta(days=365),
                Incident.occurred_at < cutoff,
                incident_scope(principal),
            )
            .group_by(Incident.person_id)
        ):
            counts[person_id] = (int(n30 or 0), int(n365 or 0))

    items = []
    for incident in rows:
        agency_name = incident.agency_name
        awaiting = incident.fu_status == AWAITING
        person_block = None
        if incident.person_id in people:
            person, risk_level = people[incident.person_id]
            n30, n365 = counts.get(person.id, (0, 0))
            person_block = {
                "id": person.id,
                "name": _display_name(person),
                "age": reports.age_on(person.date_of_birth, day),
                "incidents_30d": n30,
                "incidents_365d": n365,
                "risk_level": risk_level,
            }
        items.append(
            (
                incident,
                {
                    "incident_id": incident.id,
                    "occurred_at": iso(incident.occurred_at),
                    "reported_at": iso(incident.reported_at),
                    "contact_due_at": iso(incident.contact_due_at),
                    "hours_remaining": round(
                        (incident.contact_due_at - now).total_seconds() / 3600, 2
                    ),
                    "overdue": awaiting and incident.contact_due_at < now,
                    "due_before_next_huddle": awaiting and incident.contact_due_at < next_cutoff,
                    "source_agency": {"id": incident.source_agency_id, "name": agency_name},
                    "substances": substances[incident.id],
                    "location": {
                        "description": incident.location_description,
                        "postcode": incident.postcode,
                        "postcode_district": incident.postcode_district,
                    },
                    "follow_up": follow_up_view(incident, now),
                    "person": person_block,
                    "discussed_at_huddle_id": incident.discussed_at_huddle_id,
                },
            )
        )
    return items


def _agenda_header(cal: WorkingCalendar, day: date) -> dict[str, Any]:
    return {
        "date": day.isoformat(),
        "working_day": cal.is_working_day(day),
        "cutoff_at": iso(cal.cutoff_at(day)),
        "previous_huddle_date": cal.previous_working_day(day).isoformat(),
        "next_huddle_date": cal.next_working_day(day).isoformat(),
    }


def _live_agenda(
    session: Session, *, principal: Principal, now: datetime, cal: WorkingCalendar, day: date
) -> dict[str, Any]:
    cutoff = cal.cutoff_at(day)
    condition = or_(
        and_(Incident.discussed_at_huddle_id.is_(None), Incident.reported_at < cutoff),
        and_(Incident.discussed_at_huddle_id.is_not(None), Incident.fu_status == AWAITING),
    )
    pairs = _build_items(
        session, principal=principal, now=now, cal=cal, day=day, condition=condition
    )
    new = sorted(
        (p for p in pairs if p[0].discussed_at_huddle_id is None),
        key=lambda p: (p[0].occurred_at, p[0].id),
    )
    follow_ups = sorted(
        (p for p in pairs if p[0].discussed_at_huddle_id is not None),
        key=lambda p: (not p[1]["overdue"], p[0].contact_due_at, p[0].id),
    )
    return {
        **_agenda_header(cal, day),
        "held": False,
        "huddle_id": None,
        "held_at": None,
        "chair_name": None,
        "generated_at": iso(now),
        "new": [item for _, item in new],
        "follow_ups": [item for _, item in follow_ups],
        "late": [],
    }


def _item_view(item: HuddleItem) -> dict[str, Any]:
    return {
        **item.snapshot,
        "section": item.section,
        "position": item.position,
        "discussed": item.discussed,
        "discussed_at": iso(item.discussed_at),
        "assigned_agency_id": item.assigned_agency_id,
        "notes": item.notes,
    }


def _huddle_view(session: Session, huddle: Huddle, cal: WorkingCalendar) -> dict[str, Any]:
    items = session.execute(
        select(HuddleItem).where(HuddleItem.huddle_id == huddle.id).order_by(HuddleItem.position)
    ).scalars()
    sections: dict[str, list[dict[str, Any]]] = {s: [] for s in SECTIONS}
    for item in items:
        sections.setdefault(item.section, []).append(_item_view(item))
    return {
        "id": huddle.id,
        "date": huddle.date.isoformat(),
        "working_day": cal.is_working_day(huddle.date),
        "cutoff_at": iso(huddle.cutoff_at),
        "previous_huddle_date": _iso_date(huddle.previous_huddle_date),
        "next_huddle_date": _iso_date(huddle.next_huddle_date),
        "held": True,
        "huddle_id": huddle.id,
        "held_at": iso(huddle.held_at),
        "held_by_id": huddle.held_by_id,
        "chair_name": huddle.chair_name,
        "generated_at": iso(huddle.held_at),
        **sections,
    }


def get_agenda(
    session: Session, *, principal: Principal, now: datetime, settings: Settings, day: date
) -> dict[str, Any]:
    """The agenda of a local date: frozen if that day's huddle was held, else computed live."""
    cal = WorkingCalendar.from_settings(settings)
    huddle = session.execute(select(Huddle).where(Huddle.date == day)).scalar_one_or_none()
    if huddle is not None:
        view = _huddle_view(session, huddle, cal)
    else:
        view = _live_agenda(session, principal=principal, now=now, cal=cal, day=day)
    audit.record(
        session,
        actor=principal,
        action="read",
        at=now,
        subject_type="huddle_agenda",
        subject_id=day.isoformat(),
        details={
            "huddle_id": view["huddle_id"],
            "incident_ids": [i["incident_id"] for s in SECTIONS for i in view[s]],
        },
    )
    return view


# --- holding the huddle and recording outcomes ------------------------------------------


def hold_huddle(
    session: Session,
    *,
    principal: Principal,
    now: datetime,
    settings: Settings,
    day: date,
    chair_name: str | None,
) -> dict[str, Any]:
    """Hold the meeting of ``day``: freeze the live agenda into the huddle. 409 if already held."""
    cal = WorkingCalendar.from_settings(settings)
    existing = session.execute(select(Huddle.id).where(Huddle.date == day)).scalar_one_or_none()
    if existing is not None:
        raise Conflict(f"the huddle for {day} has already been held", extra={"huddle_id": existing})
    agenda = _live_agenda(session, principal=principal, now=now, cal=cal, day=day)
    huddle = Huddle(
        date=day,
        held_at=now,
        held_by_id=principal.id,
        chair_name=chair_name or principal.display_name or principal.username,
        cutoff_at=cal.cutoff_at(day),
        previous_huddle_date=cal.previous_working_day(day),
        next_huddle_date=cal.next_working_day(day),
        created_at=now,
    )
    try:
        with session.begin_nested():
            session.add(huddle)
            session.flush()
    except IntegrityError:
        # A concurrent request held the same date first (unique constraint on date).
        raise Conflict(f"the huddle for {day} has already been held") from None
    position = 0
    for section in ("new", "follow_ups"):
        for snapshot in agenda[section]:
            position += 1
            session.add(
                HuddleItem(
                    huddle_id=huddle.id,
                    incident_id=snapshot["incident_id"],
                    section=section,
                    position=position,
                    snapshot=snapshot,
                    discussed=False,
                )
            )
    session.flush()
    audit.record(
        session,
        actor=principal,
        action="create",
        at=now,
        subject_type="huddle",
        subject_id=huddle.id,
        details={"date": day.isoformat(), "items": position},
    )
    return _huddle_view(session, huddle, cal)


def _get_huddle(session: Session, huddle_id: str) -> Huddle:
    huddle = session.get(Huddle, huddle_id)
    if huddle is None:
        raise NotFound("no such huddle")
    return huddle


def get_huddle(
    session: Session, *, principal: Principal, now: datetime, settings: Settings, huddle_id: str
) -> dict[str, Any]:
    huddle = _get_huddle(session, huddle_id)
    view = _huddle_view(session, huddle, WorkingCalendar.from_settings(settings))
    audit.record(
        session,
        actor=principal,
        action="read",
        at=now,
        subject_type="huddle",
        subject_id=huddle.id,
        details={"incident_ids": [i["incident_id"] for s in SECTIONS for i in view[s]]},
    )
    return view


def record_discussion(
    session: Session,
    *,
    principal: Principal,
    now: datetime,
    settings: Settings,
    huddle_id: str,
    incident_id: str,
    changes: dict[str, Any],
) -> dict[str, Any]:
    """Record the outcome of discussing one incident at a held huddle.

    ``changes`` holds only the fields the caller sent: ``discussed`` (bool),
    ``assigned_agency_id`` (the follow-up's agency from now on; this is what gives that
    agency's outreach workers access), ``notes``. An incident not on the frozen agenda
    (e.g. reported after the cut-off) is added as a ``late`` item, snapshotted now.
    The first discussion marks the incident discussed (never ``new`` again); a discussed
    item cannot be marked undiscussed (409).
    """
    huddle = _get_huddle(session, huddle_id)
    incident = session.execute(
        select(Incident)
        .where(Incident.id == incident_id, incident_scope(principal))
        .with_for_update()
    ).scalar_one_or_none()
    if incident is None:
        raise NotFound("no such incident")
    agency_id = changes.get("assigned_agency_id")
    if agency_id is not None and session.get(Agency, agency_id) is None:
        raise Invalid("no such agency", loc=["body", "assigned_agency_id"])

    item = session.execute(
        select(HuddleItem).where(
            HuddleItem.huddle_id == huddle.id, HuddleItem.incident_id == incident.id
        )
    ).scalar_one_or_none()
    if item is None:
        cal = WorkingCalendar.from_settings(settings)
        pairs = _build_items(
            session,
            principal=principal,
            now=now,
            cal=cal,
            day=huddle.date,
            condition=Incident.id == incident.id,
        )
        last = session.execute(
            select(func.max(HuddleItem.position)).where(HuddleItem.huddle_id == huddle.id)
        ).scalar_one()
        item = HuddleItem(
            huddle_id=huddle.id,
            incident_id=incident.id,
            section="late",
            position=(last or 0) + 1,
            snapshot=pairs[0][1],
            discussed=False,
        )
        try:
            with session.begin_nested():
                session.add(item)
                session.flush()
        except IntegrityError:
            raise Conflict(
                "this incident was added to the huddle by someone else just now; retry"
            ) from None

    discussed = changes.get("discussed")
    if discussed is False and item.discussed:
        raise Conflict("this item is already recorded as discussed at this huddle")
    if discussed and not item.discussed:
        item.discussed = True
        item.discussed_at = now
    if discussed and incident.discussed_at_huddle_id is None:
        incident.discussed_at_huddle_id = huddle.id
        incident.discussed_at = now
        incident.updated_at = now
    if "assigned_agency_id" in changes:
        item.assigned_agency_id = agency_id
        if agency_id is not None and incident.assigned_agency_id != agency_id:
            incident.assigned_agency_id = agency_id
            incident.updated_at = now
    if "notes" in changes:
        item.notes = changes["notes"]
    item.updated_by_id = principal.id
    session.flush()
    audit.record(
        session,
        actor=principal,
        action="update",
        at=now,
        subject_type="incident",
        subject_id=incident.id,
        details={
            "huddle_id": huddle.id,
            "section": item.section,
            "discussed": item.discussed,
            "assigned_agency_id": item.assigned_agency_id,
        },
    )
    return _item_view(item)


def list_huddles(
    session: Session,
    *,
    principal: Principal,
    date_from: date | None,
    date_to: date | None,
    cursor: str | None,
    limit: int,
) -> Page:
    """Held huddles, newest date first, optionally within [from, to] (inclusive)."""
    if date_from and date_to and date_from > date_to:
        raise Invalid("'from' must not be after 'to'", loc=["query", "from"])
    stmt = select(Huddle)
    if date_from:
        stmt = stmt.where(Huddle.date >= date_from)
    if date_to:
        stmt = stmt.where(Huddle.date <= date_to)
    page = keyset_page(
        session,
        stmt,
        keys=[Huddle.date, Huddle.id],
        cursor=cursor,
        limit=limit,
        descending=True,
        key_of=lambda h: (h.date, h.id),
    )
    stats: dict[str, tuple[int, int]] = {}
    if page.items:
        for huddle_id, total, discussed in session.execute(
            select(
                HuddleItem.huddle_id,
                func.count(HuddleItem.id),
                func.sum(case((HuddleItem.discussed.is_(True), 1), else_=0)),
            )
            .where(HuddleItem.huddle_id.in_([h.id for h in page.items]))
            .group_by(HuddleItem.huddle_id)
        ):
            stats[huddle_id] = (int(total), int(discussed or 0))
    items = [
        {
            "id": h.id,
            "date": h.date.isoformat(),
            "held_at": iso(h.held_at),
            "held_by_id": h.held_by_id,
            "chair_name": h.chair_name,
            "cutoff_at": iso(h.cutoff_at),
            "previous_huddle_date": _iso_date(h.previous_huddle_date),
            "next_huddle_date": _iso_date(h.next_huddle_date),
            "item_count": stats.get(h.id, (0, 0))[0],
            "discussed_count": stats.get(h.id, (0, 0))[1],
        }
        for h in page.items
    ]
    return Page(items=items, next_cursor=page.next_cursor)


# --- exports -------------------------------------------------------------------------------

EXPORT_FORMATS = ("csv", "html")
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")

CSV_COLUMNS = (
    "section",
    "position",
    "incident_id",
    "occurred_at",
    "reported_at",
    "contact_due_at",
    "hours_remaining",
    "overdue",
    "due_before_next_huddle",
    "source_agency",
    "substances",
    "location",
    "postcode",
    "person_id",
    "person_name",
    "age",
    "incidents_30d",
    "incidents_365d",
    "risk_level",
    "follow_up_status",
    "follow_up_agency_id",
    "discussed",
    "assigned_agency_id",
    "notes",
)


def export_huddle(
    session: Session,
    *,
    principal: Principal,
    now: datetime,
    settings: Settings,
    huddle_id: str,
    fmt: str,
) -> dict[str, Any]:
    """The frozen huddle for an export; the export itself is audited."""
    if fmt not in EXPORT_FORMATS:
        raise Invalid(f"unknown export format {fmt!r}", loc=["path", "format"])
    huddle = _get_huddle(session, huddle_id)
    view = _huddle_view(session, huddle, WorkingCalendar.from_settings(settings))
    audit.record(
        session,
        actor=principal,
        action="export",
        at=now,
        subject_type="huddle",
        subject_id=huddle.id,
        details={
            "format": fmt,
            "incident_ids": [i["incident_id"] for s in SECTIONS for i in view[s]],
        },
    )
    return view


def csv_cell(value: Any) -> str:
    """One spreadsheet-safe cell: a leading ``= + - @`` (or tab/CR/LF) is neutralised with ``'``
    so a spreadsheet never evaluates it as a formula (OWASP CSV injection)."""
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    if text.startswith(_FORMULA_PREFIXES):
        text = "'" + text
    return text


def agenda_rows(view: dict[str, Any]) -> list[dict[str, Any]]:
    """Flat rows (one per item, agenda order) shared by the CSV and HTML exports."""
    rows = []
    for section in SECTIONS:
        for item in view.get(section, []):
            person = item.get("person") or {}
            follow_up = item.get("follow_up") or {}
            location = item.get("location") or {}
            rows.append(
                {
                    "section": section,
                    "position": item.get("position"),
                    "incident_id": item["incident_id"],
                    "occurred_at": item.get("occurred_at"),
                    "reported_at": item.get("reported_at"),
                    "contact_due_at": item.get("contact_due_at"),
                    "hours_remaining": item.get("hours_remaining"),
                    "overdue": item.get("overdue"),
                    "due_before_next_huddle": item.get("due_before_next_huddle"),
                    "source_agency": (item.get("source_agency") or {}).get("name"),
                    "substances": "; ".join(item.get("substances") or []),
                    "location": location.get("description"),
                    "postcode": location.get("postcode"),
                    "person_id": person.get("id"),
                    "person_name": person.get("name"),
                    "age": person.get("age"),
                    "incidents_30d": person.get("incidents_30d"),
                    "incidents_365d": person.get("incidents_365d"),
                    "risk_level": person.get("risk_level"),
                    "follow_up_status": follow_up.get("status"),
                    "follow_up_agency_id": follow_up.get("assigned_agency_id"),
                    "discussed": item.get("discussed"),
                    "assigned_agency_id": item.get("assigned_agency_id"),
                    "notes": item.get("notes"),
                }
            )
    return rows


def agenda_csv(view: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in agenda_rows(view):
        writer.writerow([csv_cell(row[c]) for c in CSV_COLUMNS])
    return out.getvalue()
