"""Versioned safety plans: every change is a new immutable version; nobody overwrites anybody.

The newest version of a person's plan has ``is_current = true``. Its strong ETag is the
version's id. A new version needs ``If-Match`` with the current ETag once a plan exists
(428 without, 412 when stale). Two coordinators writing at once with the same ETag: the
conditional ``UPDATE ... SET is_current = false WHERE id = :current AND is_current``
lets exactly one through (the other waits for its row lock and then updates nothing ->
412), and the ``(person_id, version)`` unique constraint refuses a second version 1 when
two first plans race (-> 412).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.agency import Agency
from models.person import Person
from models.safety_plan import RISK_FACTORS, RISK_LEVELS, SafetyPlanAction, SafetyPlanVersion
from services import audit
from services.access import person_scope
from services.errors import Invalid, NotFound, PreconditionFailed, PreconditionRequired
from services.huddles import iso
from services.pagination import Page, keyset_page
from services.principal import Principal


@dataclass(frozen=True)
class ActionInput:
    description: str
    owner_agency_id: str | None = None
    due_on: date | None = None
    done: bool = False


@dataclass(frozen=True)
class PlanInput:
    risk_level: str
    risk_factors: tuple[str, ...] = ()
    actions: tuple[ActionInput, ...] = ()
    lead_agency_id: str | None = None
    review_on: date | None = None
    notes: str | None = None


def etag_of(version: SafetyPlanVersion) -> str:
    """The strong, quoted entity tag of one plan version."""
    return f'"{version.id}"'


def if_match_matches(header: str, version: SafetyPlanVersion) -> bool:
    """RFC 9110 If-Match with strong comparison: ``*`` or a list of entity tags."""
    value = header.strip()
    if value == "*":
        return True
    current = etag_of(version)
    return any(tag.strip() == current for tag in value.split(","))


def _visible_person(
    session: Session, *, principal: Principal, now: datetime, person_id: str
) -> Person:
    person = session.execute(
        select(Person).where(Person.id == person_id, person_scope(principal))
    ).scalar_one_or_none()
    if person is None:
        audit.record(
            session,
            actor=principal,
            action="denied",
            at=now,
            subject_type="person",
            subject_id=person_id,
            details={"what": "safety_plan"},
        )
        raise NotFound("no such person")
    return person


def _current(session: Session, person_id: str) -> SafetyPlanVersion | None:
    return session.execute(
        select(SafetyPlanVersion).where(
            SafetyPlanVersion.person_id == person_id, SafetyPlanVersion.is_current.is_(True)
        )
    ).scalar_one_or_none()


def _views(session: Session, versions: list[SafetyPlanVersion]) -> list[dict[str, Any]]:
    """Versions with their actions (one IN query for all of them)."""
    actions: dict[str, list[dict[str, Any]]] = {v.id: [] for v in versions}
    if versions:
        for action in session.execute(
            select(SafetyPlanAction)
            .where(SafetyPlanAction.plan_version_id.in_(list(actions)))
            .order_by(SafetyPlanAction.plan_version_id, SafetyPlanAction.position)
        ).scalars():
            actions[action.plan_version_id].append(
                {
                    "id": action.id,
                    "description": action.description,
                    "owner_agency_id": action.owner_agency_id,
                    "due_on": action.due_on.isoformat() if action.due_on else None,
                    "done": action.done,
                }
            )
    return [
        {
            "id": v.id,
            "person_id": v.person_id,
            "version": v.version,
            "is_current": v.is_current,
            "risk_level": v.risk_level,
            "risk_factors": list(v.risk_factors or []),
            "actions": actions[v.id],
            "lead_agency_id": v.lead_agency_id,
            "review_on": v.review_on.isoformat() if v.review_on else None,
            "notes": v.notes,
            "created_by_id": v.created_by_id,
            "created_at": iso(v.created_at),
            "etag": etag_of(v),
        }
        for v in versions
    ]


def get_current(
    session: Session, *, principal: Principal, now: datetime, person_id: str
) -> dict[str, Any]:
    """The current version (404 when the person is out of reach or has no plan)."""
    _visible_person(session, principal=principal, now=now, person_id=person_id)
    version = _current(session, person_id)
    if version is None:
        raise NotFound("this person has no safety plan yet")
    audit.record(
        session,
        actor=principal,
        action="read",
        at=now,
        subject_type="person",
        subject_id=person_id,
        details={"what": "safety_plan", "version": version.version},
    )
    return _views(session, [version])[0]


def history(
    session: Session,
    *,
    principal: Principal,
    now: datetime,
    person_id: str,
    cursor: str | None,
    limit: int,
) -> Page:
    """Every version, newest first (keyset paged)."""
    _visible_person(session, principal=principal, now=now, person_id=person_id)
    page = keyset_page(
        session,
        select(SafetyPlanVersion).where(SafetyPlanVersion.person_id == person_id),
        keys=[SafetyPlanVersion.version, SafetyPlanVersion.id],
        cursor=cursor,
        limit=limit,
        descending=True,
        key_of=lambda v: (v.version, v.id),
    )
    audit.record(
        session,
        actor=principal,
        action="read",
        at=now,
        subject_type="person",
        subject_id=person_id,
        details={"what": "safety_plan_history", "versions": [v.version for v in page.items]},
    )
    return Page(items=_views(session, page.items), next_cursor=page.next_cursor)


def _check_agencies(session: Session, plan: PlanInput) -> None:
    wanted: dict[str, list[str | int]] = {}
    if plan.lead_agency_id is not None:
        wanted.setdefault(plan.lead_agency_id, ["body", "lead_agency_id"])
    for i, action in enumerate(plan.actions):
        if action.owner_agency_id is not None:
            wanted.setdefault(action.owner_agency_id, ["body", "actions", i, "owner_agency_id"])
    if not wanted:
        return
    known = set(session.execute(select(Agency.id).where(Agency.id.in_(list(wanted)))).scalars())
    errors = [
        {"loc": loc, "msg": "no such agency"}
        for agency_id, loc in wanted.items()
        if agency_id not in known
    ]
    if errors:
        raise Invalid("unknown agency id", errors=errors)


def put_plan(
    session: Session,
    *,
    principal: Principal,
    now: datetime,
    person_id: str,
    plan: PlanInput,
    if_match: str | None,
) -> tuple[dict[str, Any], bool]:
    """Write a new version. Returns (the new version, created_first_version)."""
    _visible_person(session, principal=principal, now=now, person_id=person_id)
    if plan.risk_level not in RISK_LEVELS:
        raise Invalid("risk_level must be red, amber or green", loc=["body", "risk_level"])
    factors = tuple(dict.fromkeys(plan.risk_factors))  # de-duplicated, order kept
    for i, factor in enumerate(factors):
        if factor not in RISK_FACTORS:
            raise Invalid(f"unknown risk factor {factor!r}", loc=["body", "risk_factors", i])
    _check_agencies(session, plan)

    current = _current(session, person_id)
    if current is None:
        if if_match is not None:
            raise PreconditionFailed("If-Match was sent but this person has no safety plan yet")
        number = 1
    else:
        if if_match is None:
            raise PreconditionRequired(
                "this person already has a safety plan: send If-Match with its current ETag",
                headers={"ETag": etag_of(current)},
            )
        if not if_match_matches(if_match, current):
            raise PreconditionFailed(
                "the safety plan changed since you read it: reload it and apply your change again",
                headers={"ETag": etag_of(current)},
            )
        flipped = session.execute(
            update(SafetyPlanVersion)
            .where(SafetyPlanVersion.id == current.id, SafetyPlanVersion.is_current.is_(True))
            .values(is_current=False)
            .execution_options(synchronize_session=False)
        ).rowcount
        if flipped != 1:
            raise PreconditionFailed(
                "the safety plan was changed by someone else just now: reload it"
            )
        # The highest number, not current + 1: a merge may have moved another person's
        # (non-current) versions above the current one.
        top = session.execute(
            select(func.max(SafetyPlanVersion.version)).where(
                SafetyPlanVersion.person_id == person_id
            )
        ).scalar_one()
        number = max(top or 0, current.version) + 1

    version = SafetyPlanVersion(
        person_id=person_id,
        version=number,
        is_current=True,
        risk_level=plan.risk_level,
        risk_factors=list(factors),
        lead_agency_id=plan.lead_agency_id,
        review_on=plan.review_on,
        notes=plan.notes,
        created_by_id=principal.id,
        created_at=now,
    )
    try:
        with session.begin_nested():
            session.add(version)
            session.flush()
    except IntegrityError:
        raise PreconditionFailed(
            "the safety plan was changed by someone else just now: reload it"
        ) from None
    for position, action in enumerate(plan.actions):
        session.add(
            SafetyPlanAction(
                plan_version_id=version.id,
                person_id=person_id,
                position=position,
                description=action.description,
                owner_agency_id=action.owner_agency_id,
                due_on=action.due_on,
                done=action.done,
            )
        )
    session.flush()
    if current is not None:
        session.expire(current)
    audit.record(
        session,
        actor=principal,
        action="create" if current is None else "update",
        at=now,
        subject_type="person",
        subject_id=person_id,
        details={"what": "safety_plan", "version": number, "plan_version_id": version.id},
    )
    return _views(session, [version])[0], current is None
