"""The daily huddle: agenda (live, then frozen), holding it, outcomes, CSV/HTML exports."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from api.deps import AppSettings, DbSession, Now, Paging, UnitOfWorkRoute, require
from api.responses import RenderedJSON
from api.schemas.common import Page, problem_responses
from api.schemas.huddles import (
    Agenda,
    AgendaItem,
    DiscussionIn,
    HuddleCreate,
    HuddleOut,
    HuddleSummary,
    parse_huddle_date,
    parse_iso_date,
)
from services import huddles
from services.errors import Invalid
from services.principal import Principal

router = APIRouter(route_class=UnitOfWorkRoute, tags=["huddles"])
Coordinator = Annotated[Principal, Depends(require("coordinator"))]

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent.parent / "templates"),
    autoescape=select_autoescape(["html"], default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _date(value: str | None, loc: list[str | int], *, huddle: bool = False) -> date | None:
    if value is None:
        return None
    try:
        return parse_huddle_date(value) if huddle else parse_iso_date(value)
    except ValueError as exc:
        raise Invalid(f"{value!r}: {exc}", loc=loc) from None


_AGENDA_FIELDS = frozenset(Agenda.model_fields)


@router.get(
    "/v1/huddles/{day}/agenda",
    response_model=Agenda,
    response_model_exclude_unset=True,
    responses=problem_responses(),
    summary="The agenda of a local date: live until that day's huddle is held, then frozen",
)
def get_agenda(
    day: Annotated[str, PathParam(description="local date, YYYY-MM-DD", max_length=10)],
    principal: Coordinator,
    session: DbSession,
    now: Now,
    settings: AppSettings,
) -> RenderedJSON:
    the_day = _date(day, ["path", "day"], huddle=True)
    view = huddles.get_agenda(session, principal=principal, now=now, settings=settings, day=the_day)
    # Already the Agenda's JSON (api/responses.py); a held huddle's view also names the
    # huddle's own fields (HuddleOut), which this resource does not show.
    return RenderedJSON({k: v for k, v in view.items() if k in _AGENDA_FIELDS})


@router.post(
    "/v1/huddles",
    status_code=201,
    response_model=HuddleOut,
    response_model_exclude_unset=True,
    responses=problem_responses(409),
)
def hold_huddle(
    body: HuddleCreate, principal: Coordinator, session: DbSession, now: Now, settings: AppSettings
) -> HuddleOut:
    view = huddles.hold_huddle(
        session,
        principal=principal,
        now=now,
        settings=settings,
        day=body.date,
        chair_name=body.chair_name,
    )
    return HuddleOut.model_validate(view)


@router.get("/v1/huddles", response_model=Page[HuddleSummary], responses=problem_responses())
def list_huddles(
    principal: Coordinator,
    session: DbSession,
    paging: Paging,
    date_from: Annotated[
        str | None, Query(alias="from", max_length=10, description="first date, YYYY-MM-DD")
    ] = None,
    date_to: Annotated[
        str | None, Query(alias="to", max_length=10, description="last date, YYYY-MM-DD")
    ] = None,
) -> Page[HuddleSummary]:
    page = huddles.list_huddles(
        session,
        principal=principal,
        date_from=_date(date_from, ["query", "from"]),
        date_to=_date(date_to, ["query", "to"]),
        cursor=paging.cursor,
        limit=paging.limit,
    )
    return Page[HuddleSummary](
        items=[HuddleSummary.model_validate(i) for i in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/v1/huddles/{huddle_id}",
    response_model=HuddleOut,
    response_model_exclude_unset=True,
    responses=problem_responses(),
)
def get_huddle(
    huddle_id: str, principal: Coordinator, session: DbSession, now: Now, settings: AppSettings
) -> HuddleOut:
    view = huddles.get_huddle(
        session, principal=principal, now=now, settings=settings, huddle_id=huddle_id
    )
    return HuddleOut.model_validate(view)


@router.post(
    "/v1/huddles/{huddle_id}/items/{incident_id}",
    response_model=AgendaItem,
    response_model_exclude_unset=True,
    responses=problem_responses(409),
)
def record_discussion(
    huddle_id: str,
    incident_id: str,
    body: DiscussionIn,
    principal: Coordinator,
    session: DbSession,
    now: Now,
    settings: AppSettings,
) -> AgendaItem:
    changes = body.model_dump(include=body.model_fields_set | {"discussed"})
    item = huddles.record_discussion(
        session,
        principal=principal,
        now=now,
        settings=settings,
        huddle_id=huddle_id,
        incident_id=incident_id,
        changes=changes,
    )
    return AgendaItem.model_validate(item)


@router.get(
    "/v1/huddles/{huddle_id}/agenda.csv",
    response_class=Response,
    responses={
        200: {"content": {"text/csv": {}}, "description": "one row per item"},
        **problem_responses(),
    },
)
def agenda_csv(
    huddle_id: str, principal: Coordinator, session: DbSession, now: Now, settings: AppSettings
) -> Response:
    view = huddles.export_huddle(
        session, principal=principal, now=now, settings=settings, huddle_id=huddle_id, fmt="csv"
    )
    return Response(
        content=huddles.agenda_csv(view),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="huddle-{view["date"]}-agenda.csv"',
            "Cache-Control": "no-store",
        },
    )


@router.get(
    "/v1/huddles/{huddle_id}/agenda.html",
    response_class=HTMLResponse,
    responses={
        200: {"content": {"text/html": {}}, "description": "printable A4 agenda"},
        **problem_responses(),
    },
)
def agenda_html(
    huddle_id: str, principal: Coordinator, session: DbSession, now: Now, settings: AppSettings
) -> HTMLResponse:
    view = huddles.export_huddle(
        session, principal=principal, now=now, settings=settings, huddle_id=huddle_id, fmt="html"
    )
    sections = [
        ("new", "New since the last huddle", view["new"]),
        ("follow_ups", "Follow-ups still awaiting contact", view["follow_ups"]),
        ("late", "Added after the agenda was frozen", view["late"]),
    ]
    tz = settings.tz

    def local(value: str | None, fmt: str = "%a %d %b %H:%M") -> str:
        if not value:
            return "-"
        return datetime.fromisoformat(value).astimezone(tz).strftime(fmt)

    html = TEMPLATES.get_template("agenda.html").render(
        huddle=view, sections=sections, local=local, timezone=settings.timezone
    )
    return HTMLResponse(
        html,
        headers={
            "Cache-Control": "no-store",
            # Defence in depth on top of autoescaping: no scripts, no external loads.
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff",
        },
    )
