"""Who may see which incident and person: the one place access rules live.

Every rule is a SQL expression applied in the query (``WHERE``), never a Python filter
after loading. Records outside a principal's reach are simply not found (404).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, exists, false, or_, select, true

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


def person_scope(principal: Principal) -> ColumnElement[bool]:
    """People the principal may see (merged duplicates are never visible)."""
    live = Person.merged_into_id.is_(None)
    if principal.role == "coordinator":
        return live
    if principal.role == "outreach" and principal.agency_id:
        assigned = exists(
            select(Incident.id).where(
                Incident.person_id == Person.id,
                Incident.assigned_agency_id == principal.agency_id,
            )
        )
        leads_plan = exists(
            select(SafetyPlanVersion.id).where(
                SafetyPlanVersion.person_id == Person.id,
                SafetyPlanVersion.is_current.is_(True),
                SafetyPlanVersion.lead_agency_id == principal.agency_id,
            )
        )
        return and_(live, or_(assigned, leads_plan))
    return false()


def require_role(principal: Principal, *roles: str) -> None:
    """Whole-endpoint check for services called outside HTTP (the API checks first)."""
    if principal.role not in roles:
        raise Forbidden("your role may not use this")
