from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from api.deps import AppSettings, DbSession, Now, UnitOfWorkRoute, require
from api.schemas.common import problem_responses
from api.schemas.reports import SummaryOut
from services import reports
from services.principal import Principal

router = APIRouter(route_class=UnitOfWorkRoute, tags=["reports"])
Reader = Annotated[Principal, Depends(require("coordinator", "analyst"))]
DEFAULT_DAYS = 28


def _period(settings, now, start: date | None, end: date | None) -> tuple[date, date]:
    end = end or now.astimezone(settings.tz).date()
    start = start or end - timedelta(days=DEFAULT_DAYS - 1)
    return start, end


FromQ = Annotated[date | None, Query(alias="from", description="first local date, YYYY-MM-DD")]
ToQ = Annotated[date | None, Query(description="last local date (inclusive), YYYY-MM-DD")]


@router.get(
    "/v1/reports/summary",
    response_model=SummaryOut,
    response_model_by_alias=True,
    responses=problem_responses(),
)
def summary(
    principal: Reader,
    session: DbSession,
    now: Now,
    settings: AppSettings,
    from_: FromQ = None,
    to: ToQ = None,
) -> dict:
    """Figures for incidents whose overdose happened on a local date from `from` to `to`
    (default: the last 28 days). For analysts, counts from 1 to 4 are "<5"."""
    start, end = _period(settings, now, from_, to)
    return reports.summary(
        session, principal=principal, settings=settings, now=now, start=start, end=end
    )


@router.get(
    "/v1/reports/summary.csv",
    response_class=Response,
    responses={
        200: {"content": {"text/csv": {}}, "description": "figure,category,value rows"},
        **problem_responses(),
    },
)
def summary_csv(
    principal: Reader,
    session: DbSession,
    now: Now,
    settings: AppSettings,
    from_: FromQ = None,
    to: ToQ = None,
) -> Response:
    """The same report as CSV: one `figure,category,value` row per figure or cell."""
    start, end = _period(settings, now, from_, to)
    report = reports.summary(
        session,
        principal=principal,
        settings=settings,
        now=now,
        start=start,
        end=end,
        export=True,
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["figure", "category", "value"])
    for figure, category, value in reports.csv_rows(report):
        writer.writerow([figure, _safe(category), value])
    filename = f"nfod-summary-{start.isoformat()}-{end.isoformat()}.csv"
    return Response(
        content=buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _safe(value: str) -> str:
    """Keep spreadsheet formulas out of free-text categories (agency, substance names)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
