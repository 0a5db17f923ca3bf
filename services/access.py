"""Who may see which incident and person: the one place access rules live.

Every rule is a SQL expression applied in the query (``WHERE``), never a Python filter
after loading. Records outside a principal's reach are simply not found (404).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, or_, select, true, union_all

from models.incident import Incident
from models.person import Person
from models.safety_plan import SafetyPlanVersion
from services.errors import Forbidden
from services.principal import Principal

CASE_ROLES = ("coordinator", "outreach", "partner")


def incident_scope(principal: Principal) -> ColumnElement[bool]:
    """Incidents the principal may see."""
    if principal.role == "coordinator":
        return true()
    if principal.role == "outreach" and principal.agency_id:
        return Incident.assigned_agency_id == principal.agency_id
    if principal.role == "partner" and principal.agency_id:
        return Incident.source_agency_id == principal.agency_id
    return false()


def person_scope(
    principal: Principal, *, per_candidate: bool = False, person: Any = Person
) -> ColumnElement[bool]:
    """People the principal may see (merged duplicates are never visible).

    An outreach worker sees the people of an incident assigned to their agency and the people
    whose current safety plan their agency leads. Two forms of that one rule:

    - the set form (default): two EXISTS, which PostgreSQL answers by hashing every person the
      agency reaches - right for questions about everyone in reach (``IN (SELECT ...)``);
    - ``per_candidate=True``: one EXISTS over both reasons (a UNION ALL), which PostgreSQL can
      neither pull up nor hash, so it is checked for each candidate with two index probes -
      right when the rest of the WHERE (a name, a CHI) has already narrowed the people. At
      1 M incidents the set form read all ~125 k of an agency's incidents for each name search.

    ``person`` is the entity the rule is about: ``Person`` or an alias of it (a subquery).
    """
    live = person.merged_into_id.is_(None)
    if principal.role == "coordinator":
        return live
    if principal.role == "outreach" and principal.agency_id:
        assigned = select(Incident.person_id).where(
            Incident.person_id == person.id,
            Incident.assigned_agency_id == principal.agency_id,
        )
        leads_plan = select(SafetyPlanVersion.person_id).where(
            SafetyPlanVersion.person_id == person.id,
            SafetyPlanVersion.is_current.is_(True),
            SafetyPlanVersion.lead_agency_id == principal.agency_id,
        )
        if per_candidate:
            reasons = union_all(assigned.correlate(person), leads_plan.correlate(person))
            return and_(live, reasons.exists())
        return and_(live, or_(exists(assigned), exists(leads_plan)))
    return false()


def require_role(principal: Principal, *roles: str) -> None:
    """Whole-endpoint check for services called outside HTTP (the API checks first)."""
    if principal.role not in roles:
        raise Forbidden("your role may not use this")
