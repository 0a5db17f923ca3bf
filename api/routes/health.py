from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse

from api import metrics
from api.deps import UnitOfWorkRoute
from api.problems import problem_response
from api.schemas.common import Problem, ResponseModel
from services import migrations

router = APIRouter(route_class=UnitOfWorkRoute, tags=["operations"])


class HealthOut(ResponseModel):
    status: str


class ReadyOut(ResponseModel):
    status: str
    revision: str


@router.get("/healthz", response_model=HealthOut)
def healthz() -> HealthOut:
    """The process is up (no database access)."""
    return HealthOut(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyOut,
    responses={
        503: {
            "model": Problem,
            "content": {"application/problem+json": {}},
            "description": "the database is unreachable or not migrated to the head revision",
        }
    },
)
def readyz(request: Request):
    """The database is reachable and migrated to the head revision."""
    state = migrations.database_state(request.app.state.engine)
    if not state.reachable:
        return problem_response(503, "the database is not reachable")
    if not state.at_head:
        return problem_response(
            503,
            f"the database is at revision {state.current}, not {state.head}: run nfod migrate",
        )
    return ReadyOut(status="ready", revision=state.current or "")


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics_endpoint() -> Response:
    """Request counts and latency histograms by route template and status, scheduler and
    webhook counters (Prometheus text exposition format)."""
    body, content_type = metrics.render()
    return Response(content=body, media_type=content_type)
