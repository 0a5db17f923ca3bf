"""Alerts: the list (scoped like the incidents and people they name) and acknowledgement.

Access: a coordinator sees every alert. An outreach worker sees an alert when its
incident is within their incident scope or its person within their person scope
(services/access.py); cluster alerts name neither, and list incidents of many agencies,
so they are for coordinators only. Other roles may not use the endpoints (403).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, false, or_, select, true
from sqlalchemy.orm import Session

from models.alert import Alert
from models.incident import Incident
from models.person import Person
from services import audit
from services.access import incident_scope, person_scope
from services.errors import Forbidden, NotFound
from services.pagination import Page, keyset_page
from services.principal import Principal

LIST_ROLES = ("coordinator", "outreach")


def alert_scope(principal: Principal) -> ColumnElement[bool]:
    if principal.role == "coordinator":
        return true()
    if principal.role == "outreach" and principal.agency_id:
        return or_(
            Alert.incident_id.in_(select(Incident.id).where(incident_scope(principal))),
            Alert.person_id.in_(select(Person.id).where(person_scope(principal))),
        )
    return false()


def list_alerts(
    session: Session,
    *,
    principal: Principal,
    kind: str | None = None,
    state: str | None = None,
    incident_id: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Alert]:
    """Newest first (raised_at, id), keyset paged."""
    if principal.role not in LIST_ROLES:
        raise Forbidden("your role may not read alerts")
    stmt = select(Alert).where(alert_scope(principal))
    if kind:
        stmt = stmt.where(Alert.kind == kind)
    if state:
        stmt = stmt.where(Alert.state == state)
    if incident_id:
        stmt = stmt.where(Alert.incident_id == incident_id)
    return keyset_page(
        session,
        stmt,
        keys=[Alert.raised_at, Alert.id],
        cursor=cursor,
        limit=limit,
        descending=True,
        key_of=lambda a: (a.raised_at, a.id),
    )


def get_alert(session: Session, *, principal: Principal, alert_id: str) -> Alert:
    alert = session.execute(
        select(Alert).where(Alert.id == alert_id, alert_scope(principal))
    ).scalar_one_or_none()
    if alert is None:
        raise NotFound("no such alert")
    return alert


def acknowledge(session: Session, *, principal: Principal, now: datetime, alert_id: str) -> Alert:
    """Mark an alert acknowledged (coordinator). Idempotent: a second call changes nothing."""
    if principal.role != "coordinator":
        raise Forbidden("only a coordinator may acknowledge alerts")
    alert = session.execute(
        select(Alert).where(Alert.id == alert_id).with_for_update()
    ).scalar_one_or_none()
    if alert is None:
        raise NotFound("no such alert")
    if alert.state != "acknowledged":
        alert.state = "acknowledged"
        alert.acknowledged_at = now
        alert.acknowledged_by_id = principal.id
        session.flush()
        audit.record(
            session,
            actor=principal,
            action="acknowledge",
            at=now,
            subject_type="alert",
            subject_id=alert.id,
            details={"kind": alert.kind},
        )
    return alert
