"""Versioned safety plans with ETag / If-Match (428 without it, 412 when stale)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response

from api.deps import DbSession, Now, Paging, UnitOfWorkRoute, require
from api.schemas.common import Page, problem_responses
from api.schemas.safety_plans import SafetyPlanIn, SafetyPlanOut
from services import safety_plans
from services.principal import Principal

router = APIRouter(route_class=UnitOfWorkRoute, tags=["safety plans"])
Coordinator = Annotated[Principal, Depends(require("coordinator"))]
Reader = Annotated[Principal, Depends(require("coordinator", "outreach"))]


@router.get(
    "/v1/persons/{person_id}/safety-plan",
    response_model=SafetyPlanOut,
    responses=problem_responses(),
    summary="The current version, with a strong ETag",
)
def get_safety_plan(
    person_id: str, principal: Reader, session: DbSession, now: Now, response: Response
) -> SafetyPlanOut:
    view = safety_plans.get_current(session, principal=principal, now=now, person_id=person_id)
    response.headers["ETag"] = view["etag"]
    response.headers["Cache-Control"] = "no-store"
    return SafetyPlanOut.model_validate(view)


@router.put(
    "/v1/persons/{person_id}/safety-plan",
    response_model=SafetyPlanOut,
    responses={
        201: {"model": SafetyPlanOut, "description": "the first version"},
        **problem_responses(412, 428),
    },
    summary="Write a new version (If-Match with the current ETag once a plan exists)",
)
def put_safety_plan(
    person_id: str,
    body: SafetyPlanIn,
    principal: Coordinator,
    session: DbSession,
    now: Now,
    response: Response,
    if_match: Annotated[str | None, Header(max_length=200)] = None,
) -> SafetyPlanOut:
    plan = safety_plans.PlanInput(
        risk_level=body.risk_level,
        risk_factors=tuple(body.risk_factors),
        actions=tuple(
            safety_plans.ActionInput(
                description=a.description,
                owner_agency_id=a.owner_agency_id,
                due_on=a.due_on,
                done=a.done,
            )
            for a in body.actions
        ),
        lead_agency_id=body.lead_agency_id,
        review_on=body.review_on,
        notes=body.notes,
    )
    view, created = safety_plans.put_plan(
        session, principal=principal, now=now, person_id=person_id, plan=plan, if_match=if_match
    )
    response.status_code = 201 if created else 200
    response.headers["ETag"] = view["etag"]
    return SafetyPlanOut.model_validate(view)


@router.get(
    "/v1/persons/{person_id}/safety-plan/history",
    response_model=Page[SafetyPlanOut],
    responses=problem_responses(),
    summary="Every version, newest first",
)
def safety_plan_history(
    person_id: str, principal: Reader, session: DbSession, now: Now, paging: Paging
) -> Page[SafetyPlanOut]:
    page = safety_plans.history(
        session,
        principal=principal,
        now=now,
        person_id=person_id,
        cursor=paging.cursor,
        limit=paging.limit,
    )
    return Page[SafetyPlanOut](
        items=[SafetyPlanOut.model_validate(v) for v in page.items], next_cursor=page.next_cursor
    )
