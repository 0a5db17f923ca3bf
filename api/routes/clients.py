from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from api.deps import DbSession, Now, Paging, UnitOfWorkRoute, require
from api.schemas.accounts import ClientCreate, ClientCreated, ClientOut
from api.schemas.common import Page, problem_responses
from services import accounts
from services.principal import Principal

router = APIRouter(route_class=UnitOfWorkRoute, tags=["api clients"])
Admin = Annotated[Principal, Depends(require("admin"))]


@router.post(
    "/v1/clients", status_code=201, response_model=ClientCreated, responses=problem_responses()
)
def create_client(
    body: ClientCreate, principal: Admin, session: DbSession, now: Now
) -> ClientCreated:
    """Register a partner system. The API key is in this answer only; it is stored hashed."""
    issued = accounts.create_client(
        session, actor=principal, now=now, name=body.name, agency_id=body.agency_id
    )
    return ClientCreated(
        **ClientOut.model_validate(issued.client).model_dump(), api_key=issued.api_key
    )


@router.get("/v1/clients", response_model=Page[ClientOut], responses=problem_responses())
def list_clients(principal: Admin, session: DbSession, paging: Paging) -> Page[ClientOut]:
    page = accounts.list_clients(session, cursor=paging.cursor, limit=paging.limit)
    return Page[ClientOut](
        items=[ClientOut.model_validate(c) for c in page.items], next_cursor=page.next_cursor
    )


@router.delete(
    "/v1/clients/{client_id}",
    status_code=204,
    response_class=Response,
    responses=problem_responses(),
)
def revoke_client(client_id: str, principal: Admin, session: DbSession, now: Now) -> Response:
    """Revoke at once: the key answers 401 from the next request on."""
    accounts.revoke_client(session, actor=principal, now=now, client_id=client_id)
    return Response(status_code=204)
