from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request

from api.deps import AppSettings, CurrentPrincipal, DbSession, Now, UnitOfWorkRoute, client_addr
from api.schemas.accounts import MeOut, TokenOut
from api.schemas.common import problem_responses
from services import auth
from services.errors import Unauthorized

router = APIRouter(route_class=UnitOfWorkRoute, tags=["auth"])


@router.post("/v1/auth/token", response_model=TokenOut, responses=problem_responses(429))
def issue_token(
    request: Request,
    session: DbSession,
    settings: AppSettings,
    now: Now,
    username: Annotated[str, Form(min_length=1, max_length=150)],
    password: Annotated[str, Form(min_length=1, max_length=1000)],
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
) -> TokenOut:
    """OAuth2 password grant. Unknown user and wrong password answer exactly alike."""
    result = auth.login(
        session,
        settings=settings,
        now=now,
        username=username,
        password=password,
        client_addr=client_addr(request),
    )
    if result.token is None:
        session.commit()  # keep the failure (throttling and audit) before answering 401
        raise Unauthorized("wrong username or password", headers={"WWW-Authenticate": "Bearer"})
    return TokenOut(access_token=result.token, expires_in=result.expires_in)


@router.get("/v1/users/me", response_model=MeOut, responses=problem_responses())
def me(principal: CurrentPrincipal) -> MeOut:
    return MeOut(
        id=principal.id,
        username=principal.username or "",
        role=principal.role,
        agency_id=principal.agency_id,
        display_name=principal.display_name,
        kind="client" if principal.kind == "client" else "user",
    )
