"""Domain errors. The API maps each to one RFC 9457 problem type, in one place."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status = 400
    title = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.extra = extra or {}
        self.headers = headers or {}


class NotFound(DomainError):
    status = 404
    title = "Not found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"


class Invalid(DomainError):
    """Input that is well-formed but breaks a domain rule (422)."""

    status = 422
    title = "Unprocessable content"

    def __init__(self, detail: str, *, loc: list[str | int] | None = None, **kwargs):
        if loc is not None and "errors" not in kwargs:
            kwargs["errors"] = [{"loc": loc, "msg": detail}]
        super().__init__(detail, **kwargs)


class PreconditionFailed(DomainError):
    status = 412
    title = "Precondition failed"


class PreconditionRequired(DomainError):
    status = 428
    title = "Precondition required"


class Forbidden(DomainError):
    status = 403
    title = "Forbidden"


class Unauthorized(DomainError):
    status = 401
    title = "Unauthorized"


class TooManyRequests(DomainError):
    status = 429
    title = "Too many requests"


class Unavailable(DomainError):
    status = 503
    title = "Service unavailable"
