"""People: read, search, possible duplicates and merge.

Access comes from services.access.person_scope (merged duplicates are invisible to all).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from models.alert import Alert
from models.incident import Incident
from models.person import Person, PossibleDuplicate
from models.safety_plan import SafetyPlanAction, SafetyPlanVersion
from services import audit, matching
from services.access import incident_scope, person_scope
from services.db import among
from services.errors import Invalid, NotFound
from services.intake import check_cursor, usable_id
from services.pagination import Page, keyset_page
from services.principal import Principal


@dataclass
class PersonView:
    person: Person
    incident_count: int
    incidents: list[Incident]
    possible_duplicates: list[dict[str, str]]
    safety_plan: SafetyPlanVersion | None


def _visible(session: Session, principal: Principal, person_id: str) -> Person | None:
    if not usable_id(person_id):
        return None
    return session.execute(
        select(Person).where(Person.id == person_id, person_scope(principal))
    ).scalar_one_or_none()


def get_person_row(
    session: Session, *, principal: Principal, now: datetime, person_id: str
) -> Person:
    person = _visible(session, principal, person_id)
    if person is None:
        audit.record(
            session,
            actor=principal,
            action="denied",
            at=now,
            subject_type="person",
            subject_id=person_id,
        )
        raise NotFound("no such person")
    return person


def possible_duplicates(
    session: Session, principal: Principal, person_ids: list[str]
) -> dict[str, list[dict[str, str]]]:
    """Open candidate pairs of each person, the other side live and in the principal's reach:
    {person_id: [{id, reason}]}."""
    out: dict[str, list[dict[str, str]]] = {p: [] for p in person_ids}
    if not person_ids:
        return out
    dialect = session.get_bind().dialect.name
    rows = session.execute(
        select(PossibleDuplicate).where(
            or_(
                among(dialect, PossibleDuplicate.person_id, person_ids),
                among(dialect, PossibleDuplicate.candidate_id, person_ids),
            ),
            PossibleDuplicate.dismissed_at.is_(None),
        )
    ).scalars()
    pairs = list(rows)
    others = {p.candidate_id for p in pairs} | {p.person_id for p in pairs}
    live = set(
        session.execute(
            select(Person.id).where(
                among(dialect, Person.id, list(others)), person_scope(principal)
            )
        ).scalars()
    )
    for pair in sorted(pairs, key=lambda p: (p.created_at, p.id)):
        for me, other in ((pair.person_id, pair.candidate_id), (pair.candidate_id, pair.person_id)):
            if (
                me in out
                and other in live
                and other != me
                and all(d["id"] != other for d in out[me])
            ):
                out[me].append({"id": other, "reason": pair.reason})
    return out


def current_plan(session: Session, person_id: str) -> SafetyPlanVersion | None:
    return session.execute(
        select(SafetyPlanVersion)
        .where(SafetyPlanVersion.person_id == person_id, SafetyPlanVersion.is_current.is_(True))
        .order_by(SafetyPlanVersion.version.desc())
        .limit(1)
    ).scalar_one_or_none()


def get_person(
    session: Session, *, principal: Principal, now: datetime, person_id: str
) -> PersonView:
    person = get_person_row(session, principal=principal, now=now, person_id=person_id)
    scope = and_(Incident.person_id == person.id, incident_scope(principal))
    incidents = list(
        session.execute(
            select(Incident).where(scope).order_by(Incident.occurred_at.desc(), Incident.id.desc())
        ).scalars()
    )
    audit.record(
        session, actor=principal, action="read", at=now, subject_type="person", subject_id=person.id
    )
    if incidents:
        audit.record_many(
            session,
            actor=principal,
            action="read",
            at=now,
            subject_type="incident",
            subject_ids=[i.id for i in incidents],
        )
    return PersonView(
        person=person,
        incident_count=len(incidents),
        incidents=incidents,
        possible_duplicates=possible_duplicates(session, principal, [person.id])[person.id],
        safety_plan=current_plan(session, person.id),
    )


def incident_counts(
    session: Session, principal: Principal, person_ids: list[str]
) -> dict[str, int]:
    out = dict.fromkeys(person_ids, 0)
    if not person_ids:
        return out
    rows = session.execute(
        select(Incident.person_id, func.count())
        .where(
            among(session.get_bind().dialect.name, Incident.person_id, person_ids),
            incident_scope(principal),
        )
        .group_by(Incident.person_id)
    )
    for pid, n in rows:
        out[pid] = n
    return out


def search(
    session: Session,
    *,
    principal: Principal,
    now: datetime,
    q: str | None,
    chi: str | None,
    cursor: str | None,
    limit: int,
) -> Page[Person]:
    """People in reach whose name contains every word of ``q`` (normalised) and/or with this CHI.

    Ordered by family name key, then id (keyset)."""
    check_cursor(cursor, str, str)
    filters = []
    if chi is not None:
        filters.append(Person.chi == chi.strip())
    if q is not None:
        words = [w for w in (matching.normalise_name(part) for part in q.split()) if w]
        if not words:
            raise Invalid("q must contain letters or digits", loc=["query", "q"])
        for word in words:
            escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            filters.append(Person.name_key.like(f"%{escaped}%", escape="\\"))
    family = func.coalesce(Person.family_key, "")
    if filters and principal.role != "coordinator":
        # The name or CHI narrows the people first; the scope (an index probe or two per
        # person, see access.person_scope) is then checked in family-name order until the
        # page is full. OFFSET 0 keeps PostgreSQL from folding the scope into the candidate
        # scan (which would probe every candidate before sorting).
        candidates = (
            select(Person, family.label("sort_key"))
            .where(Person.merged_into_id.is_(None), *filters)
            .order_by(family, Person.id)
            .offset(0)
            .subquery("candidates")
        )
        candidate = aliased(Person, candidates)
        stmt = select(candidate).where(
            person_scope(principal, per_candidate=True, person=candidate)
        )
        keys = [candidates.c.sort_key, candidate.id]
    else:
        stmt = select(Person).where(person_scope(principal), *filters)
        keys = [family, Person.id]
    page = keyset_page(
        session,
        stmt,
        keys=keys,
        cursor=cursor,
        limit=limit,
        key_of=lambda p: (p.family_key or "", p.id),
    )
    if page.items:
        audit.record_many(
            session,
            actor=principal,
            action="read",
            at=now,
            subject_type="person",
            subject_ids=[p.id for p in page.items],
        )
    return page


_FILLABLE = ("given_name", "family_name", "date_of_birth", "sex", "postcode", "phone")


def merge(
    session: Session, *, principal: Principal, now: datetime, person_id: str, duplicate_id: str
) -> PersonView:
    """Fold ``duplicate_id`` into ``person_id``: incidents (and so their contacts), safety plan
    versions and actions, alerts and possible-duplicate pairs move; the duplicate keeps its row
    with ``merged_into_id`` and answers 404 from then on. Nothing personal goes in the audit."""
    if duplicate_id == person_id:
        raise Invalid("a person cannot be merged into itself", loc=["body", "duplicate_id"])
    survivor = get_person_row(session, principal=principal, now=now, person_id=person_id)
    duplicate = _visible(session, principal, duplicate_id)
    if duplicate is None:
        audit.record(
            session,
            actor=principal,
            action="denied",
            at=now,
            subject_type="person",
            subject_id=duplicate_id,
        )
        raise NotFound("no such person to merge (already merged, or never existed)")
    # Lock both rows (PostgreSQL) so two merges of the same pair serialise.
    session.execute(
        select(Person.id).where(Person.id.in_([survivor.id, duplicate.id])).with_for_update()
    ).all()

    moved: dict[str, Any] = {}
    moved["incidents"] = session.execute(
        update(Incident)
        .where(Incident.person_id == duplicate.id)
        .values(person_id=survivor.id, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount

    # Safety plans: the duplicate's versions follow the survivor's, no longer current.
    dup_versions = list(
        session.execute(
            select(SafetyPlanVersion)
            .where(SafetyPlanVersion.person_id == duplicate.id)
            .order_by(SafetyPlanVersion.version)
        ).scalars()
    )
    if dup_versions:
        top = session.execute(
            select(func.max(SafetyPlanVersion.version)).where(
                SafetyPlanVersion.person_id == survivor.id
            )
        ).scalar()
        if top is None:
            for v in dup_versions:
                v.person_id = survivor.id
        else:
            for v in dup_versions:
                v.version = top + v.version
                v.person_id = survivor.id
                v.is_current = False
        session.flush()
    moved["safety_plan_versions"] = len(dup_versions)
    moved["safety_plan_actions"] = session.execute(
        update(SafetyPlanAction)
        .where(SafetyPlanAction.person_id == duplicate.id)
        .values(person_id=survivor.id)
        .execution_options(synchronize_session=False)
    ).rowcount
    moved["alerts"] = session.execute(
        update(Alert)
        .where(Alert.person_id == duplicate.id)
        .values(person_id=survivor.id)
        .execution_options(synchronize_session=False)
    ).rowcount

    # Possible-duplicate pairs: re-point at the survivor; drop self-pairs and repeats.
    pairs = list(
        session.execute(
            select(PossibleDuplicate).where(
                or_(
                    PossibleDuplicate.person_id == duplicate.id,
                    PossibleDuplicate.candidate_id == duplicate.id,
                )
            )
        ).scalars()
    )
    existing = {
        (p.person_id, p.candidate_id)
        for p in session.execute(
            select(PossibleDuplicate).where(
                or_(
                    PossibleDuplicate.person_id == survivor.id,
                    PossibleDuplicate.candidate_id == survivor.id,
                )
            )
        ).scalars()
    }
    moved_pairs = 0
    for pair in pairs:
        a = survivor.id if pair.person_id == duplicate.id else pair.person_id
        b = survivor.id if pair.candidate_id == duplicate.id else pair.candidate_id
        if a == b or (a, b) in existing or (b, a) in existing:
            session.delete(pair)
            continue
        pair.person_id, pair.candidate_id = a, b
        existing.add((a, b))
        moved_pairs += 1
    session.flush()
    moved["possible_duplicates"] = moved_pairs

    # Earlier merges into the duplicate now point at the survivor.
    session.execute(
        update(Person)
        .where(Person.merged_into_id == duplicate.id)
        .values(merged_into_id=survivor.id)
        .execution_options(synchronize_session=False)
    )
    filled = []
    if survivor.chi is None and duplicate.chi is not None:
        chi_value = duplicate.chi
        duplicate.chi = None
        session.flush()
        survivor.chi = chi_value
        filled.append("chi")
    for field in _FILLABLE:
        if getattr(survivor, field) in (None, "unknown") and getattr(duplicate, field) not in (
            None,
            "unknown",
        ):
            setattr(survivor, field, getattr(duplicate, field))
            filled.append(field)
    survivor.family_key = matching.normalise_name(survivor.family_name)
    survivor.name_key = matching.name_key(survivor.family_name, survivor.given_name)
    survivor.updated_at = now
    duplicate.merged_into_id = survivor.id
    duplicate.updated_at = now
    session.flush()
    details = {"duplicate_id": duplicate.id, "moved": moved, "filled": filled}
    audit.record(
        session,
        actor=principal,
        action="merge",
        at=now,
        subject_type="person",
        subject_id=survivor.id,
        details=details,
    )
    audit.record(
        session,
        actor=principal,
        action="merge",
        at=now,
        subject_type="person",
        subject_id=duplicate.id,
        details={"merged_into_id": survivor.id},
    )
    return get_person(session, principal=principal, now=now, person_id=survivor.id)


def dismiss_duplicate(
    session: Session, *, principal: Principal, now: datetime, person_id: str, candidate_id: str
) -> None:
    """A coordinator decides two people are not the same: the pair leaves the list."""
    get_person_row(session, principal=principal, now=now, person_id=person_id)
    n = session.execute(
        update(PossibleDuplicate)
        .where(
            or_(
                and_(
                    PossibleDuplicate.person_id == person_id,
                    PossibleDuplicate.candidate_id == candidate_id,
                ),
                and_(
                    PossibleDuplicate.person_id == candidate_id,
                    PossibleDuplicate.candidate_id == person_id,
                ),
            ),
            PossibleDuplicate.dismissed_at.is_(None),
        )
        .values(dismissed_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not n:
        raise NotFound("no open possible duplicate between these people")
    audit.record(
        session,
        actor=principal,
        action="update",
        at=now,
        subject_type="person",
        subject_id=person_id,
        details={"dismissed_duplicate_id": candidate_id},
    )


__all__ = [
    "PersonView",
    "get_person",
    "search",
    "merge",
    "dismiss_duplicate",
    "possible_duplicates",
]
