"""People: search, read with history, merge duplicates (API.md "People")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from api.deps import DbSession, Now, Paging, UnitOfWorkRoute, require
from api.schemas.common import Page, problem_responses
from api.schemas.incidents import incident_summary
from api.schemas.persons import (
    DismissIn,
    MergeIn,
    PersonOut,
    PersonSummaryOut,
    PossibleDuplicateOut,
    SafetyPlanSummary,
)
from services import intake, persons
from services.principal import Principal

router = APIRouter(route_class=UnitOfWorkRoute, tags=["persons"])
Reader = Annotated[Principal, Depends(require("coordinator", "outreach"))]
Coordinator = Annotated[Principal, Depends(require("coordinator"))]


def person_out(view: persons.PersonView, now) -> PersonOut:
    p = view.person
    return PersonOut(
        id=p.id,
        chi=p.chi,
        given_name=p.given_name,
        family_name=p.family_name,
        date_of_birth=p.date_of_birth,
        sex=p.sex,
        postcode=p.postcode,
        phone=p.phone,
        created_at=p.created_at,
        updated_at=p.updated_at,
        incident_count=view.incident_count,
        incidents=[],
        possible_duplicates=[PossibleDuplicateOut(**d) for d in view.possible_duplicates],
        safety_plan=(
            SafetyPlanSummary(
                version=view.safety_plan.version,
                risk_level=view.safety_plan.risk_level,
                lead_agency_id=view.safety_plan.lead_agency_id,
                review_on=view.safety_plan.review_on,
            )
            if view.safety_plan
            else None
        ),
    )


def _render(session, view: persons.PersonView, now) -> PersonOut:
    out = person_out(view, now)
    subs = intake.substances_for(session, [i.id for i in view.incidents])
    out.incidents = [incident_summary(i, subs[i.id], now) for i in view.incidents]
    return out


@router.get("/v1/persons", response_model=Page[PersonSummaryOut], responses=problem_responses())
def search_persons(
    principal: Reader,
    session: DbSession,
    now: Now,
    paging: Paging,
    q: Annotated[
        str | None,
        Query(min_length=1, max_length=200, pattern=r"^[^\x00]*$", description="name fragment(s)"),
    ] = None,
    chi: Annotated[str | None, Query(min_length=1, max_length=20, pattern=r"^[^\x00]*$")] = None,
) -> Page[PersonSummaryOut]:
    """People in reach matching every word of `q` and/or the CHI, by family name."""
    page = persons.search(
        session,
        principal=principal,
        now=now,
        q=q,
        chi=chi,
        cursor=paging.cursor,
        limit=paging.limit,
    )
    counts = persons.incident_counts(session, principal, [p.id for p in page.items])
    items = [
        PersonSummaryOut(
            id=p.id,
            chi=p.chi,
            given_name=p.given_name,
            family_name=p.family_name,
            date_of_birth=p.date_of_birth,
            sex=p.sex,
            postcode=p.postcode,
            incident_count=counts[p.id],
        )
        for p in page.items
    ]
    return Page[PersonSummaryOut](items=items, next_cursor=page.next_cursor)


@router.get("/v1/persons/{person_id}", response_model=PersonOut, responses=problem_responses())
def get_person(person_id: str, principal: Reader, session: DbSession, now: Now) -> PersonOut:
    return _render(
        session, persons.get_person(session, principal=principal, now=now, person_id=person_id), now
    )


@router.post(
    "/v1/persons/{person_id}/merge", response_model=PersonOut, responses=problem_responses()
)
def merge_person(
    person_id: str, body: MergeIn, principal: Coordinator, session: DbSession, now: Now
) -> PersonOut:
    """Fold `duplicate_id` into this person; the duplicate answers 404 afterwards."""
    view = persons.merge(
        session, principal=principal, now=now, person_id=person_id, duplicate_id=body.duplicate_id
    )
    return _render(session, view, now)


@router.post(
    "/v1/persons/{person_id}/possible-duplicates/dismiss",
    status_code=204,
    responses=problem_responses(),
)
def dismiss_duplicate(
    person_id: str, body: DismissIn, principal: Coordinator, session: DbSession, now: Now
) -> Response:
    """A coordinator decides two people are not the same: the candidate leaves the list."""
    persons.dismiss_duplicate(
        session, principal=principal, now=now, person_id=person_id, candidate_id=body.candidate_id
    )
    return Response(status_code=204)
