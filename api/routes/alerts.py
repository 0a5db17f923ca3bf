from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import DbSession, Now, Paging, UnitOfWorkRoute, require
from api.schemas.alerts import AlertKind, AlertOut, AlertState
from api.schemas.common import Page, problem_responses
from services import alerts
from services.principal import Principal

router = APIRouter(route_class=UnitOfWorkRoute, tags=["alerts"])
Reader = Annotated[Principal, Depends(require("coordinator", "outreach"))]
Coordinator = Annotated[Principal, Depends(require("coordinator"))]


@router.get("/v1/alerts", response_model=Page[AlertOut], responses=problem_responses())
def list_alerts(
    principal: Reader,
    session: DbSession,
    paging: Paging,
    kind: Annotated[AlertKind | None, Query()] = None,
    state: Annotated[AlertState | None, Query()] = None,
    incident_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[AlertOut]:
    """Alerts raised by the scheduler, newest first (every state unless `state` is given)."""
    page = alerts.list_alerts(
        session,
        principal=principal,
        kind=kind,
        state=state,
        incident_id=incident_id,
        cursor=paging.cursor,
        limit=paging.limit,
    )
    return Page[AlertOut](
        items=[AlertOut.model_validate(a) for a in page.items], next_cursor=page.next_cursor
    )


@router.post(
    "/v1/alerts/{alert_id}/acknowledge", response_model=AlertOut, responses=problem_responses()
)
def acknowledge_alert(
    alert_id: str, principal: Coordinator, session: DbSession, now: Now
) -> AlertOut:
    """Acknowledge an alert (idempotent)."""
    return AlertOut.model_validate(
        alerts.acknowledge(session, principal=principal, now=now, alert_id=alert_id)
    )
