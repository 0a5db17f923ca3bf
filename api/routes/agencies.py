from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.deps import CurrentPrincipal, DbSession, Now, Paging, UnitOfWorkRoute, require
from api.schemas.accounts import AgencyCreate, AgencyOut
from api.schemas.common import Page, problem_responses
from services import accounts
from services.principal import Principal

router = APIRouter(route_class=UnitOfWorkRoute, tags=["agencies"])
Admin = Annotated[Principal, Depends(require("admin"))]


@router.post(
    "/v1/agencies", status_code=201, response_model=AgencyOut, responses=problem_responses(409)
)
def create_agency(body: AgencyCreate, principal: Admin, session: DbSession, now: Now) -> AgencyOut:
    agency = accounts.create_agency(
        session, actor=principal, now=now, name=body.name, kind=body.kind
    )
    return AgencyOut.model_validate(agency)


@router.get("/v1/agencies", response_model=Page[AgencyOut], responses=problem_responses())
def list_agencies(
    principal: CurrentPrincipal, session: DbSession, paging: Paging
) -> Page[AgencyOut]:
    page = accounts.list_agencies(session, cursor=paging.cursor, limit=paging.limit)
    return Page[AgencyOut](
        items=[AgencyOut.model_validate(a) for a in page.items], next_cursor=page.next_cursor
    )


@router.get("/v1/agencies/{agency_id}", response_model=AgencyOut, responses=problem_responses())
def get_agency(agency_id: str, principal: CurrentPrincipal, session: DbSession) -> AgencyOut:
    return AgencyOut.model_validate(accounts.get_agency(session, agency_id))
