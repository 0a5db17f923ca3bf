from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.deps import DbSession, Now, Paging, UnitOfWorkRoute, require
from api.schemas.accounts import UserCreate, UserOut, UserUpdate
from api.schemas.common import Page, problem_responses
from services import accounts
from services.principal import Principal

router = APIRouter(route_class=UnitOfWorkRoute, tags=["users"])
Admin = Annotated[Principal, Depends(require("admin"))]


@router.post("/v1/users", status_code=201, response_model=UserOut, responses=problem_responses(409))
def create_user(body: UserCreate, principal: Admin, session: DbSession, now: Now) -> UserOut:
    user = accounts.create_user(
        session,
        actor=principal,
        now=now,
        username=body.username,
        password=body.password,
        role=body.role,
        agency_id=body.agency_id,
        display_name=body.display_name,
    )
    return UserOut.model_validate(user)


@router.get("/v1/users", response_model=Page[UserOut], responses=problem_responses())
def list_users(principal: Admin, session: DbSession, paging: Paging) -> Page[UserOut]:
    page = accounts.list_users(session, cursor=paging.cursor, limit=paging.limit)
    return Page[UserOut](
        items=[UserOut.model_validate(u) for u in page.items], next_cursor=page.next_cursor
    )


@router.get("/v1/users/{user_id}", response_model=UserOut, responses=problem_responses())
def get_user(user_id: str, principal: Admin, session: DbSession) -> UserOut:
    return UserOut.model_validate(accounts.get_user(session, user_id))


@router.patch("/v1/users/{user_id}", response_model=UserOut, responses=problem_responses(409))
def update_user(
    user_id: str, body: UserUpdate, principal: Admin, session: DbSession, now: Now
) -> UserOut:
    user = accounts.update_user(
        session,
        actor=principal,
        now=now,
        user_id=user_id,
        changes=body.model_dump(exclude_unset=True),
    )
    return UserOut.model_validate(user)
