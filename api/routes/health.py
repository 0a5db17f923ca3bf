from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api import metrics
from api.problems import problem_response
from services import migrations

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "database unreachable or not migrated"}})
def readyz(request: Request):
    """The database is reachable and migrated to the head revision."""
    state = migrations.database_state(request.app.state.engine)
    if not state.reachable:
        return problem_response(503, "the database is not reachable")
    if not state.at_head:
        return problem_response(
            503, f"the database is at revision {state.current}, not {state.head}: run nfod migrate"
        )
    return {"status": "ready", "revision": state.current}


@router.get("/metrics")
def metrics_endpoint() -> Response:
    body, content_type = metrics.render()
    return Response(content=body, media_type=content_type)
