"""Contact attempts on an incident's follow-up (API.md "Contact attempts")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request

from api.deps import AppSettings, DbSession, Now, Paging, UnitOfWorkRoute, require
from api.idempotency import idempotent
from api.responses import RenderedJSON
from api.schemas.common import Page, problem_responses
from api.schemas.contacts import ContactCreate, ContactOut
from models.contact import ContactAttempt
from services import follow_ups
from services.principal import Principal

router = APIRouter(route_class=UnitOfWorkRoute, tags=["contacts"])
Worker = Annotated[Principal, Depends(require("coordinator", "outreach"))]


def contact_out(c: ContactAttempt, actions: list[str], referrals: list[str]) -> ContactOut:
    return ContactOut(
        id=c.id,
        incident_id=c.incident_id,
        attempted_at=c.attempted_at,
        method=c.method,
        outcome=c.outcome,
        notes=c.notes,
        actions=actions,
        referrals=referrals,
        recorded_by_type=c.recorded_by_type,
        recorded_by_id=c.recorded_by_id,
        agency_id=c.agency_id,
        created_at=c.created_at,
    )


@router.post(
    "/v1/incidents/{incident_id}/contacts",
    status_code=201,
    response_model=ContactOut,
    responses=problem_responses(409),
)
def create_contact(
    incident_id: str,
    request: Request,
    body: ContactCreate,
    principal: Worker,
    session: DbSession,
    now: Now,
    settings: AppSettings,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> RenderedJSON:
    def work():
        attempt, actions, referrals = follow_ups.record_attempt(
            session,
            principal=principal,
            now=now,
            incident_id=incident_id,
            attempted_at=body.attempted_at,
            method=body.method,
            outcome=body.outcome,
            notes=body.notes,
            actions=body.actions,
            referrals=body.referrals,
        )
        out = contact_out(attempt, actions, referrals)
        return (
            201,
            out.model_dump(mode="json"),
            {"Location": f"/v1/incidents/{incident_id}/contacts/{out.id}"},
        )

    return idempotent(
        request, session, principal, now, settings, body.model_dump(mode="json"), work
    )


@router.get(
    "/v1/incidents/{incident_id}/contacts",
    response_model=Page[ContactOut],
    responses=problem_responses(),
)
def list_contacts(
    incident_id: str, principal: Worker, session: DbSession, now: Now, paging: Paging
) -> Page[ContactOut]:
    """Contact attempts, oldest first."""
    page = follow_ups.list_attempts(
        session,
        principal=principal,
        now=now,
        incident_id=incident_id,
        cursor=paging.cursor,
        limit=paging.limit,
    )
    codes = follow_ups.codes_for(session, [c.id for c in page.items])
    return Page[ContactOut](
        items=[contact_out(c, *codes[c.id]) for c in page.items], next_cursor=page.next_cursor
    )
