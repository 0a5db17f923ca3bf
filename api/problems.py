"""RFC 9457 problem details: every error leaves the service through here."""

from __future__ import annotations

import logging
import sqlite3
import traceback
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.errors import DomainError

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("nfod.errors")

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    412: "Precondition failed",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    428: "Precondition required",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def problem_type(status: int) -> str:
    return f"https://nfod.example/problems/{status}"


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": problem_type(status),
        "title": title or TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def _clean_loc(loc: Any) -> list[str | int]:
    return [part if isinstance(part, int) else str(part) for part in loc]


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        msg = str(err.get("msg", "invalid"))
        out.append({"loc": _clean_loc(err.get("loc", [])), "msg": msg, "type": err.get("type")})
    return out


async def _domain_error(_request: Request, exc: DomainError) -> JSONResponse:
    return problem_response(
        exc.status,
        exc.detail,
        title=exc.title,
        errors=exc.errors,
        headers=exc.headers,
        extra=exc.extra,
    )


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = validation_errors(exc)
    if any(e.get("type") == "json_invalid" for e in errors):
        return problem_response(400, "the request body is not valid JSON", errors=errors)
    return problem_response(422, "the request is not valid: see errors", errors=errors)


async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "Error")
    if exc.status_code == 404 and detail == "Not Found":
        detail = "no such resource"
    if exc.status_code == 405:
        detail = "this method is not allowed on this resource"
    return problem_response(exc.status_code, detail, headers=getattr(exc, "headers", None))


def log_unhandled(exc: BaseException) -> None:
    """Log an unexpected error by type and frames only: never its message, which may carry
    SQL parameters and so personal data."""
    log.error(
        "unhandled error",
        extra={
            "error_type": type(exc).__name__,
            # file:line in function, innermost last; no source lines, no locals, no message.
            "frames": [
                f"{frame.filename}:{frame.lineno} in {frame.name}"
                for frame in traceback.extract_tb(exc.__traceback__)
            ][-25:],
        },
    )


def log_failure(exc: BaseException) -> None:
    """Log a request's failure: an outage of the database (:func:`database_unavailable`,
    answered 503 and retried by the caller) as a warning naming only the error's type - an
    outage fails every request for its duration, and each is expected, not a fault of the
    code; anything else as an unhandled error with its frames (:func:`log_unhandled`)."""
    if database_unavailable(exc):
        orig = getattr(exc, "orig", None)
        log.warning(
            "database unavailable",
            extra={
                "error_type": type(exc).__name__,
                # The driver's own class: a lost connection, a refused one, or a wait that
                # ran out (QueryCanceled, LockNotAvailable, AnswerTimeout: services.db.Timeouts).
                "db_error_type": type(orig).__name__ if orig is not None else None,
            },
        )
    else:
        log_unhandled(exc)


def database_unavailable(exc: BaseException) -> bool:
    """The database is down, restarting or out of pooled connections: retryable, so 503."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.OperationalError):
        orig = getattr(exc, "orig", None)
        if isinstance(orig, sqlite3.OperationalError):
            # sqlite3 raises OperationalError for SQL mistakes too ("no such column"):
            # only lock, open and I/O failures are outages.
            text = str(orig).lower()
            return any(s in text for s in ("locked", "busy", "unable to open", "disk i/o"))
        return True
    return isinstance(exc, sa_exc.TimeoutError) or (
        isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
    )


def database_timed_out(exc: BaseException) -> bool:
    """A wait on PostgreSQL that ran out (services.db.Timeouts): a statement, a lock, or
    any answer (the watchdog's: services.db_watchdog)."""
    from psycopg import errors

    from services.db_watchdog import AnswerTimeout

    orig = getattr(exc, "orig", None)
    return isinstance(orig, (errors.QueryCanceled, errors.LockNotAvailable, AnswerTimeout))


def unavailable_response(exc: BaseException | None = None) -> JSONResponse:
    detail = (
        "the database did not answer in time; retry shortly"
        if exc is not None and database_timed_out(exc)
        else "the database is unavailable; retry shortly"
    )
    return problem_response(503, detail, headers={"Retry-After": "1"})


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    # Normally the request middleware answers first; this is the fallback.
    log_failure(exc)
    if database_unavailable(exc):
        return unavailable_response(exc)
    return problem_response(500, "something went wrong on our side; it has been logged")


def install(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
