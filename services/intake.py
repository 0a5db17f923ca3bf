"""Intake: create incidents (one or a batch), deduplicate by source_ref, read, list, correct.

Every function takes the session, the acting principal and ``now``; it flushes and never
commits. Access rules come from services.access (a record outside reach is NotFound).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.agency import Agency
from models.base import new_id
from models.incident import Incident, IncidentSubstance
from models.person import Person, PossibleDuplicate
from services import audit, chi, matching, postcodes, reports
from services.access import incident_scope
from services.canonical import canonical_hash
from services.config import Settings
from services.db import (
    among,
    among_batches,
    execute_direct,
    insert_for,
    insert_rows,
    insert_unless_conflict,
)
from services.errors import Conflict, Invalid, NotFound
from services.pagination import Page, decode_cursor, keyset_page
from services.principal import Principal

FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_ID_LENGTH = 64


def usable_id(value: str | None) -> bool:
    """An id worth looking up (NUL bytes would make PostgreSQL raise, not miss)."""
    return bool(value) and len(value) <= MAX_ID_LENGTH and "\x00" not in value


def check_cursor(cursor: str | None, *types: type) -> None:
    """Refuse (422) a cursor whose values are not of the list's key types."""
    if not cursor:
        return
    values = decode_cursor(cursor, len(types))
    for value, kind in zip(values, types, strict=True):
        if not isinstance(value, kind) or (isinstance(value, str) and "\x00" in value):
            raise Invalid("cursor is not valid for this list", loc=["query", "cursor"])


RETRY = "the incident could not be recorded because of concurrent changes; retry"


@dataclass
class Normalised:
    values: dict[str, Any]  # canonical submitted fields (hashed for dedupe)
    occurred_at: datetime
    reported_at: datetime
    postcode: str | None
    substances: list[str]
    person: matching.PersonDetails | None
    person_submitted: dict[str, Any] | None


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _check_times(occurred_at: datetime, reported_at: datetime, now: datetime, errors: list) -> None:
    if occurred_at > now + FUTURE_TOLERANCE:
        errors.append({"loc": ["body", "occurred_at"], "msg": "occurred_at is in the future"})
    if reported_at > now + FUTURE_TOLERANCE:
        errors.append({"loc": ["body", "reported_at"], "msg": "reported_at is in the future"})
    if occurred_at > reported_at:
        errors.append({"loc": ["body", "occurred_at"], "msg": "occurred_at is after reported_at"})


def _normalise_person(block: dict[str, Any], now: datetime, errors: list) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in ("given_name", "family_name", "sex", "phone"):
        if block.get(field):  # empty strings (after trimming) carry nothing
            out[field] = block[field]
    dob: date | None = block.get("date_of_birth")
    if dob is not None:
        if dob > now.date():
            errors.append(
                {
                    "loc": ["body", "person", "date_of_birth"],
                    "msg": "date_of_birth is in the future",
                }
            )
        out["date_of_birth"] = dob
    if block.get("chi") is not None:
        value = block["chi"]
        why = chi.problem(value)
        if why:
            errors.append({"loc": ["body", "person", "chi"], "msg": why})
        elif dob is not None and not chi.matches_date_of_birth(value, dob):
            errors.append(
                {
                    "loc": ["body", "person", "chi"],
                    "msg": "the CHI number does not match date_of_birth (DDMMYY)",
                }
            )
        out["chi"] = value
    if block.get("postcode") is not None:
        pc = postcodes.normalise(block["postcode"])
        if pc is None:
            errors.append(
                {"loc": ["body", "person", "postcode"], "msg": "not a well-formed UK postcode"}
            )
        out["postcode"] = pc
    return out


def normalise(data: dict[str, Any], *, now: datetime) -> Normalised:
    """Apply every domain rule to a submitted incident; Invalid lists all failures at once."""
    errors: list[dict[str, Any]] = []
    values: dict[str, Any] = {}
    occurred_at = _utc(data["occurred_at"])
    values["occurred_at"] = occurred_at
    if data.get("reported_at") is not None:
        reported_at = _utc(data["reported_at"])
        values["reported_at"] = reported_at
    else:
        reported_at = now
    _check_times(occurred_at, reported_at, now, errors)
    for field in (
        "source_ref",
        "naloxone_administered",
        "naloxone_administered_by",
        "hospital",
        "notes",
    ):
        if data.get(field) is not None:
            values[field] = data[field]
    postcode = None
    location = data.get("location")
    if location:
        loc_values: dict[str, Any] = {}
        if location.get("description") is not None:
            loc_values["description"] = location["description"]
        if location.get("postcode") is not None:
            postcode = postcodes.normalise(location["postcode"])
            if postcode is None:
                errors.append(
                    {
                        "loc": ["body", "location", "postcode"],
                        "msg": "not a well-formed UK postcode",
                    }
                )
            loc_values["postcode"] = postcode
        values["location"] = loc_values
    substances: list[str] = []
    for i, raw in enumerate(data.get("substances") or []):
        s = " ".join(raw.split()).lower()
        if not s:
            errors.append({"loc": ["body", "substances", i], "msg": "a substance cannot be empty"})
        substances.append(s)
    if data.get("substances") is not None:
        values["substances"] = substances
    person_details = None
    person_submitted = None
    if data.get("person") is not None:
        person_submitted = _normalise_person(data["person"], now, errors)
        values["person"] = person_submitted
        person_details = matching.PersonDetails(**person_submitted)
    if errors:
        raise Invalid(
            "the incident breaks "
            + ("a rule" if len(errors) == 1 else "several rules")
            + ": see errors",
            errors=errors,
        )
    submitted_json = None
    if person_submitted is not None:
        submitted_json = {
            k: (v.isoformat() if isinstance(v, date) else v) for k, v in person_submitted.items()
        }
    return Normalised(
        values, occurred_at, reported_at, postcode, substances, person_details, submitted_json
    )


def _agency_exists(session: Session, agency_id: str) -> bool:
    return session.get(Agency, agency_id) is not None


def source_agency_for(session: Session, principal: Principal, requested: str | None) -> str:
    if principal.role == "partner":
        if requested is not None and requested != principal.agency_id:
            raise Invalid(
                "a partner system records incidents for its own agency only",
                loc=["body", "source_agency_id"],
            )
        if not principal.agency_id:
            raise Invalid("this API client has no agency", loc=["body", "source_agency_id"])
        return principal.agency_id
    agency_id = requested or principal.agency_id
    if not agency_id:
        raise Invalid(
            "source_agency_id is required for a user without an agency",
            loc=["body", "source_agency_id"],
        )
    if requested and not _agency_exists(session, requested):
        raise Invalid("no such agency", loc=["body", "source_agency_id"])
    return agency_id


def _existing_by_ref(session: Session, source_agency_id: str, source_ref: str) -> Incident | None:
    return session.execute(
        select(Incident).where(
            Incident.source_agency_id == source_agency_id, Incident.source_ref == source_ref
        )
    ).scalar_one_or_none()


def _resolve_duplicate(existing: Incident, request_hash: str) -> tuple[Incident, bool]:
    if existing.request_hash == request_hash:
        return existing, False
    raise Conflict(
        "an incident with this source_ref already exists with different details",
        extra={"existing_id": existing.id},
        errors=[{"loc": ["body", "source_ref"], "msg": f"already used by incident {existing.id}"}],
    )


def create_incident(
    session: Session,
    *,
    principal: Principal,
    now: datetime,
    settings: Settings,
    data: dict[str, Any],
) -> tuple[Incident | NewIncident, bool]:
    """Create an incident, or return the identical one already recorded under its source_ref.

    Returns (incident, created). A different body under a used source_ref is Conflict.
    """
    incident, created, _substances = create_incident_with_substances(
        session, principal=principal, now=now, settings=settings, data=data
    )
    return incident, created


def create_incident_with_substances(
    session: Session,
    *,
    principal: Principal,
    now: datetime,
    settings: Settings,
    data: dict[str, Any],
) -> tuple[Incident | NewIncident, bool, list[str] | None]:
    """:func:`create_incident`, also returning the substances just stored, in order (None
    for an identical repeat: the caller reads them), so the answer needs no re-read."""
    norm = normalise(data, now=now)
    source_agency_id = source_agency_for(session, principal, data.get("source_agency_id"))
    request_hash = canonical_hash(norm.values)
    source_ref = norm.values.get("source_ref")
    # No look-up of source_ref first and no savepoint: the INSERT itself asks the unique
    # index on (source_agency_id, source_ref) (ON CONFLICT DO NOTHING; a concurrent request
    # with the same source_ref makes it wait for that one's outcome), and a repeat is the
    # rare case. Matching takes per-identity locks, so the only other unique constraint
    # (a new person's CHI) cannot be raced; any IntegrityError is answered 409 "retry".
    try:
        incident, person_created = _insert(
            session, principal, now, settings, norm, source_agency_id, request_hash
        )
    except IntegrityError as exc:
        raise Conflict(RETRY) from exc
    if incident is None:
        existing = _existing_by_ref(session, source_agency_id, source_ref)
        if existing is None:  # pragma: no cover - it existed a moment ago; incidents stay
            raise Conflict(
                "the incident could not be recorded because of concurrent changes; retry"
            )
        return (*_resolve_duplicate(existing, request_hash), None)
    audit.record(
        session,
        actor=principal,
        action="create",
        at=now,
        subject_type="incident",
        subject_id=incident.id,
    )
    if incident.person_id:
        audit.record(
            session,
            actor=principal,
            action="create" if person_created else "update",
            at=now,
            subject_type="person",
            subject_id=incident.person_id,
            details={"incident_id": incident.id},
        )
    return incident, True, list(norm.substances)


def _insert(
    session: Session,
    principal: Principal,
    now: datetime,
    settings: Settings,
    norm: Normalised,
    source_agency_id: str,
    request_hash: str,
) -> tuple[NewIncident | None, bool]:
    """Insert the incident (matching its person first); returns (incident, person_created),
    or (None, False) when its source_ref is already used."""
    found = None
    if norm.person is not None and norm.person.identifying:
        found = matching.match(session, norm.person, now=now)
    v = norm.values
    location = v.get("location") or {}
    new_person = found.new_person if found is not None and found.created else None
    values = {
        "id": new_id(),
        "source_agency_id": source_agency_id,
        "source_ref": v.get("source_ref"),
        "created_by_type": principal.kind,
        "created_by_id": principal.id,
        "request_hash": request_hash,
        "occurred_at": norm.occurred_at,
        "reported_at": norm.reported_at,
        "contact_due_at": norm.occurred_at + timedelta(hours=settings.contact_window_hours),
        "location_description": location.get("description"),
        "postcode": norm.postcode,
        "postcode_district": postcodes.district(norm.postcode) if norm.postcode else None,
        "naloxone_administered": v.get("naloxone_administered"),
        "naloxone_administered_by": v.get("naloxone_administered_by"),
        "hospital": v.get("hospital"),
        "person_submitted": norm.person_submitted,
        "person_id": found.person_id if found else None,
        # The database copies these from the person (migration 0008); a new person is not
        # yet visible to its look-up on PostgreSQL (written in the incident's statement).
        "person_sex": new_person["sex"] if new_person else None,
        "person_age": (
            reports.age_at(norm.occurred_at, new_person["date_of_birth"]) if new_person else None
        ),
        "notes": v.get("notes"),
        "fu_status": "awaiting_contact",
        # An outreach worker who records an overdose holds its follow-up (and can read it
        # back) until a coordinator or the huddle assigns it elsewhere.
        "assigned_agency_id": principal.agency_id if principal.role == "outreach" else None,
        "created_at": now,
        "updated_at": now,
    }
    person_created = found is not None and found.created
    # Core INSERTs: the hot path of intake skips the ORM unit of work. A NewIncident of the
    # same values is what the caller answers with.
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        if not _insert_in_one_statement(conn, values, found, norm.substances):
            return None, False  # source_ref already used: nothing was written
        return NewIncident(values), person_created
    if person_created:
        matching.write_new_person(session, found)
    statement = insert_unless_conflict(
        conn.dialect.name, Incident.__table__, "source_agency_id", "source_ref"
    )
    if not execute_direct(conn, statement, values):  # no row returned: source_ref used
        # source_ref already used: take back the person matching just created for it (a
        # repeat of a request whose person could not be matched strongly); the caller then
        # answers with the incident already stored.
        if person_created:
            matching.forget_new_person(session, values["person_id"])
        return None, False
    if norm.substances:
        insert_rows(
            session,
            IncidentSubstance.__table__,
            [
                {"incident_id": values["id"], "position": position, "substance": substance}
                for position, substance in enumerate(norm.substances)
            ],
        )
    return NewIncident(values), person_created


def _insert_in_one_statement(
    conn: Any, values: dict[str, Any], found: matching.Match | None, substances: list[str]
) -> bool:
    """PostgreSQL: the incident, its new person (with the possible duplicates matching
    found) and its substances in one statement (:func:`_one_statement`); False, and nothing
    written, when the incident's source_ref is already used."""
    new_person = found.new_person if found is not None and found.created else None
    duplicates = found.duplicates if new_person is not None else []
    params = {f"i_{key}": value for key, value in values.items()}
    if new_person is not None:
        params.update({f"p_{key}": value for key, value in new_person.items()})
    if duplicates:
        params["d_id"] = [row["id"] for row in duplicates]
        params["d_candidate_id"] = [row["candidate_id"] for row in duplicates]
        params["d_reason"] = [row["reason"] for row in duplicates]
    if substances:
        params["s_substance"] = substances
    statement = _one_statement(
        tuple(values), new_person is not None, bool(duplicates), bool(substances)
    )
    return bool(execute_direct(conn, statement, params))


@functools.cache
def _one_statement(keys: tuple[str, ...], person: bool, duplicates: bool, substances: bool):
    """One PostgreSQL statement for an incident and what comes with it (built once per
    shape), so a notification costs one round trip for its writes instead of up to four::

        WITH incident AS (INSERT INTO incidents ... ON CONFLICT (source_agency_id,
                          source_ref) DO NOTHING RETURNING id),
             person AS (INSERT INTO persons SELECT ... FROM incident),
             duplicates AS (INSERT INTO possible_duplicates SELECT ... FROM incident, unnest(...)),
             substances AS (INSERT INTO incident_substances SELECT ... FROM incident,
                            unnest(...) WITH ORDINALITY)
        SELECT id FROM incident

    Every other part reads the incident's RETURNING, so when the source_ref is already used
    (no row) none of them writes anything - no person to take back. Foreign keys are checked
    at the end of the statement, when the person and the incident both exist. Parameters:
    ``i_<column>`` (the incident), ``p_<column>`` (the person), the arrays ``d_id``,
    ``d_candidate_id``, ``d_reason`` (the possible duplicates) and ``s_substance``.

    A substance's ``occurred_at`` is given here: the trigger that copies it from the
    incident (migration 0002) cannot see an incident inserted by the same statement, and
    keeps the given value then.
    """
    incidents, persons = Incident.__table__, Person.__table__
    incident = (
        insert_for("postgresql")(incidents)
        .values({key: bindparam(f"i_{key}", type_=incidents.c[key].type) for key in keys})
        .on_conflict_do_nothing(index_elements=["source_agency_id", "source_ref"])
        .returning(incidents.c.id)
        .cte("incident")
    )
    parts = []
    if person:
        columns = [c.key for c in persons.columns if c.key != "merged_into_id"]
        person_values = {key: bindparam(f"p_{key}", type_=persons.c[key].type) for key in columns}
        parts.append(
            insert(persons)
            .from_select(columns, select(*person_values.values()).select_from(incident))
            .cte("person")
        )
        if duplicates:
            rows = (
                func.unnest(
                    bindparam("d_id", type_=ARRAY(String)),
                    bindparam("d_candidate_id", type_=ARRAY(String)),
                    bindparam("d_reason", type_=ARRAY(String)),
                )
                .table_valued("id", "candidate_id", "reason")
                .render_derived("duplicate")
            )
            parts.append(
                insert(PossibleDuplicate.__table__)
                .from_select(
                    ["id", "person_id", "candidate_id", "reason", "created_at"],
                    select(
                        rows.c.id,
                        person_values["id"],
                        rows.c.candidate_id,
                        rows.c.reason,
                        person_values["created_at"],
                    ).select_from(incident.join(rows, true())),
                )
                .cte("duplicates")
            )
    if substances:
        named = (
            func.unnest(bindparam("s_substance", type_=ARRAY(String)))
            .table_valued("substance", with_ordinality="ordinality")
            .render_derived("named")
        )
        occurred_at = bindparam("i_occurred_at", type_=incidents.c.occurred_at.type)
        parts.append(
            insert(IncidentSubstance.__table__)
            .from_select(
                ["incident_id", "position", "substance", "occurred_at"],
                select(
                    incident.c.id,
                    named.c.ordinality - literal_column("1"),
                    named.c.substance,
                    occurred_at,
                ).select_from(incident.join(named, true())),
            )
            .cte("substances")
        )
    return select(incident.c.id).add_cte(*parts)


class NewIncident:
    """An incident intake has just inserted, as the caller answers with it: every column of
    :class:`Incident` as a plain attribute (the inserted values; None for the columns intake
    leaves empty). Not an ORM object and never in a session - building a transient
    ``Incident`` only to read it back cost about 2 % of a keyed intake's CPU (ORM
    instrumentation). Read it like an Incident; load the Incident to change it."""

    _EMPTY = dict.fromkeys(c.key for c in Incident.__table__.columns)

    def __init__(self, values: dict[str, Any]) -> None:
        unknown = values.keys() - self._EMPTY.keys()
        if unknown:
            raise TypeError(f"not columns of incidents: {sorted(unknown)}")
        self.__dict__.update(self._EMPTY)
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return f"NewIncident(id={self.__dict__['id']!r})"


# --- reading ---------------------------------------------------------------------------


def substances_column(dialect: str) -> ColumnElement[list[str] | None] | None:
    """PostgreSQL: an incident's substances, in order, as one column of a query over
    incidents (a subquery per row on the substances' primary key; null for none), so that a
    list of incidents needs no second statement and no id list sent back; None elsewhere,
    where :func:`substances_for` reads them."""
    if dialect != "postgresql":
        return None
    s = IncidentSubstance
    return (
        select(func.array_agg(aggregate_order_by(s.substance, s.position)))
        .where(s.incident_id == Incident.id)
        .scalar_subquery()
    )


def substances_for(session: Session, incident_ids: Iterable[str]) -> dict[str, list[str]]:
    ids = list(dict.fromkeys(incident_ids))
    out: dict[str, list[str]] = {i: [] for i in ids}
    if not ids:
        return out
    dialect = session.get_bind().dialect.name
    for batch in among_batches(dialect, ids):
        rows = session.execute(
            select(IncidentSubstance.incident_id, IncidentSubstance.substance)
            .where(among(dialect, IncidentSubstance.incident_id, batch))
            .order_by(IncidentSubstance.incident_id, IncidentSubstance.position)
        )
        for incident_id, substance in rows:
            out[incident_id].append(substance)
    return out


def get_incident(
    session: Session,
    *,
    principal: Principal,
    now: datetime,
    incident_id: str,
    audit_read: bool = True,
    for_update: bool = False,
) -> Incident:
    """One incident in the principal's reach (NotFound, audited as denied, otherwise).

    ``for_update`` locks the row (PostgreSQL) so concurrent changes serialise."""
    incident = None
    if usable_id(incident_id):
        stmt = select(Incident).where(Incident.id == incident_id, incident_scope(principal))
        if for_update:
            stmt = stmt.with_for_update()
        incident = session.execute(stmt).scalar_one_or_none()
    if incident is None:
        audit.record(
            session,
            actor=principal,
            action="denied",
            at=now,
            subject_type="incident",
            subject_id=incident_id,
        )
        raise NotFound("no such incident")
    if audit_read:
        audit.record(
            session,
            actor=principal,
            action="read",
            at=now,
            subject_type="incident",
            subject_id=incident.id,
        )
    return incident


def list_incidents(
    session: Session,
    *,
    principal: Principal,
    now: datetime,
    cursor: str | None,
    limit: int,
    status: str | None = None,
    overdue: bool | None = None,
    person_id: str | None = None,
    occurred_from: datetime | None = None,
    occurred_to: datetime | None = None,
    assigned_agency_id: str | None = None,
    source_agency_id: str | None = None,
) -> Page[Incident]:
    """Incidents in reach, newest occurred_at first (keyset on occurred_at, id)."""
    check_cursor(cursor, datetime, str)
    stmt = select(Incident).where(incident_scope(principal))
    if status is not None:
        stmt = stmt.where(Incident.fu_status == status)
    if overdue is True:
        stmt = stmt.where(Incident.fu_status == "awaiting_contact", Incident.contact_due_at < now)
    elif overdue is False:
        stmt = stmt.where(
            ~and_(Incident.fu_status == "awaiting_contact", Incident.contact_due_at < now)
        )
    if person_id is not None:
        stmt = stmt.where(Incident.person_id == person_id)
    if occurred_from is not None:
        stmt = stmt.where(Incident.occurred_at >= occurred_from)
    if occurred_to is not None:
        stmt = stmt.where(Incident.occurred_at <= occurred_to)
    if assigned_agency_id is not None:
        stmt = stmt.where(Incident.assigned_agency_id == assigned_agency_id)
    if source_agency_id is not None:
        stmt = stmt.where(Incident.source_agency_id == source_agency_id)
    page = keyset_page(
        session,
        stmt,
        keys=[Incident.occurred_at, Incident.id],
        cursor=cursor,
        limit=limit,
        descending=True,
        key_of=lambda i: (i.occurred_at, i.id),
    )
    if page.items:
        audit.record_many(
            session,
            actor=principal,
            action="read",
            at=now,
            subject_type="incident",
            subject_ids=[i.id for i in page.items],
        )
    return page


# --- correcting --------------------------------------------------------------------------

_CORRECTABLE = ("naloxone_administered", "naloxone_administered_by", "hospital", "notes")


def update_incident(
    session: Session,
    *,
    principal: Principal,
    now: datetime,
    settings: Settings,
    incident_id: str,
    changes: dict[str, Any],
) -> Incident:
    """Coordinator corrections: fields, assignment, person link, closing the follow-up."""
    incident = get_incident(
        session,
        principal=principal,
        now=now,
        incident_id=incident_id,
        audit_read=False,
        for_update=True,
    )
    errors: list[dict[str, Any]] = []
    changed: list[str] = []
    occurred_at = (
        _utc(changes["occurred_at"])
        if changes.get("occurred_at") is not None
        else incident.occurred_at
    )
    reported_at = (
        _utc(changes["reported_at"])
        if changes.get("reported_at") is not None
        else incident.reported_at
    )
    for field in ("occurred_at", "reported_at"):
        if field in changes and changes[field] is None:
            errors.append({"loc": ["body", field], "msg": f"{field} cannot be removed"})
    if "occurred_at" in changes or "reported_at" in changes:
        time_errors: list[dict[str, Any]] = []
        _check_times(occurred_at, reported_at, now, time_errors)
        # Only complain about what this request touches (old data may predate a rule).
        errors.extend(time_errors)
    if "location" in changes:
        location = changes["location"] or {}
        pc = None
        if location.get("postcode") is not None:
            pc = postcodes.normalise(location["postcode"])
            if pc is None:
                errors.append(
                    {
                        "loc": ["body", "location", "postcode"],
                        "msg": "not a well-formed UK postcode",
                    }
                )
    substances = None
    if "substances" in changes:
        substances = [" ".join(s.split()).lower() for s in (changes["substances"] or [])]
        for i, s in enumerate(substances):
            if not s:
                errors.append(
                    {"loc": ["body", "substances", i], "msg": "a substance cannot be empty"}
                )
    if changes.get("assigned_agency_id") is not None and not _agency_exists(
        session, changes["assigned_agency_id"]
    ):
        errors.append({"loc": ["body", "assigned_agency_id"], "msg": "no such agency"})
    if changes.get("person_id") is not None:
        person = session.get(Person, changes["person_id"])
        if person is None or person.merged_into_id is not None:
            errors.append({"loc": ["body", "person_id"], "msg": "no such person"})
    follow_up = changes.get("follow_up")
    if "follow_up" in changes and follow_up is None:
        errors.append({"loc": ["body", "follow_up"], "msg": "follow_up cannot be null"})
    if errors:
        raise Invalid(
            "the correction breaks "
            + ("a rule" if len(errors) == 1 else "several rules")
            + ": see errors",
            errors=errors,
        )

    if "occurred_at" in changes and occurred_at != incident.occurred_at:
        incident.occurred_at = occurred_at
        incident.contact_due_at = occurred_at + timedelta(hours=settings.contact_window_hours)
        if incident.first_contact_at is not None:
            incident.within_window = incident.first_contact_at <= incident.contact_due_at
        changed.append("occurred_at")
    if "reported_at" in changes and reported_at != incident.reported_at:
        incident.reported_at = reported_at
        changed.append("reported_at")
    if "location" in changes:
        location = changes["location"] or {}
        incident.location_description = location.get("description")
        incident.postcode = pc
        incident.postcode_district = postcodes.district(pc) if pc else None
        changed.append("location")
    if substances is not None:
        session.execute(
            delete(IncidentSubstance).where(IncidentSubstance.incident_id == incident.id)
        )
        for position, s in enumerate(substances):
            session.add(IncidentSubstance(incident_id=incident.id, position=position, substance=s))
        changed.append("substances")
    for field in _CORRECTABLE:
        if field in changes:
            setattr(incident, field, changes[field])
            changed.append(field)
    if "assigned_agency_id" in changes:
        incident.assigned_agency_id = changes["assigned_agency_id"]
        changed.append("assigned_agency_id")
    if "person_id" in changes:
        incident.person_id = changes["person_id"]
        changed.append("person_id")
    if follow_up:
        # Only closing is possible here (the schema enforces status == "closed").
        incident.fu_status = "closed"
        incident.closed_reason = follow_up["closed_reason"]
        incident.closed_at = now
        changed.append("follow_up")
    if changed:
        incident.updated_at = now
    session.flush()
    audit.record(
        session,
        actor=principal,
        action="update",
        at=now,
        subject_type="incident",
        subject_id=incident.id,
        details={"fields": changed},
    )
    return incident
