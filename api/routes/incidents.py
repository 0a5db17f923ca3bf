"""Incidents: intake (single, batch), read, list, correct (API.md "Incidents")."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.encoders import jsonable_encoder
from pydantic import ValidationError

from api.deps import AppSettings, DbSession, Now, Paging, UnitOfWorkRoute, require
from api.direct import DirectRoute
from api.idempotency import idempotent
from api.problems import TITLES, problem_type
from api.responses import RenderedJSON
from api.schemas.common import Page, problem_responses
from api.schemas.incidents import (
    BatchOut,
    FollowUpStatus,
    IncidentBatch,
    IncidentCreate,
    IncidentOut,
    IncidentUpdate,
    Timestamp,
    incident_out,
)
from services import intake
from services.db import JSONText
from services.errors import DomainError
from services.principal import Principal

router = APIRouter(route_class=UnitOfWorkRoute, tags=["incidents"])
Writer = Annotated[Principal, Depends(require("partner", "coordinator", "outreach"))]
Reader = Annotated[Principal, Depends(require("partner", "coordinator", "outreach"))]
Coordinator = Annotated[Principal, Depends(require("coordinator"))]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="retry safely: the same key replays the answer",
    ),
]


def _one(
    session, principal: Principal, now: datetime, settings, data: dict[str, Any]
) -> tuple[int, IncidentOut]:
    incident, created, subs = intake.create_incident_with_substances(
        session, principal=principal, now=now, settings=settings, data=data
    )
    if subs is None:  # an identical repeat: read what was stored
        subs = intake.substances_for(session, [incident.id])[incident.id]
    return (201 if created else 200), incident_out(incident, subs, now)


def create_incident(
    request: Request,
    body: IncidentCreate,
    principal: Writer,
    session: DbSession,
    now: Now,
    settings: AppSettings,
    idempotency_key: IdempotencyKey = None,
) -> RenderedJSON:
    data = body.model_dump(exclude_unset=True)

    def work():
        status, out = _one(session, principal, now, settings, data)
        # Rendered once: sent, and stored as it is for an Idempotency-Key's replays.
        return status, JSONText(out.model_dump_json()), {"Location": f"/v1/incidents/{out.id}"}

    # The model itself: its hash is made only when an Idempotency-Key is sent, once.
    return idempotent(request, session, principal, now, settings, body, work)


# Every partner notification comes here: answered in one thread-pool hop (api.direct).
router.add_api_route(
    "/v1/incidents",
    create_incident,
    methods=["POST"],
    route_class_override=DirectRoute,
    status_code=201,
    response_model=IncidentOut,
    responses={
        200: {"model": IncidentOut, "description": "identical repeat of an earlier source_ref"},
        **problem_responses(409),
    },
)


def _problem_of(exc: DomainError) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": problem_type(exc.status),
        "title": exc.title,
        "status": exc.status,
        "detail": exc.detail,
    }
    if exc.errors is not None:
        body["errors"] = exc.errors
    body.update(exc.extra)
    return body


def _validation_problem(exc: ValidationError) -> dict[str, Any]:
    errors = [
        {"loc": ["body", *[p for p in e["loc"]]], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors()
    ]
    return {
        "type": problem_type(422),
        "title": TITLES[422],
        "status": 422,
        "detail": "the incident is not valid: see errors",
        "errors": errors,
    }


@router.post(
    "/v1/incidents/batch",
    status_code=207,
    response_model=BatchOut,
    responses=problem_responses(409),
    description=(
        "Up to 500 incidents, each validated and recorded independently (a SAVEPOINT each) "
        "and idempotent by source_ref. Always 207 Multi-Status; each result has its own "
        "status: 201 created, 200 identical repeat, 409 source_ref used with other details, "
        "422 invalid (with `error`, a problem)."
    ),
)
def create_batch(
    request: Request,
    body: IncidentBatch,
    principal: Writer,
    session: DbSession,
    now: Now,
    settings: AppSettings,
    idempotency_key: IdempotencyKey = None,
) -> RenderedJSON:
    def work():
        results = []
        for index, item in enumerate(body.incidents):
            try:
                parsed = IncidentCreate.model_validate_json(json.dumps(item))
            except ValidationError as exc:
                results.append({"index": index, "status": 422, "error": _validation_problem(exc)})
                continue
            try:
                with session.begin_nested():
                    status, out = _one(
                        session, principal, now, settings, parsed.model_dump(exclude_unset=True)
                    )
                results.append({"index": index, "status": status, "id": out.id})
            except DomainError as exc:
                results.append({"index": index, "status": exc.status, "error": _problem_of(exc)})
        # Problem bodies carry domain values (ids, codes): made JSON-safe like any answer.
        return 207, jsonable_encoder({"results": results}), {}

    return idempotent(
        request, session, principal, now, settings, body.model_dump(mode="json"), work
    )


@router.get("/v1/incidents", response_model=Page[IncidentOut], responses=problem_responses())
def list_incidents(
    principal: Reader,
    session: DbSession,
    now: Now,
    paging: Paging,
    status: Annotated[FollowUpStatus | None, Query(description="follow-up status")] = None,
    overdue: Annotated[
        bool | None, Query(description="true: awaiting contact past contact_due_at")
    ] = None,
    person_id: Annotated[str | None, Query(max_length=36, pattern=r"^[^\x00]*$")] = None,
    occurred_from: Annotated[Timestamp | None, Query()] = None,
    occurred_to: Annotated[Timestamp | None, Query()] = None,
    assigned_agency_id: Annotated[str | None, Query(max_length=36, pattern=r"^[^\x00]*$")] = None,
) -> Page[IncidentOut]:
    """Incidents in the caller's reach, newest `occurred_at` first (keyset paged)."""
    page = intake.list_incidents(
        session,
        principal=principal,
        now=now,
        cursor=paging.cursor,
        limit=paging.limit,
        status=status,
        overdue=overdue,
        person_id=person_id,
        occurred_from=occurred_from,
        occurred_to=occurred_to,
        assigned_agency_id=assigned_agency_id,
    )
    subs = intake.substances_for(session, [i.id for i in page.items])
    return Page[IncidentOut](
        items=[incident_out(i, subs[i.id], now) for i in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/v1/incidents/{incident_id}", response_model=IncidentOut, responses=problem_responses()
)
def get_incident(incident_id: str, principal: Reader, session: DbSession, now: Now) -> IncidentOut:
    incident = intake.get_incident(session, principal=principal, now=now, incident_id=incident_id)
    return incident_out(incident, intake.substances_for(session, [incident.id])[incident.id], now)


@router.patch(
    "/v1/incidents/{incident_id}", response_model=IncidentOut, responses=problem_responses()
)
def update_incident(
    incident_id: str,
    body: IncidentUpdate,
    principal: Coordinator,
    session: DbSession,
    now: Now,
    settings: AppSettings,
) -> IncidentOut:
    changes = body.model_dump(exclude_unset=True)
    incident = intake.update_incident(
        session,
        principal=principal,
        now=now,
        settings=settings,
        incident_id=incident_id,
        changes=changes,
    )
    return incident_out(incident, intake.substances_for(session, [incident.id])[incident.id], now)
