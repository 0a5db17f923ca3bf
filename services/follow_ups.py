"""Follow-ups: contact attempts and the state of each incident's 72-hour contact obligation.

States: ``awaiting_contact`` -> ``contacted`` (first successful attempt) or ``closed``
(by a coordinator, with a reason). Failed attempts never close a follow-up, however many.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models.contact import ACTIONS, REFERRALS, ContactAttempt, ContactCode
from models.incident import Incident
from services import audit
from services.errors import Invalid
from services.intake import FUTURE_TOLERANCE, check_cursor, get_incident
from services.pagination import Page, keyset_page
from services.principal import Principal


def is_overdue(incident: Incident, now: datetime) -> bool:
    """True while the follow-up awaits contact and its deadline has passed."""
    return incident.fu_status == "awaiting_contact" and incident.contact_due_at < now


def hours_remaining(incident: Incident, now: datetime) -> float:
    return round((incident.contact_due_at - now) / timedelta(hours=1), 2)


def _mark_contacted(incident: Incident, at: datetime, now: datetime) -> bool:
    """Record a successful contact at ``at``. Returns True when the incident changed."""
    if incident.first_contact_at is not None and incident.first_contact_at <= at:
        return False  # a later contact never moves first_contact_at
    incident.first_contact_at = at
    incident.within_window = at <= incident.contact_due_at
    if incident.fu_status == "awaiting_contact":
        incident.fu_status = "contacted"
    incident.updated_at = now
    return True


def record_attempt(
    session: Session,
    *,
    principal: Principal,
    now: datetime,
    incident_id: str,
    attempted_at: datetime,
    method: str,
    outcome: str,
    notes: str | None = None,
    actions: Iterable[str] = (),
    referrals: Iterable[str] = (),
) -> tuple[ContactAttempt, list[str], list[str]]:
    incident = get_incident(
        session,
        principal=principal,
        now=now,
        incident_id=incident_id,
        audit_read=False,
        for_update=True,
    )
    errors = []
    if attempted_at < incident.occurred_at:
        errors.append(
            {"loc": ["body", "attempted_at"], "msg": "attempted_at is before the overdose occurred"}
        )
    if attempted_at > now + FUTURE_TOLERANCE:
        errors.append({"loc": ["body", "attempted_at"], "msg": "attempted_at is in the future"})
    if errors:
        raise Invalid("the contact attempt breaks a rule: see errors", errors=errors)
    actions = sorted(set(actions), key=ACTIONS.index)
    referrals = sorted(set(referrals), key=REFERRALS.index)
    attempt = ContactAttempt(
        incident_id=incident.id,
        attempted_at=attempted_at,
        method=method,
        outcome=outcome,
        notes=notes,
        recorded_by_type=principal.kind,
        recorded_by_id=principal.id,
        agency_id=principal.agency_id,
        created_at=now,
    )
    session.add(attempt)
    session.flush()
    for code in actions:
        session.add(ContactCode(contact_id=attempt.id, kind="action", code=code))
    for code in referrals:
        session.add(ContactCode(contact_id=attempt.id, kind="referral", code=code))
    audit.record(
        session,
        actor=principal,
        action="create",
        at=now,
        subject_type="contact_attempt",
        subject_id=attempt.id,
        details={"incident_id": incident.id, "outcome": outcome},
    )
    if outcome == "contacted":
        if _mark_contacted(incident, attempted_at, now):
            audit.record(
                session,
                actor=principal,
                action="update",
                at=now,
                subject_type="incident",
                subject_id=incident.id,
                details={"follow_up": incident.fu_status, "by_contact": attempt.id},
            )
        if incident.person_id:
            satisfy_earlier(
                session,
                principal=principal,
                now=now,
                person_id=incident.person_id,
                contact_at=attempted_at,
                contact_id=attempt.id,
                except_id=incident.id,
            )
    session.flush()
    return attempt, actions, referrals


def satisfy_earlier(
    session: Session,
    *,
    principal: Principal,
    now: datetime,
    person_id: str,
    contact_at: datetime,
    contact_id: str,
    except_id: str | None = None,
) -> list[str]:
    """A successful contact satisfies the person's other open follow-ups of earlier overdoses.

    One conditional UPDATE (only rows still awaiting contact change), so concurrent contacts
    for the same person cannot both claim a follow-up or take locks in opposite orders.
    """
    stmt = (
        update(Incident)
        .where(
            Incident.person_id == person_id,
            Incident.fu_status == "awaiting_contact",
            Incident.occurred_at <= contact_at,
        )
        .values(
            fu_status="contacted",
            first_contact_at=contact_at,
            within_window=Incident.contact_due_at >= contact_at,
            updated_at=now,
        )
        .returning(Incident.id)
        .execution_options(synchronize_session="fetch")
    )
    if except_id:
        stmt = stmt.where(Incident.id != except_id)
    changed = list(session.execute(stmt).scalars())
    for incident_id in changed:
        audit.record(
            session,
            actor=principal,
            action="update",
            at=now,
            subject_type="incident",
            subject_id=incident_id,
            details={"follow_up": "contacted", "by_contact": contact_id},
        )
    return changed


def codes_for(
    session: Session, contact_ids: Iterable[str]
) -> dict[str, tuple[list[str], list[str]]]:
    ids = list(dict.fromkeys(contact_ids))
    out: dict[str, tuple[list[str], list[str]]] = {i: ([], []) for i in ids}
    if not ids:
        return out
    rows = session.execute(
        select(ContactCode.contact_id, ContactCode.kind, ContactCode.code).where(
            ContactCode.contact_id.in_(ids)
        )
    )
    for contact_id, kind, code in rows:
        out[contact_id][0 if kind == "action" else 1].append(code)
    for actions, referrals in out.values():  # vocabulary order, as POST answered
        actions.sort(key=ACTIONS.index)
        referrals.sort(key=REFERRALS.index)
    return out


def list_attempts(
    session: Session,
    *,
    principal: Principal,
    now: datetime,
    incident_id: str,
    cursor: str | None,
    limit: int,
) -> Page[ContactAttempt]:
    """Contact attempts of one incident in reach, oldest first."""
    incident = get_incident(session, principal=principal, now=now, incident_id=incident_id)
    check_cursor(cursor, datetime, str)
    stmt = select(ContactAttempt).where(ContactAttempt.incident_id == incident.id)
    return keyset_page(
        session,
        stmt,
        keys=[ContactAttempt.attempted_at, ContactAttempt.id],
        cursor=cursor,
        limit=limit,
        key_of=lambda c: (c.attempted_at, c.id),
    )
