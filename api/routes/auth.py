from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool

from api.deps import (
    AppSettings,
    CurrentPrincipal,
    Now,
    UnitOfWorkRoute,
    client_addr,
    hashing_turn,
    unit_of_work,
)
from api.schemas.accounts import MeOut, TokenOut
from api.schemas.common import problem_responses
from services import auth
from services.errors import Unauthorized
from services.security import verify_password

router = APIRouter(route_class=UnitOfWorkRoute, tags=["auth"])
T = TypeVar("T")


async def _in_unit_of_work(request: Request, work: Callable[..., T], **kwargs: Any) -> T:
    """``work(session, **kwargs)`` in a unit of work of its own, in the thread pool."""
    async with unit_of_work(request) as session:
        return await run_in_threadpool(work, session, **kwargs)


@router.post("/v1/auth/token", response_model=TokenOut, responses=problem_responses(429))
async def issue_token(
    request: Request,
    settings: AppSettings,
    now: Now,
    username: Annotated[str, Form(min_length=1, max_length=150)],
    password: Annotated[str, Form(min_length=1, max_length=1000)],
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
) -> TokenOut:
    """OAuth2 password grant. Unknown user and wrong password answer exactly alike.

    The password's hash is checked between two units of work, holding no database session
    (services.auth.begin_login), and with a turn taken on the event loop (api.deps.hashing_turn),
    so that a burst of sign-ins keeps other requests from neither the database nor the
    thread pool, and hashes at most ``NFOD_PASSWORD_HASH_SLOTS`` at once (64 MiB each)."""
    attempt = await _in_unit_of_work(
        request,
        auth.begin_login,
        settings=settings,
        now=now,
        username=username,
        client_addr=client_addr(request),
    )
    async with hashing_turn(request):
        password_ok = await run_in_threadpool(verify_password, attempt.password_hash, password)
    # committed (a failure kept for throttling and audit) before the answer
    result = await _in_unit_of_work(
        request,
        auth.end_login,
        settings=settings,
        now=now,
        attempt=attempt,
        password_ok=password_ok,
    )
    if result.token is None:
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
