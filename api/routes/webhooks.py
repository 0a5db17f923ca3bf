from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from api.deps import AppSettings, DbSession, Now, Paging, UnitOfWorkRoute, require
from api.schemas.common import Page, problem_responses
from api.schemas.webhooks import WebhookCreate, WebhookCreated, WebhookOut
from services import webhooks
from services.principal import Principal

router = APIRouter(route_class=UnitOfWorkRoute, tags=["webhooks"])
Admin = Annotated[Principal, Depends(require("admin"))]


@router.post(
    "/v1/webhooks", status_code=201, response_model=WebhookCreated, responses=problem_responses()
)
def create_webhook(
    body: WebhookCreate, principal: Admin, session: DbSession, now: Now, settings: AppSettings
) -> WebhookCreated:
    """Register a receiver for alerts. The signing secret is in this answer only."""
    registered = webhooks.create_webhook(
        session,
        actor=principal,
        now=now,
        settings=settings,
        url=body.url,
        kinds=list(body.kinds) if body.kinds else None,
        agency_id=body.agency_id,
    )
    return WebhookCreated(
        **WebhookOut.model_validate(registered.webhook).model_dump(), secret=registered.secret
    )


@router.get("/v1/webhooks", response_model=Page[WebhookOut], responses=problem_responses())
def list_webhooks(principal: Admin, session: DbSession, paging: Paging) -> Page[WebhookOut]:
    page = webhooks.list_webhooks(session, cursor=paging.cursor, limit=paging.limit)
    return Page[WebhookOut](
        items=[WebhookOut.model_validate(w) for w in page.items], next_cursor=page.next_cursor
    )


@router.get("/v1/webhooks/{webhook_id}", response_model=WebhookOut, responses=problem_responses())
def get_webhook(webhook_id: str, principal: Admin, session: DbSession) -> WebhookOut:
    return WebhookOut.model_validate(webhooks.get_webhook(session, webhook_id=webhook_id))


@router.delete(
    "/v1/webhooks/{webhook_id}",
    status_code=204,
    response_class=Response,
    responses=problem_responses(),
)
def delete_webhook(webhook_id: str, principal: Admin, session: DbSession, now: Now) -> Response:
    """Stop deliveries at once (pending messages are abandoned)."""
    webhooks.delete_webhook(session, actor=principal, now=now, webhook_id=webhook_id)
    return Response(status_code=204)
